"""`maint rollback` and `maint restore` write their runs into the store `--state` names."""

from __future__ import annotations

import json
from pathlib import Path

from tests.runs import local_env, maint_cli, one_site, write_inventory


def test_rollback_and_restore_runs_land_in_the_given_store(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    inv = write_inventory(tmp_path, one_site(local_env(site)))
    shared = tmp_path / "shared"
    store = ("--state", f"dir:{shared}")
    rb = maint_cli("rollback", "shop", "--env", "production", "-i", str(inv), "--state-dir", "a", *store, cwd=tmp_path)
    assert rb.returncode == 1, rb.stdout + rb.stderr
    assert f"check: {site}/current does not point at a release (missing)" in rb.stdout
    rs = maint_cli(
        "restore", "shop", "--env", "production", "--what", "files", "-i", str(inv), "--state-dir", "b", *store,
        cwd=tmp_path,
    )  # fmt: skip
    assert rs.returncode == 1, rs.stdout + rs.stderr
    assert f"check: no backup in {site}/.maint/backups (missing)" in rs.stdout
    # both runs may start in the same second: take their order from `maint runs` (event times, ms)
    listed = maint_cli("runs", "--json", "--state-dir", "c", *store, cwd=tmp_path)
    rows = json.loads(listed.stdout)
    assert [r["playbook"] for r in rows] == ["restore", "rollback"]
    runs = [shared / "runs" / r["run_id"] for r in reversed(rows)]
    assert sorted(runs) == sorted((shared / "runs").iterdir())
    summaries = [json.loads((r / "summary.json").read_text()) for r in runs]
    assert [(s["playbook"], s["status"], s["sites"][0]["status"]) for s in summaries] == [
        ("rollback", "failed", "failed"),
        ("restore", "failed", "rolled-back"),
    ]
    assert not (tmp_path / "a" / "runs").exists() and not (tmp_path / "b" / "runs").exists()
    assert not (site / ".maint" / "lock").exists()
