"""The ``maint`` command itself: ``maint actions`` (rollback kinds), the choice of reporter, and
``maint --help`` staying light (no pydantic, fabric or rich)."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from maintkit.cli.reporters import GitHubReporter, JsonReporter, LiveReporter, PlainReporter, choose_reporter
from tests.runs import maint_in_process

#: (action, rollback kind, reason) as ``maint actions`` must show them
ROLLBACKS = [
    ("cache.clear", "noop", "a cleared cache refills itself"),
    ("file.content", "undo", ""),
    ("backup.prune", "none", "deleted backups cannot come back"),
    ("hello.greet", "undo", ""),  # the test plugin only sets the older `reversible = True`
]


def maint(*args: str) -> tuple[int, str, str]:
    """``maint ARGS`` in this process: exit code, stdout, stderr."""
    res = maint_in_process(*args)
    return res.exit_code, res.stdout, res.stderr


def test_list_has_an_aligned_rollback_column() -> None:
    code, out, _ = maint("actions")
    assert code == 0
    header, *rows = out.splitlines()
    assert re.fullmatch(r"action +rollback  summary", header), header
    column = header.index("rollback")
    by_name = {row.split()[0]: row for row in rows}
    for name, kind, _reason in ROLLBACKS:
        row = by_name[name]
        assert row[:column].rstrip() == name, row
        assert row[column : column + 10] == f"{kind:<8}  ", row
    assert all(row[column : column + 4] in ("undo", "noop", "none") for row in rows), rows
    summary = "Clear caches: nginx cache dirs, Redis, OPcache, WordPress/Magento/Laravel, Cloudflare."
    assert by_name["cache.clear"][column + 10 :] == summary


@pytest.mark.parametrize(("name", "kind", "reason"), ROLLBACKS)
def test_one_action_names_its_rollback(name: str, kind: str, reason: str) -> None:
    code, out, _ = maint("actions", name)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith(f"{name}: ")
    assert lines[1] == (f"rollback: {kind} ({reason})" if reason else f"rollback: {kind}")
    assert "\nparameters:\n" in out
    assert not any(line.startswith("reversible:") for line in lines)


@pytest.mark.parametrize(("name", "kind", "reason"), ROLLBACKS)
def test_json_has_rollback_and_the_older_reversible_key(name: str, kind: str, reason: str) -> None:
    expected = {"rollback": kind, "rollback_reason": reason, "reversible": kind == "undo"}
    code, out, _ = maint("actions", "--json")
    assert code == 0
    (row,) = [r for r in json.loads(out) if r["name"] == name]
    assert {k: row[k] for k in expected} == expected
    assert set(row) == {"name", "summary", "rollback", "rollback_reason", "reversible"}
    code, out, _ = maint("actions", name, "--json")
    assert code == 0
    one = json.loads(out)
    assert {k: one[k] for k in expected} == expected
    assert one["name"] == name and one["params"]["type"] == "object"


def test_unknown_action_exits_2_with_a_suggestion() -> None:
    code, out, err = maint("actions", "cache.clr")
    assert (code, out) == (2, "")
    assert err == "error: unknown action 'cache.clr' (did you mean 'cache.clear'?)\n"


@pytest.mark.parametrize(
    ("environ", "as_json", "tty", "expected", "inner"),
    [
        ({}, False, False, PlainReporter, None),
        ({}, True, False, JsonReporter, None),
        ({}, True, True, JsonReporter, None),
        ({}, False, True, LiveReporter, None),
        ({"MAINT_PLAIN": "1"}, False, True, PlainReporter, None),
        ({"GITHUB_ACTIONS": "true"}, False, True, GitHubReporter, PlainReporter),
        ({"GITHUB_ACTIONS": "true"}, True, False, GitHubReporter, JsonReporter),
        ({"GITHUB_ACTIONS": "false"}, False, False, PlainReporter, None),
    ],
)
def test_choose_reporter(environ: dict[str, str], as_json: bool, tty: bool, expected: type, inner: type | None) -> None:
    reporter = choose_reporter(as_json=as_json, check=True, diff=False, environ=environ, tty=tty)
    assert type(reporter) is expected
    assert (reporter.check, reporter.diff) == (True, False)
    if inner is not None:
        assert isinstance(reporter, GitHubReporter)
        assert type(reporter.inner) is inner and reporter.environ is environ


def test_help_imports_no_heavy_library() -> None:
    script = (
        "import sys\n"
        "sys.argv = ['maint', '--help']\n"
        "from maintkit.cli import main\n"
        "try:\n"
        "    main()\n"
        "except SystemExit as exc:\n"
        "    assert exc.code == 0, exc.code\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('pydantic', 'fabric', 'paramiko', 'rich'))\n"
        "print('HEAVY', heavy)\n"
    )
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    assert "Usage: maint [OPTIONS] COMMAND [ARGS]..." in res.stdout
    assert res.stdout.splitlines()[-1] == "HEAVY []"
