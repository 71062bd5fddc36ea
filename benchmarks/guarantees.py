"""Benchmark: what a first run's guarantees cost, added one at a time to the cold floor's first run.

    python benchmarks/guarantees.py [--hosts 50] [--rounds 7] [--json FILE]

Run as root, with nothing else running: it starts ``--hosts`` loopback sshd hosts
(tests/lab/sshd.py) and, in one process with one thread per host, does the benchmark's
workload (common.PLAYBOOK: a directory, a file's content, a symlink, ``uname -r``, a no-op
command) over a new paramiko connection per host, in forms that add maint's guarantees to
the cold floor's first run one at a time (a model of what maint sends, not maint's scripts):

- ``floor``: one session, Fabric's five commands in one shell (cold_floor.py ``--first``);
- ``+2 sessions``: the same, then two more sessions running ``true`` (sessions alone);
- ``+lock``: the lock taken in the first session (``mkdir -p .maint``, ``mkdir`` of the lock,
  its holder written) with the reads before any change (existence tests, ``uname -r``), the
  changes in the second (``mkdir``, the file, ``ln -s``, ``uname -r`` again after them), the
  lock released in the third (``rm -rf``);
- ``+atomic write``: the file's content sent on stdin, written beside it and renamed over it
  (``cat``, ``mv``);
- ``+verify``: after the changes, one read of what they did (``stat`` of the three paths,
  ``sha256sum`` of the file): maint's first run has these three sessions and these programs;
- ``release merged``: the release at the end of the second session (two sessions);
- ``one session``: all of it in one session.

Every form runs on fresh directories, ``--rounds`` times in alternation after one warm-up
round; after each run the files are checked (common.workload_problems) and the lock must be
gone. Prints each form's median wall time and machine CPU (``/proc/stat``: every process,
sshd and the programs too), and the change from the form before it. The harness runs in one
process: no interpreter start, no imports, no plan or audit log: what is left between
``+verify`` and a ``maint run`` is maint's own work (peers.py times the whole command).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cold_floor import connect
from common import CONTENT, fresh_dirs, host_records, machine_cpu, median, start_lab, workload_problems
from tools import Record, first_floor_script

#: a session: its script and what it reads on stdin
Session = tuple[str, bytes]


def _parts(path: str) -> dict[str, str]:
    """The shell pieces of the forms for one host's directory (every path quoted)."""
    q = shlex.quote
    app, conf, link, maint = f"{path}/app", f"{path}/app/config.txt", f"{path}/current", f"{path}/.maint"
    lock = f"{maint}/lock"
    tmp = f"{app}/.maint-tmp"
    return {
        "lock": f"mkdir -p -- {q(maint)} && mkdir -- {q(lock)} && printf '%s\\n' '{{\"run\": 1}}' > {q(lock + '/holder.json')}",
        "reads": f"for p in {q(app)} {q(conf)} {q(link)}; do [ -e \"$p\" ] || [ -L \"$p\" ] || echo \"missing $p\"; done; uname -r",
        "plain": f"mkdir -- {q(app)} && printf '%s\\n' 'hello from maint' > {q(conf)} && ln -s -T -- {q(app)} {q(link)}",
        "atomic": f"mkdir -- {q(app)} && ( umask 133; cat > {q(tmp)} && mv -f -T -- {q(tmp)} {q(conf)} ) "
        f"&& ln -s -T -- {q(app)} {q(link)}",
        "verify": f"x=$(stat -c '%F|%a|%U|%G|%s|%N' -- {q(app)} {q(conf)} {q(link)}) && printf '%s\\n' \"$x\" && "
        f"sha256sum -- {q(conf)}",
        "release": f"rm -rf -- {q(lock)}",
    }  # fmt: skip


