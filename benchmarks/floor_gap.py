"""Benchmark: where the cold no-op's distance to the cold floor is (maint and the floor, alone).

    python benchmarks/floor_gap.py [--hosts 50] [--runs 5] [--sessions 100] [--json FILE]

Run as root, with nothing else running (it starts sshd instances). On lab hosts that a first
run has converged, it runs maint's no-op (``MAINT_DAEMON=0``) and the cold floor
(benchmarks/cold_floor.py: one new verified paramiko connection and one read per host) in
alternation, ``--runs`` times each after one warm-up pair, and prints per side the median wall
time, the CPU of the process and its children, and the whole machine's CPU over the run (every
process, the hosts' sshds included: ``/proc/stat``, in 10 ms ticks). On these hosts the sshds
share the controller's cores, so the machine's CPU is what the wall time follows: the
difference of the two sides' machine CPU that is not in their process CPU is on the hosts.

Then ``--runs`` more no-ops of maint with its audit log's ``AuditLog.event`` wrapped: the
events written and the thread CPU spent inside them (redaction, the hash chain, JSON, the
write). Then, over one connection to the first host, ``--sessions`` commands (``uname -r``)
each in an exec session of its own, against as many written to one shell kept open on that
connection: the machine's CPU per command, which is what one more round trip per host costs
here. ``--json FILE`` writes every figure. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cold_floor import connect
from common import Timer, fresh_dirs, host_records, lab_inventory, machine_cpu, start_lab, write_playbook
from daemon import maint_exe
from tools import Record, maint_argv

#: runs maint with ``AuditLog.event`` timed; prints ``mk-audit <events> <thread CPU seconds>`` last
AUDIT_BOOT = r"""
import atexit, sys, threading, time
import maintkit.audit.log as log
seen, lock, original = [0, 0.0], threading.Lock(), log.AuditLog.event
def event(self, *args, **kwargs):
    start = time.thread_time()
    try:
        return original(self, *args, **kwargs)
    finally:
        spent = time.thread_time() - start
        with lock:
            seen[0] += 1
            seen[1] += spent
log.AuditLog.event = event
atexit.register(lambda: print(f"mk-audit {seen[0]} {seen[1]:.6f}", file=sys.stderr))
sys.argv = ["maint", *sys.argv[1:]]
from maintkit.cli.main import main
main()
"""


def measure(argv: Sequence[str], env: dict[str, str], timer: Timer) -> dict[str, float]:
    """One run of ``argv``: wall and process CPU seconds (``common.Timer``), and the machine's CPU."""
    before = machine_cpu()
    m, _ = timer.run(argv, env)
    return {"wall": m.wall, "cpu": m.cpu, "machine_cpu": machine_cpu() - before}


def pairs(sides: dict[str, Sequence[str]], env: dict[str, str], runs: int) -> dict[str, list[dict[str, float]]]:
    """Every side once per round, ``runs`` counted rounds after one warm-up round."""
    timer, out = Timer(), {name: [] for name in sides}
    for round_no in range(runs + 1):
        for name, argv in sides.items():
            figures = measure(argv, env, timer)
            if round_no:
                out[name].append(figures)
    return out


