"""Shards: ``maint run --shard K/N`` as parallel processes over one shared store.

40 local sites, 4 shards started at the same moment, one site that fails: every site runs in
exactly one shard, one report and one collect show the whole fleet, and ``max_fail_percentage``
counts the failures of all shards (a failure in one shard halts the later batches of the others,
ordered with gates, never with sleeps).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from maintkit.errors import ConfigError
from maintkit.runner.shard import Shard, parse_shard, shard_of, split
from tests.gates import make_gates, open_gate, wait_started
from tests.runs import local_env, maint_cli, spawn_maint, write_inventory

SITES = [f"store-{n:02d}" for n in range(40)]
GROUP = "fleet-7"

#: the gate step waits on the FIFOs of ``vars.gate`` (when set); the work step appends the run id
#: to ``ran`` and fails where a ``fail`` marker exists
PLAYBOOK = """\
name: fleet
{extra}
vars: {{gate: ""}}
stages:
  - env: production
    steps:
      - id: gate
        action: command
        with:
          argv: [sh, -c, 'if [ -n "$1" ]; then exec 3<> "$1/gate"; echo go > "$1/started"; read x <&3; fi', sh,
                 "{{{{ vars.gate }}}}"]
      - id: work
        action: command
        with:
          argv: [sh, -c, 'test ! -e "$1/fail" && echo "$2" >> "$1/ran"', sh, "{{{{ env.path }}}}", "{{{{ run.id }}}}"]
