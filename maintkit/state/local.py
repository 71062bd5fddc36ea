"""The ``local`` state backend: ``.maint/`` on this machine, nothing shared (the default)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


class LocalStore:
    """Run folders and the index in the local state folder; pull and publish do nothing."""

    name = "local"

    def __init__(
        self, options: Mapping[str, Any] | None = None, *, state_dir: Path, environ: Mapping[str, str] | None = None
    ) -> None:
        self._root = Path(state_dir)

    @property
    def root(self) -> Path:
        """The local state folder itself."""
        return self._root

    def describe(self) -> str:
        """``local (.maint)``."""
        return f"local ({self._root})"

    def pull(self) -> None:
        """Nothing to pull: the folder is the store."""

    def publish(self, paths: Sequence[Path], message: str) -> None:
        """Nothing to publish: the files are already in the store."""

    def close(self) -> None:
        """Nothing to close."""


__all__ = ["LocalStore"]
