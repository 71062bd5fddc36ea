"""The ``git`` state backend: run folders and the index on a branch of a git remote.

:attr:`GitStore.root` is ``<state_dir>/stores/<sha256(remote#branch)[:16]>/`` (mode 0700), a
clone of the branch (``maint-state`` by default), made on first use; the branch is created
as an orphan when the remote lacks it. :meth:`GitStore.pull` fetches and fast-forwards (local
commits not yet pushed are rebased onto the remote). :meth:`GitStore.publish` adds exactly the
paths it is given, commits when something changed and pushes; a rejected push is answered by
fetching, rebasing (:mod:`maintkit.state.git_replay`: the working tree is never rewritten
under a running writer) and pushing again, with a growing random pause, up to
``push_attempts`` times. A push is never forced, so concurrent writers never lose a commit.

Files are checked out byte for byte (no line-ending conversion, no filters: ``* -text`` in
``.gitattributes`` and in ``.git/info/attributes``) and readable by the owner only (git runs
under umask 077). Options and credentials: :mod:`maintkit.state.git_options`.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import secrets
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from maintkit._fs import write_text_atomic
from maintkit.errors import StateError
from maintkit.state.git_cmd import GitCmd
from maintkit.state.git_options import GitOptions, parse_options
from maintkit.state.git_replay import move_to, replay

#: committed at the start of the branch: bytes are stored and checked out as they are
GITATTRIBUTES = "* -text\n"
#: the clone's own attributes (win over anything a commit brings)
INFO_ATTRIBUTES = "* -text -eol -ident -filter -working-tree-encoding\n"
_CONFIG = (
    ("core.autocrlf", "false"), ("core.safecrlf", "false"), ("core.hooksPath", "/dev/null"),
    ("commit.gpgSign", "false"), ("tag.gpgSign", "false"), ("gc.autoDetach", "false"),
)  # fmt: skip
_random = secrets.SystemRandom()


class GitStore:
    """A state store kept on a branch of a git remote (see the module docstring)."""

    name = "git"

    def __init__(self, options: Mapping[str, Any] | None, *, state_dir: Path, environ: Mapping[str, str]) -> None:
        self.options: GitOptions = parse_options(options or {}, environ)
        digest = hashlib.sha256(self.options.key().encode()).hexdigest()[:16]
        self._stores = Path(os.path.abspath(state_dir)) / "stores"
        self._root = self._stores / digest
        self._lockfile = self._stores / f"{digest}.lock"
        self._lock = threading.RLock()
        self._ready = False
        self._cmd = GitCmd(self._root, self.options)

    @property
    def root(self) -> Path:
        """The clone (created empty, mode 0700, when missing; filled by :meth:`pull`)."""
        for folder in (self._stores, self._root):
            if not folder.is_dir():
                folder.mkdir(mode=0o700, parents=True, exist_ok=True)
                os.chmod(folder, 0o700)
        return self._root

    @property
    def branch(self) -> str:
        """The branch holding the state."""
        return self.options.branch

    def describe(self) -> str:
        """``git (REMOTE#BRANCH, clone in PATH)``, without credentials."""
        return f"git ({self.options.key()}, clone in {self._root})"

    def pull(self) -> None:
        """Fetch the branch and bring :attr:`root` up to it (unpushed local commits are rebased).

        Reading never writes to the remote: while the remote has no branch, :attr:`root` stays
        empty.
        """
        with self._locked():
            self._ensure()
            if self._has_upstream():
                self._fetch()
                self._integrate()

    def publish(self, paths: Sequence[Path], message: str) -> None:
        """Commit exactly ``paths`` (when they changed) and push, retrying a rejected push.

        Raises StateError when the push still fails after ``push_attempts`` tries; the commit
        stays in the clone and the next publish pushes it.
        """
        with self._locked():
            self._ensure()
            if self._cmd.rev("HEAD") is None:
                self._start_branch()
            if self._stage(self._relative(paths)):
                self._cmd.run("commit", "-q", "--no-verify", "--no-gpg-sign", "-m", message.strip() or "maint state")
            self._push()

    def close(self) -> None:
        """Nothing is pending: every publish has finished when it returns."""

    # ------------------------------------------------------------------ opening
    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """This store's thread lock, then a file lock shared with other processes on this clone."""
        with self._lock:
            self.root  # noqa: B018 - creates the folders
            fd = os.open(self._lockfile, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)

    def _ensure(self) -> None:
        """Make :attr:`root` a clone of the branch (left empty while the remote lacks it)."""
        if self._ready:
            return
        git_dir = self._root / ".git"
        if not (git_dir / "HEAD").exists():
            self._cmd.run("init", "-q", f"--initial-branch={self.branch}")
            for key, value in (*_CONFIG, *self._remote_config()):
                self._cmd.run("config", key, value)
        write_text_atomic(git_dir / "info" / "attributes", INFO_ATTRIBUTES, make_parents=True)
        self._ready = True

    def _remote_config(self) -> tuple[tuple[str, str], ...]:
        refspec = f"+refs/heads/{self.branch}:refs/remotes/origin/{self.branch}"
        return (("remote.origin.url", self.options.remote), ("remote.origin.fetch", refspec))

    def _has_upstream(self) -> bool:
        """Whether the remote has the branch (asked only until it was fetched once)."""
        if self._cmd.rev(f"refs/remotes/origin/{self.branch}") is not None:
            return True
        status, _, err = self._cmd.call("ls-remote", "--exit-code", "--heads", "origin", f"refs/heads/{self.branch}")
        if status not in (0, 2):
            raise self._cmd.error("git ls-remote", err)
        return status == 0

    def _start_branch(self) -> None:
        """The first commit of an orphan branch (``.gitattributes``), when the remote has none yet.

        The first publish pushes it; if another controller created the branch meanwhile, the push
        is rejected and this commit, now changing nothing, is dropped by the rebase.
        """
        if self._has_upstream():
            self._fetch()
            self._integrate()
            if self._cmd.rev("HEAD") is not None:
                return
        write_text_atomic(self._root / ".gitattributes", GITATTRIBUTES)
        self._cmd.run("add", "--", ".gitattributes")
        self._cmd.run("commit", "-q", "--no-verify", "--no-gpg-sign", "-m", f"maint state: start {self.branch}")

    # ------------------------------------------------------------------ syncing
    def _fetch(self) -> None:
        refspec = f"+refs/heads/{self.branch}:refs/remotes/origin/{self.branch}"
        self._cmd.run("fetch", "-q", "--no-tags", "--no-write-fetch-head", "origin", refspec)

    def _integrate(self) -> None:
        """Bring the checked-out branch up to the fetched one, rebasing local commits."""
        upstream = self._cmd.rev(f"refs/remotes/origin/{self.branch}")
        head = self._cmd.rev("HEAD")
        if upstream is None or head == upstream:
            return
        if head is not None and self._cmd.is_ancestor(upstream, head):
            return  # only local commits on top: nothing to bring in
        new = upstream if head is None or self._cmd.is_ancestor(head, upstream) else replay(self._cmd, upstream, head)
        move_to(self._cmd, head, new, self.branch)

    def _ahead(self) -> bool:
        """Whether the branch has commits the remote does not."""
        status, out, _ = self._cmd.call("rev-list", "--count", "HEAD", "--not", f"refs/remotes/origin/{self.branch}")
        if status == 0:
            return int(str(out).strip() or 0) > 0
        return self._cmd.rev("HEAD") is not None

    def _push(self) -> None:
        """Push the branch; on a rejection fetch, rebase and push again (bounded, with pauses)."""
        last = ""
        for attempt in range(self.options.push_attempts):
            if not self._ahead():
                return
            status, out, err = self._cmd.call(
                "push", "--porcelain", "--no-verify", "origin", f"HEAD:refs/heads/{self.branch}"
            )
            if status == 0:
                return
            last = " ".join(f"{err} {out}".split())
            if attempt + 1 == self.options.push_attempts:
                break
            self._fetch()
            self._integrate()
            time.sleep(_random.uniform(0, min(2.0, 0.05 * 2**attempt)))
        raise StateError(
            f"could not push the state to {self.options.key()} after {self.options.push_attempts} attempts "
            f"(the commit is kept in {self._root} and pushed by the next publish): {self.options.clean(last)}"
        )

    # ------------------------------------------------------------------ staging
    def _relative(self, paths: Sequence[Path]) -> list[str]:
        """``paths`` relative to the clone; ValueError for one outside it or inside ``.git``."""
        root = os.path.abspath(self._root)
        out: list[str] = []
        for path in paths:
            full = os.path.abspath(os.path.join(root, os.fspath(path)))
            rel = os.path.relpath(full, root)
            if rel == "." or rel.startswith(".." + os.sep) or rel == ".." or rel.split(os.sep)[0] == ".git":
                raise ValueError(f"not a path inside the state store: {path}")
            out.append(rel)
        return out

    def _stage(self, rels: list[str]) -> bool:
        """Stage exactly ``rels`` (additions, changes, removals); whether anything is staged."""
        present = [r for r in rels if os.path.lexists(self._root / r)]
        gone = [r for r in rels if r not in present]
        if present:
            self._pathspec_call("add", ["-A"], present)
        if gone:
            self._pathspec_call("rm", ["-r", "-q", "--cached", "--ignore-unmatch"], gone)
        status, _, err = self._cmd.call("diff", "--cached", "--quiet", "--exit-code")
        if status not in (0, 1):
            raise self._cmd.error("git diff", err)
        return status == 1

    def _pathspec_call(self, command: str, flags: list[str], rels: list[str]) -> None:
        import tempfile

        with tempfile.TemporaryFile(dir=self._root / ".git") as fh:
            fh.write(b"".join(r.encode("utf-8", "surrogateescape") + b"\0" for r in rels))
            fh.seek(0)
            self._cmd.run(command, *flags, "--pathspec-from-file=-", "--pathspec-file-nul", stdin=fh)


__all__ = ["GitStore"]
