"""Ids that sort by time: runs (``20261123T011500Z-3fa9c2``), backups and releases.

One time format for all of them (UTC, second precision), and one parser that reads the time
back out of an id.
"""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime

#: strftime format of the time part of every id
TIME_FORMAT = "%Y%m%dT%H%M%SZ"
_ID = re.compile(r"[0-9]{8}T[0-9]{6}Z-[0-9A-Za-z]+")


def stamp(now: datetime | None = None) -> str:
    """The time part of an id: ``now`` (default: the current UTC time) as ``20261123T011500Z``."""
    return (now or datetime.now(UTC)).astimezone(UTC).strftime(TIME_FORMAT)


def new_id(now: datetime | None = None) -> str:
    """A new id, sortable by time: the stamp and 6 random hex digits."""
    return f"{stamp(now)}-{secrets.token_hex(3)}"


def new_run_id() -> str:
    """A new run id: ``20261123T011500Z-3fa9c2``."""
    return new_id()


def id_time(ident: str) -> datetime | None:
    """The UTC time at the start of an id (run, backup or release name); None when it has none."""
    try:
        return datetime.strptime(ident.split("-", 1)[0], TIME_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        return None


def is_id(name: str) -> bool:
    """Is ``name`` shaped like an id (``20261123T011500Z-3fa9c2``), with a readable time?"""
    return _ID.fullmatch(name) is not None and id_time(name) is not None


__all__ = ["TIME_FORMAT", "id_time", "is_id", "new_id", "new_run_id", "stamp"]
