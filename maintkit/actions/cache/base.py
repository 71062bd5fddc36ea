"""The interface every ``cache.clear`` target implements, and what a target reports.

A :class:`CacheTarget` is one configured thing to clear (one cache directory, one Redis
database or pattern, OPcache, the application's caches, a CDN zone). Its ``check`` is
read-only and returns an :class:`Item`: what is there and whether it needs clearing, plus
the plan its ``clear`` follows. Failures are :class:`TargetFailed` with a secret-free
message; the action prefixes them with the target's kind.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, TypeVar

from maintkit.action import Context
from maintkit.actions.cache.params import CacheClearParams, TargetName
from maintkit.probes import Probe

PlanT = TypeVar("PlanT")

#: What clearing reports: a one-line summary and the audit data of what was cleared.
Cleared = tuple[str, dict[str, Any]]


class TargetFailed(Exception):
    """A target could not be inspected or cleared (message is secret-free)."""


class CacheTarget(ABC, Generic[PlanT]):
    """One configured cache: its probes, a read-only check, and how to clear it."""

    kind: ClassVar[TargetName]

    @classmethod
    @abstractmethod
    def configured(cls, params: CacheClearParams, ctx: Context) -> list[CacheTarget[Any]]:
        """The targets of this kind that ``params`` configure on this environment."""

    def probes(self, ctx: Context) -> list[Probe[Any]]:
        """Probes the check reads (prefetched with the stage's batch); none by default."""
        return []

    @abstractmethod
    def check(self, ctx: Context) -> Item[PlanT]:
        """Read-only: what is there to clear, and the plan for :meth:`clear`."""

    @abstractmethod
    def clear(self, ctx: Context, item: Item[PlanT]) -> Cleared:
        """Clear what :meth:`check` found."""


@dataclass
class Item(Generic[PlanT]):
    """One thing cache.clear looked at: what is there, and whether it needs clearing."""

    source: CacheTarget[PlanT] = field(repr=False)
    target: str
    needed: bool
    what: str
    plan: PlanT = field(repr=False)
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def kind(self) -> TargetName:
        """The kind of target this item is about."""
        return self.source.kind

    def public(self) -> dict[str, Any]:
        """Secret-free summary for the audit log."""
        return {"target": self.target, "needed": self.needed, **self.data}

    def clear(self, ctx: Context) -> Cleared:
        """Clear it, as its target planned."""
        return self.source.clear(ctx, self)


def plural(n: int, word: str) -> str:
    """``1 file``, ``2 files``."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def human_bytes(n: int) -> str:
    """``512 B``, ``1.5 KiB``, ``3.2 GiB``."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


__all__ = ["CacheTarget", "Cleared", "Item", "PlanT", "TargetFailed", "human_bytes", "plural"]
