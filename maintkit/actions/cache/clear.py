"""The ``cache.clear`` action: every configured target checked, then cleared, in the order given."""

from __future__ import annotations

from typing import Any

from maintkit.action import Action, Context
from maintkit.actions.cache.base import CacheTarget, Item, TargetFailed
from maintkit.actions.cache.cdn import CdnCache
from maintkit.actions.cache.directory import DirectoryCache
from maintkit.actions.cache.opcache import OpcacheCache
from maintkit.actions.cache.params import CacheClearParams, TargetName
from maintkit.actions.cache.platform import PlatformCache
from maintkit.actions.cache.redis import RedisCache
from maintkit.errors import ApplyFailed, CheckFailed
from maintkit.probes import Probe
from maintkit.results import Change, Check

#: The implementation of each target name.
TARGET_TYPES: dict[TargetName, type[CacheTarget[Any]]] = {
    t.kind: t for t in (DirectoryCache, RedisCache, OpcacheCache, PlatformCache, CdnCache)
}


class CacheClear(Action[CacheClearParams]):
    """Clear caches: nginx cache directories, Redis, OPcache (php-fpm reload), platform caches, CDN."""

    name = "cache.clear"
    Params = CacheClearParams
    summary = "Clear caches: nginx cache dirs, Redis, OPcache, WordPress/Magento/Laravel, Cloudflare."
    #: Clearing a cache is harmless and cannot be undone: rollback succeeds doing nothing, so a
    #: cache clear never blocks rolling back the steps before it.
    rollback_kind = "noop"
    rollback_reason = "a cleared cache refills itself"

    def targets(self, ctx: Context, kind: TargetName) -> list[CacheTarget[Any]]:
        """The configured targets of one kind."""
        return TARGET_TYPES[kind].configured(self.params, ctx)

    def probes(self, ctx: Context) -> list[Probe[Any]]:
        return [p for kind in self.params.targets for t in self.targets(ctx, kind) for p in t.probes(ctx)]

    def expects_change(self, ctx: Context) -> str | None:
        """An OPcache reset always runs (OPcache cannot be inspected from outside the pool)."""
        return "an OPcache reset always runs" if "opcache" in self.params.targets else None

    def check(self, ctx: Context) -> Check:
        items: list[Item[Any]] = []
        for kind in self.params.targets:
            try:
                items += [t.check(ctx) for t in self.targets(ctx, kind)]
            except (TargetFailed, CheckFailed) as exc:
                message = exc.message if isinstance(exc, CheckFailed) else str(exc)
                raise CheckFailed(f"{kind}: {message}") from None
        found = [i.public() for i in items]
        reason = "; ".join(i.what for i in items)
        if any(i.needed for i in items):
            return Check.change(reason, snapshot=items, found=found)
        return Check.ok(reason, found=found)

    def apply(self, ctx: Context, check: Check) -> list[Change]:
        changes: list[Change] = []
        cleared: list[dict[str, Any]] = []
        items: list[Item[Any]] = check.snapshot
        for item in items:
            if not item.needed:
                continue
            try:
                summary, data = item.clear(ctx)
            except (TargetFailed, ApplyFailed) as exc:
                message = exc.message if isinstance(exc, ApplyFailed) else str(exc)
                ctx.record(cleared=cleared)
                # what the targets recorded (e.g. a script they created and removed) survives the failure
                raise ApplyFailed(f"{item.kind}: {message}", details={**ctx.data, "cleared": cleared}) from None
            cleared.append({"target": item.target, **data})
            changes.append(Change(item.target, summary, before=item.data or None))
        ctx.record(cleared=cleared)
        return changes

    def verify(self, ctx: Context) -> None:
        """Nothing to re-check: a live site refills its caches at once, so a fresh count would race
        with traffic. Each clearing command's own result was checked in apply()."""

    def rollback(self, ctx: Context, changes: list[Change]) -> None:
        """Nothing to undo (a cleared cache refills itself); succeeds so earlier steps can roll back."""


__all__ = ["TARGET_TYPES", "CacheClear"]
