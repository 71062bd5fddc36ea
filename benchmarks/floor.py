"""The warm-OpenSSH floor: the least a no-op run of the workload could cost.

For every host, ONE ``ssh`` over a ControlMaster that is already open (masters are opened
before, untimed) sends one read-only batch equivalent to maint's no-op probe: a ``stat`` of
every path (and the lock), ``readlink`` of the link, ``sha256sum`` of the file and
``uname -r``; all hosts in parallel. No handshake, no Python start-up, no state: what is left
is the round trip itself. Every answer is checked (the link target and the file's hash), so
the floor never measures a read that failed.

    python benchmarks/floor.py HOSTS_JSON [--repeat 3]

HOSTS_JSON as for fabric_baseline.py (ip, port, user, key, known_hosts, path), on hosts that
a first run has already converged. benchmarks/peers.py uses the same functions.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import CONTENT_SHA256, Measure, Timer, become_subreaper, median
from tools import Record, floor_argv, floor_output_ok, master_ctl_argv, master_open_argv, master_pid


class Floor:
    """ControlMasters to a set of hosts, opened once, and the timed batched read over them."""

    def __init__(self, records: Sequence[Record], sock_dir: Path) -> None:
        self.records = list(records)
        self.sock_dir = sock_dir
        self.pids: list[int] = []

    def socket(self, i: int) -> Path:
        """The control socket of host ``i`` (short: sun_path holds 108 bytes)."""
        return self.sock_dir / f"m{i}"

    def open(self) -> None:
        """Open every master (in parallel) and check each answers; remember their pids."""
        procs = [subprocess.Popen(master_open_argv(h, self.socket(i)), stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE) for i, h in enumerate(self.records)]  # fmt: skip
        for p in procs:
            _out, err = p.communicate()
            if p.returncode != 0:
                raise SystemExit(f"floor: could not open a master: {err.decode(errors='replace')}")
        self.pids = [self._check(i, h) for i, h in enumerate(self.records)]

    def _check(self, i: int, h: Record) -> int:
        proc = subprocess.run(master_ctl_argv(h, self.socket(i), "check"), capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"floor: no master for {h['ip']}: {proc.stderr.strip()}")
        return master_pid(proc.stderr + proc.stdout)

    def run(self, timer: Timer) -> Measure:
        """One batched read per host over its master, all at once; every answer is checked."""
        for i, h in enumerate(self.records):  # a master that died would make ssh connect afresh
            if self._check(i, h) != self.pids[i]:
                raise SystemExit(f"floor: the master for {h['ip']} changed")
        with tempfile.TemporaryDirectory() as tmp:
            outs = [Path(tmp) / f"{i}.out" for i in range(len(self.records))]
            w = timer.begin()
            procs = []
            for h, out in zip(self.records, outs, strict=True):
                with open(out, "wb") as fh:
                    procs.append(subprocess.Popen(floor_argv(h, self.socket(len(procs))), stdout=fh,
                                                  stderr=subprocess.STDOUT))  # fmt: skip
            cpu, rss = 0.0, 0.0
            for p in procs:
                _pid, status, ru = os.wait4(p.pid, 0)
                p.returncode = os.waitstatus_to_exitcode(status)
                cpu, rss = cpu + ru.ru_utime + ru.ru_stime, max(rss, ru.ru_maxrss / 1024)
            m = timer.end(w, cpu, rss)
            self._verify(procs, outs)
        return m

    def _verify(self, procs: Sequence[subprocess.Popen[bytes]], outs: Sequence[Path]) -> None:
        for p, h, out in zip(procs, self.records, outs, strict=True):
            text = out.read_text(errors="replace")
            if p.returncode != 0 or not floor_output_ok(text, str(h["path"]), CONTENT_SHA256):
                raise SystemExit(f"floor: {h['ip']} answered {p.returncode}: {text[-1000:]}")

    def close(self) -> None:
        """Ask every master to exit and wait until it has (untimed)."""
        for i, h in enumerate(self.records):
            subprocess.run(master_ctl_argv(h, self.socket(i), "exit"), capture_output=True)
        deadline = time.monotonic() + 10
        while any(_alive(pid) for pid in self.pids) and time.monotonic() < deadline:
            time.sleep(0.01)
        self.pids = []


def _alive(pid: int) -> bool:
    """Whether ``pid`` still runs (a zombie counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def main() -> None:
    """Open the masters, time ``--repeat`` floor reads, print the medians, close the masters."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("hosts_json")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    records = json.loads(Path(args.hosts_json).read_text())
    become_subreaper()  # the masters' CPU during a read counts for the floor
    timer = Timer()
    with tempfile.TemporaryDirectory(prefix="floor-") as tmp:
        floor = Floor(records, Path(tmp))
        floor.open()
        try:
            ms = [floor.run(timer) for _ in range(args.repeat)]
        finally:
            floor.close()
    print(
        f"{len(records)} hosts: floor wall {median(m.wall for m in ms):.3f} s, cpu {median(m.cpu for m in ms):.3f} s "
        "(clients; masters opened before, untimed)"
    )


if __name__ == "__main__":
    main()
