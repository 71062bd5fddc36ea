"""Benchmark: maint against its peers (Fabric, pyinfra, Ansible) and the floors (warm OpenSSH, cold paramiko).

    bash benchmarks/setup-peers.sh                      # once: pyinfra and ansible-core venvs
    python benchmarks/peers.py --hosts 1,10,50 --pairs 3 [--openssh] [--json FILE]

Every tool does the same five steps (common.PLAYBOOK; fabric_baseline.py, peers/) on the same
loopback sshd hosts (tests/lab/sshd.py). maint runs in alternation with each peer: one warm-up
pair, then ``--pairs`` counted pairs; in each pair maint's first run on fresh directories, the
peer's first run on its own fresh directories, then maint's no-op run and the peer's. After every
first run the files on the hosts are checked (exact content), and every tool's own report must
say what changed (maint: 3 steps per host, then none; Ansible: changed=3 per host, then 0;
pyinfra: the three file operations, then none of them): no tool is timed doing less.

``floor`` (floor.py: one batched read per host over OpenSSH masters opened before, the limit
with connections reused) takes part in the no-op runs only. ``cold-floor`` (cold_floor.py: a
new paramiko connection and that one read per host, nothing else: the limit for a tool
opening one connection per host and run) takes part in both: on a first run its one exec per
host does the five steps (Fabric's five commands in one shell, no lock, no read, no atomic
write), the least a first run costs over a new connection per host. With ``--openssh``, maint also runs over
the system's OpenSSH (``connection: openssh``, ``control_persist``) as two more variants: cold
(masters closed before each run) and warm (a previous run left them open). With ``--daemon``,
maint also runs with ``maint daemon`` started (its code loaded once, each run a fork of it:
docs/cli.md#maint-daemon) as ``maint-daemon`` and, with ``--openssh`` too, over warm masters as
``maint-openssh-daemon``; its CPU (the daemon and the runs it forked) is counted, and its RSS
is the run's own (the daemon's status tells it). Every other
variant runs with ``MAINT_DAEMON=0``. Run as root; nothing is asserted; never run it at full
size on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    ROOT,
    Measure,
    Timer,
    adopted_cpu,
    become_subreaper,
    fresh_dirs,
    host_records,
    start_lab,
    workload_problems,
    write_playbook,
)
from daemon import MaintDaemon, maint_exe
from floor import Floor
from report import Group, rss_lines, table
from tools import (
    COMMAND_STEPS,
    STATE_STEPS,
    VENVS,
    Record,
    ansible_argv,
    ansible_cfg,
    ansible_inventory,
    ansible_recap,
    maint_argv,
    maint_changed,
    maint_inventory,
    master_ctl_argv,
    master_pid,
    pyinfra_argv,
    pyinfra_changes,
    pyinfra_inventory,
)  # fmt: skip

PEERS = ("fabric", "pyinfra", "ansible", "floor", "cold-floor")
NOOP_ONLY = ("floor",)
OPENSSH_VARIANTS = ("maint-openssh-cold", "maint-openssh-warm")
#: the variants run with ``maint daemon`` started
DAEMON_VARIANTS = ("maint-daemon", "maint-openssh-daemon")
OPENSSH_TRANSPORT = ROOT / "maintkit" / "transport" / "openssh.py"


@dataclass
class Bench:
    """The lab, the work directory and the timer of one benchmark run."""

    lab: object
    work: Path
    timer: Timer = field(default_factory=Timer)
    concurrency: int = 0
    peaks: dict[str, float] = field(default_factory=dict)
    floor: Floor | None = None
    runs: int = 0
    daemon: MaintDaemon = field(default_factory=MaintDaemon)

    # ---------------------------------------------------------------- helpers
    def records(self, dirs: Sequence[Path]) -> list[Record]:
        """The host records of the first len(dirs) hosts, with these directories as paths."""
        return host_records(self.lab.hosts[: len(dirs)], dirs)  # type: ignore[attr-defined]

    def note(self, tool: str, m: Measure) -> Measure:
        """Remember the tool's peak RSS; return the measure."""
        self.peaks[tool] = max(self.peaks.get(tool, 0.0), m.rss_mb)
        return m

    def hosts_file(self, dirs: Sequence[Path]) -> Path:
        """``hosts.json`` for the scripts that read the hosts as records (fabric_baseline.py, cold_floor.py)."""
        return self.write("hosts.json", json.dumps(self.records(dirs)))

    def write(self, name: str, text: str) -> Path:
        """A file in the work directory."""
        path = self.work / name
        path.write_text(text)
        return path

    # ---------------------------------------------------------------- maint
    def maint(self, variant: str, dirs: Sequence[Path], phase: str) -> Measure:
        """One ``maint run``; its summary must report 3 changes per host (first) or none (no-op)."""
        n = len(dirs)
        inv = self.write(
            f"inv-{variant}.json",
            json.dumps(maint_inventory(self.records(dirs), openssh=variant not in ("maint", "maint-daemon"))),
        )
        if variant == "maint-openssh-cold":
            self.close_openssh()
        state = self.work / "state"
        before = set((state / "runs").glob("*")) if (state / "runs").exists() else set()
        argv = maint_argv(maint_exe(), self.work / "bench.yml", inv, state, self.concurrency or n)
        if variant in DAEMON_VARIANTS:
            self.daemon.start()
        daemon = {} if variant in DAEMON_VARIANTS else {"MAINT_DAEMON": "0"}
        m, _ = self.timer.run(argv, {**os.environ, "MAINT_PLAIN": "1", **daemon})
        new = sorted(set((state / "runs").glob("*")) - before)
        if len(new) != 1:
            raise SystemExit(f"{variant}: expected one new run folder, found {len(new)}")
        changed = maint_changed(json.loads((new[0] / "summary.json").read_text()))
        want = 3 * n if phase == "first" else 0
        if changed != want:
            raise SystemExit(f"{variant} {phase} run on {n} hosts changed {changed} steps, not {want}")
        check_files(variant, dirs, phase)
        if variant in DAEMON_VARIANTS:  # the run was the daemon's fork: its own peak, not the caller's
            m = replace(m, rss_mb=self.daemon.last_run_rss_mb())
        return self.note(variant, m)

    def close_openssh(self) -> None:
        """Close maint's OpenSSH masters (untimed) and wait until they are gone."""
        keep = (set(self.floor.pids) if self.floor else set()) | {self.daemon.pid}
        masters = set(adopted_cpu()) - keep
        subprocess.run([maint_exe(), "connections", "close", "--all"], check=True, capture_output=True)
        wait_gone(masters)

    # ---------------------------------------------------------------- peers
    def fabric(self, dirs: Sequence[Path], phase: str) -> Measure:
        """benchmarks/fabric_baseline.py (no report of changes: it always runs all five commands)."""
        hosts = self.hosts_file(dirs)
        m, _ = self.timer.run([sys.executable, str(ROOT / "benchmarks" / "fabric_baseline.py"), str(hosts)])
        check_files("fabric", dirs, phase)
        return self.note("fabric", m)

    def pyinfra(self, dirs: Sequence[Path], phase: str) -> Measure:
        """The pyinfra deploy; its JSON results must show the file operations' changes."""
        inv = self.write("pyinfra_inventory.py", pyinfra_inventory(self.records(dirs)))
        m, out = self.timer.run(pyinfra_argv(VENVS / "pyinfra", inv, len(dirs)))
        hosts = {str(r["ip"]) for r in self.records(dirs)}
        ops = pyinfra_changes(out)
        for step in (*STATE_STEPS, *COMMAND_STEPS):
            want = "changed" if phase == "first" or step in COMMAND_STEPS else "unchanged"
            if ops.get(step, {}).get(want) != hosts:
                raise SystemExit(f"pyinfra {phase} run: {step!r} is not {want} on every host: {ops.get(step)}")
        check_files("pyinfra", dirs, phase)
        return self.note("pyinfra", m)

    def ansible(self, dirs: Sequence[Path], phase: str) -> Measure:
        """ansible-playbook (pipelining); its recap must say changed=3 per host, then 0."""
        self.runs += 1
        control = self.work / f"ac{self.runs}"
        control.mkdir()
        cfg = self.write("ansible.cfg", ansible_cfg(len(dirs), control))
        inv = self.write("ansible_inventory.json", json.dumps(ansible_inventory(self.records(dirs))))
        env = {**os.environ, "ANSIBLE_CONFIG": str(cfg), "ANSIBLE_LOCAL_TEMP": str(self.work / "ansible-tmp")}
        m, out = self.timer.run(ansible_argv(VENVS / "ansible", inv), env, cleanup=lambda: close_masters(control))
        recap = ansible_recap(out)
        want = 3 if phase == "first" else 0
        bad = {h: r for h, r in recap.items() if r != (5, want)}
        if len(recap) != len(dirs) or bad:
            raise SystemExit(f"ansible {phase} run: want ok=5 changed={want} on {len(dirs)} hosts, got {recap}")
        check_files("ansible", dirs, phase)
        return self.note("ansible", m)

    def cold_floor(self, dirs: Sequence[Path], phase: str) -> Measure:
        """cold_floor.py: a new connection and one exec per host: the five steps (first run; the
        files are checked after it), or one batched read (no-op; it checks every answer)."""
        hosts = self.hosts_file(dirs)
        first = ["--first"] if phase == "first" else []
        m, _ = self.timer.run([sys.executable, str(ROOT / "benchmarks" / "cold_floor.py"), str(hosts), *first])
        if first:
            check_files("cold-floor", dirs, phase)
        return self.note("cold-floor", m)

    def run_floor(self, dirs: Sequence[Path], phase: str) -> Measure:
        """The floor's batched read over masters opened for these directories' hosts."""
        if phase != "noop" or self.floor is None:
            raise ValueError("the floor takes part in no-op runs only")
        self.floor.records = self.records(dirs)
        return self.note("floor", self.floor.run(self.timer))


