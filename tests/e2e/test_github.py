"""GitHub Actions: maint writes log groups, annotations, the job summary and step outputs;
action.yml and the example workflows are structurally valid."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from maintkit.cli.reporters.github import annotation, escape_data, escape_property
from tests.operator_helpers import SECRET_VALUE, clean_env, maint, make_project, step_line

REPO = Path(__file__).resolve().parents[2]


def gh_env(root: Path) -> dict[str, str]:
    summary, output = root / "summary.md", root / "output.txt"
    return clean_env(
        GITHUB_ACTIONS="true",
        GITHUB_STEP_SUMMARY=str(summary),
        GITHUB_OUTPUT=str(output),
        GITHUB_WORKSPACE=str(root),
    )


def outputs(root: Path) -> list[dict[str, str]]:
    """The key=value blocks maint appended to $GITHUB_OUTPUT, one dict per run."""
    runs: list[dict[str, str]] = []
    for line in (root / "output.txt").read_text().splitlines():
        key, _, value = line.partition("=")
        if key == "run-id":
            runs.append({})
        runs[-1][key] = value
    return runs


def test_success_writes_summary_outputs_and_groups(tmp_path: Path) -> None:
    root = make_project(tmp_path / "proj")
    env = gh_env(root)
    res = maint("run", "ops", "-i", "inventory.yml", cwd=root, env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    # log groups: one whole group per site
    for site in ("shop-a", "shop-b"):
        assert f"::group::{site}: ok" in res.stdout
    assert res.stdout.count("::endgroup::") == 2
    group_a = res.stdout.split("::group::shop-a")[1].split("::endgroup::")[0]
    assert "shop-b/" not in group_a and "shop-a/production" in group_a
    assert "::error" not in res.stdout
    # outputs
    (out,) = outputs(root)
    assert out["status"] == "ok" and out["changed"] == "4"
    assert (root / ".maint" / "runs" / out["run-id"] / "summary.json").is_file()
    # job summary
    summary = (root / "summary.md").read_text()
    assert "maint run `ops`: ok" in summary
    assert "| site | status | steps | changed | failed |" in summary
    assert "| shop-a | ok | 2 | 2 | 0 |" in summary
    assert "### shop-b: ok" in summary
    assert "| production | motd | `file.content` | changed |" in summary
    # a second run changes nothing, and says so in the outputs
    res = maint("run", "ops", "-i", "inventory.yml", cwd=root, env=env)
    assert res.returncode == 0
    first, second = outputs(root)
    assert second["changed"] == "0" and second["run-id"] != first["run-id"]
    assert (root / "summary.md").read_text().count("maint run `ops`") == 2


def test_failure_annotates_the_step_and_keeps_secrets_out(tmp_path: Path) -> None:
    root = make_project(tmp_path / "proj", failing=True)
    res = maint("run", "ops", "-i", "inventory.yml", cwd=root, env=gh_env(root))
    assert res.returncode == 1, res.stdout + res.stderr
    line = step_line(root, "boom")
    errors = [x for x in res.stdout.splitlines() if x.startswith("::error ")]
    assert len(errors) == 2, res.stdout
    for site in ("shop-a", "shop-b"):
        expected = f"::error file=playbooks/ops.yml,line={line},title={site}/production%3A step boom (command) failed::"
        assert any(e.startswith(expected) for e in errors), errors
    assert all("rolled back" in e for e in errors)
    assert "::group::shop-a: rolled-back" in res.stdout
    (out,) = outputs(root)
    assert out["status"] == "failed" and out["changed"] == "0"
    summary = (root / "summary.md").read_text()
    assert "maint run `ops`: failed" in summary
    assert "| shop-a | rolled-back | 3 | 0 | 1 |" in summary
    assert "deploy hook failed" in summary
    for text in (res.stdout, res.stderr, summary, (root / "output.txt").read_text()):
        assert SECRET_VALUE not in text


def test_json_mode_in_actions_still_writes_summary_and_outputs(tmp_path: Path) -> None:
    root = make_project(tmp_path / "proj", sites=("shop-a",))
    res = maint("run", "ops", "-i", "inventory.yml", "--json", cwd=root, env=gh_env(root))
    assert res.returncode == 0
    assert '"event": "result"' in res.stdout.splitlines()[-1]
    assert outputs(root)[0]["status"] == "ok"
    assert "### shop-a: ok" in (root / "summary.md").read_text()


def test_plan_in_actions(tmp_path: Path) -> None:
    root = make_project(tmp_path / "proj", sites=("shop-a",))
    res = maint("plan", "ops", "-i", "inventory.yml", cwd=root, env=gh_env(root))
    assert res.returncode == 0
    assert "maint plan `ops`: ok" in (root / "summary.md").read_text()
    assert "| production | motd | `file.content` | would-change |" in (root / "summary.md").read_text()
    assert not (root / "srv" / "shop-a" / "motd.txt").exists()


def test_escaping() -> None:
    assert escape_data("50%\nnext\r") == "50%25%0Anext%0D"
    assert escape_property("a:b,c") == "a%3Ab%2Cc"
    assert (
        annotation("error", "x\ny", title="t:1", file="p.yml", line=3) == "::error file=p.yml,line=3,title=t%3A1::x%0Ay"
    )
    assert annotation("warning", "m") == "::warning::m"


# ------------------------------------------------------------------ structural validation
# actionlint cannot be installed here (its Python wrapper downloads a binary at build time),
# so action.yml and the example workflows are checked structurally.

EXPR = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")


def _load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict), path
    return data


def test_action_yml_is_a_valid_composite_action() -> None:
    action = _load(REPO / "action.yml")
    assert {"name", "description", "inputs", "outputs", "runs"} <= set(action)
    inputs = action["inputs"]
    for name in ("playbook", "inventory", "limit", "check", "extra-args", "ssh-private-key", "known-hosts",
                 "python-version", "maintkit-version"):  # fmt: skip
        assert name in inputs and "description" in inputs[name], name
    assert inputs["playbook"]["required"] is True
    assert set(action["outputs"]) == {"run-id", "status", "changed", "would-change", "changes", "exitcode"}
    for out in action["outputs"].values():
        assert re.fullmatch(r"\$\{\{ steps\.run\.outputs\.[a-z-]+ \}\}", out["value"])
    runs = action["runs"]
    assert runs["using"] == "composite"
    ids = {s.get("id") for s in runs["steps"]}
    assert "run" in ids
    text = (REPO / "action.yml").read_text()
    for expr in EXPR.findall(text):
        for ref in re.findall(r"\binputs\.([A-Za-z0-9_-]+)", expr):
            assert ref in inputs, f"${{{{ {expr} }}}} refers to an undeclared input {ref!r}"
    for step in runs["steps"]:
        assert ("run" in step) != ("uses" in step), step
        if "run" in step:
            assert step.get("shell") == "bash", "composite run steps need a shell"
            assert "${{" not in step["run"], "pass inputs through env:, never into the script text"
    assert "github.action_path" in text


WORKFLOWS = sorted((REPO / "docs" / "workflows").glob("*.yml"))


def test_example_workflows_exist() -> None:
    names = {p.name for p in WORKFLOWS}
    assert {"monthly-update.yml", "daily-backup.yml", "weekly-certificates.yml"} <= names


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_example_workflow_structure(path: Path) -> None:
    wf = _load(path)
    triggers = wf.get("on", wf.get(True))  # YAML 1.1 reads a bare `on` as True
    assert isinstance(triggers, dict) and triggers, "workflow needs triggers"
    assert "concurrency" in wf and "group" in wf["concurrency"]
    assert wf["concurrency"].get("cancel-in-progress") is False, "never cancel a maintenance run halfway"
    declared = set((triggers.get("workflow_dispatch") or {}).get("inputs") or {})
    text = path.read_text()
    for expr in EXPR.findall(text):
        for ref in re.findall(r"\binputs\.([A-Za-z0-9_-]+)", expr):
            assert ref in declared, f"{path.name}: inputs.{ref} is not a workflow_dispatch input"
    assert wf.get("jobs")
    uploads = 0
    for job in wf["jobs"].values():
        assert "runs-on" in job and job.get("steps")
        for step in job["steps"]:
            assert ("run" in step) != ("uses" in step), step
            uses = step.get("uses", "")
            if uses.startswith("actions/upload-artifact") and ".maint/runs" in step["with"]["path"]:
                uploads += 1
                assert step.get("if") == "always()", "upload the run folder also when the run failed"
            if "maintkit" in uses and "@" in uses:
                assert step.get("with", {}).get("playbook")
                assert "secrets." in str(step["with"].get("ssh-private-key", ""))
    assert uploads == 1, "the run folder is uploaded as an artifact"
    if "schedule" in triggers:
        for entry in triggers["schedule"]:
            assert len(entry["cron"].split()) == 5


def test_init_workflow_structure(tmp_path: Path) -> None:
    from maintkit.cli.cmd_init import WORKFLOW

    path = tmp_path / "maint.yml"
    path.write_text(WORKFLOW)
    test_example_workflow_structure(path)
