"""The runner's pure decisions: a site's status, the run's status and exit code, the transport's environ."""

from __future__ import annotations

from pathlib import Path

import pytest

from maintkit.inventory import load_inventory
from maintkit.playbook import playbook_from_text
from maintkit.results import ExitCode, RunResult, RunStatus, SiteResult, SiteStatus
from maintkit.runner import Runner
from maintkit.runner.outcome import SiteVerdict, run_status
from maintkit.transport.factory import factory_for, transport_for

OK, FAILED, ROLLED_BACK = SiteStatus.OK, SiteStatus.FAILED, SiteStatus.ROLLED_BACK


@pytest.mark.parametrize(
    ("verdict", "expected"),
    [
        (SiteVerdict(), OK),
        (SiteVerdict(stage=ROLLED_BACK), ROLLED_BACK),
        (SiteVerdict(cleanup_failed=True), FAILED),
        (SiteVerdict(stage=ROLLED_BACK, cleanup_failed=True), FAILED),
        (SiteVerdict(stage=SiteStatus.INTERRUPTED, cleanup_failed=True), SiteStatus.INTERRUPTED),
        (SiteVerdict(step_failed=True), FAILED),
        (SiteVerdict(stage=ROLLED_BACK, step_failed=True), ROLLED_BACK),
        (SiteVerdict(interrupted=True, cleanup_failed=True), SiteStatus.INTERRUPTED),
        (SiteVerdict(locked=True, cleanup_failed=True), SiteStatus.LOCKED),
        (SiteVerdict(start_failed=True, stage=OK), FAILED),
        (SiteVerdict(locked=True, start_failed=True), SiteStatus.LOCKED),
    ],
)
def test_site_status_is_decided_from_the_facts(verdict: SiteVerdict, expected: SiteStatus) -> None:
    assert verdict.status is expected


@pytest.mark.parametrize(
    ("statuses", "stopped", "halted", "expected", "code"),
    [
        ([OK, OK], False, False, RunStatus.OK, ExitCode.OK),
        ([OK, ROLLED_BACK], False, False, RunStatus.FAILED, ExitCode.FAILED),
        ([OK, SiteStatus.LOCKED], False, False, RunStatus.LOCKED, 3),
        ([FAILED, SiteStatus.LOCKED], False, False, RunStatus.FAILED, 1),
        ([OK, SiteStatus.INTERRUPTED, FAILED], False, False, RunStatus.INTERRUPTED, 3),
        ([OK], True, False, RunStatus.INTERRUPTED, 3),
        ([OK, SiteStatus.SKIPPED], False, True, RunStatus.FAILED, 1),
        ([OK, SiteStatus.SKIPPED], False, False, RunStatus.OK, 0),
    ],
)
def test_run_status_and_exit_code(
    statuses: list[SiteStatus], stopped: bool, halted: bool, expected: RunStatus, code: int
) -> None:
    sites = [SiteResult(f"s{i}", s) for i, s in enumerate(statuses)]
    status = run_status(sites, stopped=stopped, halted=halted)
    assert status is expected
    result = RunResult("20261102T050000Z-abcd", "pb", False, status, sites)
    assert (result.exit_code, result.to_dict()["status"], f"{result.status}") == (code, expected.value, expected.value)


def test_run_result_accepts_the_plain_status_string() -> None:
    result = RunResult("20261102T050000Z-abcd", "pb", False, "locked")  # type: ignore[arg-type]
    assert (result.status, result.exit_code, result.ok) == (RunStatus.LOCKED, ExitCode.LOCKED, False)


INV = """\
sites:
  shop:
    environments:
      production: {host: p.example, path: /srv/shop}
      own: {host: p.example, path: /srv/own, key_file: /keys/own}
"""


def test_the_transport_reads_the_environ_it_is_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAINT_SSH_KEY_FILE", "/process/key")
    monkeypatch.setenv("MAINT_KNOWN_HOSTS", "/process/known")
    (tmp_path / "inventory.yml").write_text(INV)
    inv = load_inventory(tmp_path / "inventory.yml")
    env, own = inv.sites["shop"].environments["production"], inv.sites["shop"].environments["own"]
    given = {"MAINT_SSH_KEY_FILE": "/given/key", "MAINT_KNOWN_HOSTS": "/given/known"}
    made = factory_for(given)(env)
    assert (made.key_filename, made.known_hosts) == ("/given/key", ["/given/known"])  # type: ignore[attr-defined]
    assert transport_for(own, given).key_filename == "/keys/own"  # type: ignore[attr-defined]
    bare = transport_for(env, {})
    assert (bare.key_filename, bare.known_hosts) == (None, [])  # type: ignore[attr-defined]
    pb = playbook_from_text(
        'name: t\nstages:\n  - env: production\n    steps: [{action: command, with: {argv: ["true"]}}]\n'
    )
    runner = Runner(pb, inv, state_dir=tmp_path / "state", environ=given, handle_signals=False)
    pooled = runner.pool.get(env)
    assert (pooled.key_filename, pooled.known_hosts) == ("/given/key", ["/given/known"])  # type: ignore[attr-defined]
