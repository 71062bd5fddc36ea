"""What the benchmark harnesses share: the lab of loopback sshd hosts, the workload, timing and the maths.

The pure parts (medians, per-pair ratios, the table) have no side effects on import and are
tested in tests/unit/test_bench_harness.py; the lab (tests/lab/sshd.py) is imported only when a
harness starts one.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

ROOT = Path(__file__).resolve().parent.parent

if TYPE_CHECKING:
    from tests.lab.sshd import LabHost, SshLab

#: The workload, as maint runs it: a directory, a file's content, a symlink, a read-only command
#: and a command that is never needed. The peers (fabric_baseline.py, peers/) do the same five.
PLAYBOOK = """\
name: bench
concurrency: 64
stages:
  - env: production
    steps:
      - {action: file.directory, with: {path: "{{ env.path }}/app"}}
      - {action: file.content, with: {path: "{{ env.path }}/app/config.txt", content: "hello from maint\\n"}}
      - {action: file.symlink, with: {path: "{{ env.path }}/current", target: "{{ env.path }}/app"}}
      - {action: command, with: {argv: [uname, -r], read_only: true}}
      - {action: command, with: {argv: ["true"], unless: ["true"]}}
"""

#: The file content every tool must leave behind (exactly).
CONTENT = "hello from maint\n"
#: Its SHA-256, as ``sha256sum`` prints it (the floors check every answer against it).
CONTENT_SHA256 = hashlib.sha256(CONTENT.encode()).hexdigest()


def write_playbook(work: Path, name: str = "bench.yml") -> Path:
    """:data:`PLAYBOOK` as ``work/name``, committed in a git repository at ``work``; its path.

    Where playbooks are kept (a GitHub Actions run always has one in its checkout), so maint
    records the commit in every audit event as it does for its users, and pays for it here too.
    The rest of ``work`` (inventories, state) stays untracked: the playbook's repository is clean.
    git runs as the tests' helper runs it: without the machine's configuration, a fixed identity.
    """
    from tests.git_helpers import committed_repo

    committed_repo(Path(work), {name: PLAYBOOK})
    return Path(work) / name


# ---------------------------------------------------------------- measurements
@dataclass(frozen=True)
class Measure:
    """One timed run: wall seconds, CPU seconds (user+sys of its processes) and peak RSS in MB."""

    wall: float
    cpu: float
    rss_mb: float = 0.0


@dataclass
class Window:
    """What a measurement window starts from: the clock and the CPU of adopted processes."""

    start: float
    adopted: dict[int, float]


@dataclass
class Timer:
    """Times child commands and remembers the largest RSS any of them reached.

    A run's CPU is the user+sys time of the child and of everything it waited for (``wait4``),
    plus what adopted orphans spent during the window: with :func:`become_subreaper`, ssh
    control masters that a tool leaves in the background are adopted by this process; their
    CPU is read from /proc while they live and from ``wait4`` when they are reaped.
    """

    peak_rss_mb: float = 0.0
    orphan_cpu: float = field(default=0.0)

    def begin(self) -> Window:
        """Open a measurement window."""
        self.orphan_cpu += reap_orphans()
        return Window(time.perf_counter(), adopted_cpu())

    def end(
        self, w: Window, child_cpu: float, child_rss_mb: float, cleanup: Callable[[], None] | None = None
    ) -> Measure:
        """Close a window: wall up to now, then ``cleanup`` (untimed, but its orphans' CPU counts)."""
        wall = time.perf_counter() - w.start
        if cleanup is not None:
            cleanup()
        reaped = reap_orphans()
        self.orphan_cpu += reaped
        now = adopted_cpu()
        adopted = sum(now.values()) - sum(v for pid, v in w.adopted.items() if pid in now)
        gone = sum(v for pid, v in w.adopted.items() if pid not in now)  # reaped here: count only the rest
        self.peak_rss_mb = max(self.peak_rss_mb, child_rss_mb)
        return Measure(wall, child_cpu + reaped - gone + adopted, child_rss_mb)

    def run(
        self,
        argv: Sequence[str],
        env: dict[str, str] | None = None,
        cleanup: Callable[[], None] | None = None,
    ) -> tuple[Measure, str]:
        """Run ``argv``; return its measure and its stdout. A non-zero exit raises SystemExit."""
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            w = self.begin()
            proc = subprocess.Popen(list(argv), stdout=out, stderr=err, env=env)
            _pid, status, ru = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
            m = self.end(w, ru.ru_utime + ru.ru_stime, ru.ru_maxrss / 1024, cleanup)
            out.seek(0)
            err.seek(0)
            stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
        if proc.returncode != 0:
            raise SystemExit(f"failed ({proc.returncode}): {' '.join(argv)}\n{stdout[-3000:]}\n{stderr[-3000:]}")
        return m, stdout


DEFAULT_TIMER = Timer()


def timed(argv: list[str], env: dict[str, str] | None = None) -> tuple[float, float]:
    """Wall and CPU (user+sys of the child) seconds of one command (bench.py's interface)."""
    m, _ = DEFAULT_TIMER.run(argv, env)
    return m.wall, m.cpu


def become_subreaper() -> None:
    """Make this process adopt its orphaned descendants (Linux PR_SET_CHILD_SUBREAPER).

    ssh control masters detach from the tool that started them; adopted, their CPU can be
    counted (see :class:`Timer`). Call it after the lab's sshd daemons have started.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(36, 1, 0, 0, 0) != 0:  # PR_SET_CHILD_SUBREAPER
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER) failed")


def reap_orphans() -> float:
    """Reap every child that has already exited (without waiting); return their CPU seconds."""
    cpu = 0.0
    while True:
        try:
            pid, _status, ru = os.wait4(-1, os.WNOHANG)
        except ChildProcessError:
            return cpu
        if pid == 0:
            return cpu
        cpu += ru.ru_utime + ru.ru_stime


def adopted_cpu() -> dict[int, float]:
    """CPU seconds so far of each live child of this process, from /proc: its own (user+sys) and
    that of the children it has reaped (a ``maint daemon``'s runs)."""
    me, tick = os.getpid(), os.sysconf("SC_CLK_TCK")
    out: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == me:  # [0] the state, [1] the ppid, [11]/[12] utime/stime, [13]/[14] cutime/cstime
            out[int(entry.name)] = sum(int(f) for f in fields[11:15]) / tick
    return out


# ---------------------------------------------------------------- maths
def median(xs: Iterable[float]) -> float:
    """The median of the values (ValueError when there are none)."""
    values = list(xs)
    if not values:
        raise ValueError("median of no values")
    return float(statistics.median(values))


def median_measures(xs: Sequence[tuple[float, float]]) -> tuple[float, float]:
    """Median wall and median CPU of (wall, cpu) pairs, each taken on its own."""
    return median(x[0] for x in xs), median(x[1] for x in xs)


def pair_ratios(a: Sequence[float], b: Sequence[float]) -> list[float]:
    """a[i] / b[i] for each counted pair (both sequences the same length, b never zero)."""
    if len(a) != len(b):
        raise ValueError(f"{len(a)} against {len(b)} measures: pairs must match")
    return [x / y for x, y in zip(a, b, strict=True)]


def median_ratio(a: Sequence[float], b: Sequence[float]) -> float:
    """The median of the per-pair ratios a/b (not the ratio of the medians)."""
    return median(pair_ratios(a, b))


def machine_cpu(stat: Path = Path("/proc/stat")) -> float:
    """CPU seconds the whole machine has spent since boot (user, nice, system, irq, softirq,
    steal: every process, the lab's servers included), from the first line of ``/proc/stat``."""
    fields = stat.read_text().split("\n", 1)[0].split()
    if not fields or fields[0] != "cpu":
        raise ValueError(f"{stat}: no cpu line")
    ticks = [int(x) for x in fields[1:4] + fields[6:9]]
    return sum(ticks) / os.sysconf("SC_CLK_TCK")


def overheads_by_size(rows: Sequence[dict[str, Any]]) -> dict[int, tuple[float, float]]:
    """Per number of sites: the median over the rounds of the wall overhead and of the
    machine-CPU overhead (maint first run / by hand - 1)."""
    sizes = sorted({int(r["sites"]) for r in rows})
    return {
        n: (
            median(r["overhead"] for r in rows if r["sites"] == n),
            median(r["overhead_cpu"] for r in rows if r["sites"] == n),
        )
        for n in sizes
    }


# ---------------------------------------------------------------- the lab
def file_creation_ms(parent: Path, n: int = 341) -> float:
    """Milliseconds to create ``n`` small files, in 20 folders, in a new folder under ``parent``:
    about what the PHP helper's first boot on a site writes into its compiled-code cache.

    On ext4 without a journal (this machine's root filesystem) the inode allocator skips the
    inodes deleted in the minutes before, so this takes several times longer right after a test
    run or a benchmark's clean-up, and so does every file a run creates (docs/benchmarks.md,
    nineteenth round). The monthly harnesses print it before each side they measure. The files
    stay: removing them would slow the next probe; the lab's clean-up removes them.
    """
    folder = Path(tempfile.mkdtemp(prefix="fs-probe-", dir=parent))
    start = time.perf_counter()
    for i in range(n):
        sub = folder / f"d{i % 20}"
        sub.mkdir(exist_ok=True)
        (sub / f"f{i}.bin").write_bytes(b"x" * 2048)
    return (time.perf_counter() - start) * 1000


def precompile() -> None:
    """Byte-compile maintkit's source tree, as an installed package is.

    pip compiles what it installs, but the editable tree is compiled on first import only, and
    not at all where ``PYTHONDONTWRITEBYTECODE`` is set: every timed run would compile it again.
    """
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", str(ROOT / "maintkit")], check=True, stdout=subprocess.DEVNULL
    )


def start_lab(sizes: Sequence[int]) -> SshLab:
    """A lab with max(sizes) loopback sshd hosts (250 per 127.0.N network); maintkit precompiled."""
    precompile()
    sys.path.insert(0, str(ROOT))
    from tests.lab.sshd import SshLab

    lab = SshLab()
    remaining, octet = max(sizes), 0
    while remaining > 0:
        chunk = min(250, remaining)
        lab.start(chunk, first_ip=2, net=f"127.0.{octet + 1}" if octet or max(sizes) > 250 else "127.0.0")
        remaining -= chunk
        octet += 1
    return lab


def fresh_dirs(lab: SshLab, n: int, tag: str) -> list[Path]:
    """An empty directory named ``tag`` (owned by the login user) on each of the first n hosts."""
    from tests.lab.sshd import chown_login_user

    dirs = []
    for h in lab.hosts[:n]:
        d = h.root_dir / tag
        if d.exists():
            shutil.rmtree(d)
        d.mkdir()
        chown_login_user(d)
        dirs.append(d)
    return dirs


def host_records(hosts: Sequence[LabHost], dirs: Sequence[Path]) -> list[dict[str, Any]]:
    """The hosts as the peer scripts read them: ip, port, user, key, known_hosts, path."""
    return [
        {"ip": h.ip, "port": h.port, "user": "deploy", "key": str(h.client_key),
         "known_hosts": str(h.known_hosts), "path": str(d)}
        for h, d in zip(hosts, dirs, strict=True)
    ]  # fmt: skip


def lab_inventory(hosts: Sequence[LabHost], dirs: Sequence[Path]) -> dict[str, Any]:
    """maint's inventory: one site per host (``s0``, ``s1``...), production at its directory."""
    envs = zip(hosts, dirs, strict=True)
    return {"sites": {f"s{i}": {"environments": {"production": h.env(d)}} for i, (h, d) in enumerate(envs)}}


def workload_problems(dirs: Iterable[Path]) -> list[str]:
    """What is missing in each directory after a first run (empty when the work was all done)."""
    problems = []
    for d in dirs:
        app, conf, link = d / "app", d / "app" / "config.txt", d / "current"
        if not app.is_dir() or app.is_symlink():
            problems.append(f"{app}: not a directory")
        if not conf.is_file() or conf.read_bytes() != CONTENT.encode():
            problems.append(f"{conf}: content is not {CONTENT!r}")
        if not link.is_symlink() or os.readlink(link) != str(app):
            problems.append(f"{link}: not a symlink to {app}")
    return problems
