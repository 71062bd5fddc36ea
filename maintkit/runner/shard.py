"""Shards of a fleet: ``--shard K/N`` and the run group that ties the shards of one run together.

A fleet too large for one machine is split over N processes (a GitHub Actions matrix), each
running ``maint run --shard K/N`` with the same run group (``GITHUB_RUN_ID`` or ``--group``):

- The split is deterministic: every shard computes the same targeted sites; the first
  ``canary`` of them all go to shard 1 (which runs them first), every other site goes to shard
  ``sha256(name) mod N + 1``. The hash is SHA-256, never Python's salted ``hash()``, so every
  process and every machine agrees.
- Every shard writes its run folder into the same store. ``run.started`` and ``summary.json``
  carry the group and the shard, so readers (``maint runs --group``, ``maint report
  --run-group``, ``maint collect``) find the whole fleet.
- ``max_fail_percentage`` counts the failed sites of the whole group over the whole fleet: before
  each batch a shard pulls the store and reads the other shards' event logs
  (:class:`GroupTally`). A canary halt in shard 1 halts the other shards at their next batch.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from maintkit.errors import ConfigError, Problem
from maintkit.results import SiteStatus
from maintkit.runner.outcome import counts_as_failed

_SHARD = re.compile(r"\s*([0-9]+)\s*/\s*([0-9]+)\s*")
#: a run group name: what ``GITHUB_RUN_ID`` and readable names look like (no path characters)
_GROUP = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@+-]{0,127}")
#: site statuses that count towards ``max_fail_percentage`` (see :func:`counts_as_failed`)
_FAILED = {s.value for s in SiteStatus if counts_as_failed(s)}

T = TypeVar("T")


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count`` (both from 1: ``1/4`` is the first of four)."""

    index: int
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(text: str, origin: str = "--shard") -> Shard:
    """``K/N`` as a :class:`Shard`; ConfigError (exit 2) unless ``1 <= K <= N``."""
    m = _SHARD.fullmatch(text)
    if not m:
        raise ConfigError(Problem(origin, None, "shard", f"{text!r} is not K/N (e.g. 2/4)"))
    index, count = int(m.group(1)), int(m.group(2))
    if count < 1 or not 1 <= index <= count:
        raise ConfigError(Problem(origin, None, "shard", f"{text!r}: K must be between 1 and N"))
    return Shard(index, count)


def check_group(name: str, origin: str = "--group") -> str:
    """A run group name (letters, digits and ``._:@+-``, at most 128); ConfigError otherwise."""
    if not _GROUP.fullmatch(name):
        raise ConfigError(Problem(origin, None, "group", f"invalid run group {name!r} (letters, digits, ._:@+-)"))
    return name


def shard_of(name: str, count: int) -> int:
    """The shard (1..count) of a site that is not a canary: SHA-256 of its name, modulo ``count``."""
    digest = hashlib.sha256(name.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % count + 1


def split(items: Sequence[T], name: Callable[[T], str], canary: int, shard: Shard) -> list[T]:
    """The items (sites) of ``shard``, in their order: shard 1 starts with the first ``canary``."""
    first = list(items[:canary]) if shard.index == 1 else []
    rest = [item for item in items[canary:] if shard_of(name(item), shard.count) == shard.index]
    return first + rest


@dataclass(frozen=True)
class Fleet:
    """What a sharded run knows of its group: the group, its shard, and the whole fleet's sites."""

    group: str
    shard: Shard | None
    #: every site the group targets (all shards), in order
    sites: tuple[str, ...]
    #: how many of them are canary sites (all in shard 1)
    canary: int = 0

    def fields(self) -> dict[str, Any]:
        """What ``run.started`` and ``summary.json`` record: group, shard and the fleet's size."""
        shard = str(self.shard) if self.shard else None
        return {"group": self.group, "shard": shard, "fleet_sites": len(self.sites)}


@dataclass
class _Seen:
    """How far one run folder's events were read, and what they said."""

    offset: int = 0
    member: bool | None = None
    failed: set[str] = field(default_factory=set)
    canary_halt: bool = False


class GroupTally:
    """The failures of the other runs of a group, read from the store's run folders.

    :meth:`refresh` pulls the store (``pull``) and reads every run folder under ``root/runs``
    that is not this run, incrementally (only the bytes added since the last read). A run belongs
    to the group when its ``run.started`` names the same group and playbook and it is no plan.
    """

    def __init__(self, fleet: Fleet, run_id: str, playbook: str, root: Path, pull: Callable[[], None]) -> None:
        self.fleet, self.run_id, self.playbook = fleet, run_id, playbook
        self.root, self.pull = Path(root), pull
        self._seen: dict[str, _Seen] = {}

    def refresh(self) -> tuple[set[str], bool]:
        """Pull, then (sites failed in the other runs of the group, whether shard 1's canary halted)."""
        self.pull()
        try:
            folders = [p for p in (self.root / "runs").iterdir() if p.is_dir() and p.name != self.run_id]
        except FileNotFoundError:
            folders = []
        failed: set[str] = set()
        halted = False
        for folder in folders:
            seen = self._seen.setdefault(folder.name, _Seen())
            if seen.member is not False:
                self._read(folder / "events.jsonl", seen)
            if seen.member:
                failed |= seen.failed
                halted |= seen.canary_halt
        return failed, halted

    def _read(self, path: Path, seen: _Seen) -> None:
        try:
            with path.open("rb") as fh:
                fh.seek(seen.offset)
                data = fh.read()
        except FileNotFoundError:
            return
        end = data.rfind(b"\n") + 1  # a line still being written is read next time
        seen.offset += end
        for line in data[:end].splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                self._fold(record, seen)

    def _fold(self, record: dict[str, Any], seen: _Seen) -> None:
        event = record.get("event")
        if seen.member is None and event == "run.started":
            seen.member = (
                record.get("group") == self.fleet.group
                and record.get("playbook") == self.playbook
                and not record.get("check")
            )
        elif event in ("site.finished", "site.skipped") and record.get("status") in _FAILED:
            seen.failed.add(str(record.get("site")))
        elif event == "run.halted" and record.get("reason") == "canary site failed":
            seen.canary_halt = True


__all__ = ["Fleet", "GroupTally", "Shard", "check_group", "parse_shard", "shard_of", "split"]
