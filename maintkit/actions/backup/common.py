"""Shared pieces of the backup actions that are not probes: ids, durations, the backup
directory, selection, pins, manifest bytes and file checksums.

The manifests, listings and the probes that read them are in :mod:`maintkit.probes.backup`
(layout on the host and id format described there).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from maintkit.action import Context
from maintkit.errors import CheckFailed
from maintkit.ids import new_id
from maintkit.probes.backup import ID_RE, Listing, Manifest, facts_script, listing_script, parse_facts, parse_listing
from maintkit.transport.base import Transport

FORMAT = 1
_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def new_backup_id(now: datetime | None = None) -> str:
    """A new id: UTC time (sortable) plus 6 random hex digits (:func:`maintkit.ids.new_id`)."""
    return new_id(now)


def check_id(backup_id: str) -> str:
    """Return ``backup_id`` if it is a well-formed id, else raise ValueError."""
    if not ID_RE.match(backup_id):
        raise ValueError(f"not a backup id: {backup_id!r} (expected YYYYmmddTHHMMSSZ-xxxxxx)")
    return backup_id


def parse_duration(text: str) -> timedelta:
    """``"20h"``, ``"30m"``, ``"1d12h"``, ``"2w"``, ``"90s"`` -> timedelta (ValueError otherwise)."""
    compact = text.replace(" ", "").lower()
    matches = list(_DURATION_RE.finditer(compact))
    if not matches or "".join(m.group(0) for m in matches) != compact:
        raise ValueError(f"invalid duration {text!r} (use e.g. 20h, 30m, 2d, 1d12h)")
    return timedelta(seconds=sum(float(m.group(1)) * _UNITS[m.group(2)] for m in matches))


def format_age(delta: timedelta) -> str:
    """``"3h 12m"``, ``"2d 4h"``, ``"45s"``."""
    secs = int(delta.total_seconds())
    if secs < 0:
        return "in the future"
    days, rest = divmod(secs, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m" if minutes else f"{seconds}s"


def utcnow_iso() -> str:
    """Now, as ISO 8601 UTC with seconds."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def is_protected(ctx: Context) -> bool:
    """Production (by name) or an environment with ``vars.protected: true``."""
    return ctx.env.name == "production" or bool(ctx.vars.get("protected"))


def backup_dir(ctx: Context, param: str | None) -> str:
    """The environment's backup directory: the parameter, ``vars.backup_dir``, or ``<path>/.maint/backups``."""
    chosen = param or ctx.vars.get("backup_dir") or f"{ctx.path.rstrip('/')}/.maint/backups"
    chosen = str(chosen)
    if not chosen.startswith("/"):
        raise CheckFailed(f"backup_dir must be an absolute path, not {chosen!r}")
    return chosen.rstrip("/") or "/"


def pin_file(ctx: Context) -> str:
    """``<path>/.maint/pinned``: backup ids (one a line, ``#`` comments) that prune never deletes."""
    return f"{ctx.path.rstrip('/')}/.maint/pinned"


def list_on(transport: Transport, directory: str, timeout: float = 120.0) -> Listing:
    """List backups through another transport (e.g. an offsite destination)."""
    res = transport.run_shell(listing_script(directory), check=True, timeout=timeout)
    return parse_listing(directory, res.stdout)


def select(listing: Listing, wanted: str) -> Manifest:
    """``latest`` (newest regular backup) or an id; CheckFailed naming what exists otherwise."""
    if wanted == "latest":
        regular = listing.regular()
        if not regular:
            where = listing.directory if listing.exists else f"{listing.directory} (missing)"
            raise CheckFailed(f"no backup in {where}")
        return regular[0]
    found = listing.get(wanted)
    if found is None:
        known = ", ".join(b.id for b in listing.backups[:5]) or "none"
        raise CheckFailed(f"no backup {wanted!r} in {listing.directory} (newest: {known})")
    return found


def ids_in_run(ctx: Context) -> set[str]:
    """Backup ids that earlier steps of this run created, restored or rely on (prune keeps them)."""
    found: set[str] = set()
    for res in ctx.prior:
        for key in ("backup", "safety_backup", "restored", "verified", "copied"):
            value = res.data.get(key)
            if isinstance(value, dict) and isinstance(value.get("id"), str):
                found.add(value["id"])
    return found


def manifest_bytes(data: dict[str, Any]) -> bytes:
    """The manifest file's bytes (indented JSON, newline-terminated)."""
    return (json.dumps(data, indent=2, sort_keys=False) + "\n").encode()


def sha_lines(stdout: str) -> dict[str, str]:
    """Parse ``sha256sum`` output into path -> digest."""
    out: dict[str, str] = {}
    for line in stdout.splitlines():
        digest, _, path = line.partition("  ")
        if path:
            out[path.strip()] = digest.strip().lstrip("\\")
    return out


def timeout_kwargs(timeout: float | None) -> dict[str, Any]:
    """``{"timeout": timeout}`` for a command when a timeout is given, else nothing (the env's)."""
    return {"timeout": timeout} if timeout else {}


def facts_line(path: str) -> str:
    """Shell printing ``<size> <sha256>`` of the file ``path`` (one line; the name is never printed)."""
    return f"{facts_script(path)} || exit 1\n"


def file_facts(ctx: Context, paths: Iterable[str], timeout: float | None = None) -> dict[str, tuple[int, str]]:
    """Size and sha256 of files on the host: path -> (size, sha256)."""
    paths = list(paths)
    if not paths:
        return {}
    kwargs: dict[str, Any] = {"timeout": timeout} if timeout else {}
    # one "size digest" line per path, in order: names never appear in the output, so a
    # newline or backslash in a path cannot confuse the parsing
    script = "".join(facts_line(p) for p in paths)
    return parse_facts(paths, ctx.run_shell(script, **kwargs).stdout)
