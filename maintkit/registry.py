"""Action registry: actions are found through the entry-point group ``maintkit.actions``.

Entry points are listed cheaply; an action's module is imported only when the action is
used. Plugin packages register actions the same way as the built-ins::

    [project.entry-points."maintkit.actions"]
    "acme.hello" = "acme_maint.actions:Hello"
"""

from __future__ import annotations

import threading
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from maintkit.action import Action
from maintkit.errors import DuplicateAction, RegistryError, UnknownAction

GROUP = "maintkit.actions"


class Registry:
    """Name -> action class, loaded lazily from entry points (plus explicit registrations)."""

    def __init__(self, *, load_entry_points: bool = True) -> None:
        self._eps: dict[str, EntryPoint] | None = None if load_entry_points else {}
        self._loaded: dict[str, type[Action[Any]]] = {}
        self._lock = threading.Lock()

    def _entry_points(self) -> dict[str, EntryPoint]:
        if self._eps is None:
            found: dict[str, EntryPoint] = {}
            for ep in entry_points(group=GROUP):
                other = found.get(ep.name)
                if other is not None and other.value != ep.value:
                    raise DuplicateAction(
                        f"action {ep.name!r} is registered twice: {other.value} and {ep.value} "
                        "(uninstall one of the plugin packages)"
                    )
                found[ep.name] = ep
            self._eps = found
        return self._eps

    def register(self, cls: type[Action[Any]], name: str | None = None) -> None:
        """Register an action class directly (tests, scripts)."""
        key = name or cls.name
        with self._lock:
            existing = self._loaded.get(key)
            if existing is not None and existing is not cls:
                raise DuplicateAction(f"action {key!r} is already registered by {existing.__module__}")
            self._loaded[key] = cls

    def names(self) -> list[str]:
        """All known action names, sorted, without importing them."""
        return sorted(set(self._entry_points()) | set(self._loaded))

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and (name in self._loaded or name in self._entry_points())

    def get(self, name: str) -> type[Action[Any]]:
        """The action class for ``name`` (imports its module on first use)."""
        with self._lock:
            if name in self._loaded:
                return self._loaded[name]
        ep = self._entry_points().get(name)
        if ep is None:
            raise UnknownAction(f"unknown action {name!r}")
        try:
            cls = ep.load()
        except Exception as exc:  # a broken plugin must not look like a missing one
            raise RegistryError(f"action {name!r} failed to load from {ep.value}: {exc}") from exc
        if not (isinstance(cls, type) and issubclass(cls, Action)):
            raise RegistryError(f"entry point {name!r} ({ep.value}) is not an Action subclass")
        if cls.name != name:
            raise RegistryError(f"entry point {name!r} points to an action named {cls.name!r}")
        with self._lock:
            self._loaded[name] = cls
        return cls

    def suggest(self, name: str) -> str | None:
        """A close known name for a typo, or None."""
        import difflib

        match = difflib.get_close_matches(name, self.names(), n=1)
        return match[0] if match else None


_default: Registry | None = None


def default_registry() -> Registry:
    """The process-wide registry backed by installed entry points."""
    global _default
    if _default is None:
        _default = Registry()
    return _default
