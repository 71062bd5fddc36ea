"""The demo shop on disk: a git repository with three releases, the two environments'
directories, an inventory.

Layout of the demo directory (default ``./maint-demo``)::

    repo.git/            bare git repository, tags v1, v2 and v3 (the shop's code, see releases.py)
    staging/             staging's path: releases/, shared/ (.env, var/cache), current -> releases/...
    production/          production's path, the same layout
    tls/                 a demo CA and a server certificate (made with cryptography)
    db/                  a private MariaDB data directory (when MariaDB is installed)
    inventory.yml        the demo's inventory (connection: local, two environments)
    .maint/              run folders (the audit log) of the demo's runs
    report.md, report.html
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import yaml

from maintkit.demo.releases import RELEASES, release_files
from maintkit.transport.base import quote

SITE = "demo-shop"
ENVS = ("staging", "production")
_REPO_STAMP = "maint-demo-releases"
_GIT_ENV = {
    "GIT_AUTHOR_NAME": "maint demo",
    "GIT_AUTHOR_EMAIL": "demo@maint.invalid",
    "GIT_COMMITTER_NAME": "maint demo",
    "GIT_COMMITTER_EMAIL": "demo@maint.invalid",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_TERMINAL_PROMPT": "0",
}


def _git(args: list[str], cwd: Path, home: Path) -> str:
    git = shutil.which("git")
    if git is None:
        raise RuntimeError("git is not installed")
    env = {**os.environ, **_GIT_ENV, "HOME": str(home)}
    res = subprocess.run([git, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60, check=False)
    if res.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed: {res.stderr.strip()[-300:]}")
    return res.stdout


def make_repository(bare: Path) -> None:
    """Create ``bare`` (once) with the shop's tagged releases v1, v2 and v3.

    A repository an earlier demo version made (other releases) is made again."""
    stamp = bare / _REPO_STAMP
    if stamp.is_file() and stamp.read_text().split() == list(RELEASES):
        return
    shutil.rmtree(bare, ignore_errors=True)
    with tempfile.TemporaryDirectory(prefix="maint-demo-git-") as tmp:
        home, work = Path(tmp) / "home", Path(tmp) / "work"
        home.mkdir()
        (home / ".gitconfig").write_text("[init]\n\tdefaultBranch = main\n[safe]\n\tdirectory = *\n")
        work.mkdir()
        _git(["init", "-q", "-b", "main"], work, home)
        for version in RELEASES:
            for old in [p for p in work.rglob("*") if p.is_file() and ".git" not in p.parts]:
                old.unlink()
            for rel, content in release_files(version).items():
                target = work / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(content)
            _git(["add", "-A"], work, home)
            _git(["commit", "-q", "-m", f"Demo shop {version}"], work, home)
            _git(["tag", version], work, home)
        bare.parent.mkdir(parents=True, exist_ok=True)
        _git(["clone", "-q", "--bare", str(work), str(bare)], bare.parent, home)
    stamp.write_text(" ".join(RELEASES) + "\n")


def seed_cache(cache_dir: Path) -> None:
    """Put a few stale cached pages into the page cache (only when it is new)."""
    if cache_dir.is_dir():
        return
    cache_dir.mkdir(parents=True)
    for name in ("index", "product", "cart"):
        (cache_dir / f"{name}.html").write_text(f"<!-- cached {name} page of release v1 -->\n")


def write_env_file(shared: Path, settings: dict[str, str]) -> None:
    """The environment's shared ``.env`` (linked into every release; ``bin/migrate`` reads it)."""
    shared.mkdir(parents=True, exist_ok=True)
    text = "".join(f"{key}={quote(value)}\n" for key, value in sorted(settings.items()))
    _write_atomic(shared / ".env", text, 0o600)


def write_inventory(path: Path, envs: dict[str, dict[str, Any]], vars: dict[str, Any]) -> None:
    """The demo's inventory: one site, two local environments (``envs``: name -> path, url, vars)."""
    environments = {
        name: {"connection": "local", "path": str(env["path"]), "url": env["url"], "vars": env.get("vars", {})}
        for name, env in envs.items()
    }
    data = {"sites": {SITE: {"platform": "generic", "vars": vars, "environments": environments}}}
    header = (
        "# The demo shop made by `maint demo`: everything runs on this machine (connection: local).\n"
        "# Rewritten by each `maint demo` (its ports may change).\n"
    )
    _write_atomic(path, header + yaml.safe_dump(data, sort_keys=False, default_flow_style=False), 0o644)


def _write_atomic(path: Path, text: str, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.chmod(tmp, mode)
    tmp.replace(path)
