"""``maint playbooks`` and ``maint actions NAME`` as a user reads them in a terminal.

Columns line up, descriptions wrap at word boundaries (never inside a word), broken playbook
files are listed with the reason instead of a traceback, and an action's parameters show
their real type, default and allowed values.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from maintkit.playbook import BUILTIN_DIR
from tests.runs import maint_cli

LONG = (
    "Rotate the shop's log files, compress yesterday's, and send the summary to "
    "https://hooks.example.net/maint/very-long-webhook-path-that-cannot-be-broken when anything changed."
)


def listing(tmp_path: Path, columns: int) -> list[str]:
    """``maint playbooks`` in ``tmp_path`` with a terminal of ``columns``: its lines (exit 0, nothing on stderr)."""
    res = maint_cli("playbooks", cwd=tmp_path, extra_env={"COLUMNS": str(columns)})
    assert (res.returncode, res.stderr) == (0, ""), res.stderr
    return res.stdout.splitlines()


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project whose ./playbooks holds a good playbook, a non-UTF-8 one, a broken one and a list."""
    books = tmp_path / "playbooks"
    books.mkdir()
    (books / "logs.yml").write_text(f"name: logs\ndescription: {LONG}\nstages: []\n", encoding="utf-8")
    (books / "latin1.yml").write_bytes(b"name: latin1\ndescription: caf\xe9 au lait\n")
    (books / "broken.yml").write_text("name: broken\ndescription: [unclosed\n", encoding="utf-8")
    (books / "list.yaml").write_text("- name: not a playbook\n", encoding="utf-8")
    return tmp_path


def test_playbooks_columns_align_and_descriptions_wrap_at_words(project: Path) -> None:
    lines = listing(project, 80)
    assert lines[:11] == [
        "playbook        source                description",
        "backup          built-in              Daily backup of each site's production",
        "                                      database and files, verified by a scratch",
        "                                      restore, copied offsite, pruned.",
        "broken          playbooks/broken.yml  unreadable: line 3: YAML syntax error: did",
        "                                      not find expected ',' or ']'",
        "clear-cache     built-in              Clear the caches each site configures in",
        "                                      its inventory variables, then check that",
        "                                      the home page answers. Variables (all",
        "                                      optional but cache_targets): cache_targets",
        "                                      (default [platform, opcache]),",
    ]
    rows = [line for line in lines if not line.startswith(" ")]
    assert [r.split()[0] for r in rows[1:]] == sorted(
        ["broken", "latin1", "list", "logs", *(p.stem for p in BUILTIN_DIR.glob("*.yml"))]
    )
    assert all(r[16:38].rstrip() in ("built-in", "source") or r[16:].startswith("playbooks/") for r in rows)
    assert all(len(line) <= 80 for line in lines if "very-long-webhook" not in line)
    # the local playbook's description, whole: rejoined it is the text, every word intact
    start = lines.index(next(line for line in lines if line.startswith("logs ")))
    end = next(i for i in range(start + 1, len(lines)) if not lines[i].startswith(" "))
    assert [line[38:] for line in lines[start:end]] == [
        "Rotate the shop's log files, compress",
        "yesterday's, and send the summary to",
        "https://hooks.example.net/maint/very-long-webhook-path-that-cannot-be-broken",
        "when anything changed.",
    ]
    assert " ".join(line[38:] for line in lines[start:end]) == LONG


def test_unreadable_playbooks_are_listed_with_the_reason(project: Path) -> None:
    lines = listing(project, 200)
    by_name = {line.split()[0]: line for line in lines[1:]}
    assert by_name["latin1"] == (
        "latin1          playbooks/latin1.yml  "
        "unreadable: line 2: not valid UTF-8: byte 0xe9 at byte offset 29; save the file as UTF-8"
    )
    assert by_name["broken"].endswith("  unreadable: line 3: YAML syntax error: did not find expected ',' or ']'")
    assert by_name["list"] == (
        "list            playbooks/list.yaml   unreadable: not a playbook (a mapping with name and stages)"
    )
    assert by_name["backup"].startswith("backup          built-in              Daily backup")


def test_a_narrow_terminal_puts_descriptions_under_their_row(project: Path) -> None:
    lines = listing(project, 60)
    i = lines.index("latin1          playbooks/latin1.yml")
    assert lines[i + 1 : i + 3] == [
        "    unreadable: line 2: not valid UTF-8: byte 0xe9 at byte",
        "    offset 29; save the file as UTF-8",
    ]
    assert lines[:2] == ["playbook        source", "    description"]


def test_cms_update_parameters_show_choices_and_real_defaults(tmp_path: Path) -> None:
    res = maint_cli("actions", "cms.update", cwd=tmp_path, extra_env={"COLUMNS": "100"})
    assert (res.returncode, res.stderr) == (0, "")
    lines = res.stdout.splitlines()
    params = lines[lines.index("parameters:") + 1 :]

    def param(name: str, count: int) -> list[str]:
        i = next(n for n, line in enumerate(params) if line.startswith(f"  {name}: "))
        return params[i : i + count]

    assert param("core", 2) == [
        "  core: patch | minor | major | none (default: minor)",
        "      WordPress core: how far updates go",
    ]
    assert param("plugins", 1) == ["  plugins: patch | minor | major | none (default: minor)"]
    assert param("database", 3) == [
        "  database: auto | always | never (default: auto)",
        "      auto: dump before, restore on rollback when the schema changed; always: restore on rollback;",
        "      never",
    ]
    assert param("keep_snapshots", 1) == ["  keep_snapshots: integer >= 1 (default: 3)"]
    assert param("api_url", 1) == ["  api_url: string | null (default: https://api.wordpress.org)"]
    assert param("snapshot_dir", 2) == [
        "  snapshot_dir: string (default: <path>/.maint/snapshots)",
        "      Where snapshots go",
    ]
    assert param("composer", 1) == ['  composer: list of string (default: ["composer"])']
    assert param("post_update", 1) == ["  post_update: list of list of string (default: [])"]
    assert param("repository", 6) == [
        "  repository: Repository | string",
        "      Directory of <slug>-<version>.zip packages",
        "      Repository.path: string (required)",
        "          Directory of package zips",
        "      Repository.on: controller | host (default: controller)",
        "          controller (uploaded when used) or host",
    ]
    assert not any("(default: null)" in line or "(default null)" in line for line in params)


def test_required_parameters_say_so(tmp_path: Path) -> None:
    res = maint_cli("actions", "deploy.release", cwd=tmp_path, extra_env={"COLUMNS": "100"})
    assert res.returncode == 0
    assert "  repo: string (required)" in res.stdout.splitlines()
