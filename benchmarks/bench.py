"""Benchmark: maintkit vs plain Fabric on 1, 10 and 50 loopback hosts (peers.py adds pyinfra and Ansible).

Each host is a real sshd on its own loopback alias (tests/lab/sshd.py). The workload is five
steps: a directory, a file's content, a symlink, a read-only command and a no-op command.

    python benchmarks/bench.py [--hosts 1,10,50] [--repeat 3]

For every size it reports wall and CPU seconds (median of --repeat runs, CPU = user+sys of the
child processes) for:
  fabric        plain Fabric running the 5 commands, all hosts in parallel (threads)
  maint first   `maint run` on fresh directories (everything changes)
  maint no-op   `maint run` again (nothing changes)
and the ratios maint/fabric. With ``--state-git`` it also times both maint runs with the git state
backend (a bare repository on this machine as the shared remote: every run commits and pushes
its run folder and index) and reports what the state push adds to the no-op run.
Run as root (it starts sshd instances). Nothing is asserted: timing is measured here, never in
the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROOT, Timer, fresh_dirs, lab_inventory, start_lab, write_playbook
from common import median_measures as median
from tools import maint_argv

FABRIC, MAINT = Timer(), Timer()  # apart, so that each tool's peak RSS is its own


def timed(argv: list[str], env: dict[str, str] | None = None, timer: Timer = MAINT) -> tuple[float, float]:
    """Wall and CPU seconds of one command, its RSS kept by ``timer``."""
    m, _ = timer.run(argv, env)
    return m.wall, m.cpu


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hosts", default="1,10,50")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--concurrency", type=int, default=0, help="maint --concurrency (default: one per host)")
    ap.add_argument("--state-git", action="store_true", help="also time maint with the git state backend")
    args = ap.parse_args()
    sizes = [int(x) for x in args.hosts.split(",")]
    lab = start_lab(sizes)  # up to 250 hosts per 127.0.N network
    work = lab.base / "bench"
    work.mkdir()
    env = {**os.environ, "MAINT_PLAIN": "1"}
    write_playbook(work)
    rows = []
    git_rows: list[tuple[int, tuple[float, float], tuple[float, float], tuple[float, float]]] = []
    bare = work / "state.git"
    if args.state_git:
        subprocess.run(["git", "init", "-q", "--bare", str(bare)], check=True)
    try:
        for n in sizes:
            fab, first, noop, gfirst, gnoop = [], [], [], [], []
            for r in range(args.repeat):
                dirs = fresh_dirs(lab, n, f"fab{r}")
                hosts = [
                    {"ip": h.ip, "port": h.port, "user": "deploy", "key": str(h.client_key),
                     "known_hosts": str(h.known_hosts), "path": str(d)}
                    for h, d in zip(lab.hosts[:n], dirs, strict=True)
                ]  # fmt: skip
                (work / "hosts.json").write_text(json.dumps(hosts))
                fab.append(
                    timed(
                        [sys.executable, str(ROOT / "benchmarks" / "fabric_baseline.py"), str(work / "hosts.json")],
                        timer=FABRIC,
                    )
                )
                dirs = fresh_dirs(lab, n, f"maint{r}")
                (work / "inventory.json").write_text(json.dumps(lab_inventory(lab.hosts[:n], dirs)))
                argv = maint_argv(
                    "maint", work / "bench.yml", work / "inventory.json", work / "state", args.concurrency or n
                )
                first.append(timed(argv, env))
                noop.append(timed(argv, env))
                if args.state_git:
                    gdirs = fresh_dirs(lab, n, f"git{r}")
                    (work / "inventory-git.json").write_text(json.dumps(lab_inventory(lab.hosts[:n], gdirs)))
                    gargv = [*maint_argv("maint", work / "bench.yml", work / "inventory-git.json", work / "gstate",
                                         args.concurrency or n), "--state", f"git:{bare}"]  # fmt: skip
                    gfirst.append(timed(gargv, env))
                    gnoop.append(timed(gargv, env))
            rows.append((n, median(fab), median(first), median(noop)))
            if args.state_git:
                git_rows.append((n, median(noop), median(gfirst), median(gnoop)))
                lw, gw = git_rows[-1][1][0], git_rows[-1][3][0]
                print(f"{n:>3} hosts  git state: first {git_rows[-1][2][0]:6.2f}s, no-op {gw:6.2f}s "
                      f"(+{gw - lw:5.2f}s, {100 * (gw - lw) / lw:+5.1f}% on the local no-op)", flush=True)  # fmt: skip
            fw, fc = rows[-1][1]
            print(f"{n:>3} hosts  fabric {fw:6.2f}s wall {fc:6.2f}s cpu | maint first {rows[-1][2][0]:6.2f}s "
                  f"({rows[-1][2][0] / fw:4.2f}x) | maint no-op {rows[-1][3][0]:6.2f}s ({rows[-1][3][0] / fw:4.2f}x) "
                  f"cpu {rows[-1][3][1]:5.2f}s", flush=True)  # fmt: skip
    finally:
        lab.stop()
    print(f"\npeak RSS of one process: fabric {FABRIC.peak_rss_mb:.0f} MB, maint {MAINT.peak_rss_mb:.0f} MB")
    print("\nhosts | fabric wall/cpu | maint first wall/cpu (ratio) | maint no-op wall/cpu (ratio)")
    print("---|---|---|---")
    for n, f, a, b in rows:
        print(
            f"{n} | {f[0]:.2f} / {f[1]:.2f} | {a[0]:.2f} / {a[1]:.2f} ({a[0] / f[0]:.2f}x) | {b[0]:.2f} / {b[1]:.2f} ({b[0] / f[0]:.2f}x)"
        )
    if git_rows:
        print("\nhosts | maint no-op, local state | maint first, git state | maint no-op, git state (added)")
        print("---|---|---|---")
        for n, local, gf, gn in git_rows:
            print(f"{n} | {local[0]:.2f} / {local[1]:.2f} | {gf[0]:.2f} / {gf[1]:.2f} | {gn[0]:.2f} / {gn[1]:.2f} "
                  f"(+{gn[0] - local[0]:.2f} s, {100 * (gn[0] - local[0]) / local[0]:+.1f}%)")  # fmt: skip


if __name__ == "__main__":
    main()
