"""Maintenance markers: the files (or ``artisan down``) that put a site into maintenance mode.

A marker "is on" while its file exists. This module owns the parameters both maintenance
actions share, which markers they manage on an environment, switching one marker on or off,
and the nginx snippet for the generic flag file.
"""

from __future__ import annotations

import json
import posixpath
import time
from dataclasses import dataclass
from typing import Literal

from pydantic import Field, field_validator

from maintkit import locks
from maintkit._text import tail
from maintkit.action import Context, Params
from maintkit.actions.maintenance.platforms import APP_MARKERS, PlatformChoice, bases, detect_app, layout_probe
from maintkit.errors import ApplyFailed, CheckFailed
from maintkit.probes.maintenance import ExistingPaths

MarkerKind = Literal["flag", "wordpress", "magento", "laravel"]

WP_MAINTENANCE = b"<?php $upgrading = time(); ?>\n"
DEFAULT_FLAG = ".maint/maintenance.flag"


@dataclass(frozen=True)
class Marker:
    """One way a site is in maintenance: present while ``path`` exists."""

    kind: MarkerKind
    path: str
    root: str = ""

    @property
    def label(self) -> str:
        """Short name for messages."""
        return {"flag": "flag file", "wordpress": "WordPress .maintenance", "magento": "Magento flag"}.get(
            self.kind, "Laravel down"
        )


