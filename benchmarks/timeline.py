"""Where one ``maint`` run's wall time goes: its phases, from the moment the process started.

    python benchmarks/timeline.py [--runs 5] -- run PLAYBOOK -i INVENTORY [maint options]

Runs the given ``maint`` command ``--runs`` times (one more first, not counted: it warms the
caches) in a child interpreter that times the runner's phases: the imports, loading the
playbook and the inventory, the plan, opening the run (the connections started ahead, the run
folder), the sites (when the first one starts, when the first and the last stage's first read
return), the index and the summary, the exit. Prints, per phase, the median milliseconds since
the process started (from the kernel's start time of the process, so the interpreter's own
start is counted), the process's CPU, and the machine's CPU (all cores, from ``/proc/stat``)
over the whole run (the start of the process is known to 10 ms: the kernel counts in clock
ticks). Nothing is asserted. Any inventory works: run it on a machine where nothing else runs,
against your own hosts or lab hosts (``benchmarks/common.py``'s ``start_lab``); with
``connection: openssh`` and the masters already open it times a run over reused connections.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import machine_cpu

#: the child: wrap the phases, run ``maint``, write the marks (name -> [ms since start, ...]) as JSON
BOOT = r"""
import functools, importlib, json, os, sys, threading, time
hz = os.sysconf("SC_CLK_TCK")
started = float(open("/proc/self/stat").read().rsplit(")", 1)[1].split()[19]) / hz
t0 = time.monotonic() - (float(open("/proc/uptime").read().split()[0]) - started)
marks, lock = {}, threading.Lock()
def mark(name):
    with lock:
        marks.setdefault(name, []).append((time.monotonic() - t0) * 1000)
def wrap(module, attr):
    owner = importlib.import_module(module)
    *path, last = attr.split(".")
    for part in path:
        owner = getattr(owner, part)
    original = getattr(owner, last)
    @functools.wraps(original)
    def timed(*args, **kwargs):
        mark("> " + attr)
        try:
            return original(*args, **kwargs)
        finally:
            mark("< " + attr)
    setattr(owner, last, timed)
mark("interpreter up")
from maintkit.cli.main import main
import maintkit.cli.cmd_run, maintkit.playbook, maintkit.runner, maintkit.runner.stage
mark("runner imported")
for module, attr in [
    ("maintkit.playbook", "load_playbook_full"), ("maintkit.cli.cmd_run", "load_inventory"),
    ("maintkit.runner", "Runner.plan"), ("maintkit.runner", "Runner._open"), ("maintkit.runner", "run_sites"),
    ("maintkit.runner.stage", "StageLock.first_read"), ("maintkit.runner", "Runner._index_runs"),
    ("maintkit.runner", "write_run_summary"),
]:
    wrap(module, attr)
def dump():
    mark("exit")
    marks["cpu"] = [time.process_time() * 1000]
    with open(os.environ["MAINT_TIMELINE_OUT"], "w") as fh:
        json.dump(marks, fh)
import atexit
atexit.register(dump)
sys.argv = ["maint", *sys.argv[1:]]
main()
"""

#: (label, mark, which of its times): the rows printed, in order
ROWS = [
    ("interpreter and site packages up", "interpreter up", min),
    ("maint's modules imported", "runner imported", min),
    ("playbook loaded", "< load_playbook_full", min),
    ("inventory loaded", "< load_inventory", min),
    ("planned", "< Runner.plan", max),
    ("run opened (connections started, run folder)", "< Runner._open", min),
    ("first stage's first read returned", "< StageLock.first_read", min),
    ("last stage's first read returned", "< StageLock.first_read", max),
    ("sites done", "< run_sites", min),
    ("index and summary written", "< write_run_summary", min),
    ("exit", "exit", min),
]


def run_once(maint_args: list[str], python: str) -> dict[str, float]:
    """One timed run: each row's milliseconds, the wall, the process's and the machine's CPU."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "marks.json"
        env = {**os.environ, "MAINT_TIMELINE_OUT": str(out), "MAINT_PLAIN": "1"}
        cpu, wall = machine_cpu(), time.monotonic()
        proc = subprocess.run([python, "-c", BOOT, *maint_args], env=env, capture_output=True, text=True)
        wall, cpu = time.monotonic() - wall, machine_cpu() - cpu
        if proc.returncode != 0:
            raise SystemExit(f"maint exited {proc.returncode}:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
        marks = json.loads(out.read_text())
    row = {label: pick(marks[name]) for label, name, pick in ROWS if name in marks}
    return {**row, "wall (measured outside)": wall * 1000, "process CPU": marks["cpu"][0],
            "machine CPU, all cores": cpu * 1000}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--python", default=sys.executable, help="interpreter that has maintkit installed")
    parser.add_argument("maint_args", nargs=argparse.REMAINDER, help="-- then the maint command line")
    args = parser.parse_args()
    maint_args = args.maint_args[1:] if args.maint_args[:1] == ["--"] else args.maint_args
    if not maint_args:
        parser.error("give the maint command line after --")
    run_once(maint_args, args.python)  # warm-up, not counted
    runs = [run_once(maint_args, args.python) for _ in range(args.runs)]
    print(f"median of {len(runs)} runs (ms since the process started; min-max in brackets)")
    for label in runs[0]:
        values = [r[label] for r in runs if label in r]
        print(f"{statistics.median(values):9.1f}  [{min(values):.1f}-{max(values):.1f}]  {label}")


if __name__ == "__main__":
    main()
