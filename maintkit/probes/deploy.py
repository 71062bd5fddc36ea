"""The release layout of a deploy target, read in one round trip (:class:`ReleaseLayout`).

:class:`DeployState` is what ``deploy.release``, ``deploy.rollback`` and ``maint rollback``
decide on: where ``current`` points, each release with its completion marker, and the
releases log. Its methods choose the rollback target and the releases to prune; they only
read the probe's facts.
"""

from __future__ import annotations

import json
import posixpath
import re
from dataclasses import dataclass, field
from typing import Any, ClassVar

from maintkit.errors import CheckFailed
from maintkit.probes import Probe, RawOutput, decode_hex
from maintkit.transport.base import quote

#: the completion marker inside a release directory
MARKER = ".maint-release.json"
#: the releases log, relative to the environment's path
LOG = ".maint/releases.jsonl"
#: release directory names maintkit makes: ``<UTC time>-<sha7>`` (``-N`` when one repeats)
RELEASE_RE = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{7}(?:-\d+)?$")
#: log statuses of a release that may become current again
GOOD = ("deployed", "rolled-back")
#: log lines read back (the newest)
LOG_TAIL = 5000


@dataclass(frozen=True)
class Release:
    """One directory under ``releases/``; ``meta`` is its marker (None while half-built)."""

    name: str
    meta: dict[str, Any] | None

    @property
    def complete(self) -> bool:
        """True when the release has its completion marker."""
        return self.meta is not None

    @property
    def commit(self) -> str | None:
        """The commit recorded in the marker."""
        return str(self.meta["commit"]) if self.meta and "commit" in self.meta else None

    @property
    def sort_key(self) -> tuple[str, str]:
        """Chronological order: marker build time, then name."""
        return (str((self.meta or {}).get("built_at", "")) or self.name, self.name)


@dataclass(frozen=True)
class DeployState:
    """What the host's release layout looks like (read by :class:`ReleaseLayout`)."""

    current: str | None  # "link" target, or None
    current_kind: str  # "link" | "none" | "other"
    releases: dict[str, Release] = field(default_factory=dict)
    log: list[dict[str, Any]] = field(default_factory=list)
    unmanaged: tuple[str, ...] = ()

    @property
    def current_release(self) -> str | None:
        """Name of the release ``current`` points at, if it points into ``releases/``."""
        if self.current is None:
            return None
        parent, name = posixpath.split(self.current.rstrip("/"))
        return name if posixpath.basename(parent) == "releases" and name in self.releases else None

    @property
    def current_commit(self) -> str | None:
        """The commit of the current release (from its marker)."""
        name = self.current_release
        return self.releases[name].commit if name else None

    def status_of(self, name: str) -> str | None:
        """The release's latest status in the log."""
        for entry in reversed(self.log):
            if entry.get("release") == name:
                return str(entry.get("status"))
        return None

    def partials(self) -> list[str]:
        """Half-built releases (no marker) that are not current: leftovers of interrupted runs."""
        return sorted(n for n, r in self.releases.items() if not r.complete and n != self.current_release)

    def previous_good(self, exclude: str | None = None) -> str | None:
        """The release a rollback from ``exclude`` (default: current) would choose, or None.

        The most recent release that was current and is not marked bad, still complete on
        disk. Without a usable log, the newest complete, not bad release older than current.
        """
        exclude = exclude or self.current_release
        seen: set[str] = set()
        for entry in reversed(self.log):
            name = str(entry.get("release", ""))
            if name in seen:
                continue
            seen.add(name)
            if entry.get("status") in GOOD and name != exclude and self._usable(name):
                return name
        ordered = sorted(self.releases.values(), key=lambda r: r.sort_key)
        cut = self.releases.get(exclude or "")
        older = [r for r in ordered if cut is None or r.sort_key < cut.sort_key]
        for rel in reversed(older):
            if rel.name != exclude and self._usable(rel.name) and rel.name not in seen:
                return rel.name
        return None

    def _usable(self, name: str) -> bool:
        rel = self.releases.get(name)
        return rel is not None and rel.complete and self.status_of(name) != "bad"

    def replaced_by_current(self) -> str | None:
        """The release that was current before the current one was deployed (from the log)."""
        cur = self.current_release
        for entry in reversed(self.log):
            if entry.get("release") == cur and entry.get("status") == "deployed":
                prev = entry.get("previous")
                return str(prev) if prev else None
        return None

    def prune_plan(self, keep: int) -> list[str]:
        """Complete releases to delete so that ``keep`` remain.

        Releases marked bad count last (they go first). Never deleted: current, the release a
        rollback would choose, and the release current replaced.
        """
        safe = {n for n in (self.current_release, self.previous_good(), self.replaced_by_current()) if n}
        complete = [r for r in self.releases.values() if r.complete]
        newest = sorted(complete, key=lambda r: r.sort_key, reverse=True)
        ordered = sorted(newest, key=lambda r: self.status_of(r.name) == "bad")  # stable: good first
        return sorted(r.name for r in ordered[keep:] if r.name not in safe)


