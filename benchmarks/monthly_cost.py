"""Benchmark: where the machine's CPU goes in the monthly update, command by command.

    python benchmarks/monthly_cost.py [--sites 3] [--next-month] [--rounds 1] [--interleave]
                                      [--no-php-cache] [--json FILE]

Run as root, with nothing else running: it starts the lab of ``benchmarks/monthly.py`` (two
sshd hosts, nginx + php-fpm, MariaDB, WordPress with ``shop-cart`` 1.0.0, the update API
offering 1.1.0), makes ``--sites`` fresh shops and runs ``maint run monthly-update`` with
``--concurrency 1``, then the same operations by hand on as many other fresh shops, one
operation at a time. maint runs with ``benchmarks/costhook`` on its ``PYTHONPATH``, which
records the machine's CPU (every process: sshd, the shells and programs, PHP, MariaDB,
nginx, maint; cgroup accounting in nanoseconds where the machine has it) spent during each
SSH command and each HTTP request; the by-hand operations are measured the same way. With
one command at a time on an idle machine, that is each command's whole cost.

It prints, per shop (one staging and one production copy), each maint step's commands and
their machine CPU per environment, what maint spent between commands (its own work), the
by-hand operations' CPU, and both totals. ``--next-month`` then offers shop-cart 1.2.0 and measures both
sides again on the same shops (``-e backup_max_age=1s``, as a month later). ``--rounds N`` does
all of it N times on fresh shops and prints every figure as the median over the rounds; the
overhead is the median of the rounds' own overheads (maint and the job by hand measured in the
same round, minutes apart), printed with each round's: the machine's speed moves between rounds
by 40% or more, both sides with it, so the ratio of the two sides' medians would mix rounds.

``--interleave`` alternates the two sides shop by shop instead: maint stops after each of its
sites (the hook waits on a FIFO, ``MAINTKIT_BENCH_PAUSE``) while the harness does one shop by
hand, so both sides run through the same minutes of the machine's drift. The machine's CPU
during the pauses is left out of maint's total (its run's fixed start and end are counted once,
as in one run of the fleet). ``--no-php-cache`` runs maint without the WordPress helper's
compiled-code cache (``php_cache: false``), to see what the cache costs and saves.

The PHP helper's compiled-code cache is filled on a site's first run: about 340 new files per
copy. ext4 allocates inodes slowly for up to a few minutes after many files were deleted, so
run this (and ``monthly.py``) a few minutes after any large deletion (an earlier benchmark's
clean-up, a test run), or the first run's figures grow. Before each side it prints how long
creating 341 files in the lab's folder took (``file_creation_ms``; the JSON has it as
``fs_probe_ms``): about 10 ms on a settled filesystem, several times more right after deletions.
Before each side (both, with ``--interleave``) it flushes the writes made so far (``sync``: the
shops' copies of the set-up, the other side's files), so that neither side's window holds their
write-back; it prints what that took.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import monthly as m
from common import file_creation_ms, median
from costhook.sitecustomize import machine_ns

from tests import runs
from tests.cms_helpers import WpSite

HOOK = Path(__file__).resolve().parent / "costhook"
FINALS = ("step.verified", "step.unchanged", "step.skipped", "step.failed", "step.rolled_back")
ENDS = ("lock.released", "stage.finished", "site.finished", "run.finished")


def _ts(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()


def attribute(records: list[dict[str, Any]], events: list[dict[str, Any]]) -> dict[str, list[float]]:
    """``env/step kind`` -> [count, cpu s]: each record goes to the first step (or stage end)
    that finished after it (one command at a time, so that is the step that sent it)."""
    marks = sorted(
        (
            _ts(e["ts"]),
            f"{e.get('env') or '-'}/{e['step'] if e['event'] in FINALS or e['event'] == 'step.checked' else e['event']}",
        )
        for e in events
        if e["event"] in FINALS + ENDS or (e["event"] == "step.checked" and e.get("status") != "needed")
    )
    out: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])
    for r in records:
        end = r["t"] + r["s"] - 0.002
        key = next((name for t, name in marks if t >= end), "-/end")
        r["step"] = key
        cell = out[f"{key} {r['kind']}"]
        cell[0] += 1
        cell[1] += r["cpu"]
    return dict(out)


def maint_cost(
    argv: list[str], state: Path, out: Path, extra: list[str], between: Callable[[int], None] | None = None
) -> dict[str, Any]:
    """One ``maint run`` with the hook; its records, attributed, and its totals. With ``between``,
    maint stops after each site and ``between(k)`` runs (k = 0, 1, ...) before it goes on; the
    machine's CPU during those pauses is not maint's."""
    env = runs.maint_env({"PYTHONPATH": str(HOOK), "MAINTKIT_BENCH_COST": str(out)})
    if between is None:
        proc = subprocess.run([*argv, *extra], capture_output=True, text=True, env=env, check=False)
    else:
        proc = _paused_run([*argv, *extra], env, out.parent / "pause", between)
    if proc.returncode != 0:
        raise SystemExit(f"maint failed ({proc.returncode}): {proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    data = json.loads(out.read_text())
    pauses = data.get("pauses", [])
    paused_cpu = sum(p["cpu"] for p in pauses)
    cpu = data["cpu"] - paused_cpu
    spent = sum(r["cpu"] for r in data["records"])
    by_step = attribute(data["records"], m.read_events(m.newest_run(state)))
    print(f"maint's transport: {data.get('transport')}")
    return {"cpu": cpu, "wall": data["t1"] - data["t0"] - sum(p["s"] for p in pauses),
            "between": cpu - spent, "commands": sum(r["kind"] == "ssh" for r in data["records"]),
            "by_step": by_step, "records": data["records"], "pauses": len(pauses), "paused_cpu": paused_cpu}  # fmt: skip


def _paused_run(
    argv: list[str], env: dict[str, str], folder: Path, between: Callable[[int], None]
) -> subprocess.CompletedProcess[str]:
    """maint with ``MAINTKIT_BENCH_PAUSE``: after each site it asks (a FIFO) and waits until
    ``between`` ran; what ``between`` raised is raised here once maint has ended."""
    folder.mkdir(exist_ok=True)
    for name in ("ask", "done"):
        (folder / name).unlink(missing_ok=True)
        os.mkfifo(folder / name, 0o600)
    failed: list[BaseException] = []
    fd = os.open(folder / "ask", os.O_RDWR)  # held open: never EOF, an empty line ends the server
    ask = os.fdopen(fd, "r")

    def serve() -> None:
        k = 0
        while ask.readline().strip():
            answer = "ok"
            try:
                between(k)
            except BaseException as exc:  # reported once maint has ended
                failed.append(exc)
                answer = "failed"
            with open(folder / "done", "w") as done:
                done.write(answer + "\n")
            k += 1

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, env={**env, "MAINTKIT_BENCH_PAUSE": str(folder)})
    finally:
        os.close(os.open(folder / "done", os.O_RDONLY | os.O_NONBLOCK))  # a server left waiting for maint
        os.write(fd, b"\n")
        server.join()
        ask.close()
    if failed:
        raise failed[0]
    return proc


def _hand_op(argv: list[str]) -> str:
    script = argv[2] if len(argv) > 2 else ""
    if argv[0] == "curl":
        return "download"
    if argv[0] == "php":
        return "upgrade"
    if "mariadb-dump" in script:
        return "backup"
    if "cgi-fcgi" in script:
        return "opcache"
    if "php -l" in script:
        return "lint"
    return "flush" if "-r" in argv else "other"


class HandJob:
    """The by-hand operations, one at a time, each measured in the machine's CPU; ``one(shop)``
    does a shop's staging and production copies (use as a context manager)."""

    def __init__(self, lab: m.SshLab, zip_url: str) -> None:
        self.lab, self.zip_url = lab, zip_url
        self.ops: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])
        self.cpu = self.wall = 0.0
        self.remotes: dict[str, m.Remote] = {}
        self.saved = (m.Remote.run, m.curl_pages)

    def __enter__(self) -> HandJob:
        run, curls = self.saved
        ops = self.ops

        def timed_run(remote: m.Remote, argv: list[str], stdin: bytes = b"", what: str = "") -> str:
            c0 = machine_ns()
            try:
                return run(remote, argv, stdin, what)
            finally:
                ops[_hand_op(argv)][0] += 1
                ops[_hand_op(argv)][1] += (machine_ns() - c0) / 1e9

        def timed_curls(site: WpSite, paths: list[str]) -> None:
            c0 = machine_ns()
            try:
                curls(site, paths)
            finally:
                ops["curl (smoke paths)"][0] += len(paths)
                ops["curl (smoke paths)"][1] += (machine_ns() - c0) / 1e9

        self.remotes = {"staging": m.Remote(self.lab.hosts[0]), "production": m.Remote(self.lab.hosts[1])}
        m.Remote.run, m.curl_pages = timed_run, timed_curls  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        m.Remote.run, m.curl_pages = self.saved  # type: ignore[method-assign]
        for remote in self.remotes.values():
            remote.close()

    def one(self, shop: m.Shop) -> None:
        c0, t0 = machine_ns(), time.time()
        for env in ("staging", "production"):
            m.by_hand_one(shop, env, self.remotes[env], self.zip_url)
        self.cpu += (machine_ns() - c0) / 1e9
        self.wall += time.time() - t0

    def figures(self) -> dict[str, Any]:
        return {"cpu": self.cpu, "wall": self.wall, "ops": dict(self.ops)}


