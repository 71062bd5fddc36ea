"""Benchmark: is maint's cost per host flat from 100 to 500 hosts? (maint alone, sizes interleaved)

    python benchmarks/fleet.py [--hosts 100,250,500] [--rounds 7] [--concurrency 64] [--daemon]

bench.py times each size once, one size after the other, next to plain Fabric (about 90 s at
500 hosts); a machine that drifts during those minutes moves one size and not the others. This
harness times maint alone and interleaves the sizes: every round runs the first run and the
no-op run at each size in turn (100, 250, 500, 100, 250, 500...). It reports the median wall
and CPU seconds per size, and the cost of one more host between consecutive sizes (the
difference of the medians divided by the difference in hosts) with the change from one
interval to the next: flat means that change is small. Each round's own change is printed
too, its median and range over the rounds: one round's change moves by +-20% or more on this
kind of machine (a few seconds of drift move one size and not the others), so three rounds
could not tell flat from not flat; seven are the default. Run as root (it starts sshd
instances).

maint runs with ``MAINT_DAEMON=0``, or, with ``--daemon``, through a ``maint daemon`` started
for the harness: each run is then a fork of the daemon, its CPU counted through the daemon
(``common.adopted_cpu``) and its peak RSS taken from the daemon's status (the run's own, pages
shared with the daemon included).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import Timer, become_subreaper, fresh_dirs, lab_inventory, median, start_lab, write_playbook
from daemon import MaintDaemon, maint_exe
from tools import maint_argv


def per_host(sizes: list[int], medians: list[float]) -> list[float]:
    """Milliseconds per extra host between consecutive sizes."""
    return [
        1000 * (medians[k + 1] - medians[k]) / (sizes[k + 1] - sizes[k]) for k in range(len(sizes) - 1)
    ]  # fmt: skip


Runs = dict[tuple[int, str], list[tuple[float, float]]]


def round_changes(sizes: list[int], runs: Runs, phase: str) -> list[float]:
    """Per round, the change of the wall cost per extra host from the first interval to the last
    (none with fewer than three sizes; a round whose first interval did not grow is left out)."""
    out = []
    for r in range(len(runs[(sizes[0], phase)])):
        steps = per_host(sizes, [runs[(n, phase)][r][0] for n in sizes])
        if len(steps) >= 2 and steps[0] > 0:
            out.append(steps[-1] / steps[0] - 1)
    return out


def print_table(sizes: list[int], runs: Runs) -> None:
    """Medians per size, the cost per extra host between sizes, and the rounds' own changes."""
    print(
        "\nrun | " + " | ".join(f"{n} hosts wall / cpu" for n in sizes)
        + " | ms per extra host (change) | each round's change: median (range)"
    )  # fmt: skip
    print("---|" + "---|" * len(sizes) + "---|---")
    for phase in ("first", "no-op"):
        walls = [median(w for w, _ in runs[(n, phase)]) for n in sizes]
        cpus = [median(c for _, c in runs[(n, phase)]) for n in sizes]
        steps = per_host(sizes, walls)
        change = [f"{100 * (b / a - 1):+.0f}%" for a, b in itertools.pairwise(steps)]
        cells = " | ".join(f"{w:.2f} / {c:.2f}" for w, c in zip(walls, cpus, strict=True))
        own = round_changes(sizes, runs, phase)
        spread = f"{100 * median(own):+.0f}% ({100 * min(own):+.0f}% to {100 * max(own):+.0f}%)" if own else "-"
        print(f"{phase} | {cells} | {', '.join(f'{s:.1f}' for s in steps)} ({', '.join(change)}) | {spread}")


def main() -> None:
    """Start the lab, run the rounds, print the table."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--hosts", default="100,250,500")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--daemon", action="store_true", help="run maint through `maint daemon`")
    args = ap.parse_args()
    sizes = [int(x) for x in args.hosts.split(",")]
    lab, timer = start_lab(sizes), Timer()
    work = lab.base / "fleet"
    work.mkdir()
    write_playbook(work)
    env = {**os.environ, "MAINT_PLAIN": "1", **({} if args.daemon else {"MAINT_DAEMON": "0"})}
    runs: Runs = {}
    daemon, peak = MaintDaemon(), 0.0
    become_subreaper()  # after the sshds daemonized: the daemon is adopted, its runs' CPU counted
    try:
        if args.daemon:
            daemon.start()
        for r in range(args.rounds):
            for n in sizes:
                dirs = fresh_dirs(lab, n, f"r{r}")
                (work / "inventory.json").write_text(json.dumps(lab_inventory(lab.hosts[:n], dirs)))
                argv = maint_argv(
                    maint_exe(), work / "bench.yml", work / "inventory.json", work / "state", args.concurrency
                )
                for phase in ("first", "no-op"):
                    m, _ = timer.run(argv, env)
                    peak = max(peak, daemon.last_run_rss_mb() if args.daemon else m.rss_mb)
                    runs.setdefault((n, phase), []).append((m.wall, m.cpu))
                    print(f"round {r + 1}: {n} hosts, {phase}: {m.wall:.2f} s wall, {m.cpu:.2f} s cpu", flush=True)
    finally:
        if daemon.pid:
            daemon.stop()
        lab.stop()
    print(f"\npeak RSS of one maint run: {peak:.0f} MB" + (" (forked from the daemon)" if args.daemon else ""))
    print_table(sizes, runs)


if __name__ == "__main__":
    main()
