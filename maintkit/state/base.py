"""The state store contract: where run folders and the per-site index live, shared or not.

A store exposes one local folder, :attr:`StateStore.root`, laid out like ``.maint/``:
``runs/<run_id>/`` (run folders, exactly as the runner writes them) and ``index/`` (the small
per-site index: last runs, backups, certificate checks, health series; see
:mod:`maintkit.state.index`). Readers call :meth:`StateStore.pull` first and then read
``root`` like any local folder; writers write under ``root`` and call
:meth:`StateStore.publish` with the paths they wrote. The ``local`` backend is ``.maint/``
itself (pull and publish do nothing); the ``git`` backend keeps ``root`` as a clone of a
branch and publishes by commit and push. Backends are found through the entry-point group
``maintkit.state`` (see docs/state.md for a plugin).

Nothing is redacted here: everything under ``root`` was redacted when it was written.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

#: entry-point group of state backends
GROUP = "maintkit.state"


@dataclass(frozen=True)
class StateSpec:
    """Which store to use: a backend name and its options (``remote``, ``branch``...)."""

    backend: str = "local"
    options: Mapping[str, Any] = field(default_factory=dict)
    #: where the spec came from, for error messages (``--state``, ``MAINT_STATE``, ``inventory.yml:4``)
    origin: str = "default"


@runtime_checkable
class StateStore(Protocol):
    """What every backend provides. Methods may be called from several threads."""

    #: the backend's name (``local``, ``git``...)
    name: str

    @property
    def root(self) -> Path:
        """The local folder laid out like ``.maint/`` (``runs/``, ``index/``), mode 0700."""
        ...

    def describe(self) -> str:
        """One line for humans: the backend and where it stores (no credentials)."""
        ...

    def pull(self) -> None:
        """Bring :attr:`root` up to date with the shared store (no-op when nothing is shared)."""
        ...

    def publish(self, paths: Sequence[Path], message: str) -> None:
        """Record ``paths`` (files or folders under :attr:`root`) in the shared store.

        Concurrent writers never lose each other's work. Raises :class:`StateError` when the
        store cannot be written; the local files stay as they are.
        """
        ...

    def close(self) -> None:
        """Finish pending work and release resources."""
        ...


class StateBackend(Protocol):
    """A backend class: built from its options, the local state folder and the environ."""

    def __call__(self, options: Mapping[str, Any], *, state_dir: Path, environ: Mapping[str, str]) -> StateStore: ...


__all__ = ["GROUP", "StateBackend", "StateSpec", "StateStore"]
