"""What the WordPress driver reads: the PHP helper's answers and package zips.

The helper (``maintkit/php/wp_helper.php``) prints its JSON answer after a marker line so
PHP notices around it do no harm; :func:`state_from_helper` turns the ``list`` answer into a
:class:`WpState`. :func:`read_zip_package` reads a package zip's exact version and
requirements (plugin header, theme ``style.css``, core ``version.php``) on the controller.
"""

from __future__ import annotations

import io
import json
import re
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from maintkit.actions.cms.plan import Installed
from maintkit.actions.cms.policy import Version
from maintkit.probes.cms import helper_source

CORE = "wordpress"
JSON_MARKER = "@@MAINTKIT-JSON@@"
_HEADER_RE = r"^(?:[ \t]*<\?php)?[ \t/*#@]*{name}:(.*)$"


def wp_helper_source() -> bytes:
    """The PHP helper shipped in the package (maintkit/php/wp_helper.php), read once."""
    return helper_source()


def parse_marked_json(stdout: str) -> dict[str, Any] | None:
    """The JSON object after the last ``@@MAINTKIT-JSON@@`` marker, or None."""
    idx = stdout.rfind(JSON_MARKER)
    if idx < 0:
        return None
    text = stdout[idx + len(JSON_MARKER) :].strip().split("\n", 1)[0]
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


@dataclass
class Stopwatch:
    """Where one cms.update step spends its time: milliseconds per part and PHP boots.

    Recorded with the step (``timing_ms``, ``php_boots``) so the audit log shows the split of an
    update (helper boots, dump, snapshots, package staging, switches) per site."""

    ms: dict[str, float] = field(default_factory=dict)
    boots: int = 0

    @contextmanager
    def part(self, name: str) -> Iterator[None]:
        """Add the time spent in the ``with`` block to ``name``."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.ms[name] = self.ms.get(name, 0.0) + (time.perf_counter() - start) * 1000

    @contextmanager
    def boot(self) -> Iterator[None]:
        """One PHP start of the helper: counted, and its time added to ``php``."""
        self.boots += 1
        with self.part("php"):
            yield

    def shared(self, rest: str, started: float, answer: dict[str, Any] | None) -> None:
        """A round trip (begun at ``started``, a ``time.perf_counter()`` value) that ran a helper
        process among other commands; ``answer``: the helper's, None when it did not start. The
        helper's start is counted and its own time (``ms`` in its answer, taken out of it) goes
        to ``php``, the rest of the round trip to ``rest``; a helper that answered without its
        time is given the whole round trip."""
        total = (time.perf_counter() - started) * 1000
        php = 0.0
        if answer is not None:
            self.boots += 1
            ms = answer.pop("ms", None)
            php = min(float(ms), total) if isinstance(ms, int | float) and ms >= 0 else total
            self.ms["php"] = self.ms.get("php", 0.0) + php
        self.ms[rest] = self.ms.get(rest, 0.0) + total - php

    def public(self) -> dict[str, float]:
        """Milliseconds per part, rounded."""
        return {k: round(v, 1) for k, v in sorted(self.ms.items())}


@dataclass
class WpState:
    """What the helper's ``list`` reports."""

    core: Installed
    plugins: list[Installed]
    themes: list[Installed]
    php_version: str
    extensions: list[str]
    db_version: str
    files_db_version: str
    table_prefix: str
    db_name: str
    paths: dict[str, str] = field(default_factory=dict)

    @property
    def packages(self) -> list[Installed]:
        """Core, plugins and themes."""
        return [self.core, *self.plugins, *self.themes]

    def find(self, kind: str, name: str) -> Installed | None:
        """The installed package of that kind and name."""
        return next((p for p in self.packages if p.kind == kind and p.name == name), None)


def _header(text: str, name: str) -> str:
    match = re.search(_HEADER_RE.format(name=re.escape(name)), text, re.M | re.I)
    if not match:
        return ""
    return re.sub(r"\s*(?:\*/|\?>).*$", "", match.group(1)).strip()


