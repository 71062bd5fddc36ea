"""Running git for the git state backend: one clone, the options' environment, typed errors.

Every command runs through GitPython with the environment of
:meth:`maintkit.state.git_options.GitOptions.environ` (explicit ``GIT_DIR``/``GIT_WORK_TREE``,
no user or system config, literal pathspecs), under umask 077 (what git checks out is
readable by the owner only) and with a timeout. A failure becomes a
:class:`~maintkit.errors.StateError` whose message went through
:meth:`~maintkit.state.git_options.GitOptions.clean`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

from maintkit.errors import StateError
from maintkit.state.git_options import GitOptions

#: the tree of an empty repository (sha1)
EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"


class GitCmd:
    """git on the clone at ``root`` with ``options``."""

    def __init__(self, root: Path, options: GitOptions) -> None:
        import git

        self.root = root
        self.options = options
        self._git = git.Git(str(root))

    def call(
        self,
        *args: str,
        index: Path | None = None,
        stdin: IO[bytes] | None = None,
        binary: bool = False,
        env: Mapping[str, str] | None = None,
    ) -> tuple[int, Any, str]:
        """Run ``git ARGS``; (exit status, stdout as text or bytes, stderr). Never raises for a status.

        ``index`` is a private index file; ``env`` adds variables (an author of a replayed commit).
        """
        kwargs: dict[str, Any] = {
            "with_extended_output": True,
            "with_exceptions": False,
            "env": {**self.options.environ(self.root, index=index), **(env or {})},
            "kill_after_timeout": self.options.timeout,
            "umask": 0o077,
            "stdout_as_string": not binary,
            "strip_newline_in_stdout": not binary,
        }
        if stdin is not None:
            kwargs["istream"] = stdin
        try:
            status, out, err = self._git.execute(["git", *args], **kwargs)
        except Exception as exc:  # GitCommandNotFound, OSError: git itself could not start
            raise StateError(f"git {args[0]} could not run: {self.options.clean(str(exc))}") from None
        return int(status), out, err if isinstance(err, str) else err.decode("utf-8", "replace")

    def run(self, *args: str, index: Path | None = None, stdin: IO[bytes] | None = None) -> str:
        """Run ``git ARGS`` and return its output; StateError (credentials removed) when it fails."""
        status, out, err = self.call(*args, index=index, stdin=stdin)
        if status != 0:
            raise self.error(f"git {args[0]}", err or str(out))
        return str(out)

    def blob(self, sha: str) -> bytes:
        """The exact bytes of blob ``sha``."""
        status, out, err = self.call("cat-file", "blob", sha, binary=True)
        if status != 0:
            raise self.error("git cat-file", err)
        return bytes(out)

    def write_blob(self, data: bytes) -> str:
        """Store ``data`` as a blob (no filters); its sha."""
        tmp = self.root / ".git" / f"maint-blob.{os.getpid()}.tmp"
        tmp.write_bytes(data)
        try:
            return self.run("hash-object", "-w", "--no-filters", "--", str(tmp))
        finally:
            tmp.unlink(missing_ok=True)

    def rev(self, name: str) -> str | None:
        """The commit ``name`` points to, or None when it does not exist."""
        status, out, _ = self.call("rev-parse", "--verify", "--quiet", "--end-of-options", f"{name}^{{commit}}")
        return str(out).strip() if status == 0 else None

    def is_ancestor(self, older: str, newer: str) -> bool:
        """Whether ``older`` is an ancestor of (or equal to) ``newer``."""
        status, _, err = self.call("merge-base", "--is-ancestor", older, newer)
        if status not in (0, 1):
            raise self.error("git merge-base", err)
        return status == 0

    def error(self, what: str, detail: str) -> StateError:
        """A StateError for a failed ``what``, naming the store, without credentials."""
        text = " ".join(str(detail).split())
        return StateError(f"{what} failed for {self.options.key()}: {self.options.clean(text) or 'no output'}")


__all__ = ["EMPTY_TREE", "GitCmd"]
