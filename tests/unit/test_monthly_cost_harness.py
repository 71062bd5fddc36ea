"""The per-command cost benchmark's own logic: which step a command is charged to, which
by-hand operation an argv is, and the machine's CPU counter it reads."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCH))
try:
    import monthly_cost
    from costhook.sitecustomize import machine_ns
finally:
    sys.path.remove(str(BENCH))


def ev(ts: str, event: str, **fields: str) -> dict[str, str]:
    return {"ts": f"2026-12-05T10:00:{ts}Z", "event": event, **fields}


def rec(t: float, s: float, cpu: float, kind: str = "ssh") -> dict[str, object]:
    base = monthly_cost._ts("2026-12-05T10:00:00.000Z")
    return {"kind": kind, "t": base + t, "s": s, "cpu": cpu, "line": "x"}


def test_each_command_is_charged_to_the_step_that_finished_after_it() -> None:
    events = [
        ev("00.500", "step.verified", env="staging", step="backup"),
        ev("00.600", "step.checked", env="staging", step="precheck", status="needed"),  # a check, not an end
        ev("01.000", "step.unchanged", env="staging", step="precheck"),
        ev("01.500", "lock.released", env="staging"),
    ]
    records = [rec(0.1, 0.2, 0.010), rec(0.3, 0.1, 0.020), rec(0.55, 0.3, 0.040, "http"), rec(1.2, 0.1, 0.005)]
    assert monthly_cost.attribute(records, events) == {
        "staging/backup ssh": [2, 0.030],
        "staging/precheck http": [1, 0.040],
        "staging/lock.released ssh": [1, 0.005],
    }


def test_by_hand_operations_are_named_by_their_argv() -> None:
    name = monthly_cost._hand_op
    assert name(["bash", "-c", "set -eo pipefail; mariadb-dump --defaults-file=x | gzip"]) == "backup"
    assert name(["curl", "-fsS", "-o", "z.zip", "--", "http://x/z.zip"]) == "download"
    assert name(["php", "--", "/srv/wp", "install", "{}"]) == "upgrade"
    assert name(["sh", "-c", 'cd -- /srv/wp && exec "$@"', "sh", "php", "-r", "code", "--"]) == "flush"
    assert name(["sh", "-c", 'f=$(mktemp) ... cgi-fcgi -bind -connect "$1"', "sh", "127.0.0.1:9000"]) == "opcache"
    assert name(["bash", "-c", "cd -- /p && find . -name '*.php' -exec php -l {} \\;"]) == "lint"


def test_the_machine_counter_only_grows() -> None:
    first = machine_ns()
    sum(i * i for i in range(200_000))  # some CPU of this process
    assert machine_ns() > first > 0


def test_rounds_are_combined_by_their_medians() -> None:
    """--rounds: every figure of a side is the median over the rounds; a step missing in a round
    counts as 0 there; one round is returned as it is."""
    one = {"cpu": 2.0, "wall": 3.0, "between": 0.2, "commands": 20, "by_step": {"a ssh": [3, 0.3]}}
    two = {"cpu": 4.0, "wall": 5.0, "between": 0.4, "commands": 20, "by_step": {"a ssh": [3, 0.5], "b http": [2, 0.1]}}
    three = {"cpu": 3.0, "wall": 9.0, "between": 0.3, "commands": 22, "by_step": {"a ssh": [3, 0.4]}}
    assert monthly_cost.combine([one]) is one
    assert monthly_cost.combine([one, two, three]) == {
        "cpu": 3.0,
        "wall": 5.0,
        "between": 0.3,
        "commands": 20,
        "by_step": {"a ssh": [3, 0.4], "b http": [0, 0.0]},
    }
    hand = [
        {"cpu": 1.0, "wall": 1.0, "ops": {"backup": [2, 0.1]}},
        {"cpu": 2.0, "wall": 3.0, "ops": {"backup": [2, 0.3]}},
    ]
    assert monthly_cost.combine(hand) == {"cpu": 1.5, "wall": 2.0, "ops": {"backup": [2.0, 0.2]}}


def test_the_packages_benchmarks_upgrade_by_hand_is_php_that_parses(tmp_path: Path) -> None:
    """benchmarks/wp_packages.py: the by-hand upgrade (one PHP process for every zip) parses, and
    the zips it offers are the three packages, each newer than the lab's template has."""
    import subprocess

    sys.path.insert(0, str(BENCH))
    try:
        import wp_packages
    finally:
        sys.path.remove(str(BENCH))
    script = tmp_path / "hand.php"
    script.write_text("<?php\n" + wp_packages.HAND_UPGRADE_PHP)
    lint = subprocess.run(["php", "-l", str(script)], capture_output=True, text=True)
    assert lint.returncode == 0 and "No syntax errors detected" in lint.stdout, lint.stdout + lint.stderr
    assert [(k, s) for k, s, _ in wp_packages.PACKAGES] == [
        ("plugin", "shop-cart"),
        ("plugin", "akismet"),
        ("theme", "twentytwentythree"),
    ]


