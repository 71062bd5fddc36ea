"""Known checksums and the files on the host, for ``integrity.check``.

Three sources of truth: the WordPress.org core checksums API (md5 per core file of a version
and locale), the plugin checksum files of wordpress.org (md5/sha256 per file of a plugin
version; 404 means the plugin is not on wordpress.org) and the tree hashes of the last
validated version locks (:mod:`maintkit.actions.cms.lock`), computed on the host with the
same script ``cms.update`` uses (:func:`maintkit.actions.cms.snapshots.tree_hash_script`).

Everything on the host is read in ONE round trip: :func:`host_script` hashes every tree
with ``md5sum --zero`` (NUL-separated, names never escaped, so spaces, quotes and newlines
in names are safe), lists the PHP files under the uploads folder and prints the lock tree
hashes; :func:`parse_sections` reads the answer back.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from maintkit.action import Context
from maintkit.actions.cms.snapshots import tree_hash_script
from maintkit.errors import CheckFailed
from maintkit.transport.base import quote

#: section name of the lock tree hashes in the host script's answer
LOCK_SECTION = "locks"
_HEX32 = re.compile(rb"[0-9a-f]{32}\Z")


# ----------------------------------------------------------------------------- globs
def glob_regex(pattern: str) -> re.Pattern[str]:
    """A path glob as a regex: ``**/`` any folders (or none), ``**`` anything, ``*``/``?`` within one name."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out) + r"\Z", re.S | re.I)


class Globs:
    """A set of path globs; a folder matches when the folder itself or anything in it could."""

    def __init__(self, patterns: Iterable[str]) -> None:
        self.patterns = [p.strip("/") if not p.startswith("**") else p for p in patterns if p]
        self._res = [glob_regex(p) for p in self.patterns]

    def match(self, path: str, *, folder: bool = False) -> bool:
        """Whether ``path`` (relative to the WordPress root) matches one of the globs."""
        candidates = [path, path + "/"] if folder else [path]
        return any(r.match(c) for r in self._res for c in candidates)


# ----------------------------------------------------------------------------- fetching
def _get_json(ctx: Context, url: str, params: Mapping[str, str] | None, timeout: float) -> dict[str, Any] | None:
    """GET a JSON object through the run's cache (:mod:`maintkit._http_cache`: once per run for
    every site; checksums of a version never change); None on 404; CheckFailed on anything else
    that is not a JSON object."""
    import requests

    if params:
        url = f"{url}{'&' if '?' in url else '?'}{urlencode(params)}"
    try:
        resp = ctx.options.http_cache.get(url, timeout=timeout)
    except requests.RequestException as exc:
        raise CheckFailed(f"cannot fetch checksums from {url}: {type(exc).__name__}: {exc}") from None
    if resp.status == 404:
        return None
    if resp.status != 200:
        raise CheckFailed(f"checksums from {url}: HTTP {resp.status}")
    try:
        data = json.loads(resp.content)
    except ValueError:
        raise CheckFailed(f"checksums from {url}: not JSON") from None
    if not isinstance(data, dict):
        raise CheckFailed(f"checksums from {url}: not a JSON object")
    return data


def core_checksums(ctx: Context, base_url: str, version: str, locale: str, timeout: float) -> dict[str, str] | None:
    """md5 per core file of WordPress ``version`` in ``locale``; None when the API knows no such release."""
    data = _get_json(ctx, base_url, {"version": version, "locale": locale}, timeout)
    sums = data.get("checksums") if data else None
    if isinstance(sums, dict) and isinstance(sums.get(version), dict):  # the multi-version answer
        sums = sums[version]
    if not isinstance(sums, dict) or not sums:
        return None
    return {str(k): str(v) for k, v in sums.items() if isinstance(v, str)}


def plugin_checksums(
    ctx: Context, base_url: str, slug: str, version: str, timeout: float
) -> dict[str, list[str]] | None:
    """md5 values per file of plugin ``slug`` at ``version``; None when wordpress.org does not know it (404)."""
    url = f"{base_url.rstrip('/')}/{slug}/{version}.json"
    data = _get_json(ctx, url, None, timeout)
    files = data.get("files") if data else None
    if not isinstance(files, dict):
        return None
    out: dict[str, list[str]] = {}
    for name, sums in files.items():
        md5 = sums.get("md5") if isinstance(sums, dict) else None
        values = md5 if isinstance(md5, list) else [md5]
        out[str(name)] = [str(v) for v in values if isinstance(v, str)]
    return out


