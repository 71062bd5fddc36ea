"""`maint demo`: the local demo shop, end to end with the real actions, twice."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.operator_helpers import clean_env, maint


@pytest.fixture(scope="module")
def demo_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """Run `maint demo DIR` twice; return the directory and both outputs (stdout + stderr)."""
    root = tmp_path_factory.mktemp("demo")
    target = root / "maint-demo"
    outputs = []
    for _ in range(2):
        res = maint("demo", str(target), cwd=root, env=clean_env(), timeout=120)
        text = res.stdout + res.stderr
        assert res.returncode == 0, text
        outputs.append(text)
    return target, outputs


def test_first_run_does_the_monthly_job(demo_runs: tuple[Path, list[str]]) -> None:
    target, (first, _) = demo_runs
    assert "Creating the demo shop" in first
    assert "v1 is live at http://127.0.0.1:" in first
    # backup, verify, deploy v2, clear the cache change; the smoke checks and the certificate only read
    expected = [
        ("backup", "changed"),
        ("verify", "changed"),
        ("deploy", "changed"),
        ("cache", "changed"),
        ("smoke", "ok"),
        ("certificate", "ok"),
    ]
    rows = re.findall(r"^demo-shop/production\s+(\S+)\s+(\S+)\s", first, re.MULTILINE)
    assert rows == expected, first
    assert re.search(r"^demo-shop\s+ok\s+4 changed, 2 unchanged$", first, re.MULTILINE), first
    found = re.search(r"^ok: 4 step\(s\) changed; run folder (\S+)$", first, re.MULTILINE)
    assert found, first
    summary = json.loads((Path(found.group(1)) / "summary.json").read_text())
    assert summary["playbook"] == "demo-monthly" and summary["changed"] == 4
    assert [(s["step"], s["status"]) for site in summary["sites"] for s in site["steps"]] == [
        (step, "unchanged" if status == "ok" else status) for step, status in expected
    ]
    assert "# Maintenance report" in first and "## demo-shop" in first
    assert (target / "report.md").is_file() and (target / "report.html").read_text().startswith("<!doctype html>")
    # the new release is live: current points at the v2 release
    current = (target / "shop" / "current").resolve()
    assert (current / "RELEASE").read_text().strip() == "v2"
    assert (current / "public" / "checkout" / "index.html").is_file()
    assert not any((target / "shop" / "shared" / "var" / "cache").iterdir()), "the page cache was cleared"


def test_second_run_changes_nothing(demo_runs: tuple[Path, list[str]]) -> None:
    _, (_, second) = demo_runs
    assert "Reusing the demo shop" in second
    assert "v1 is live" not in second
    assert re.search(r"ok: 0 step\(s\) changed", second), second
    assert "Nothing changed" in second


def test_report_and_audit(demo_runs: tuple[Path, list[str]]) -> None:
    target, _ = demo_runs
    report = (target / "report.md").read_text()
    assert "### Backups" in report and "demo-shop" in report
    assert re.search(r"median \*\*\d+ ms\*\*", report), report
    assert "localhost:" in report  # the certificate section names the served endpoint
    html = (target / "report.html").read_text()
    assert "<svg" in html
    state = target / ".maint"
    res = maint("runs", "--state-dir", str(state), "--json", cwd=target)
    runs = json.loads(res.stdout)
    assert [r["playbook"] for r in runs] == ["demo-monthly", "demo-monthly", "demo-setup"]
    for r in runs:
        verify = maint("audit", "verify", r["run_id"], "--state-dir", str(state), cwd=target)
        assert verify.returncode == 0, verify.stdout + verify.stderr


def test_left_out_steps_are_named(tmp_path: Path) -> None:
    res = maint("demo", str(tmp_path / "d"), "--no-php", "--no-database", "--no-report", cwd=tmp_path, timeout=120)
    text = res.stdout + res.stderr
    assert res.returncode == 0, text
    assert "Left out on this machine:" in text
    assert "database: left out of the backup (disabled)" in text
    assert "Python's http.server" in text
    assert "# Maintenance report" not in text
    assert (tmp_path / "d" / "report.html").is_file()


def test_init_scaffolds_without_overwriting(tmp_path: Path) -> None:
    res = maint("init", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    inv = tmp_path / "inventory.yml"
    assert inv.read_text().startswith("# yaml-language-server: $schema=.maint/schema/inventory.json")
    schema = json.loads((tmp_path / ".maint" / "schema" / "playbook.json").read_text())
    assert schema["title"] == "maintkit playbook"
    assert json.loads((tmp_path / ".maint" / "schema" / "inventory.json").read_text())["title"] == "maintkit inventory"
    playbooks = sorted((tmp_path / "playbooks").glob("*.yml"))
    assert playbooks and all(p.read_text().startswith("# yaml-language-server: $schema=../.maint") for p in playbooks)
    assert "actions/upload-artifact" in (tmp_path / ".github" / "workflows" / "maint.yml").read_text()
    assert "Next steps:" in res.stdout and "maint validate" in res.stdout
    valid = maint("validate", "-i", "inventory.yml", cwd=tmp_path)
    assert valid.returncode == 0, valid.stdout + valid.stderr
    # never overwrites without --force
    inv.write_text("# mine\n")
    res = maint("init", cwd=tmp_path)
    assert res.returncode == 0
    assert "kept    inventory.yml (exists; --force overwrites)" in res.stdout
    assert inv.read_text() == "# mine\n"
    res = maint("init", "--force", cwd=tmp_path)
    assert "wrote   inventory.yml" in res.stdout and inv.read_text().startswith("# yaml-language-server")
