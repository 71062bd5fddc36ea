"""A playbook outside any git repository is recorded without importing GitPython; inside one, exactly as before."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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


def test_outside_a_repository_git_is_not_imported(tmp_path: Path) -> None:
    book = tmp_path / "a" / "b" / "update.yml"
    book.parent.mkdir(parents=True)
    book.write_text("name: x\n")
    assert _probe(book) == {"facts": {"commit": None, "dirty": False, "repo": None}, "git_imported": False}


def test_in_a_repository_and_in_a_worktree_the_commit_is_recorded(tmp_path: Path) -> None:
    repo, sha = _repository(tmp_path)
    nested = repo / "deep" / "er"
    nested.mkdir(parents=True)
    assert _probe(repo / "update.yml") == {
        "facts": {"commit": sha, "dirty": False, "repo": str(repo)},
        "git_imported": True,
    }
    assert _probe(nested)["facts"] == {"commit": sha, "dirty": False, "repo": str(repo)}
    worktree = tmp_path / "wt"
    git(repo, "worktree", "add", "-q", str(worktree))
    assert (worktree / ".git").is_file()  # a worktree's .git is a file naming the real one
    assert _probe(worktree / "update.yml")["facts"] == {"commit": sha, "dirty": False, "repo": str(worktree)}


def test_git_dir_in_the_environment_leaves_the_decision_to_git(tmp_path: Path) -> None:
    repo, _sha = _repository(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "update.yml").write_text("name: x\n")
    result = _probe(elsewhere / "update.yml", GIT_DIR=str(repo / ".git"))
    assert result["git_imported"] is True