def form_sessions(form: str, path: str) -> list[Session]:
    """The sessions of ``form`` on the host directory ``path``, in order."""
    p, none, content = _parts(path), b"", CONTENT.encode()
    first = f"{p['lock']} && {{ {p['reads']}; }}"
    atomic_changes = f"{p['atomic']} && uname -r"
    verified = f"{p['atomic']} && {p['verify']} && uname -r"
    sessions: dict[str, list[Session]] = {
        "floor": [(first_floor_script(path), none)],
        "+2 sessions": [(first_floor_script(path), none), ("true", none), ("true", none)],
        "+lock": [(first, none), (f"{p['plain']} && uname -r", none), (p["release"], none)],
        "+atomic write": [(first, none), (atomic_changes, content), (p["release"], none)],
        "+verify": [(first, none), (verified, content), (p["release"], none)],
        "release merged": [(first, none), (f"{verified} && {p['release']}", content)],
        "one session": [(f"{first} && {verified} && {p['release']}", content)],
    }
    return sessions[form]


FORMS = ("floor", "+2 sessions", "+lock", "+atomic write", "+verify", "release merged", "one session")


def one_host(h: Record, sessions: list[Session]) -> None:
    """A new verified connection to ``h`` (as the cold floor's), each session in turn; SystemExit
    when one fails."""
    client = connect(h)
    try:
        for script, stdin in sessions:
            sin, out, err = client.exec_command(script)
            if stdin:
                sin.write(stdin)
            sin.channel.shutdown_write()
            out.read()
            if out.channel.recv_exit_status() != 0:
                raise SystemExit(f"{h['ip']}: {script[:80]!r} failed: {err.read().decode()[-500:]}")
    finally:
        client.close()


def timed_form(pool: ThreadPoolExecutor, records: list[Record], form: str) -> tuple[float, float]:
    """Wall and machine CPU seconds of ``form`` on every host at once."""
    cpu, start = machine_cpu(), time.perf_counter()
    list(pool.map(lambda h: one_host(h, form_sessions(form, str(h["path"]))), records))
    return time.perf_counter() - start, machine_cpu() - cpu


def measure(fresh: Callable[[str], list[Path]], records_of: Callable[[list[Path]], list[Record]], rounds: int) -> dict[str, list[tuple[float, float]]]:  # fmt: skip
    """``rounds`` alternating runs of every form on fresh directories (after a warm-up round)."""
    out: dict[str, list[tuple[float, float]]] = {f: [] for f in FORMS}
    for r in range(rounds + 1):
        for i, form in enumerate(FORMS):
            dirs = fresh(f"g{r}-{i}")
            records = records_of(dirs)
            with ThreadPoolExecutor(max_workers=len(records)) as pool:
                figure = timed_form(pool, records, form)
            problems = workload_problems(dirs) + [f"{d}: lock left" for d in dirs if (d / ".maint" / "lock").exists()]
            if problems:
                raise SystemExit(f"{form}: " + "; ".join(problems[:3]))
            if r:
                out[form].append(figure)
    return out


def table(results: dict[str, list[tuple[float, float]]]) -> list[str]:
    """Each form's median wall and machine CPU, and the change from the form before it."""
    lines = ["form | wall (s) | machine CPU (s) | change: wall, CPU", "---|---|---|---"]
    before: tuple[float, float] | None = None
    for form, runs in results.items():
        wall, cpu = median(w for w, _ in runs), median(c for _, c in runs)
        change = f"{wall - before[0]:+.3f}, {cpu - before[1]:+.2f}" if before else "-"
        lines.append(f"{form} | {wall:.3f} | {cpu:.2f} | {change}")
        before = (wall, cpu)
    return lines


def main(argv: Sequence[str] | None = None) -> None:
    """Start the lab, measure every form, print the table (and write the JSON)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hosts", type=int, default=50, help="hosts, all at once (default 50)")
    ap.add_argument("--rounds", type=int, default=7, help="counted rounds (default 7)")
    ap.add_argument("--json", metavar="FILE", help="write every run's figures here")
    args = ap.parse_args(argv)
    if args.hosts < 1 or args.rounds < 1:
        ap.error("--hosts and --rounds must be at least 1")
    lab = start_lab([args.hosts])
    try:
        hosts = lab.hosts[: args.hosts]
        results = measure(lambda tag: fresh_dirs(lab, args.hosts, tag), lambda d: host_records(hosts, d), args.rounds)
    finally:
        lab.stop()
    print("\n".join(table(results)))
    if args.json:
        doc: dict[str, Any] = {"hosts": args.hosts, "rounds": args.rounds, "results": results}
        Path(args.json).write_text(json.dumps(doc, indent=2) + "\n")


if __name__ == "__main__":
    main()
