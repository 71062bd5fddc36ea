"""Local bare git repositories with real commits, as deploy sources for tests.

:class:`BareRepo` creates ``path`` as a bare repository and keeps a private
working clone next to it (``<path>.work``); :meth:`BareRepo.commit` writes
files there, commits and pushes to the bare repository. Clone it over the file
system (``file://`` or the path) or over SSH from a lab host.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

GIT = "/usr/bin/git"
_ENV = {
    "GIT_AUTHOR_NAME": "Lab Author",
    "GIT_AUTHOR_EMAIL": "author@lab.invalid",
    "GIT_COMMITTER_NAME": "Lab Author",
    "GIT_COMMITTER_EMAIL": "author@lab.invalid",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_TERMINAL_PROMPT": "0",
}
# Our own git commands run with a private HOME whose config trusts the bare repository even
# when it belongs to another user (see ``owner``).
_GITCONFIG = "[safe]\n\tdirectory = *\n[init]\n\tdefaultBranch = main\n"

#: A tiny PHP shop: a front page and a cart page, handy for deploy tests.
PHP_APP_FILES: dict[str, str] = {
    "public/index.php": "<?php\necho 'shop front ' . (getenv('APP_RELEASE') ?: 'v1') . \"\\n\";\n",
    "public/cart/index.php": '<?php\necho "cart ok\\n";\n',
    "composer.json": '{"name": "lab/shop", "type": "project", "require": {}}\n',
}


class GitError(RuntimeError):
    """A git command failed (the message carries its output)."""


class BareRepo:
    """A bare repository at ``path`` plus a working clone used to make commits.

    git refuses to read a repository owned by another user ("dubious
    ownership"). For a login user such as ``deploy`` to clone it, pass
    ``owner="deploy"``: the bare repository is then chowned to that user after
    each commit (its parent directories must be searchable by that user).
    """

    def __init__(self, path: str | Path, *, branch: str = "main", owner: str | None = None) -> None:
        self.path = Path(path)
        self.branch = branch
        self.owner = owner
        self.work_dir = self.path.with_name(self.path.name + ".work")
        self._home = self.path.with_name(self.path.name + ".home")
        if not (self.path / "HEAD").exists():
            self.path.mkdir(parents=True, exist_ok=True)
            self._git("init", "--bare", f"--initial-branch={branch}", str(self.path))
        if not (self.work_dir / ".git").exists():
            self._git("init", f"--initial-branch={branch}", str(self.work_dir))
            self._git("remote", "add", "origin", str(self.path), cwd=self.work_dir)

    @property
    def url(self) -> str:
        """``file://`` URL of the bare repository."""
        return self.path.resolve().as_uri()

    def _git(self, *args: str, cwd: Path | None = None) -> str:
        if not self._home.exists():
            self._home.mkdir()
            (self._home / ".gitconfig").write_text(_GITCONFIG)
        env = {**os.environ, **_ENV, "HOME": str(self._home)}
        res = subprocess.run([GIT, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60, check=False)
        if res.returncode != 0:
            raise GitError(f"git {' '.join(args)} failed ({res.returncode}):\n{res.stdout}{res.stderr}")
        return res.stdout.strip()

    def commit(
        self,
        files: Mapping[str, str | bytes | None],
        message: str,
        tag: str | None = None,
    ) -> str:
        """Write ``files`` (relative path -> content; None deletes), commit, push; return the sha.

        With ``tag``, an annotated tag is made on the commit and pushed too.
        """
        for rel, content in files.items():
            target = self.work_dir / rel
            if not target.resolve().is_relative_to(self.work_dir.resolve()):
                raise ValueError(f"path escapes the repository: {rel!r}")
            if content is None:
                self._git("rm", "-q", "--", rel, cwd=self.work_dir)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                target.write_bytes(content)
            else:
                target.write_text(content)
            self._git("add", "--", rel, cwd=self.work_dir)
        self._git("commit", "-q", "--allow-empty", "-m", message, cwd=self.work_dir)
        sha = self._git("rev-parse", "HEAD", cwd=self.work_dir)
        self._git("push", "-q", "origin", f"HEAD:refs/heads/{self.branch}", cwd=self.work_dir)
        if tag is not None:
            self._git("tag", "-a", tag, "-m", tag, cwd=self.work_dir)
            self._git("push", "-q", "origin", f"refs/tags/{tag}", cwd=self.work_dir)
        if self.owner is not None:
            subprocess.run(["chown", "-R", f"{self.owner}:", str(self.path)], check=True, timeout=60)
        return sha

    def head(self, ref: str | None = None) -> str:
        """The sha of ``ref`` (default: the branch) in the bare repository."""
        return self._git("--git-dir", str(self.path), "rev-parse", ref or f"refs/heads/{self.branch}")

    def remove(self) -> None:
        """Delete the bare repository and its working clone."""
        for p in (self.path, self.work_dir, self._home):
            shutil.rmtree(p, ignore_errors=True)