def check_files(tool: str, dirs: Sequence[Path], phase: str) -> None:
    """Fail loudly unless the hosts hold the workload's exact result."""
    problems = workload_problems(dirs)
    if problems:
        raise SystemExit(f"{tool} {phase} run did not do the work: " + "; ".join(problems[:5]))


def close_masters(control: Path) -> None:
    """``ssh -O exit`` every master socket in ``control`` and wait until the masters are gone."""
    pids = set()
    for sock in control.iterdir():
        if sock.is_socket():
            host, port, user = sock.name.rsplit("-", 2)
            rec = {"ip": host, "port": port, "user": user, "key": "/dev/null", "known_hosts": "/dev/null"}
            check = subprocess.run(master_ctl_argv(rec, sock, "check"), capture_output=True, text=True)
            if check.returncode == 0:
                pids.add(master_pid(check.stderr + check.stdout))
            subprocess.run(master_ctl_argv(rec, sock, "exit"), capture_output=True)
    wait_gone(pids)


def wait_gone(pids: set[int], timeout: float = 10.0) -> None:
    """Wait until none of ``pids`` runs any more (zombies count as gone)."""
    deadline = time.monotonic() + timeout
    while any(_running(p) for p in pids):
        if time.monotonic() > deadline:
            raise SystemExit(f"processes {sorted(pids)} did not exit within {timeout} s")
        time.sleep(0.01)


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


