"""Isolating bad packages: which of several updates made a later check fail, and holding them back.

When a stage updated several packages and a later check failed, the runner
(:mod:`maintkit.runner.isolate`) retries the stage with subsets of the updates that
:class:`Isolation` chooses (``bisect``: halves; ``one-by-one``: each alone), on top of the
ones already kept. A subset that passes is kept; a package that fails alone is held back
with the failing check's message. This module holds the search, the subset restriction of a
plan, and the holds: written into the version lock (``held``) and the state index, and
skipped by later runs until a newer version appears (``retry_held: true`` tries them again).

Pure logic and small reads; nothing here touches a host.
"""

from __future__ import annotations

import math
from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from maintkit.action import Context
from maintkit.actions.cms.lock import HeldPackage, VersionLock
from maintkit.actions.cms.plan import Skipped, Update, UpdatePlan
from maintkit.state import index

Mode = Literal["bisect", "one-by-one", "none"]
#: what the search asks for next (a subset of keys), and what it is told back: (passed, why it failed)
Search = Generator[list[str], tuple[bool, str], None]


def max_attempts(mode: str, n: int) -> int:
    """The most retries isolation may make for ``n`` packages: ``2*log2(n)+2`` (bisect), ``n`` (one-by-one)."""
    if n < 2 or mode == "none":
        return 0
    if mode == "one-by-one":
        return n
    return 2 * math.ceil(math.log2(n)) + 2


@dataclass
class Isolation:
    """The search for the bad packages among ``keys`` (which failed together, with ``reason``).

    Drive it with :meth:`next_subset` and :meth:`tell`; it keeps what passed (``kept``, in
    order) and holds what failed alone (``held``: key -> reason). At most ``limit`` subsets
    are asked for; whatever is undecided then is held too (:meth:`finish`).
    """

    keys: list[str]
    reason: str
    mode: str = "bisect"
    limit: int = 0
    kept: list[str] = field(default_factory=list)
    held: dict[str, str] = field(default_factory=dict)
    attempts: int = 0
    _search: Search | None = field(default=None, repr=False)
    _pending: list[str] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not self.limit:
            self.limit = max_attempts(self.mode, len(self.keys))

    def next_subset(self) -> list[str] | None:
        """The subset to try now on top of :attr:`kept`, or None when the search is over."""
        if self._search is None:
            if self.limit <= 0:
                return None
            self._search = self._one_by_one() if self.mode == "one-by-one" else self._bisect(self.keys, self.reason)
            try:
                self._pending = next(self._search)
            except StopIteration:
                self._pending = None
        return self._pending

    def tell(self, passed: bool, reason: str = "") -> list[str] | None:
        """The outcome of the subset being tried; returns the next subset (None: the search is over)."""
        tried = self._pending
        if self._search is None or tried is None:
            raise ValueError("no subset is being tried")
        self.attempts += 1
        if self.attempts >= self.limit:  # the last attempt: decide what it alone can tell
            if passed:
                self.kept.extend(tried)
            elif len(tried) == 1:
                self.held[tried[0]] = reason
            self._pending = None
            return None
        try:
            self._pending = self._search.send((passed, reason))
        except StopIteration:
            self._pending = None
        return self._pending

    def finish(self) -> dict[str, str]:
        """Hold everything still undecided (the attempts ran out); returns :attr:`held`."""
        for key in self.keys:
            if key not in self.kept and key not in self.held:
                self.held[key] = f"not isolated within {self.limit} attempts ({self.reason})"
        return self.held

    def _bisect(self, group: list[str], reason: str) -> Search:
        """``group`` fails on top of :attr:`kept`: halve it until each bad package is alone."""
        if len(group) == 1:
            self.held[group[0]] = reason
            return
        middle = len(group) // 2
        left, right = group[:middle], group[middle:]
        passed, why = yield left
        if passed:
            self.kept.extend(left)
            yield from self._bisect(right, reason)  # left + right failed together: right fails on top of left
            return
        yield from self._bisect(left, why)
        passed, why = yield right
        if passed:
            self.kept.extend(right)
        else:
            yield from self._bisect(right, why)

    def _one_by_one(self) -> Search:
        """Each package alone, on top of the ones kept so far."""
        for key in self.keys:
            passed, why = yield [key]
            if passed:
                self.kept.append(key)
            else:
                self.held[key] = why