class MaintenanceParams(Params):
    """Parameters both maintenance actions share."""

    platform: PlatformChoice = Field(
        "auto", description="Application mechanism: auto (from the environment), wordpress, magento, laravel, generic"
    )
    root: str | None = Field(None, description="Application root (default: <path>/current if it exists, else <path>)")
    flag: bool | str = Field(
        True,
        description="Generic flag file for the nginx snippet: true (<path>/.maint/maintenance.flag), a path, or false",
    )
    php: str = Field("php", description="PHP CLI binary (Laravel's artisan)")
    sudo: bool | None = Field(None, description="Run commands through sudo (default: the environment's `become`)")

    @field_validator("root")
    @classmethod
    def _abs_root(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith("/"):
            raise ValueError("root must be an absolute path")
        return v

    @field_validator("flag")
    @classmethod
    def _abs_flag(cls, v: bool | str) -> bool | str:
        if isinstance(v, str) and (not v.startswith("/") or v.endswith("/")):
            raise ValueError("flag must be true, false or an absolute file path")
        return v


def flag_path(ctx: Context, flag: bool | str) -> str | None:
    """The generic flag file of an environment (None when disabled)."""
    if flag is False:
        return None
    if isinstance(flag, str):
        return flag
    return f"{ctx.path.rstrip('/')}/{DEFAULT_FLAG}"


def site_probe(ctx: Context, p: MaintenanceParams) -> ExistingPaths:
    """One probe answering both where the application is and which markers exist.

    It lists every path a marker could have (for each candidate application root), so the
    runner can prefetch it without knowing the answer in advance.
    """
    paths = list(layout_probe(ctx, p.root).paths)
    for base in bases(ctx, p.root):
        paths += [posixpath.dirname(f"{base}/{m}") + "/.maintenance" for m in APP_MARKERS["wordpress"]]
        paths += [f"{base}/var/.maintenance.flag", f"{base}/storage/framework/down"]
    flag = flag_path(ctx, p.flag)
    if flag:
        paths.append(flag)
    return ExistingPaths(tuple(dict.fromkeys(paths)))


def markers_for(ctx: Context, p: MaintenanceParams, found: frozenset[str] | None = None) -> list[Marker]:
    """The markers these parameters manage on this environment."""
    out: list[Marker] = []
    app = detect_app(ctx, p.platform, p.root, found)
    if app.kind == "wordpress":
        out.append(Marker("wordpress", f"{app.root}/.maintenance"))
    elif app.kind == "magento":
        out.append(Marker("magento", f"{app.root}/var/.maintenance.flag"))
    elif app.kind == "laravel":
        out.append(Marker("laravel", f"{app.root}/storage/framework/down", app.root))
    flag = flag_path(ctx, p.flag)
    if flag:
        out.append(Marker("flag", flag))
    if not out:
        raise CheckFailed("nothing to switch: a generic site needs the flag file (flag: true or a path)")
    return out


def marker_state(ctx: Context, p: MaintenanceParams) -> tuple[list[Marker], list[Marker]]:
    """The markers split into (on, off). Read-only: one cached probe."""
    found = ctx.probe(site_probe(ctx, p))
    markers = markers_for(ctx, p, found)
    return [m for m in markers if m.path in found], [m for m in markers if m.path not in found]


def _flag_text(ctx: Context, retry_after: int) -> bytes:
    info = {**locks.owner_record(ctx.run_id, retry_after=retry_after), "since": int(time.time())}
    return (json.dumps(info) + "\n").encode()


def switch_on(
    ctx: Context, marker: Marker, p: MaintenanceParams, retry_after: int, content: bytes | None = None
) -> None:
    """Switch one marker on (write the file, or ``artisan down``)."""
    if marker.kind == "laravel":
        res = ctx.run([p.php, "artisan", "down", f"--retry={retry_after}"], cwd=marker.root, sudo=p.sudo, check=False)
        if not res.ok:
            raise ApplyFailed(f"php artisan down failed ({res.why}): {tail(res.stderr or res.stdout, 300)}")
        return
    if content is None:
        content = {"wordpress": WP_MAINTENANCE, "magento": b""}.get(marker.kind) or _flag_text(ctx, retry_after)
    if marker.kind == "flag":
        parent = marker.path.rsplit("/", 1)[0] or "/"
        ctx.run(["mkdir", "-p", "--", parent], sudo=p.sudo)
    ctx.put(content, marker.path, mode=0o644)


def switch_off(ctx: Context, marker: Marker, p: MaintenanceParams) -> bytes | None:
    """Switch one marker off; return the file's previous content (for re-enabling). Idempotent.

    Laravel uses ``artisan up`` and falls back to removing the state file when the
    application cannot boot (a rollback must work on a broken release).
    """
    if marker.kind == "laravel":
        if not ctx.run(["test", "-e", marker.path], sudo=p.sudo, check=False).ok:
            return None  # already up
        res = ctx.run([p.php, "artisan", "up"], cwd=marker.root, sudo=p.sudo, check=False)
        if res.ok:
            return None
    old = ctx.run(["cat", "--", marker.path], sudo=p.sudo, check=False)
    rm = [marker.path]
    if marker.kind == "laravel":
        rm.append(f"{marker.root}/storage/framework/maintenance.php")
    res = ctx.run(["rm", "-f", "--", *rm], sudo=p.sudo, check=False)
    if not res.ok:
        raise ApplyFailed(f"cannot remove {marker.path}: {tail(res.stderr, 300)}")
    return old.stdout.encode() if old.ok else None


def maintenance_snippet(flag: str, retry_after: int = 300) -> str:
    """The nginx snippet answering 503 with Retry-After while ``flag`` exists (also in docs/actions-site.md)."""
    if not flag.startswith("/") or any(c in flag for c in " \t\n;{}\"'$\\"):
        raise ValueError(f"flag path must be an absolute path without spaces or nginx syntax: {flag!r}")
    return (
        "# Maintenance mode: answer 503 while the flag file exists.\n"
        f"if (-f {flag}) {{\n"
        "    return 503;\n"
        "}\n"
        "error_page 503 @maintenance;\n"
        "location @maintenance {\n"
        f"    add_header Retry-After {int(retry_after)} always;\n"
        "    default_type text/plain;\n"
        '    return 503 "Down for maintenance, back soon.\\n";\n'
        "}\n"
    )


__all__ = [
    "DEFAULT_FLAG",
    "WP_MAINTENANCE",
    "MaintenanceParams",
    "Marker",
    "MarkerKind",
    "flag_path",
    "maintenance_snippet",
    "marker_state",
    "markers_for",
    "site_probe",
    "switch_off",
    "switch_on",
]