#: maint's side of the pause protocol, without maint: the cost hook's own ``ask_harness`` after each name
FAKE_MAINT = r"""
import os, sys
sys.path.insert(0, sys.argv[1])
from costhook.sitecustomize import ask_harness
for name in sys.argv[2:]:
    print(name, ask_harness(os.environ["MAINTKIT_BENCH_PAUSE"], name))
"""


def test_an_interleaved_run_waits_for_each_pause_in_turn(tmp_path: Path) -> None:
    """The harness's side of the pause protocol: one call per site, in order, each answered
    before the run goes on; the server ends when the run does."""
    calls: list[int] = []
    argv = [sys.executable, "-c", FAKE_MAINT, str(BENCH), "shop00", "shop01", "shop02"]
    proc = monthly_cost._paused_run(argv, {}, tmp_path / "pause", calls.append)
    assert (proc.returncode, proc.stdout) == (0, "shop00 ok\nshop01 ok\nshop02 ok\n")
    assert calls == [0, 1, 2]


def test_a_failed_pause_is_answered_and_raised_once_the_run_ends(tmp_path: Path) -> None:
    def between(k: int) -> None:
        if k == 1:
            raise SystemExit("by hand failed")

    argv = [sys.executable, "-c", FAKE_MAINT, str(BENCH), "shop00", "shop01"]
    with pytest.raises(SystemExit, match="by hand failed"):
        monthly_cost._paused_run(argv, {}, tmp_path / "pause", between)


def test_a_run_that_ends_without_pausing_ends_the_server(tmp_path: Path) -> None:
    calls: list[int] = []
    proc = monthly_cost._paused_run(
        [sys.executable, "-c", FAKE_MAINT, str(BENCH)], {}, tmp_path / "pause", calls.append
    )
    assert (proc.returncode, proc.stdout, calls) == (0, "", [])


def test_the_hook_pauses_after_each_site_and_counts_the_pause(tmp_path: Path) -> None:
    """The maint side: the patched run_site returns the site's result after the harness answered,
    and records the pause."""
    import threading
    import types

    from costhook import sitecustomize as hook

    folder = tmp_path
    for name in ("ask", "done"):
        os.mkfifo(folder / name)
    seen: list[str] = []

    def harness() -> None:
        with open(folder / "ask") as ask:
            seen.append(ask.readline().strip())
        with open(folder / "done", "w") as done:
            done.write("ok\n")

    server = threading.Thread(target=harness)
    server.start()
    module = types.SimpleNamespace(__file__="site.py", run_site=lambda state, site, stages: f"ran {site.name}")
    pauses: list[dict[str, object]] = []
    hook._patch_site(module, pauses, str(folder))
    assert module.run_site(None, types.SimpleNamespace(name="shop07"), []) == "ran shop07"
    server.join()
    assert seen == ["shop07"]
    assert [(p["site"], sorted(p)) for p in pauses] == [("shop07", ["cpu", "s", "site", "t"])]