def hand_cost(lab: m.SshLab, shops: list[m.Shop], zip_url: str) -> dict[str, Any]:
    """The by-hand operations on every shop, one at a time: machine CPU per operation."""
    with HandJob(lab, zip_url) as job:
        for shop in shops:
            job.one(shop)
    return job.figures()


def interleaved(
    lab: m.SshLab, argv: list[str], state: Path, out: Path, extra: list[str], shops: list[m.Shop], zip_url: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """maint's run and the job by hand shop by shop: after each of maint's sites, one shop by hand."""
    with HandJob(lab, zip_url) as job:
        maint = maint_cost(argv, state, out, extra, between=lambda k: job.one(shops[k]))
    if maint["pauses"] != len(shops):
        raise SystemExit(f"maint paused {maint['pauses']} times for {len(shops)} shops")
    hand = job.figures()
    # what the pauses cost beyond the job by hand (the harness's side of the handshakes): kept
    # out of both sides' totals, printed so that it can be seen to be small
    print(f"the pauses took {maint['paused_cpu'] - hand['cpu']:.3f} s of machine CPU beyond the job by hand")
    return maint, hand


def report(label: str, n: int, maint: dict[str, Any], hand: dict[str, Any], overhead: float | None = None) -> None:
    """The tables of one round (or the rounds' medians), per shop (a shop is one staging and one
    production copy); ``overhead`` (the median of the rounds' own) replaces maint / by hand - 1."""
    print(f"\n{label}: maint, per shop (one shop at a time, {n} shops)")
    print("environment/step | kind | commands | machine CPU ms\n---|---|---|---")
    for key, (count, cpu) in sorted(maint["by_step"].items(), key=lambda kv: -kv[1][1]):
        step, kind = key.rsplit(" ", 1)
        print(f"{step} | {kind} | {count / n:.1f} | {cpu / n * 1000:.1f}")
    print(f"maint between commands (its own work) | - | - | {maint['between'] / n * 1000:.1f}")
    print(f"\n{label}: by hand, per shop\noperation | commands | machine CPU ms\n---|---|---")
    for op, (count, cpu) in sorted(hand["ops"].items(), key=lambda kv: -kv[1][1]):
        print(f"{op} | {count / n:.1f} | {cpu / n * 1000:.1f}")
    ratio = maint["cpu"] / hand["cpu"] - 1 if overhead is None else overhead
    print(
        f"\n{label}: machine CPU per shop: maint {maint['cpu'] / n:.2f} s ({maint['commands'] / n:.0f} SSH commands), "
        f"by hand {hand['cpu'] / n:.2f} s; maint's overhead {ratio:+.0%}"
    )


def combine(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """One side's figures over rounds: every number the median of the rounds' (a step or an
    operation missing in a round counts as 0 there)."""
    if len(rounds) == 1:
        return rounds[0]
    key = "by_step" if "by_step" in rounds[0] else "ops"
    names = sorted({name for r in rounds for name in r[key]})
    table = {n: [median([r[key].get(n, [0, 0.0])[i] for r in rounds]) for i in (0, 1)] for n in names}
    out: dict[str, Any] = {
        k: median([r[k] for r in rounds]) for k in ("cpu", "wall", "between", "commands") if k in rounds[0]
    }
    out[key] = table
    return out


def flush_writes() -> dict[str, float]:
    """``sync``: the writes of the set-up (the shops' copies, a side's last files) reach the disk
    before a side is measured, so that neither side's figures carry their write-back."""
    c0, t0 = machine_ns(), time.perf_counter()
    os.sync()
    return {"s": time.perf_counter() - t0, "cpu": (machine_ns() - c0) / 1e9}


def one_round(lab: m.SshLab, labs: dict[str, Any], args: argparse.Namespace, r: int) -> dict[str, Any]:
    """Fresh shops on both sides, maint's runs then the by-hand job, or the two alternating shop
    by shop with ``--interleave`` (and the next month)."""
    work, template, api, latest = labs["work"], labs["template"], labs["api"], labs["latest"]
    shops = m.make_shops(lab, template, args.sites, f"c{r}", work)
    settings = {"repository": None, "api_url": api.url, "php_cache": not args.no_php_cache}
    sites = {f"shop{i:02d}": m.site_entry(s, settings) for i, s in enumerate(shops)}
    for entry, shop in zip(sites.values(), shops, strict=True):
        entry["vars"]["opcache"] = {"fastcgi": f"127.0.0.1:{shop.web.php_port}", "user": shop.web.user, "sudo": True}
    state = work / f"state{r}"
    inventory = runs.write_inventory(work, sites, unique=True)
    argv = runs.maint_argv(
        "run", "monthly-update", "-i", str(inventory), "--state-dir", str(state), "--concurrency", "1"
    )
    hand_shops = m.make_shops(lab, template, args.sites, f"h{r}", work)
    for shop in hand_shops:
        m.site_entry(shop, settings)  # the database option files the dumps use
    rounds = [("first run", "1.1.0", [])] + (
        [("next month", "1.2.0", ["-e", "backup_max_age=1s"])] if args.next_month else []
    )
    rows: dict[str, Any] = {}
    for label, version, extra in rounds:
        latest[0] = version
        zip_url = f"{api.url}/downloads/shop-cart-{version}.zip"
        flushed = [flush_writes()]
        probes = {"maint": file_creation_ms(work)}
        if args.interleave:
            maint, hand = interleaved(lab, argv, state, work / "cost.json", extra, hand_shops, zip_url)
            probes["by hand"] = probes["maint"]
            print(f"{label}: creating 341 files in the lab's folder took {probes['maint']:.0f} ms before both sides")
        else:
            maint = maint_cost(argv, state, work / "cost.json", extra)
            flushed.append(flush_writes())
            probes["by hand"] = file_creation_ms(work)
            hand = hand_cost(lab, hand_shops, zip_url)
            print(f"{label}: creating 341 files in the lab's folder took {probes['maint']:.0f} ms before maint's"
                  f" run, {probes['by hand']:.0f} ms before the job by hand")  # fmt: skip
        print(f"{label}: flushing the writes before measuring took "
              + ", ".join(f"{f['s']:.2f} s ({f['cpu']:.2f} s of machine CPU)" for f in flushed))  # fmt: skip
        maint["flushed"], hand["flushed"] = flushed[0], flushed[-1]
        maint["fs_probe_ms"], hand["fs_probe_ms"] = probes["maint"], probes["by hand"]
        m.check_outcome(shops, version)
        m.check_outcome(hand_shops, version)
        rows[label] = {"maint": maint, "by_hand": hand}
    return rows


def main() -> None:
    """Start the lab, measure both sides (and the next month) ``--rounds`` times, print the tables."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--sites", type=int, default=3, help="shops per side (one at a time)")
    ap.add_argument("--next-month", action="store_true", help="then both sides again with shop-cart 1.2.0 offered")
    ap.add_argument("--rounds", type=int, default=1, help="all of it this many times, fresh shops each time")
    ap.add_argument("--interleave", action="store_true",
                    help="one shop by hand after each of maint's sites (maint waits), not all after maint's run")  # fmt: skip
    ap.add_argument("--no-php-cache", action="store_true", help="maint's runs without the helper's compiled-code cache")
    ap.add_argument("--json", metavar="FILE", help="write the raw figures here")
    args = ap.parse_args()
    m.precompile()
    per_round: list[dict[str, Any]] = []
    with ExitStack() as stack:
        lab, work, template = m.start_wordpress_lab(stack)
        zips = work / "downloads"
        for version in ("1.1.0", "1.2.0"):
            m.make_shop_cart_zip(zips, version)
        latest = ["1.1.0"]
        api = m.Api(stack.enter_context(m.serve_update_api(zips, latest)), latest)
        labs = {"work": work, "template": template, "api": api, "latest": latest}
        for r in range(args.rounds):
            per_round.append(one_round(lab, labs, args, r))
    for label in per_round[0]:
        maint = combine([rows[label]["maint"] for rows in per_round])
        hand = combine([rows[label]["by_hand"] for rows in per_round])
        each = [rows[label]["maint"]["cpu"] / rows[label]["by_hand"]["cpu"] - 1 for rows in per_round]
        report(label, args.sites, maint, hand, median(each) if args.rounds > 1 else None)
        if args.rounds > 1:  # the machine's speed moves between rounds: compare within a round
            print(f"{label}: each round's overhead {', '.join(f'{x:+.0%}' for x in each)} (median above)")
    if args.json:
        data = {"sites": args.sites, "rounds": per_round, **({"rows": per_round[0]} if args.rounds == 1 else {})}
        Path(args.json).write_text(json.dumps(data, indent=1) + "\n")


if __name__ == "__main__":
    if os.geteuid() != 0:
        raise SystemExit("run as root: the lab starts sshd, nginx, php-fpm and MariaDB")
    main()
