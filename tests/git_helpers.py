"""git for tests that build small repositories: hermetic (no ~/.gitconfig, no system config)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

#: what git_env() sets: a fixed identity and neither global nor system configuration (the
#: hostile ~/.gitconfig of the test session demands signed commits and rewrites URLs)
HERMETIC = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.invalid",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.invalid",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
}


def git_env() -> dict[str, str]:
    """The process environment as it is now, made hermetic for git."""
    return {**os.environ, **HERMETIC}


def git(repo: Path, *args: str) -> str:
    """Run ``git ARGS`` in ``repo``; its stdout (raises CalledProcessError when git fails)."""
    return subprocess.run(["git", *args], cwd=repo, env=git_env(), check=True, capture_output=True, text=True).stdout


def committed_repo(repo: Path, files: dict[str, str]) -> str:
    """Make ``repo`` a repository holding ``files`` (relative path -> text) in one commit; its sha."""
    repo.mkdir(parents=True, exist_ok=True)
    git(repo, "init", "-q")
    for rel, text in files.items():
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        (repo / rel).write_text(text)
    git(repo, "add", "--", *files)
    git(repo, "commit", "-qm", "init")
    return git(repo, "rev-parse", "HEAD").strip()
