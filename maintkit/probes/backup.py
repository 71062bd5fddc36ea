"""Backup facts: the manifests in a backup directory (:class:`Listing` of :class:`Manifest`),
the size and sha256 of a backup's files, pinned backup ids, and which tools a host has; with
the probes that read them.

Layout on the host (``backup_dir``, default ``<path>/.maint/backups``; directories 0700,
files 0600)::

    <backup_dir>/<id>/manifest.json
    <backup_dir>/<id>/db-<name>.sql.zst      (MariaDB/MySQL; or .sql.gz)   db-<name>.pgdump (PostgreSQL)
    <backup_dir>/<id>/files.tar.zst          (or files.tar.gz)
    <backup_dir>/<id>.partial/               (a backup being written; renamed when complete)

An id is ``YYYYmmddTHHMMSSZ-xxxxxx`` (UTC time + 6 random hex digits, :func:`maintkit.ids.new_id`),
so ids sort by time.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar

from maintkit.errors import CheckFailed
from maintkit.ids import id_time
from maintkit.probes import Probe, RawOutput
from maintkit.transport.base import quote

ID_RE = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{6}$")
MANIFEST = "manifest.json"
_MARK = "@@maint-manifest "
_HEX = "0123456789abcdef"


def parse_time(text: str) -> datetime:
    """Parse an ISO 8601 time (``Z`` or offset); naive times are UTC."""
    dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


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
        started = id_time(self.id)
        if started is None:
            raise ValueError(f"not a backup id: {self.id!r}")
        return started

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
        f"if [ ! -d {d} ]; then echo @@maint-nodir; else\n"
        f'for m in {d}/*/{MANIFEST}; do [ -f "$m" ] || continue; b=${{m%/*}}; '
        # only names that can be backup ids are printed: no name can forge a marker line
        'case "${b##*/}" in *[!0-9A-Za-z._-]*) continue;; esac; '
        f'printf \'\\n{_MARK}%s\\n\' "${{b##*/}}"; cat -- "$m"; done; fi'
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

    def inline(self) -> bool:
        return True

    def script(self) -> str:
        return listing_script(self.directory)

    def parse(self, raw: RawOutput) -> Listing:
        return parse_listing(self.directory, raw.stdout)


def facts_script(path: str) -> str:
    """Shell printing ONE line ``<size> <sha256>`` for the file ``path``, never its name (a file
    that cannot be read prints a line without them)."""
    q = quote(path)
    return f"printf '%s %s\\n' \"$(stat -c %s -- {q})\" \"$(sha256sum < {q} | cut -d ' ' -f 1)\""


def parse_facts(paths: Sequence[str], stdout: str) -> dict[str, tuple[int, str]]:
    """What :func:`facts_script` printed for each of ``paths`` in turn: path -> (size, sha256).

    Lines are taken by position (no name is ever printed, so no name can shift them); a path
    whose line is missing or holds no size and digest is left out.
    """
    out: dict[str, tuple[int, str]] = {}
    for path, line in zip(paths, stdout.split("\n"), strict=False):
        size, _, digest = line.partition(" ")
        if size.isdigit() and len(digest) == 64 and not digest.strip(_HEX):
            out[path] = (int(size), digest)
    return out


@dataclass(frozen=True)
class FileFacts(Probe[dict[str, tuple[int, str]]]):
    """Read-only: the size and sha256 of files (a backup's items), one line per path in order.

    ``backup.create`` reads it in the round trip of the rename that completes a backup, so its
    verify compares the files read after the rename with the manifest without a round trip of
    its own (after any later change on the host the runner drops it, and verify reads afresh).
    """

    paths: tuple[str, ...]
    kind: ClassVar[str] = "file-facts"

    def inline(self) -> bool:
        return True

    def script(self) -> str:
        return "\n".join(facts_script(p) for p in self.paths) or "true"

    def parse(self, raw: RawOutput) -> dict[str, tuple[int, str]]:
        return parse_facts(self.paths, raw.stdout)


@dataclass(frozen=True)
class PinnedIds(Probe[frozenset[str]]):
    """Read-only: the ids listed in a pin file (missing file: none)."""

    path: str
    kind: ClassVar[str] = "pins"

    def inline(self) -> bool:
        return True

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

    def inline(self) -> bool:
        return True

    def script(self) -> str:
        found = (f"command -v -- {quote(n)} >/dev/null 2>&1 && printf '%s\\n' {quote(n)}" for n in self.names)
        return "; ".join(found) + "; true"

    def parse(self, raw: RawOutput) -> frozenset[str]:
        return frozenset(line.strip() for line in raw.stdout.splitlines() if line.strip() in self.names)


__all__ = [
    "ID_RE",
    "MANIFEST",
    "BackupListing",
    "FileFacts",
    "Listing",
    "Manifest",
    "PinnedIds",
    "Tools",
    "facts_script",
    "item_summary",
    "listing_script",
    "parse_facts",
    "parse_listing",
    "parse_time",
]