def read_zip_package(data: bytes, kind: str, slug: str) -> dict[str, str]:
    """Read version and requirements from a package zip (plugin header, theme style.css, core version.php).

    Returns ``{"version", "requires_php", "requires_wp", "top", "error"}``; ``error`` explains
    why the zip does not hold ``slug``.
    """
    out = {"version": "", "requires_php": "", "requires_wp": "", "top": "", "error": ""}
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        out["error"] = "not a zip file"
        return out
    with zf:
        names = [n for n in zf.namelist() if not n.startswith("__MACOSX/")]
        tops = {n.split("/", 1)[0] for n in names if "/" in n}
        want = "wordpress" if kind == "core" else slug
        if want not in tops:
            out["error"] = f"the zip holds {', '.join(sorted(tops)) or 'no folder'}, not {want}/"
            return out
        out["top"] = want
        if kind == "core":
            try:
                text = zf.read("wordpress/wp-includes/version.php").decode("utf-8", "replace")
            except KeyError:
                out["error"] = "wordpress/wp-includes/version.php missing"
                return out
            m = re.search(r"\$wp_version\s*=\s*'([^']+)'", text)
            php = re.search(r"\$required_php_version\s*=\s*'([^']+)'", text)
            out["version"] = m.group(1) if m else ""
            out["requires_php"] = php.group(1) if php else ""
            return out
        if kind == "theme":
            try:
                text = zf.read(f"{slug}/style.css")[:8192].decode("utf-8", "replace")
            except KeyError:
                out["error"] = f"{slug}/style.css missing"
                return out
            candidates = [text]
        else:
            candidates = []
            for n in names:
                if n.startswith(f"{slug}/") and n.count("/") == 1 and n.endswith(".php"):
                    head = zf.read(n)[:8192].decode("utf-8", "replace")
                    if _header(head, "Plugin Name"):
                        candidates.insert(0 if n == f"{slug}/{slug}.php" else len(candidates), head)
            if not candidates:
                out["error"] = f"no plugin header in {slug}/*.php"
                return out
        text = candidates[0]
        out["version"] = _header(text, "Version")
        out["requires_php"] = _header(text, "Requires PHP")
        out["requires_wp"] = _header(text, "Requires at least")
    return out


def newer(required: str, actual: str) -> bool:
    """True when ``required`` is a higher version than ``actual``."""
    r, a = Version.try_parse(required), Version.try_parse(actual)
    return r is not None and a is not None and r > a


def same_version(a: str, b: str) -> bool:
    """Whether two version strings name the same version (``6.1`` == ``6.1.0``; text otherwise)."""
    va, vb = Version.try_parse(a), Version.try_parse(b)
    return a == b if va is None or vb is None else va == vb


def state_from_helper(data: dict[str, Any], root: str) -> WpState:
    """The :class:`WpState` in the helper's ``list`` answer (``root``: the WordPress root)."""
    core = data.get("core", {})
    core_pkg = Installed(
        CORE, "core", str(core.get("version", "")), root, requires_php=str(core.get("requires_php", ""))
    )
    plugins = [
        Installed(
            str(p["slug"]),
            "plugin",
            str(p.get("version", "")),
            str(p.get("path", "")),
            active=bool(p.get("active")),
            requires_php=str(p.get("requires_php") or ""),
            requires_wp=str(p.get("requires_wp") or ""),
            update_uri=str(p.get("update_uri") or ""),
            file=str(p.get("file", "")),
            extra={"network_active": bool(p.get("network_active"))},
        )
        for p in data.get("plugins", [])
    ]
    themes = [
        Installed(
            str(t["slug"]),
            "theme",
            str(t.get("version", "")),
            str(t.get("path", "")),
            active=bool(t.get("active")),
            requires_php=str(t.get("requires_php") or ""),
            requires_wp=str(t.get("requires_wp") or ""),
            update_uri=str(t.get("update_uri") or ""),
        )
        for t in data.get("themes", [])
    ]
    php = data.get("php", {})
    return WpState(
        core=core_pkg,
        plugins=plugins,
        themes=themes,
        php_version=str(php.get("version", "")),
        extensions=[str(e) for e in php.get("extensions", [])],
        db_version=str(core.get("db_version", "")),
        files_db_version=str(core.get("files_db_version", "")),
        table_prefix=str(data.get("table_prefix", "wp_")),
        db_name=str(data.get("db_name", "")),
        paths={k: str(v) for k, v in data.get("paths", {}).items()},
    )


__all__ = [
    "CORE",
    "JSON_MARKER",
    "Stopwatch",
    "WpState",
    "newer",
    "parse_marked_json",
    "read_zip_package",
    "same_version",
    "state_from_helper",
    "wp_helper_source",
]