"""


def _project(root: Path, *, failing: str, gates: dict[str, Path], extra: str = "") -> Path:
    """A project: 40 local sites (``failing`` has a ``fail`` marker), the playbook, a shared state dir."""
    sites: dict[str, Any] = {}
    for name in SITES:
        path = root / "sites" / name
        path.mkdir(parents=True)
        site: dict[str, Any] = {"environments": {"production": local_env(path)}}
        if name in gates:
            site["vars"] = {"gate": str(gates[name])}
        sites[name] = site
    (root / "sites" / failing / "fail").write_text("")
    write_inventory(root, sites)
    (root / "playbooks").mkdir()
    (root / "playbooks" / "fleet.yml").write_text(PLAYBOOK.format(extra=extra))
    return root


def _start(root: Path, k: int, *extra: str) -> subprocess.Popen[str]:
    return spawn_maint(
        "run", "fleet", "-i", "inventory.yml", "--state-dir", str(root / "shared"),
        "--shard", f"{k}/4", "--group", GROUP, "-c", "5", *extra,
        cwd=root, stderr=subprocess.STDOUT,
    )  # fmt: skip


def _finish(proc: subprocess.Popen[str]) -> tuple[int, str]:
    out, _ = proc.communicate(timeout=120)
    return proc.returncode, out


def _summaries(root: Path) -> dict[str, dict[str, Any]]:
    """summary.json of every run in the shared store, by shard."""
    found = {}
    for path in (root / "shared" / "runs").glob("*/summary.json"):
        data = json.loads(path.read_text())
        found[data["shard"]] = data
    return found


def _events(root: Path, run_id: str) -> list[dict[str, Any]]:
    text = (root / "shared" / "runs" / run_id / "events.jsonl").read_text()
    return [json.loads(line) for line in text.splitlines()]


def _shards() -> dict[int, list[str]]:
    return {k: split(SITES, str, 0, Shard(k, 4)) for k in range(1, 5)}


# ---------------------------------------------------------------------------- the split


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    names=st.lists(st.text(min_size=1, max_size=12), min_size=0, max_size=30, unique=True),
    count=st.integers(1, 6),
    canary=st.integers(0, 4),
)
def test_split_covers_every_site_once_with_canaries_in_shard_one(names: list[str], count: int, canary: int) -> None:
    parts = [split(names, str, canary, Shard(k, count)) for k in range(1, count + 1)]
    assert sorted(n for part in parts for n in part) == sorted(names)  # a partition
    assert parts[0][: min(canary, len(names))] == names[:canary]  # canaries first, in shard 1
    for k, part in enumerate(parts, start=1):
        assert [n for n in names if n in part] == part  # each shard keeps the inventory's order
        for name in part[(min(canary, len(names)) if k == 1 else 0) :]:
            assert shard_of(name, count) == k


def test_the_split_is_sha256_and_the_same_in_every_process() -> None:
    # fixed values: a salted hash() or another hash would move sites between shards
    assert [shard_of(n, 4) for n in ("shop-a", "shop-b", "shop-c", "shop-d", "shop-e", "shop-f")] == [3, 4, 4, 4, 4, 3]
    code = "from maintkit.runner.shard import shard_of; print([shard_of(f'store-{n:02d}', 4) for n in range(40)])"
    other = subprocess.run(
        [sys.executable, "-c", code], env={**os.environ, "PYTHONHASHSEED": "123"}, capture_output=True, text=True
    )
    assert other.stdout.strip() == str([shard_of(n, 4) for n in SITES]), other.stderr


@pytest.mark.parametrize("text", ["0/4", "5/4", "1/0", "a/b", "2", "1/4/2", ""])
def test_bad_shard_is_an_input_error(text: str) -> None:
    with pytest.raises(ConfigError, match="--shard"):
        parse_shard(text)
    assert parse_shard(" 2 / 4 ") == Shard(2, 4)


def test_shard_without_a_group_exits_2(tmp_path: Path) -> None:
    root = _project(tmp_path, failing=SITES[0], gates={})
    res = maint_cli("run", "fleet", "-i", "inventory.yml", "--shard", "1/4", cwd=root)
    assert res.returncode == 2, res.stdout + res.stderr
    assert "a shard needs a run group shared by all shards: pass --group NAME" in res.stderr
    assert not (root / ".maint" / "runs").exists()
    res = maint_cli("run", "fleet", "-i", "inventory.yml", "--shard", "5/4", "--group", "g", cwd=root)
    assert res.returncode == 2 and "'5/4': K must be between 1 and N" in res.stderr


# ---------------------------------------------------------------------------- 4 parallel shards


def test_four_shards_cover_the_fleet_once_and_one_report_shows_it(tmp_path: Path) -> None:
    failing = SITES[17]
    root = _project(tmp_path, failing=failing, gates={})
    procs = {k: _start(root, k) for k in range(1, 5)}
    codes = {k: _finish(p) for k, p in procs.items()}
    bad = shard_of(failing, 4)
    for k, (code, out) in codes.items():
        assert code == (1 if k == bad else 0), out

    summaries = _summaries(root)
    assert sorted(summaries) == ["1/4", "2/4", "3/4", "4/4"]
    expected = _shards()
    for k in range(1, 5):
        data = summaries[f"{k}/4"]
        assert data["group"] == GROUP and data["fleet_sites"] == 40
        assert [s["site"] for s in data["sites"]] == expected[k]
        started = _events(root, data["run_id"])[0]
        assert (started["event"], started["group"], started["shard"]) == ("run.started", GROUP, f"{k}/4")
        assert started["sites"] == expected[k]
    ran = sorted(s["site"] for d in summaries.values() for s in d["sites"])
    assert ran == SITES  # the union covers each site exactly once
    # and on the hosts: every site did its work once, by the run of its own shard
    run_of = {s["site"]: d["run_id"] for d in summaries.values() for s in d["sites"]}
    for name in SITES:
        marker = root / "sites" / name / "ran"
        if name == failing:
            assert not marker.exists()
        else:
            assert marker.read_text() == run_of[name] + "\n", name
    statuses = {s["site"]: s["status"] for d in summaries.values() for s in d["sites"]}
    assert {n for n, s in statuses.items() if s != "ok"} == {failing}

    # maint runs --group: one line per shard's run
    res = maint_cli("runs", "--group", GROUP, "--state-dir", "shared", cwd=root)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert len(lines) == 4
    assert sorted(line.split("shard=")[1] for line in lines) == ["1/4", "2/4", "3/4", "4/4"]
    assert all(f"group={GROUP}" in line for line in lines)
    assert maint_cli("runs", "--group", "other", "--state-dir", "shared", cwd=root).stdout == "no runs in shared\n"

    # one report of the whole fleet
    res = maint_cli("report", "--run-group", GROUP, "--state-dir", "shared", "-o", "fleet.md", cwd=root)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("wrote fleet.md: 40 site(s), 4 run(s), ")

    # the collect job: the fleet in one view, its job summary and outputs
    summary, output = root / "summary.md", root / "output.txt"
    env = {"GITHUB_ACTIONS": "true", "GITHUB_RUN_ID": GROUP, "GITHUB_STEP_SUMMARY": str(summary),
           "GITHUB_OUTPUT": str(output)}  # fmt: skip
    res = maint_cli("collect", "--state-dir", "shared", cwd=root, extra_env=env)
    assert res.returncode == 1, res.stdout + res.stderr  # one site failed
    assert res.stdout.splitlines()[-1] == f"group {GROUP}: failed: 40 site(s): 1 failed, 39 ok; 4 run(s)"
    assert f"{failing:<24} failed       changed=1  shard {bad}/4  {run_of[failing]}" in res.stdout.splitlines()
    assert output.read_text() == f"group={GROUP}\nstatus=failed\nruns=4\nsites=40\nfailed=1\n"
    md = summary.read_text()
    assert md.startswith(f"## ❌ maint fleet `{GROUP}`: failed\n")
    site_rows = [line for line in md.splitlines() if line.startswith("| store-")]
    assert [row.split(" | ")[0][2:] for row in site_rows] == SITES
    assert f"| {failing} | failed | 1 | {bad}/4 | `{run_of[failing]}` |" in site_rows  # the gate step changed
    assert f"| {SITES[0]} | ok | 2 | {shard_of(SITES[0], 4)}/4 | `{run_of[SITES[0]]}` |" in site_rows
    shard_rows = [line for line in md.splitlines() if line.startswith(("| 1/4", "| 2/4", "| 3/4", "| 4/4"))]
    assert len(shard_rows) == 4


def test_max_fail_percentage_counts_the_failures_of_every_shard(tmp_path: Path) -> None:
    """One failing site in shard 1 (1 of 40 = 2.5% > 2%) halts the later batches of shards 2-4.

    Order, with gates: all four shards start their first batch (5 sites each, one gated site per
    shard); then shard 1's failing site goes on and fails; shard 1 ends; then shards 2-4 finish
    their first batch, read the store before their second, and halt.
    """
    shards = _shards()
    assert all(len(sites) > 5 for sites in shards.values()), "every shard needs a second batch"
    failing = shards[1][0]
    gated = {k: shards[k][0] for k in range(1, 5)}
    gates = {}
    for k, name in gated.items():
        gates[name] = tmp_path / f"gate{k}"
        gates[name].mkdir()
        make_gates(gates[name])
    root = _project(tmp_path / "proj", failing=failing, gates=gates, extra="max_fail_percentage: 2")
    procs = {k: _start(root, k) for k in range(1, 5)}
    for k in range(1, 5):
        wait_started(gates[gated[k]], procs[k])  # every shard is in its first batch
    open_gate(gates[failing])
    code1, out1 = _finish(procs[1])
    assert code1 == 1, out1
    for k in range(2, 5):
        open_gate(gates[gated[k]])
    codes = {k: _finish(procs[k]) for k in range(2, 5)}

    summaries = _summaries(root)
    assert sorted(summaries) == ["1/4", "2/4", "3/4", "4/4"]
    for k in range(1, 5):
        data = summaries[f"{k}/4"]
        status = {s["site"]: s["status"] for s in data["sites"]}
        first, rest = shards[k][:5], shards[k][5:]
        assert [s["site"] for s in data["sites"]] == shards[k]
        assert all(status[n] == "skipped" for n in rest), (k, status)
        assert all(status[n] == "ok" for n in first if n != failing), (k, status)
        assert data["status"] == "failed"
        halted = [e for e in _events(root, data["run_id"]) if e["event"] == "run.halted"]
        here = 1 if k == 1 else 0
        assert [(e["reason"], e["failed"], e["failed_here"], e["total"]) for e in halted] == [
            ("max_fail_percentage", 1, here, 40)
        ], k
        for name in rest:
            assert not (root / "sites" / name / "ran").exists()
        skipped = [e for e in _events(root, data["run_id"]) if e["event"] == "site.skipped"]
        assert sorted(e["site"] for e in skipped) == sorted(rest)  # a batch skips in parallel
        assert {e["error"] for e in skipped} == {"halted: too many sites failed"}
    assert {k: c for k, (c, _) in codes.items()} == {2: 1, 3: 1, 4: 1}, codes
    assert summaries["1/4"]["sites"][0]["status"] in ("failed", "rolled-back")


def test_the_summary_records_no_group_without_shard_or_group(tmp_path: Path) -> None:
    root = _project(tmp_path, failing=SITES[0], gates={})
    res = maint_cli("run", "fleet", "-i", "inventory.yml", "-l", SITES[1], cwd=root)
    assert res.returncode == 0, res.stdout + res.stderr
    (summary,) = (root / ".maint" / "runs").glob("*/summary.json")
    data = json.loads(summary.read_text())
    assert "group" not in data and "shard" not in data
    rows = json.loads(maint_cli("runs", "--json", cwd=root).stdout)
    assert [(r["group"], r["shard"], r["status"]) for r in rows] == [(None, None, "ok")]
    res = maint_cli("collect", "--group", GROUP, cwd=root)
    assert res.returncode == 2 and res.stderr == f"error: no runs of group '{GROUP}' in local (.maint)\n"
