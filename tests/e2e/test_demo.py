"""`maint demo`: the story on a local shop with staging and production, with the real actions.

The first run deploys v1 on both environments, then update 1 (v2, whose cart configuration is
broken) fails on staging and is rolled back while production keeps selling, then update 2 (v3)
passes on staging and reaches production with the same files. The second run changes nothing.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest

from tests.operator_helpers import clean_env, maint

SHOPPER = re.compile(r"^  production answered (\d+) of (\d+) cart requests", re.MULTILINE)


@pytest.fixture(scope="module")
def demo_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """Run `maint demo DIR` twice; return the directory and both outputs (stdout + stderr)."""
    root = tmp_path_factory.mktemp("demo")
    target = root / "maint-demo"
    outputs = []
    for _ in range(2):
        res = maint("demo", str(target), cwd=root, env=clean_env(), timeout=180)
        text = res.stdout + res.stderr
        assert res.returncode == 0, text
        outputs.append(text)
    return target, outputs


def _with_database(output: str) -> bool:
    return "database: a private MariaDB" in output


def _runs(target: Path) -> list[tuple[dict, list[dict]]]:
    """Every run of the demo, oldest first: (summary.json, events.jsonl)."""
    found = []
    for folder in (target / ".maint" / "runs").iterdir():
        summary = json.loads((folder / "summary.json").read_text())
        events = [json.loads(line) for line in (folder / "events.jsonl").read_text().splitlines()]
        found.append((summary, events))
    return sorted(found, key=lambda r: r[1][0]["ts"])


def _steps(summary: dict) -> list[tuple[str, str, str]]:
    return [(s["env"], s["step"], s["status"]) for site in summary["sites"] for s in site["steps"]]


def _current(env_path: Path) -> dict:
    """The marker of the release env_path/current points at."""
    return json.loads(((env_path / "current").resolve() / ".maint-release.json").read_text())


def _tree(release: Path, shared: Path) -> dict[str, tuple]:
    """Every entry of a release (but its marker): file content and mode, or link target (links into
    the environment's own shared/ by their place there)."""
    entries = {}
    for dirpath, dirnames, filenames in os.walk(release):
        for name in filenames + dirnames:
            full = Path(dirpath) / name
            rel = str(full.relative_to(release))
            if full.is_symlink():
                target = os.readlink(full)
                entries[rel] = ("link", target.replace(str(shared), "<shared>"))
            elif full.is_file() and rel != ".maint-release.json":
                entries[rel] = ("file", full.read_bytes(), full.stat().st_mode & 0o7777)
    return entries


def test_update_one_is_caught_on_staging_and_rolled_back(demo_runs: tuple[Path, list[str]]) -> None:
    target, (first, _) = demo_runs
    db = _with_database(first)
    assert "Creating the demo shop" in first
    runs = _runs(target)
    assert [s["playbook"] for s, _ in runs] == ["demo-setup", "demo-update", "demo-update", "demo-update"]
    broken, events = runs[1]
    assert broken["status"] == "failed"
    assert [site["status"] for site in broken["sites"]] == ["rolled-back"]
    undone = ["cache", "migrate", "deploy"] if db else ["cache", "deploy"]
    expected = [("staging", "deploy", "rolled-back")]
    expected += [("staging", "migrate", "rolled-back" if db else "skipped")]
    expected += [("staging", "cache", "rolled-back"), ("staging", "smoke", "failed")]
    assert _steps(broken) == expected
    # the audit log: the smoke check failed on the cart, then the stage was undone in reverse order
    failed = [e for e in events if e["event"] == "step.failed"]
    assert [(e["env"], e["step"]) for e in failed] == [("staging", "smoke")]
    assert re.search(r"/cart/: status 500 \(expected 200\)", failed[0]["error"]), failed[0]
    assert [e["step"] for e in events if e["event"] == "step.rolled_back"] == undone
    assert {e["env"] for e in events if e["event"] == "step.rolled_back"} == {"staging"}
    # production was never touched: every step of it is "not run", and nothing else happened there
    prod_steps = ["backup", "verify", "deploy", "migrate", "cache", "smoke", "certificate"]
    assert [(e["event"], e["step"], e["reason"]) for e in events if e.get("env") == "production"] == [
        ("step.not_run", step, "an earlier step failed") for step in prod_steps
    ]
    # the releases logs: v2 is marked bad on staging, v1 back; production never saw v2's commit
    v2 = next(e for e in events if e["event"] == "step.applied" and e["step"] == "deploy")["data"]["commit"]
    staging_log = [json.loads(x) for x in (target / "staging" / ".maint" / "releases.jsonl").read_text().splitlines()]
    assert [(e["status"], e["commit"] == v2) for e in staging_log][1:4] == [
        ("deployed", True),
        ("bad", True),
        ("rolled-back", False),
    ]
    production_log = (target / "production" / ".maint" / "releases.jsonl").read_text()
    assert v2 not in production_log
    why = "smoke: GET http://127.0.0.1:"
    assert re.search(rf"^  v2 broke the cart on staging: {why}\d+/cart/: status 500 \(expected 200\)\.$", first, re.M)
    assert f"  Staging was rolled back ({', '.join(undone)} undone); production never got v2." in first
    for run_summary, _ in runs:
        verify = maint("audit", "verify", run_summary["run_id"], "--state-dir", str(target / ".maint"), cwd=target)
        assert verify.returncode == 0, verify.stdout + verify.stderr


def test_update_two_reaches_production_with_the_same_files(demo_runs: tuple[Path, list[str]]) -> None:
    target, (first, _) = demo_runs
    db = _with_database(first)
    good = _runs(target)[2][0]
    assert good["status"] == "ok"
    changed = {"deploy", "cache"} | ({"migrate"} if db else set())
    assert [(env, step) for env, step, status in _steps(good) if status == "changed"] == [
        ("staging", "deploy"),
        *([("staging", "migrate")] if db else []),
        ("production", "backup"),
        ("production", "verify"),
        *[("production", s) for s in ("deploy", "migrate", "cache") if s in changed],
    ]
    staging, production = _current(target / "staging"), _current(target / "production")
    assert (staging["ref"], production["ref"]) == ("v3", "v3")
    assert staging["commit"] == production["commit"]
    assert staging["run_id"] == production["run_id"] == good["run_id"]
    for env in ("staging", "production"):
        current = (target / env / "current").resolve()
        assert (current / "RELEASE").read_text() == "v3\n"
        json.loads((current / "config" / "cart.json").read_text())  # v3's cart configuration reads
        assert not any((target / env / "shared" / "var" / "cache").iterdir()), "the page cache was cleared"
    trees = [_tree((target / e / "current").resolve(), target / e / "shared") for e in ("staging", "production")]
    assert trees[0] == trees[1]
    assert ("link", "<shared>/.env") == trees[0][".env"]
    # the printed checksums: one per environment, equal
    printed = re.findall(r"^  (staging|production) +v3 +commit ([0-9a-f]{12})  sha256 ([0-9a-f]{64})  ", first, re.M)
    assert [p[0] for p in printed] == ["staging", "production"]
    assert printed[0][1:] == printed[1][1:] == (staging["commit"][:12], printed[0][2])
    assert (
        f"v3 passed on staging and reached production with the same files: sha256 {printed[0][2][:16]} on both."
        in first
    )


def test_production_kept_selling(demo_runs: tuple[Path, list[str]]) -> None:
    _, outputs = demo_runs
    for output in outputs:
        polls = [(int(ok), int(total)) for ok, total in SHOPPER.findall(output)]
        assert polls and all(ok == total > 0 for ok, total in polls), output
    first_polls = [int(ok) for ok, _ in SHOPPER.findall(outputs[0])]
    assert len(first_polls) == 2  # one tally per update
    total = sum(first_polls)
    assert (
        f"Production kept selling: its cart answered {total} of {total} cart requests during the updates." in outputs[0]
    )


def test_second_run_changes_nothing(demo_runs: tuple[Path, list[str]]) -> None:
    target, (first, second) = demo_runs
    assert "Reusing the demo shop" in second
    assert "v1 is live" not in second and "Update 1" not in second
    last = _runs(target)[-1][0]
    assert last["status"] == "ok" and last["changed"] == 0
    allowed = {"unchanged"} | (set() if _with_database(first) else {"skipped"})
    assert {status for _, _, status in _steps(last)} == allowed
    assert "Nothing changed: the shop was already up to date" in second
    assert _current(target / "production")["ref"] == "v3"


def test_report_and_audit(demo_runs: tuple[Path, list[str]]) -> None:
    target, (first, _) = demo_runs
    report = (target / "report.md").read_text()
    assert "# Maintenance report" in first and "## demo-shop" in report
    rollbacks = report.split("### Rollbacks", 1)[1].split("\n### ", 1)[0]
    assert "staging" in rollbacks and "v2" in rollbacks
    assert "### Backups" in report
    assert "localhost:" in report  # the certificate section names the served endpoint
    assert (target / "report.html").read_text().startswith("<!doctype html>")
    res = maint("runs", "--state-dir", str(target / ".maint"), "--json", cwd=target)
    runs = json.loads(res.stdout)
    assert [r["playbook"] for r in runs] == ["demo-update"] * 3 + ["demo-setup"]


def test_left_out_steps_are_named(tmp_path: Path) -> None:
    target = tmp_path / "d"
    res = maint("demo", str(target), "--no-php", "--no-database", "--no-report", cwd=tmp_path, timeout=180)
    text = res.stdout + res.stderr
    assert res.returncode == 0, text
    assert "Left out on this machine:" in text
    assert "  - PHP: left out (disabled): a Python stand-in serves the cart page" in text
    assert "  - database: left out (disabled): no database backup or migration" in text
    assert "# Maintenance report" not in text
    assert (target / "report.html").is_file()
    # the same story without PHP and MariaDB: the stand-in cart breaks on v2 too
    assert "Staging was rolled back (cache, deploy undone); production never got v2." in text
    assert _current(target / "staging")["ref"] == _current(target / "production")["ref"] == "v3"
    assert all(ok == total for ok, total in SHOPPER.findall(text)) and SHOPPER.search(text)


@pytest.mark.skipif(shutil.which("php") is None, reason="PHP is not installed")
def test_json_keeps_stdout_json(tmp_path: Path) -> None:
    res = maint("demo", str(tmp_path / "j"), "--json", "--no-database", cwd=tmp_path, timeout=180)
    assert res.returncode == 0, res.stdout + res.stderr
    events = [json.loads(line) for line in res.stdout.splitlines()]
    failed = [e for e in events if e.get("event") == "step.failed"]
    assert [(e["env"], e["step"]) for e in failed] == [("staging", "smoke")]
    assert "production answered" in res.stderr


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
