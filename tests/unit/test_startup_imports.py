"""What a run imports before its first connection, and what ``maint --help`` imports.

Checked in a fresh interpreter (a subprocess), with exact module lists, never with timings:
a non-terminal ``maint run`` imports neither structlog (whose package imports ``structlog.dev``,
rich and pygments) nor rich nor pygments; it loads only the actions its playbook names; a run
never imports GitPython (the playbook's provenance asks the git command).
The audit log renders each event exactly as structlog's JSONRenderer would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from maintkit.audit.log import render_json
from tests.lab.sshd import LabHost
from tests.runs import sites_of, watched_cli, write_inventory

BOOT = watched_cli(
    """
    import maintkit.transport.ssh as ssh
    seen = {}
    original = ssh.SSHTransport._new_connection

    def first_connection(self, *args):
        seen.setdefault("connect", sorted(sys.modules))
        return original(self, *args)

    ssh.SSHTransport._new_connection = first_connection
    """,
    at_exit='seen["exit"] = sorted(sys.modules)\n',
)

PLAYBOOK = """\
name: startup
stages:
  - env: production
    steps:
      - {action: file.directory, with: {path: "{{ env.path }}/app"}}
      - {action: command, with: {argv: ["true"], read_only: true}}
"""

NEVER = ("structlog", "rich", "pygments")


def _tops(modules: list[str]) -> set[str]:
    return {m.split(".")[0] for m in modules}


def _maint_run(tmp_path: Path, host: LabHost, scratch: Path, *, in_repo: bool = False) -> dict[str, list[str]]:
    inventory = write_inventory(tmp_path, sites_of({"shop": host.env(scratch / "site")}))
    playbook = tmp_path / "startup.yml"
    playbook.write_text(PLAYBOOK)
    if in_repo:  # a repository with the playbook uncommitted: provenance asks git
        env = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
        subprocess.run(["git", "init", "-q", str(tmp_path)], check=True, env=env)
    out = tmp_path / "modules.json"
    argv = [sys.executable, "-c", BOOT, str(out), "run", str(playbook), "-i", str(inventory),
            "--state-dir", str(tmp_path / "state"), "--yes"]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k not in ("TERM", "FORCE_COLOR")}
    done = subprocess.run(argv, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    seen: dict[str, list[str]] = json.loads(out.read_text())
    return seen


def test_a_non_terminal_run_imports_no_dev_logging_and_only_the_named_actions(
    tmp_path: Path, ssh_hosts: list[tuple[LabHost, Path]]
) -> None:
    host, scratch = ssh_hosts[0]
    seen = _maint_run(tmp_path, host, scratch, in_repo=True)
    at_connect, at_exit = seen["connect"], seen["exit"]
    assert _tops(at_exit).isdisjoint(NEVER), sorted(_tops(at_exit) & set(NEVER))
    assert "git" not in _tops(at_exit)  # provenance asks the git command: GitPython is never imported
    assert "maintkit.audit.provenance" in at_connect
    actions = sorted(m for m in at_exit if m.startswith("maintkit.actions"))
    assert actions == ["maintkit.actions", "maintkit.actions.command", "maintkit.actions.file"]


def test_a_playbook_outside_any_repository_never_imports_gitpython(
    tmp_path: Path, ssh_hosts: list[tuple[LabHost, Path]]
) -> None:
    host, scratch = ssh_hosts[0]
    seen = _maint_run(tmp_path, host, scratch)
    assert "git" not in _tops(seen["exit"])
    assert "maintkit.audit.provenance" in seen["exit"]


def test_the_audit_log_keeps_the_commit_computed_after_the_first_connection(
    tmp_path: Path, ssh_hosts: list[tuple[LabHost, Path]]
) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    host, scratch = ssh_hosts[0]
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.invalid"]
    env = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
    subprocess.run(["git", "init", "-q", str(repo)], check=True, env=env)
    (repo / "startup.yml").write_text(PLAYBOOK)
    subprocess.run([*git, "add", "startup.yml"], check=True, env=env)
    subprocess.run([*git, "commit", "-qm", "playbook"], check=True, env=env)
    sha = subprocess.run([*git, "rev-parse", "HEAD"], check=True, env=env, capture_output=True, text=True).stdout
    inventory = write_inventory(tmp_path, sites_of({"shop": host.env(scratch / "site")}))
    state = tmp_path / "state"
    done = subprocess.run(
        [sys.executable, "-m", "maintkit", "run", str(repo / "startup.yml"), "-i", str(inventory),
         "--state-dir", str(state), "--yes"],  # fmt: skip
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    (run_dir,) = (state / "runs").iterdir()
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    assert events[0]["event"] == "run.started"
    assert {(e["playbook_commit"], e["playbook_dirty"]) for e in events} == {(sha.strip(), False)}


def test_help_imports_click_and_the_command_modules_only() -> None:
    code = (
        "import sys\nfrom maintkit.cli.main import cli\n"
        "try:\n    cli(['--help'], prog_name='maint')\nexcept SystemExit:\n    pass\n"
        "print('\\n'.join(sorted(sys.modules)), file=sys.stderr)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert "Usage: maint" in done.stdout
    modules = done.stderr.split()
    third_party = {t for t in _tops(modules) if t not in sys.stdlib_module_names and not t.startswith("_")}
    assert third_party == {"click", "maintkit"}
    ours = {m for m in modules if m.startswith("maintkit")}
    assert ours == {
        "maintkit", "maintkit.cli", "maintkit.cli.common", "maintkit.cli.main", "maintkit.cli.run_flags",
        "maintkit.results", *(f"maintkit.cli.cmd_{c}" for c in (
            "actions", "audit", "collect", "connections", "daemon", "demo", "info", "init", "report", "restore", "rollback",
            "run", "runs", "unlock")),
    }  # fmt: skip


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.dictionaries(st.text(max_size=12), json_values, max_size=6))
def test_events_render_byte_for_byte_as_structlogs_json_renderer(event: dict[str, Any]) -> None:
    from structlog.processors import JSONRenderer

    reference = JSONRenderer(sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert render_json(None, "info", dict(event)) == reference(None, "info", dict(event))


def test_objects_json_cannot_hold_fall_back_as_in_structlog() -> None:
    from structlog.processors import JSONRenderer

    class Custom:
        def __structlog__(self) -> str:
            return "custom!"

    event = {"path": Path("/srv/shop"), "custom": Custom(), "n": 1}
    reference = JSONRenderer(sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert render_json(None, "info", event) == reference(None, "info", event)
    assert render_json(None, "info", event) == '{"custom":"custom!","n":1,"path":"PosixPath(\'/srv/shop\')"}'