# ----------------------------------------------------------------------------- the host script
@dataclass
class Tree:
    """One folder to hash on the host: every file (md5), or only the PHP files' names (``names_only``)."""

    name: str
    path: str
    prune: list[str] = field(default_factory=list)
    names_only: list[str] | None = None  # file name extensions to list (uploads)


def _tree_section(tree: Tree) -> str:
    prune = "".join(f"-path {quote('./' + p)} -prune -o " for p in tree.prune)
    if tree.names_only is not None:
        exts = " -o ".join(f"-iname {quote('*.' + e)}" for e in tree.names_only) or "-false"
        body = f"find . {prune}-type f \\( {exts} \\) -print0"
    else:
        body = f"find . {prune}\\( -type f -o -type l \\) -print0 | xargs -0 -r md5sum --zero -- 2>/dev/null"
    return (
        f"printf '@@TREE %s\\0' {quote(tree.name)}; "
        f"( cd -- {quote(tree.path)} 2>/dev/null || {{ printf '@@MISSING\\0'; exit 0; }}; {body} ); "
    )


def host_script(trees: list[Tree], lock_paths: list[str]) -> str:
    """Shell printing, NUL-separated, one section per tree and then the lock tree hashes (one per line)."""
    parts = [_tree_section(t) for t in trees]
    parts.append(f"printf '@@TREE %s\\0' {LOCK_SECTION}; {tree_hash_script(lock_paths)}; true")
    return "".join(parts)


@dataclass
class Section:
    """What the host printed for one tree."""

    missing: bool = False
    hashes: dict[str, str] = field(default_factory=dict)  # relative path -> md5
    names: list[str] = field(default_factory=list)  # names_only trees
    lines: list[str] = field(default_factory=list)  # the lock section


def _name(raw: bytes) -> str:
    rel = raw[2:] if raw.startswith(b"./") else raw
    return rel.decode("utf-8", "surrogateescape")


def parse_sections(raw: bytes) -> dict[str, Section]:
    """The host script's answer, by tree name."""
    out: dict[str, Section] = {}
    current: Section | None = None
    name = ""
    for entry in raw.split(b"\0"):
        if entry.startswith(b"@@TREE "):
            name = entry[7:].decode("utf-8", "replace")
            current = out.setdefault(name, Section())
        elif current is None or not entry:
            continue
        elif name == LOCK_SECTION:
            current.lines += entry.decode("utf-8", "replace").splitlines()
        elif entry == b"@@MISSING":
            current.missing = True
        elif _HEX32.match(entry[:32]) and entry[32:34] in (b"  ", b" *"):
            current.hashes[_name(entry[34:])] = entry[:32].decode()
        elif entry.startswith(b"./"):
            current.names.append(_name(entry))
    return out


def display(path: str) -> str:
    """A path as text for reports (bytes that are not UTF-8 shown as U+FFFD)."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


@dataclass
class TreeDiff:
    """Files of a tree that differ from its checksums (relative paths)."""

    modified: list[str] = field(default_factory=list)
    added: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)


def compare(expected: Mapping[str, str | list[str]], actual: Mapping[str, str]) -> TreeDiff:
    """Modified, added and missing files of ``actual`` (md5 per path) against ``expected``."""
    diff = TreeDiff()
    for path, want in expected.items():
        allowed = [want] if isinstance(want, str) else list(want)
        got = actual.get(path)
        if got is None:
            diff.missing.append(path)
        elif allowed and got not in allowed:
            diff.modified.append(path)
    diff.added = [p for p in actual if p not in expected]
    for part in (diff.modified, diff.added, diff.missing):
        part.sort()
    return diff


__all__ = [
    "LOCK_SECTION",
    "Globs",
    "Section",
    "Tree",
    "TreeDiff",
    "compare",
    "core_checksums",
    "display",
    "glob_regex",
    "host_script",
    "parse_sections",
    "plugin_checksums",
]
