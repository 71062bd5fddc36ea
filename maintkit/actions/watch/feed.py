"""The vulnerability feed: reading, caching and indexing a Wordfence Intelligence format feed.

The feed is one JSON object keyed by vulnerability id; each record has a ``title``, the
``software`` it affects (``type`` core|plugin|theme, ``slug``, ``affected_versions`` ranges
``{from_version, from_inclusive, to_version, to_inclusive}`` where ``*`` means unbounded,
``patched``, ``patched_versions``), ``cvss`` (``score``, ``rating``), ``cve`` and
``references``. It comes from a file on the controller or a URL; a downloaded feed is kept,
trimmed to those fields, under ``<state dir>/cache/vuln-feed/`` and fetched again once it is
older than ``max_age``. Every way of not getting a usable feed raises :class:`FeedError`
naming the source: a check never passes on a feed it could not read.

Matching installed versions against the ranges is in :mod:`maintkit.actions.cms.security`.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from maintkit._fs import write_text_atomic
from maintkit.actions.backup.common import parse_duration

#: the inventory variable holding the feed settings shared by vuln.check and cms.update
VARS_KEY = "vuln_feed"
KINDS = ("core", "plugin", "theme")


class FeedError(Exception):
    """The feed cannot be read, is not in the expected format, or is too old."""


class FeedConfig(BaseModel):
    """Where the vulnerability feed comes from (exactly one of ``url`` and ``file``)."""

    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(None, description="URL of the feed (downloaded by the controller, then cached)")
    file: str | None = Field(None, description="Path of the feed JSON on the controller")
    max_age: str | None = Field("24h", description="Refetch a cached feed, refuse a feed file, older than this")
    api_key: str | None = Field(None, description="Sent as 'Authorization: Bearer KEY' (the v3 feed needs one)")
    timeout: float = Field(120.0, gt=0, description="Seconds for downloading the feed")

    @model_validator(mode="after")
    def _one(self) -> FeedConfig:
        if (self.url is None) == (self.file is None):
            raise ValueError("give exactly one of url and file")
        return self

    @field_validator("max_age")
    @classmethod
    def _duration(cls, value: str | None) -> str | None:
        if value is not None:
            parse_duration(value)
        return value

    @property
    def source(self) -> str:
        """The URL or the file path."""
        return str(self.url or self.file)

    def max_age_delta(self) -> timedelta | None:
        """``max_age`` as a timedelta (None: no limit)."""
        return parse_duration(self.max_age) if self.max_age else None


@dataclass(frozen=True)
class Range:
    """One affected range; ``*`` as a bound means unbounded."""

    from_version: str
    from_inclusive: bool
    to_version: str
    to_inclusive: bool


@dataclass(frozen=True)
class Advisory:
    """One vulnerability of one piece of software."""

    id: str
    title: str
    kind: str
    slug: str
    ranges: tuple[Range, ...]
    patched_versions: tuple[str, ...]
    cvss_score: float | None = None
    cvss_rating: str = ""
    cve: str = ""
    references: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        """``<title> (CVE-...)`` or the title alone."""
        return f"{self.title} ({self.cve})" if self.cve else self.title


@dataclass
class Feed:
    """A parsed feed: advisories by ``(kind, slug)``, where it came from and how old it is."""

    source: str
    fetched: datetime
    advisories: dict[tuple[str, str], list[Advisory]] = field(default_factory=dict)
    records: int = 0

    def for_package(self, kind: str, slug: str) -> list[Advisory]:
        """The advisories of one core/plugin/theme slug."""
        return list(self.advisories.get((kind, slug), []))

    def age(self, now: datetime | None = None) -> timedelta:
        """How old the feed is."""
        return (now or datetime.now(UTC)) - self.fetched

    def label(self, now: datetime | None = None) -> str:
        """``feed of 2026-12-03 14:00 UTC, 3 h old``."""
        return f"feed of {self.fetched.astimezone(UTC):%Y-%m-%d %H:%M} UTC, {format_age(self.age(now))} old"


def format_age(delta: timedelta) -> str:
    """``12 min``, ``3 h``, ``2 d`` (rounded down)."""
    secs = max(0, int(delta.total_seconds()))
    if secs >= 2 * 86400:
        return f"{secs // 86400} d"
    if secs >= 3600:
        return f"{secs // 3600} h"
    return f"{secs // 60} min"


# ----------------------------------------------------------------------------- parsing
def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()


def _ranges(raw: Any) -> tuple[Range, ...]:
    out = []
    for spec in (raw or {}).values() if isinstance(raw, dict) else []:
        if isinstance(spec, dict):
            out.append(
                Range(
                    _text(spec.get("from_version")) or "*",
                    bool(spec.get("from_inclusive", True)),
                    _text(spec.get("to_version")) or "*",
                    bool(spec.get("to_inclusive", True)),
                )
            )
    return tuple(out)


def _advisories(vid: str, record: dict[str, Any]) -> list[Advisory]:
    raw_cvss, raw_refs = record.get("cvss"), record.get("references")
    cvss: dict[str, Any] = raw_cvss if isinstance(raw_cvss, dict) else {}
    refs: list[Any] = raw_refs if isinstance(raw_refs, list) else []
    score = cvss.get("score")
    out = []
    for sw in record.get("software") or []:
        if not isinstance(sw, dict) or _text(sw.get("type")) not in KINDS or not _text(sw.get("slug")):
            continue
        raw_patched = sw.get("patched_versions")
        patched: list[Any] = raw_patched if isinstance(raw_patched, list) else []
        out.append(
            Advisory(
                id=vid,
                title=_text(record.get("title")) or vid,
                kind=_text(sw.get("type")),
                slug=_text(sw.get("slug")),
                ranges=_ranges(sw.get("affected_versions")),
                patched_versions=tuple(_text(v) for v in patched if _text(v)),
                cvss_score=float(score) if isinstance(score, int | float) else None,
                cvss_rating=_text(cvss.get("rating")).lower(),
                cve=_text(record.get("cve")),
                references=tuple(_text(r) for r in refs[:3] if _text(r)),
            )
        )
    return out


def parse_feed(data: Any, source: str, fetched: datetime) -> Feed:
    """Index a decoded feed; FeedError when it is not a Wordfence-format object of records."""
    if not isinstance(data, dict):
        raise FeedError(f"vulnerability feed {source}: not a JSON object keyed by vulnerability id")
    feed = Feed(source, fetched)
    for vid, record in data.items():
        if not isinstance(record, dict):
            raise FeedError(f"vulnerability feed {source}: record {str(vid)[:80]!r} is not an object")
        feed.records += 1
        for adv in _advisories(str(record.get("id") or vid), record):
            feed.advisories.setdefault((adv.kind, adv.slug), []).append(adv)
    if feed.records == 0:
        raise FeedError(f"vulnerability feed {source}: holds no vulnerability records (an empty or broken feed)")
    return feed


def _trim(data: dict[str, Any]) -> dict[str, Any]:
    """Only the fields the matcher reads (the cached copy stays small)."""
    keep_sw = ("type", "slug", "affected_versions", "patched", "patched_versions")
    out: dict[str, Any] = {}
    for vid, rec in data.items():
        if not isinstance(rec, dict):
            continue
        out[vid] = {
            "title": rec.get("title"),
            "cve": rec.get("cve"),
            "cvss": rec.get("cvss"),
            "references": (rec.get("references") or [])[:3] if isinstance(rec.get("references"), list) else [],
            "software": [{k: sw.get(k) for k in keep_sw} for sw in rec.get("software") or [] if isinstance(sw, dict)],
        }
    return out


# ----------------------------------------------------------------------------- reading
def _read_file(config: FeedConfig, now: datetime) -> Feed:
    path = Path(str(config.file))
    try:
        fetched = datetime.fromtimestamp(path.stat().st_mtime, UTC)
        data = json.loads(path.read_bytes())
    except OSError as exc:
        raise FeedError(f"vulnerability feed file {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise FeedError(f"vulnerability feed file {path}: not JSON ({exc})") from None
    feed = parse_feed(data, str(path), fetched)
    limit = config.max_age_delta()
    if limit is not None and feed.age(now) > limit:
        raise FeedError(
            f"vulnerability feed file {path} is too old to vouch for anything: {feed.label(now)} "
            f"(max_age {config.max_age}); update it"
        )
    return feed


def cache_path(state_dir: Path, url: str) -> Path:
    """Where the trimmed copy of the feed at ``url`` is kept."""
    return Path(state_dir) / "cache" / "vuln-feed" / (hashlib.sha256(url.encode()).hexdigest()[:24] + ".json")


def _read_cache(path: Path, url: str) -> Feed | None:
    try:
        doc = json.loads(path.read_bytes())
        fetched = datetime.fromisoformat(str(doc["fetched"]))
        return parse_feed(doc["records"], url, fetched)
    except (OSError, ValueError, KeyError, TypeError, FeedError):
        return None


def _download(config: FeedConfig) -> Any:
    import requests

    from maintkit import _http

    headers = {"Accept": "application/json"}
    if config.api_key:
        headers["Authorization"] = f"Bearer {config.api_key}"
    url = str(config.url)
    try:
        with _http.Session() as session, session.get(url, headers=headers, timeout=config.timeout, stream=True) as resp:
            if resp.status_code >= 400:
                raise FeedError(f"vulnerability feed {url}: HTTP {resp.status_code}")
            with tempfile.TemporaryFile() as tmp:
                for chunk in resp.iter_content(1 << 20):
                    tmp.write(chunk)
                tmp.seek(0)
                return json.load(tmp)
    except requests.RequestException as exc:
        raise FeedError(f"vulnerability feed {url} cannot be downloaded: {exc}") from None
    except ValueError as exc:
        raise FeedError(f"vulnerability feed {url}: not JSON ({exc})") from None


def _read_url(config: FeedConfig, state_dir: Path, now: datetime) -> Feed:
    url = str(config.url)
    path = cache_path(state_dir, url)
    cached = _read_cache(path, url)
    limit = config.max_age_delta()
    if cached is not None and (limit is None or cached.age(now) <= limit):
        return cached
    data = _download(config)
    if not isinstance(data, dict):
        raise FeedError(f"vulnerability feed {url}: not a JSON object keyed by vulnerability id")
    trimmed = _trim(data)
    feed = parse_feed(trimmed, url, now)
    doc = {"source": url, "fetched": now.isoformat(timespec="seconds"), "records": trimmed}
    write_text_atomic(path, json.dumps(doc, separators=(",", ":")), make_parents=True)
    return feed


def read_feed(config: FeedConfig, state_dir: Path, now: datetime | None = None) -> Feed:
    """The feed ``config`` names (a fresh cached copy, else downloaded); FeedError when unusable."""
    when = now or datetime.now(UTC)
    if config.file is not None:
        return _read_file(config, when)
    return _read_url(config, state_dir, when)


__all__ = [
    "KINDS",
    "VARS_KEY",
    "Advisory",
    "Feed",
    "FeedConfig",
    "FeedError",
    "Range",
    "cache_path",
    "format_age",
    "parse_feed",
    "read_feed",
]