# ----------------------------------------------------------------------------- plans
def update_key(update: Mapping[str, Any]) -> str:
    """``type:name`` of one update as recorded in step data (``Update.public()``)."""
    return f"{update.get('type')}:{update.get('name')}"


def restrict(plan: UpdatePlan[Any], subset: Mapping[str, str]) -> UpdatePlan[Any]:
    """Only the updates of ``subset`` (``type:name`` -> target version) stay in ``plan``."""
    plan.updates = [u for u in plan.updates if subset.get(u.package.key) == u.to]
    return plan


def previous_holds(ctx: Context) -> dict[str, HeldPackage]:
    """The holds of the latest version lock this environment recorded in the state index."""
    records = index.version_locks(ctx.options.history, ctx.site.name, ctx.env.name)
    raw = records[-1].get("held") if records else None
    if not isinstance(raw, dict):
        return {}
    out: dict[str, HeldPackage] = {}
    for key, value in raw.items():
        if isinstance(value, dict):
            try:
                out[str(key)] = HeldPackage.model_validate(value)
            except ValueError:
                continue
    return out


def skip_held(ctx: Context, plan: UpdatePlan[Any], retry: bool = False) -> dict[str, HeldPackage]:
    """Move the candidates an earlier run held back (same version) from the updates to the skipped ones.

    Returns the holds that still apply (they are carried into this run's lock). A newer
    version than the held one is a new candidate; ``retry`` tries the held ones again.
    """
    if retry or ctx.stage_promote:
        return {}
    holds = previous_holds(ctx)
    carried: dict[str, HeldPackage] = {}
    keep: list[Update] = []
    for u in plan.updates:
        held = holds.get(u.package.key)
        if held is None or held.version != u.to:
            keep.append(u)
            continue
        carried[u.package.key] = held
        since = f" since run {held.run_id}" if held.run_id else ""
        plan.skipped.append(Skipped(u.name, u.kind, u.package.version, u.to, f"held back{since}: {held.reason}"))
    plan.updates = keep
    return carried


def carried_holds(ctx: Context, plan: UpdatePlan[Any]) -> dict[str, HeldPackage]:
    """The earlier holds :func:`skip_held` applied to ``plan`` (they go on into this run's lock)."""
    skipped = {(f"{s.kind}:{s.name}", s.candidate) for s in plan.skipped if s.reason.startswith("held back")}
    return {key: held for key, held in previous_holds(ctx).items() if (key, held.version) in skipped}


def held_entry(update: Mapping[str, Any], reason: str, run_id: str) -> HeldPackage:
    """The hold of one recorded update (``Update.public()``), with why."""
    return HeldPackage.model_validate(
        {
            "name": str(update.get("name")),
            "type": str(update.get("type")),
            "version": str(update.get("to") or ""),
            "from": update.get("from"),
            "reason": reason,
            "run_id": run_id,
        }
    )


def held_line(held: HeldPackage) -> str:
    """``shop-cart 1.2.0 (the cart answered HTTP 500)``."""
    return f"{held.name} {held.version} ({held.reason})" if held.reason else f"{held.name} {held.version}"


def final_lock(
    base: VersionLock, kept: Sequence[Mapping[str, Any]], held: Mapping[str, HeldPackage], status: str
) -> VersionLock:
    """The stage's lock after isolation: ``base`` (the last lock a passing attempt wrote, or the
    first attempt's), the kept updates marked updated (from their original version), the holds added."""
    packages = dict(base.packages)
    for u in kept:
        entry = packages.get(update_key(u))
        if entry is not None:
            packages[update_key(u)] = entry.model_copy(update={"updated": True, "from_": u.get("from")})
    return base.model_copy(update={"packages": packages, "held": {**base.held, **held}, "status": status})


__all__ = [
    "Isolation",
    "Mode",
    "carried_holds",
    "final_lock",
    "held_entry",
    "held_line",
    "max_attempts",
    "previous_holds",
    "restrict",
    "skip_held",
    "update_key",
]
