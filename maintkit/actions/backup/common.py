"""Shared pieces of the backup actions: ids, durations, manifests, listing, selection, pins.

Layout on the host (``backup_dir``, default ``<path>/.maint/backups``; directories 0700,
files 0600)::

    <backup_dir>/<id>/manifest.json
    <backup_dir>/<id>/db-<name>.sql.gz       (MariaDB/MySQL)   db-<name>.pgdump (PostgreSQL)
    <backup_dir>/<id>/files.tar.zst          (or files.tar.gz)
    <backup_dir>/<id>.partial/               (a backup being written; renamed when complete)

An id is ``YYYYmmddTHHMMSSZ-xxxxxx`` (UTC time + 6 random hex digits), so ids sort by time.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from maintkit.action import Context
from maintkit.errors import CheckFailed
from maintkit.probes import Probe, RawOutput
from maintkit.transport.base import Transport, quote

ID_RE = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{6}$")
MANIFEST = "manifest.json"
FORMAT = 1
_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_MARK = "@@maint-manifest "


def new_backup_id(now: datetime | None = None) -> str:
    """A new id: UTC time (sortable) plus 6 random hex digits."""
    now = now or datetime.now(UTC)
    return f"{now.strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(3)}"


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


def parse_time(text: str) -> datetime:
    """Parse an ISO 8601 time (``Z`` or offset); naive times are UTC."""
    dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


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


# ---------------------------------------------------------------------------------------------
# manifests


@dataclass(frozen=True)
class Manifest:
    """One backup's manifest, as read from ``<backup_dir>/<id>/manifest.json``."""

    id: str
    data: dict[str, Any]
    directory: str

    @property
    def created(self) -> datetime:
        """When the backup was started (from the manifest; falls back to the id's time)."""
        text = self.data.get("created")
        if isinstance(text, str):
            try:
                return parse_time(text)
            except ValueError:
                pass
        return datetime.strptime(self.id.split("-")[0], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)

    @property
    def kind(self) -> str:
        """``backup`` (regular) or ``safety`` (taken by restore before it overwrote anything)."""
        return str(self.data.get("kind", "backup"))

    @property
    def verified(self) -> bool:
        """True once backup.verify marked it."""
        return bool(self.data.get("verified_at"))

    @property
    def items(self) -> list[dict[str, Any]]:
        """The items (databases, file archives)."""
        items = self.data.get("items", [])
        return [i for i in items if isinstance(i, dict)] if isinstance(items, list) else []

    @property
    def size(self) -> int:
        """Total bytes of its items."""
        return sum(int(i.get("size", 0)) for i in self.items)

    def db_items(self) -> list[dict[str, Any]]:
        """The database items."""
        return [i for i in self.items if i.get("type") == "database"]

    def file_items(self) -> list[dict[str, Any]]:
        """The file archive items."""
        return [i for i in self.items if i.get("type") == "files"]

    def path(self, name: str) -> str:
        """Absolute path of a file of this backup."""
        if "/" in name or name in ("", ".", ".."):
            raise CheckFailed(f"backup {self.id}: invalid file name {name!r} in the manifest")
        return f"{self.directory}/{name}"

    def describe(self) -> str:
        """``db shop, files`` for messages."""
        parts = [f"db {i.get('name')}" for i in self.db_items()] + ["files" for _ in self.file_items()]
        return ", ".join(parts) or "nothing"

    def summary(self) -> dict[str, Any]:
        """Small JSON-ready summary for the audit log and reports."""
        return {
            "id": self.id,
            "created": self.data.get("created"),
            "kind": self.kind,
            "size": self.size,
            "verified_at": self.data.get("verified_at"),
            "items": [item_summary(i) for i in self.items],
        }


def item_summary(item: dict[str, Any]) -> dict[str, Any]:
    """The audit-safe part of one item (no table lists)."""
    keys = ("type", "name", "engine", "file", "size", "sha256", "entries")
    return {k: item[k] for k in keys if k in item}


@dataclass(frozen=True)
class Listing:
    """Every complete backup in a directory (newest first) and the manifests that could not be read."""

    directory: str
    exists: bool
    backups: tuple[Manifest, ...]
    broken: tuple[str, ...] = ()

    def regular(self) -> list[Manifest]:
        """Backups that are not safety backups, newest first."""
        return [b for b in self.backups if b.kind != "safety"]

    def get(self, backup_id: str) -> Manifest | None:
        """The backup with this id."""
        return next((b for b in self.backups if b.id == backup_id), None)


