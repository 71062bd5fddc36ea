"""OPcache: reset through the pool's FastCGI socket, or by reloading php-fpm (systemd, a
command, a signal to its master, or SysV).

``method: fastcgi`` (the default when ``fastcgi:`` names the pool's socket) is in
:mod:`maintkit.actions.cache.opcache_fcgi`; ``method: reload`` stays the explicit fallback.
OPcache cannot be inspected read-only, so when it is a target the step always runs.
"""

from __future__ import annotations

from typing import Any

from maintkit.action import Context
from maintkit.actions.cache.base import CacheTarget, Cleared, Item, TargetFailed
from maintkit.actions.cache.opcache_fcgi import OpcacheFastcgi
from maintkit.actions.cache.params import CacheClearParams, OpcacheTarget
from maintkit.actions.service import Operation, ServiceSpec, plan_operation, run_operation
from maintkit.probes import Probe
from maintkit.probes.service import InitSystem


def opcache_spec(block: OpcacheTarget, ctx: Context) -> ServiceSpec:
    """The php-fpm service the block names (default: ``vars.php_fpm_service``)."""
    service = block.service
    if service is None and not block.command and not block.pidfile:
        var = ctx.vars.get("php_fpm_service")
        service = str(var) if var else None
    return ServiceSpec(
        name=service,
        manager=block.manager,
        command=tuple(block.command) if block.command else None,
        signal=block.signal if block.pidfile else None,
        pidfile=block.pidfile,
        sudo=block.sudo,
    )


class OpcacheCache(CacheTarget[Operation]):
    """OPcache of php-fpm: check plans the reload, clear runs it."""

    kind = "opcache"

    def __init__(self, spec: ServiceSpec) -> None:
        self.spec = spec

    @classmethod
    def configured(cls, params: CacheClearParams, ctx: Context) -> list[CacheTarget[Any]]:
        """The one php-fpm pool (``method: fastcgi``) or service (``method: reload``) of the environment."""
        if params.opcache.resolved_method == "fastcgi":
            return OpcacheFastcgi.configured(params, ctx)
        return [cls(opcache_spec(params.opcache, ctx))]

    def probes(self, ctx: Context) -> list[Probe[Any]]:
        """Which service managers the host offers (when a service name is known)."""
        return [InitSystem(self.spec.name)] if self.spec.name else []

    def check(self, ctx: Context) -> Item[Operation]:
        """Plan the reload (always needed: OPcache cannot be inspected)."""
        spec = self.spec
        if not (spec.name or spec.command or spec.pidfile):
            raise TargetFailed("set opcache.service (or vars.php_fpm_service), opcache.command or opcache.pidfile")
        op = plan_operation(ctx, spec, "reload")
        what = f"OPcache: will reload {spec.label} ({op.label})"
        return Item(self, f"opcache ({spec.label})", True, what, op)

    def clear(self, ctx: Context, item: Item[Operation]) -> Cleared:
        """Reload php-fpm as planned."""
        run_operation(ctx, self.spec, item.plan)
        return f"reloaded ({item.plan.label})", {"via": item.plan.label}


__all__ = ["OpcacheCache", "opcache_spec"]