def audit_events(maint_args: Sequence[str], env: dict[str, str], python: str = sys.executable) -> tuple[int, float]:
    """One maint run with its audit events timed: (events written, thread CPU seconds in them)."""
    proc = subprocess.run([python, "-c", AUDIT_BOOT, *maint_args], env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"maint exited {proc.returncode}:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    _, count, spent = proc.stderr.strip().splitlines()[-1].split()
    return int(count), float(spent)


def session_costs(h: Record, n: int) -> dict[str, Any]:
    """Machine CPU per command over one connection to ``h``: each command in its own exec
    session, then each written to one shell kept open; every answer is checked."""
    client = connect(h)  # the cold floor's connection: host key verified, the key file only
    try:
        client.get_transport().sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as maint's
        release = _in_new_session(client, "uname -r")
        sessions = _per_command(n, lambda: _in_new_session(client, "uname -r"), release)
        kept = _kept_shell(client, n, release)
    finally:
        client.close()
    return {"release": release, "session_ms": sessions * 1000, "kept_shell_ms": kept * 1000}


def _in_new_session(client: Any, command: str) -> str:
    _, out, _ = client.exec_command(command)
    text = out.read().decode()
    if out.channel.recv_exit_status() != 0:
        raise SystemExit(f"{command!r} failed over a new session")
    return str(text)


def _per_command(n: int, one: Callable[[], str], expect: str) -> float:
    """Machine CPU seconds per call of ``one`` (each must answer ``expect``)."""
    before = machine_cpu()
    for _ in range(n):
        if one() != expect:
            raise SystemExit("a command answered something else")
    return (machine_cpu() - before) / n


def _kept_shell(client: Any, n: int, expect: str) -> float:
    channel = client.get_transport().open_session()
    channel.exec_command("sh")
    out, into = channel.makefile("rb"), channel.makefile_stdin("wb")

    def one() -> str:
        into.write(b"uname -r; echo @@mk-end\n")
        into.flush()
        lines = []
        while (line := out.readline()) != b"@@mk-end\n":
            if not line:
                raise SystemExit("the kept shell ended")
            lines.append(line)
        return b"".join(lines).decode()

    try:
        return _per_command(n, one, expect)
    finally:
        channel.close()


def medians(rows: list[dict[str, float]]) -> dict[str, float]:
    """The median of each figure over the rounds."""
    return {k: statistics.median(r[k] for r in rows) for k in rows[0]}


def report(sides: dict[str, list[dict[str, float]]], audit: list[tuple[int, float]], sessions: dict[str, Any]) -> None:
    """The tables."""
    print("side | wall (s) | process CPU (s) | machine CPU (s)")
    print("---|---|---|---")
    for name, rows in sides.items():
        m = medians(rows)
        print(f"{name} | {m['wall']:.3f} | {m['cpu']:.3f} | {m['machine_cpu']:.3f}")
    if audit:
        counts, spent = [c for c, _ in audit], [s * 1000 for _, s in audit]
        print(f"\naudit events of a no-op: {counts}, thread CPU in them {[round(s, 1) for s in spent]} ms")
    if sessions:
        print(f"\nmachine CPU per command: in its own session {sessions['session_ms']:.2f} ms, "
              f"in one kept shell {sessions['kept_shell_ms']:.2f} ms")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--hosts", type=int, default=50)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--sessions", type=int, default=100, help="commands each way (0: skip)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    lab = start_lab([args.hosts])
    work = Path(tempfile.mkdtemp(prefix="maint-floor-gap-"))
    try:
        dirs = fresh_dirs(lab, args.hosts, "floor-gap")
        records = host_records(lab.hosts[: args.hosts], dirs)
        write_playbook(work)
        (work / "inventory.json").write_text(json.dumps(lab_inventory(lab.hosts[: args.hosts], dirs)))
        (work / "hosts.json").write_text(json.dumps(records))
        inventory, state = work / "inventory.json", work / "state"
        maint = maint_argv(maint_exe(), work / "bench.yml", inventory, state, args.hosts)
        env = {**os.environ, "MAINT_PLAIN": "1", "MAINT_DAEMON": "0"}
        subprocess.run(maint, env=env, check=True, capture_output=True)  # the first run converges
        floor = [sys.executable, str(Path(__file__).resolve().parent / "cold_floor.py"), str(work / "hosts.json")]
        sides = pairs({"maint no-op": maint, "cold floor": floor}, env, args.runs)
        audit = [audit_events(maint[1:], env) for _ in range(args.runs)]
        sessions = session_costs(records[0], args.sessions) if args.sessions else {}
    finally:
        lab.stop()
        shutil.rmtree(work, ignore_errors=True)
    report(sides, audit, sessions)
    if args.json:
        data = {"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "args": vars(args) | {"json": str(args.json)},
                "sides": sides, "audit": audit, "sessions": sessions}  # fmt: skip
        args.json.write_text(json.dumps(data, indent=2))


if __name__ == "__main__":
    main()