# ---------------------------------------------------------------- pairs
def run_group(b: Bench, g: Group, pairs: int) -> None:
    """One warm-up pair, then ``pairs`` counted pairs of maint variant ``g.variant`` against ``g.peer``."""
    tool = {
        "fabric": b.fabric, "pyinfra": b.pyinfra, "ansible": b.ansible, "floor": b.run_floor, "cold-floor": b.cold_floor,
    }[g.peer]  # fmt: skip
    for k in range(pairs + 1):
        dm = fresh_dirs(b.lab, g.hosts, f"m{k}")  # type: ignore[arg-type]
        if g.peer in NOOP_ONLY:
            b.maint(g.variant, dm, "first")  # untimed for the table: a floor has no first run
            if g.peer == "floor" and b.floor is None:
                b.floor = Floor(b.records(dm), b.work / "fm")
                b.floor.sock_dir.mkdir(exist_ok=True)
                b.floor.open()
            ma, mb = b.maint(g.variant, dm, "noop"), tool(dm, "noop")
            if k:
                g.add("noop", ma, mb)
            continue
        dp = fresh_dirs(b.lab, g.hosts, f"p{k}")  # type: ignore[arg-type]
        first = (b.maint(g.variant, dm, "first"), tool(dp, "first"))
        noop = (b.maint(g.variant, dm, "noop"), tool(dp, "noop"))
        if k:
            g.add("first", *first)
            g.add("noop", *noop)


def absent_reason(variant: str, peer: str) -> str:
    """Why this group cannot run here (empty when it can)."""
    if variant not in ("maint", "maint-daemon") and not OPENSSH_TRANSPORT.exists():
        return "maint's OpenSSH transport is not available (maintkit/transport/openssh.py)"
    if peer in ("pyinfra", "ansible"):
        exe = VENVS / peer / "bin" / ("pyinfra" if peer == "pyinfra" else "ansible-playbook")
        if not exe.exists():
            return f"{peer} not installed (bash benchmarks/setup-peers.sh)"
    return ""


