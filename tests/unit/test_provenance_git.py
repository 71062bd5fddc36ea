"""The playbook's provenance comes from the git command: exact facts, hostile names, no GitPython.

Outside any repository no git process starts at all (a few ``stat`` calls decide); inside one,
three or four git processes answer side by side. Every case checks the exact facts recorded.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from maintkit.audit import provenance
from maintkit.audit.provenance import git_provenance
from tests.git_helpers import committed_repo, git, git_env

PROBE = (
    "import json, sys\n"
    "from pathlib import Path\n"
    "from maintkit.audit.provenance import git_provenance\n"
    "facts = git_provenance(Path(sys.argv[1]))\n"
    "print(json.dumps({'facts': facts, 'git_imported': 'git' in sys.modules}))\n"
)


def _probe(path: Path, **env: str) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(path)], capture_output=True, text=True, check=True, env={**git_env(), **env}
    ).stdout
    return dict(json.loads(out))


def _repository(tmp_path: Path) -> tuple[Path, str]:
    """A repository holding a committed ``update.yml``; its path and commit."""
    repo = tmp_path / "repo"
    return repo, committed_repo(repo, {"update.yml": "name: x\n"})


def _recording_git(tmp_path: Path, body: str) -> Path:
    """A folder holding a ``git`` script that notes each start in ``started`` then runs ``body``."""
    bin_dir = tmp_path / "fake-bin"
    bin_dir.mkdir()
    script = bin_dir / "git"
    script.write_text(f'#!/bin/sh\necho "$$" >> {tmp_path / "started"}\n{body}\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return bin_dir


def test_outside_a_repository_no_git_process_starts(tmp_path: Path) -> None:
    book = tmp_path / "a" / "b" / "update.yml"
    book.parent.mkdir(parents=True)
    book.write_text("name: x\n")
    fake = _recording_git(tmp_path, "exit 0")
    path = f"{fake}{os.pathsep}{os.environ['PATH']}"
    assert _probe(book, PATH=path) == {"facts": {"commit": None, "dirty": False, "repo": None}, "git_imported": False}
    assert not (tmp_path / "started").exists()


def test_in_a_repository_and_in_a_worktree_the_commit_is_recorded_without_gitpython(tmp_path: Path) -> None:
    repo, sha = _repository(tmp_path)
    nested = repo / "deep" / "er"
    nested.mkdir(parents=True)
    assert _probe(repo / "update.yml") == {
        "facts": {"commit": sha, "dirty": False, "repo": str(repo)},
        "git_imported": False,
    }
    assert _probe(nested)["facts"] == {"commit": sha, "dirty": False, "repo": str(repo)}
    worktree = tmp_path / "wt"
    git(repo, "worktree", "add", "-q", str(worktree))
    assert (worktree / ".git").is_file()  # a worktree's .git is a file naming the real one
    assert _probe(worktree / "update.yml")["facts"] == {"commit": sha, "dirty": False, "repo": str(worktree)}


def test_git_dir_in_the_environment_leaves_the_decision_to_git(tmp_path: Path) -> None:
    repo, sha = _repository(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "update.yml").write_text("name: x\n")  # what the commit holds: git sees a clean tree here
    result = _probe(elsewhere / "update.yml", GIT_DIR=str(repo / ".git"))
    assert result == {"facts": {"commit": sha, "dirty": False, "repo": str(elsewhere)}, "git_imported": False}
    (elsewhere / "update.yml").write_text("name: changed\n")
    assert _probe(elsewhere / "update.yml", GIT_DIR=str(repo / ".git"))["facts"]["dirty"] is True  # type: ignore[index]


def test_a_repository_without_commits_and_a_bare_one(tmp_path: Path) -> None:
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    git(fresh, "init", "-q")
    (fresh / "update.yml").write_text("name: x\n")
    assert git_provenance(fresh / "update.yml") == {"commit": None, "dirty": True, "repo": str(fresh)}
    assert git_provenance(fresh) == {"commit": None, "dirty": False, "repo": str(fresh)}
    repo, sha = _repository(tmp_path)
    bare = tmp_path / "bare.git"
    git(tmp_path, "clone", "-q", "--bare", str(repo), str(bare))
    (bare / "update.yml").write_text("name: x\n")  # a file in a repository without a work tree
    assert git_provenance(bare / "update.yml") == {"commit": sha, "dirty": False, "repo": None}


def test_staged_and_unstaged_changes_and_an_ignored_playbook(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    sha = committed_repo(repo, {"update.yml": "name: x\n", "other.txt": "a\n", ".gitignore": "local-*.yml\n"})
    clean = {"commit": sha, "dirty": False, "repo": str(repo)}
    assert git_provenance(repo / "update.yml") == clean
    (repo / "other.txt").write_text("b\n")  # another tracked file changed: the repository is dirty
    assert git_provenance(repo / "update.yml") == {**clean, "dirty": True}
    git(repo, "add", "other.txt")  # staged, not committed: still dirty
    assert git_provenance(repo / "update.yml") == {**clean, "dirty": True}
    git(repo, "reset", "-q", "--hard")
    (repo / "local-test.yml").write_text("name: x\n")  # ignored by the repository's own .gitignore
    assert git_provenance(repo / "local-test.yml") == clean


def test_a_glob_or_magic_name_is_taken_literally(tmp_path: Path) -> None:
    """A committed playbook named ``*.yml`` stays clean beside an untracked ``x.yml`` (as a
    pattern its name would match that file), and ``:(exclude)x`` is a name, not pathspec magic."""
    repo = tmp_path / "repo"
    committed_repo(repo, {"base.txt": "a\n"})
    for name in ("*.yml", ":(exclude)x.yml"):
        (repo / name).write_text("name: x\n")
        git(repo, "add", "--", f":(literal){name}")
    git(repo, "commit", "-qm", "books")
    sha = git(repo, "rev-parse", "HEAD").strip()
    (repo / "x.yml").write_text("name: untracked\n")
    clean = {"commit": sha, "dirty": False, "repo": str(repo)}
    assert git_provenance(repo / "*.yml") == clean
    assert git_provenance(repo / ":(exclude)x.yml") == clean
    assert git_provenance(repo / "x.yml") == {**clean, "dirty": True}


def test_a_root_whose_name_holds_a_newline(tmp_path: Path) -> None:
    repo = tmp_path / "line\nbreak"
    sha = committed_repo(repo, {"update.yml": "name: x\n"})
    assert git_provenance(repo / "update.yml") == {"commit": sha, "dirty": False, "repo": str(repo)}


def test_git_missing_failing_or_hanging_records_no_provenance(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo, _sha = _repository(tmp_path)
    none = {"commit": None, "dirty": False, "repo": None}
    monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))  # no git at all
    assert git_provenance(repo / "update.yml") == none
    failing = _recording_git(tmp_path, "exit 128")
    monkeypatch.setenv("PATH", str(failing))
    assert git_provenance(repo / "update.yml") == none
    assert len((tmp_path / "started").read_text().split()) == 4  # where, head, status, untracked
    gate = tmp_path / "gate"
    os.mkfifo(gate)
    (failing / "git").write_text(f'#!/bin/sh\necho "$$" >> {tmp_path / "hung"}\nexec cat {gate}\n')  # never opened
    monkeypatch.setattr(provenance, "GIT_TIMEOUT", 0.2)
    assert git_provenance(repo / "update.yml") == none
    pids = [int(p) for p in (tmp_path / "hung").read_text().split()]
    assert len(pids) == 4
    for pid in pids:  # every hung git was killed and reaped
        assert not Path(f"/proc/{pid}").exists()


#: file names with quotes, backslashes, newlines, leading dashes, spaces, globs, unicode and pathspec magic
NAME = (
    st.lists(
        st.sampled_from([*"ab-_. '\"\\*?[]:!#$`\n\tü€", ":(exclude)", ":(glob)", ":(top)", "-", "--"]),
        min_size=1,
        max_size=8,
    )
    .map("".join)
    .filter(lambda n: n not in (".", "..") and not n.startswith(".git"))
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=NAME)
def test_hostile_playbook_names_untracked_then_committed(tmp_path_factory: pytest.TempPathFactory, name: str) -> None:
    repo = tmp_path_factory.mktemp("hostile")
    sha = committed_repo(repo, {"base.txt": "a\n"})
    book = repo / name
    book.write_text("name: x\n")
    assert git_provenance(book) == {"commit": sha, "dirty": True, "repo": str(repo)}
    git(repo, "add", "--", f":(literal){name}")
    git(repo, "commit", "-qm", "book")
    head = git(repo, "rev-parse", "HEAD").strip()
    assert git_provenance(book) == {"commit": head, "dirty": False, "repo": str(repo)}
