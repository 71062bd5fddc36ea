"""Where a site's application is and what it is: WordPress, Magento, Laravel or generic.

Read-only, from one cached :class:`~maintkit.probes.maintenance.ExistingPaths` probe
(:func:`layout_probe`); shared by the maintenance actions and ``cache.clear``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from maintkit.action import Context
from maintkit.errors import CheckFailed
from maintkit.probes.maintenance import ExistingPaths

AppKind = Literal["wordpress", "magento", "laravel", "generic"]
PlatformChoice = Literal["auto", "wordpress", "magento", "laravel", "generic"]

#: Files that identify an application under its root (WordPress: the first one found is ABSPATH).
APP_MARKERS: dict[str, tuple[str, ...]] = {
    "magento": ("bin/magento",),
    "laravel": ("artisan",),
    "wordpress": ("wp-load.php", "web/wp/wp-load.php", "wp/wp-load.php", "public/wp-load.php"),
}
_PLATFORM_OF_ENV: dict[str, AppKind] = {
    "wordpress": "wordpress",
    "bedrock": "wordpress",
    "magento": "magento",
    "laravel": "laravel",
}


@dataclass(frozen=True)
class App:
    """The application of a site environment: its kind and root (ABSPATH for WordPress)."""

    kind: AppKind
    root: str
    base: str


def bases(ctx: Context, root: str | None) -> list[str]:
    """The candidate application directories, in order: ``root``, else ``<path>/current`` and ``<path>``."""
    if root:
        return [root.rstrip("/") or "/"]
    path = ctx.path.rstrip("/")
    return [f"{path}/current", path]


def layout_probe(ctx: Context, root: str | None) -> ExistingPaths:
    """The probe :func:`detect_app` needs (so actions can prefetch it)."""
    paths: list[str] = []
    for base in bases(ctx, root):
        paths.append(base)
        paths += [f"{base}/{m}" for markers in APP_MARKERS.values() for m in markers]
    return ExistingPaths(tuple(paths))


def detect_app(
    ctx: Context, platform: PlatformChoice = "auto", root: str | None = None, found: frozenset[str] | None = None
) -> App:
    """Find the application (read-only, from a cached probe, or from ``found``: existing paths
    answered by a probe that includes :func:`layout_probe`'s paths).

    Raises CheckFailed when the platform is known (or forced) but its files are not there.
    """
    if found is None:
        found = ctx.probe(layout_probe(ctx, root))
    candidates = bases(ctx, root)
    base = next((b for b in candidates if b in found), None)
    if base is None:
        raise CheckFailed(f"site directory {candidates[0]} does not exist")
    kind: AppKind
    if platform != "auto":
        kind = platform
    else:
        kind = _PLATFORM_OF_ENV.get(ctx.env.platform or "generic") or _sniff(base, found)
    if kind == "generic":
        return App("generic", base, base)
    for marker in APP_MARKERS[kind]:
        if f"{base}/{marker}" in found:
            root_dir = f"{base}/{marker}".rsplit("/", 1)[0] if kind == "wordpress" else base
            return App(kind, root_dir, base)
    wanted = " or ".join(APP_MARKERS[kind])
    raise CheckFailed(f"{kind} site expected but no {wanted} under {base} (set `root`)")


def _sniff(base: str, found: frozenset[str]) -> AppKind:
    for kind in ("magento", "laravel", "wordpress"):
        if any(f"{base}/{m}" in found for m in APP_MARKERS[kind]):
            return kind
    return "generic"


__all__ = ["APP_MARKERS", "App", "AppKind", "PlatformChoice", "bases", "detect_app", "layout_probe"]