def versions() -> dict[str, str]:
    """The versions the figures were taken with."""
    from importlib.metadata import version

    def out(argv: list[str]) -> str:
        try:
            p = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT)
        except OSError as exc:
            return f"unavailable ({exc})"
        if p.returncode != 0:
            return "unavailable"
        lines = (p.stdout + p.stderr).strip().splitlines()
        return lines[0] if lines else ""  # `git status --porcelain` of a clean tree prints nothing

    dirty = out(["git", "status", "--porcelain", "--untracked-files=no"]) not in ("", "unavailable")
    return {
        "python": sys.version.split()[0], "platform": platform.platform(),
        "maint": out(["git", "rev-parse", "HEAD"]) + (" (uncommitted changes)" if dirty else ""),
        "fabric": version("fabric"), "paramiko": version("paramiko"),
        "pyinfra": out([str(VENVS / "pyinfra" / "bin" / "python"), "-c", "import importlib.metadata as m; print(m.version('pyinfra'))"]),
        "ansible-core": out([str(VENVS / "ansible" / "bin" / "python"), "-c", "import importlib.metadata as m; print(m.version('ansible-core'))"]),
        "openssh": out(["ssh", "-V"]),
    }  # fmt: skip


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hosts", default="1,10,50", help="comma-separated fleet sizes")
    ap.add_argument("--pairs", type=int, default=3, help="counted pairs per tool and size (after one warm-up pair)")
    ap.add_argument("--peers", default=",".join(PEERS), help=f"subset of {','.join(PEERS)}")
    ap.add_argument("--openssh", action="store_true", help="also maint over OpenSSH with ControlPersist, cold and warm")
    ap.add_argument("--daemon", action="store_true", help="also maint with `maint daemon` started (see above)")
    ap.add_argument("--variants", default="", help="only these maint variants (comma-separated; default: all chosen)")
    ap.add_argument("--concurrency", type=int, default=0, help="maint --concurrency (default: one per host)")
    ap.add_argument("--json", metavar="FILE", help="write every raw figure, the versions and the machine here")
    args = ap.parse_args(argv)
    unknown = set(args.peers.split(",")) - set(PEERS)
    if unknown:
        ap.error(f"unknown peers: {', '.join(sorted(unknown))}")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    """Start the lab, run every group, print the table (and write the JSON)."""
    args = parse_args(argv)
    sizes = [int(x) for x in args.hosts.split(",")]
    variants = ["maint", *(OPENSSH_VARIANTS if args.openssh else ())]
    if args.daemon:
        variants += [v for v in DAEMON_VARIANTS if args.openssh or v == "maint-daemon"]
    if args.variants:
        wanted = args.variants.split(",")
        if set(wanted) - set(variants):
            raise SystemExit(f"unknown or not enabled variants: {sorted(set(wanted) - set(variants))}")
        variants = [v for v in variants if v in wanted]
    started = datetime.now(UTC)
    lab = start_lab(sizes)
    become_subreaper()  # after the sshds daemonized: ssh masters left by a tool are now ours
    b = Bench(lab, lab.base / "bench", concurrency=args.concurrency)
    b.work.mkdir()
    write_playbook(b.work)
    groups: list[Group] = []
    try:
        for n in sizes:
            for variant in variants:
                for peer in args.peers.split(","):
                    g = Group(n, variant, peer, absent=absent_reason(variant, peer))
                    groups.append(g)
                    if not g.absent:
                        run_group(b, g, args.pairs)
                    print("\n".join(table([g])[2:]), flush=True)
                if b.floor is not None:
                    b.floor.close()
                    b.floor = None
    finally:
        if b.floor is not None:
            b.floor.close()
        if args.daemon:
            b.daemon.stop()
        if args.openssh and OPENSSH_TRANSPORT.exists():
            b.close_openssh()
        lab.stop()
    print("\n" + "\n".join(table(groups)))
    print("\npeak RSS of any one process: " + ", ".join(rss_lines(b.peaks)))
    if args.json:
        doc = {"date": started.isoformat(timespec="seconds"), "cores": os.cpu_count(), "versions": versions(),
               "args": vars(args), "peak_rss_mb": b.peaks, "groups": [g.to_json() for g in groups]}  # fmt: skip
        Path(args.json).write_text(json.dumps(doc, indent=2) + "\n")


if __name__ == "__main__":
    main()