def listing_script(directory: str) -> str:
    """Shell snippet printing every ``<dir>/<id>/manifest.json`` with a marker line before each."""
    d = quote(directory)
    return (
        f"if [ ! -d {d} ]; then echo @@maint-nodir; exit 0; fi\n"
        f'for m in {d}/*/{MANIFEST}; do [ -f "$m" ] || continue; b=${{m%/*}}; '
        f'printf \'\\n{_MARK}%s\\n\' "${{b##*/}}"; cat -- "$m"; done'
    )


def parse_listing(directory: str, stdout: str) -> Listing:
    """Parse the output of :func:`listing_script`."""
    if stdout.strip() == "@@maint-nodir":
        return Listing(directory, False, ())
    found: list[Manifest] = []
    broken: list[str] = []
    for chunk in stdout.split("\n" + _MARK)[1:]:
        bid, _, body = chunk.partition("\n")  # the backup directory's name only (never the path)
        if not ID_RE.match(bid):
            continue
        try:
            data = json.loads(body)
            if not isinstance(data, dict):
                raise ValueError("not an object")
        except ValueError:
            broken.append(bid)
            continue
        found.append(Manifest(bid, data, f"{directory}/{bid}"))
    found.sort(key=lambda m: (m.created, m.id), reverse=True)
    return Listing(directory, True, tuple(found), tuple(broken))


@dataclass(frozen=True)
class BackupListing(Probe[Listing]):
    """Read-only: every backup manifest in a backup directory."""

    directory: str
    kind: ClassVar[str] = "backups"

    def script(self) -> str:
        return listing_script(self.directory)

    def parse(self, raw: RawOutput) -> Listing:
        return parse_listing(self.directory, raw.stdout)


def list_on(transport: Transport, directory: str, timeout: float = 120.0) -> Listing:
    """List backups through another transport (e.g. an offsite destination)."""
    res = transport.run_shell(listing_script(directory), check=True, timeout=timeout)
    return parse_listing(directory, res.stdout)


@dataclass(frozen=True)
class PinnedIds(Probe[frozenset[str]]):
    """Read-only: the ids listed in a pin file (missing file: none)."""

    path: str
    kind: ClassVar[str] = "pins"

    def script(self) -> str:
        return f"cat -- {quote(self.path)} 2>/dev/null || true"

    def parse(self, raw: RawOutput) -> frozenset[str]:
        ids = set()
        for line in raw.stdout.splitlines():
            word = line.split("#", 1)[0].strip()
            if ID_RE.match(word):
                ids.add(word)
        return frozenset(ids)


@dataclass(frozen=True)
class Tools(Probe[frozenset[str]]):
    """Read-only: which of these commands exist on the host."""

    names: tuple[str, ...]
    kind: ClassVar[str] = "tools"

    def script(self) -> str:
        return "; ".join(f"command -v {quote(n)} >/dev/null 2>&1 && echo {quote(n)}" for n in self.names) + "; true"

    def parse(self, raw: RawOutput) -> frozenset[str]:
        return frozenset(line.strip() for line in raw.stdout.splitlines() if line.strip() in self.names)


def select(listing: Listing, wanted: str, *, action: str) -> Manifest:
    """``latest`` (newest regular backup) or an id; CheckFailed naming what exists otherwise."""
    if wanted == "latest":
        regular = listing.regular()
        if not regular:
            where = listing.directory if listing.exists else f"{listing.directory} (missing)"
            raise CheckFailed(f"no backup in {where}", action=action)
        return regular[0]
    found = listing.get(wanted)
    if found is None:
        known = ", ".join(b.id for b in listing.backups[:5]) or "none"
        raise CheckFailed(f"no backup {wanted!r} in {listing.directory} (newest: {known})", action=action)
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


def file_facts(ctx: Context, paths: Iterable[str], timeout: float | None = None) -> dict[str, tuple[int, str]]:
    """Size and sha256 of files on the host: path -> (size, sha256)."""
    paths = list(paths)
    if not paths:
        return {}
    kwargs: dict[str, Any] = {"timeout": timeout} if timeout else {}
    # one "size digest" line per path, in order: names never appear in the output, so a
    # newline or backslash in a path cannot confuse the parsing
    script = "".join(
        f"printf '%s %s\\n' \"$(stat -c %s -- {quote(p)})\" \"$(sha256sum < {quote(p)} | cut -d ' ' -f 1)\" || exit 1\n"
        for p in paths
    )
    lines = ctx.run_shell(script, **kwargs).stdout.splitlines()
    out: dict[str, tuple[int, str]] = {}
    for path, line in zip(paths, lines, strict=False):
        size, _, digest = line.partition(" ")
        if size.isdigit() and len(digest) == 64:
            out[path] = (int(size), digest)
    return out