def _parse_json(text: str) -> dict[str, Any] | None:
    try:
        data = json.loads(text)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


@dataclass(frozen=True)
class ReleaseLayout(Probe[DeployState]):
    """Read a release layout in one round trip: ``current``, each release's marker, the releases log."""

    path: str
    kind: ClassVar[str] = "deploy.layout"

    def inline(self) -> bool:
        return True

    def script(self) -> str:
        """Print ``current``, one line per release directory (its marker), and the log's tail."""
        p = quote(self.path.rstrip("/") or "/")
        return (
            f"p={p}\n"
            # the link target as hex: a newline or any other byte in it is read back exactly
            "if [ -L \"$p/current\" ]; then printf 'current\\tlink\\t'; "
            "readlink -n -- \"$p/current\" | od -An -v -tx1 | tr -d ' \\n'; echo;\n"
            "elif [ -e \"$p/current\" ]; then printf 'current\\tother\\t\\n'; else printf 'current\\tnone\\t\\n'; fi\n"
            'if [ -d "$p/releases" ]; then for d in "$p"/releases/*; do\n'
            '  [ -d "$d" ] && [ ! -L "$d" ] || continue; n=${d##*/}\n'
            # a name maintkit cannot have made (tab, newline, quote...) as hex: it can fake no line
            "  case $n in *[!0-9A-Za-z._-]*) printf 'unmanaged\\t'; "
            "printf %s \"$n\" | od -An -v -tx1 | tr -d ' \\n'; echo; continue;; esac\n"
            f'  if [ -f "$d/{MARKER}" ]; then printf \'release\\t%s\\t\' "$n"; '
            f"head -c 8192 \"$d/{MARKER}\" | tr '\\n\\t' '  '; printf '\\n';\n"
            "  else printf 'partial\\t%s\\t\\n' \"$n\"; fi\n"
            "done; fi\n"
            f'if [ -f "$p/{LOG}" ]; then tail -n {LOG_TAIL} "$p/{LOG}" | sed \'s/^/log\t/\'; fi\n'
            "true"
        )

    def parse(self, raw: RawOutput) -> DeployState:
        """The layout; CheckFailed when it could not be read. Names maintkit did not make are ``unmanaged``."""
        if raw.exit_code != 0:
            raise CheckFailed(f"cannot read the release layout of {self.path} (exit {raw.exit_code})")
        current: str | None = None
        kind = "none"
        releases: dict[str, Release] = {}
        log: list[dict[str, Any]] = []
        unmanaged: list[str] = []
        for line in raw.stdout.splitlines():
            tag, _, rest = line.partition("\t")
            if tag == "current":
                kind, _, target = rest.partition("\t")
                current = decode_hex(target) if kind == "link" else None
            elif tag == "unmanaged":
                unmanaged.append(decode_hex(rest))
            elif tag in ("release", "partial"):
                name, _, body = rest.partition("\t")
                if not RELEASE_RE.match(name):
                    unmanaged.append(name)
                    continue
                releases[name] = Release(name, (_parse_json(body) or {"corrupt": True}) if tag == "release" else None)
            elif tag == "log" and (entry := _parse_json(rest)) is not None:
                log.append(entry)
        return DeployState(current, kind, releases, log, tuple(unmanaged))


__all__ = ["GOOD", "LOG", "LOG_TAIL", "MARKER", "RELEASE_RE", "DeployState", "Release", "ReleaseLayout"]
