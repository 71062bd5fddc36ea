"""Parsing web server access logs and PHP error logs for ``logs.scan``.

Formats (the ``format`` parameter):

- ``combined``: the nginx and Apache combined format (the common format, without referer and
  user agent, is read too)::

      127.0.0.1 - - [10/Oct/2024:13:55:36 +0000] "GET /cart?x=1 HTTP/1.1" 500 612 "-" "curl/8.0"

- ``nginx_timed``: combined followed by nginx's ``$request_time`` (seconds, millisecond
  resolution); anything after it is ignored::

      log_format timed '$remote_addr - $remote_user [$time_local] "$request" $status '
                       '$body_bytes_sent "$http_referer" "$http_user_agent" $request_time';

- any other value: a Python regular expression with named groups, matched at the start of each
  line. ``status`` is required; the path comes from ``path`` or ``request`` (``"GET /x HTTP/1.1"``);
  the duration from ``request_time`` (seconds), ``request_ms`` or ``request_us`` (Apache ``%D``).

Every function here takes text from the host as it is: a line that does not match is counted as
unparsed, never raised on. Lines are cut to :data:`MAX_LINE` characters before matching.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

#: characters of a line looked at (a longer line is cut before matching)
MAX_LINE = 16 * 1024
#: characters of a path kept for the top failing paths
MAX_PATH = 300
#: distinct failing paths counted one by one; more are counted under :data:`OTHER_PATHS`
MAX_DISTINCT_PATHS = 20_000
#: where failing paths beyond :data:`MAX_DISTINCT_PATHS` are counted
OTHER_PATHS = "(other paths)"
#: failing paths reported
TOP_FAILING = 10

_QUOTED = r'"(?P<{name}>(?:[^"\\]|\\.)*)"'
_COMBINED = (
    r"(?P<remote>\S+) \S+ (?P<user>\S+) \[(?P<time>[^\]]*)\] "
    + _QUOTED.format(name="request")
    + r" (?P<status>\d{3}) (?P<bytes>\d+|-)"
)
_AGENT = r" " + _QUOTED.format(name="referer") + r" " + _QUOTED.format(name="agent")
BUILTIN = {
    "combined": _COMBINED + r"(?:" + _AGENT + r")?",
    "nginx_timed": _COMBINED + _AGENT + r"\s+(?P<request_time>\d+(?:\.\d+)?|-)",
}
_TIME_GROUPS = {"request_time": 1000.0, "request_ms": 1.0, "request_us": 0.001}
_FATAL = re.compile(r"PHP (?:Fatal|Parse) error:\s*(?P<message>.*)")
_WHERE = re.compile(r"\bin (?P<file>/[^\s:()]+)(?::(?P<line>\d{1,9})| on line (?P<line2>\d{1,9}))")


@dataclass(frozen=True)
class LogFormat:
    """A compiled access log format: its regular expression and what it can tell."""

    name: str
    regex: re.Pattern[str]

    @property
    def timed(self) -> bool:
        """True when the format carries a request duration."""
        return any(g in self.regex.groupindex for g in _TIME_GROUPS)


def compile_format(spec: str) -> LogFormat:
    """The :class:`LogFormat` of ``combined``, ``nginx_timed`` or a custom regex (ValueError if unusable)."""
    pattern = BUILTIN.get(spec, spec)
    try:
        regex = re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"format is neither combined, nginx_timed nor a valid regular expression: {exc}") from None
    groups = set(regex.groupindex)
    if "status" not in groups:
        raise ValueError("a custom format needs a named group 'status', e.g. (?P<status>\\d{3})")
    if not groups & {"path", "request"}:
        raise ValueError("a custom format needs a named group 'path' or 'request'")
    return LogFormat(spec if spec in BUILTIN else "custom", regex)


@dataclass(frozen=True)
class Entry:
    """One parsed access log line."""

    status: int
    path: str
    ms: float | None


def request_path(request: str) -> str:
    """The path of a request line (``GET /a?b HTTP/1.1`` -> ``/a``), query string stripped; ``-`` if none."""
    parts = request.split(" ")
    target = parts[1] if len(parts) >= 2 else ""
    if not target:
        return "-"
    return strip_query(target)


def strip_query(target: str) -> str:
    """``target`` without its query string or fragment, cut to :data:`MAX_PATH` characters."""
    path = target.split("?", 1)[0].split("#", 1)[0]
    return (path or "-")[:MAX_PATH]


def parse_line(fmt: LogFormat, line: str) -> Entry | None:
    """The :class:`Entry` of one access log line, or None when it does not match ``fmt``."""
    match = fmt.regex.match(line[:MAX_LINE])
    if match is None:
        return None
    groups = match.groupdict()
    try:
        status = int(groups.get("status") or "")
    except ValueError:
        return None
    raw_path = groups.get("path")
    path = strip_query(raw_path) if raw_path is not None else request_path(groups.get("request") or "")
    return Entry(status, path, _duration_ms(groups))


def _duration_ms(groups: dict[str, Any]) -> float | None:
    for name, factor in _TIME_GROUPS.items():
        value = groups.get(name)
        if value is None:
            continue
        try:
            ms = float(value) * factor
        except ValueError:
            return None
        return ms if ms >= 0 and ms == ms and ms != float("inf") else None
    return None


@dataclass
class Tally:
    """Counts over the access log lines of one scan."""

    slow_ms: float | None = None
    requests: int = 0
    status_4xx: int = 0
    status_5xx: int = 0
    slow: int = 0
    timed: int = 0
    unparsed: int = 0
    failing: Counter[str] = field(default_factory=Counter)

    def add_line(self, fmt: LogFormat, line: str) -> None:
        """Count one line (an empty line is skipped, one that does not parse is ``unparsed``)."""
        if not line.strip():
            return
        entry = parse_line(fmt, line)
        if entry is None:
            self.unparsed += 1
            return
        self.add(entry)

    def add(self, entry: Entry) -> None:
        """Count one parsed request."""
        self.requests += 1
        if 400 <= entry.status < 500:
            self.status_4xx += 1
        elif 500 <= entry.status < 600:
            self.status_5xx += 1
        if entry.status >= 400:
            key = entry.path
            if key not in self.failing and len(self.failing) >= MAX_DISTINCT_PATHS:
                key = OTHER_PATHS
            self.failing[key] += 1
        if entry.ms is not None:
            self.timed += 1
            if self.slow_ms is not None and entry.ms >= self.slow_ms:
                self.slow += 1

    def rate(self, count: int) -> float | None:
        """``count`` over the requests (None without requests)."""
        return round(count / self.requests, 6) if self.requests else None

    def top_failing(self, n: int = TOP_FAILING) -> list[list[Any]]:
        """The ``n`` paths with most 4xx/5xx answers: ``[[path, count], ...]``, most first, then by path."""
        ranked = sorted(self.failing.items(), key=lambda kv: (-kv[1], kv[0]))
        return [[path, count] for path, count in ranked[:n]]


@dataclass(frozen=True)
class Fatal:
    """One PHP fatal error line: where it happened and its message."""

    file: str | None
    line: int | None
    message: str

    @property
    def where(self) -> str:
        """``file:line`` (or ``unknown file``)."""
        if self.file is None:
            return "unknown file"
        return f"{self.file}:{self.line}" if self.line is not None else self.file


def php_fatal(text: str) -> Fatal | None:
    """The :class:`Fatal` of a PHP error log line with ``PHP Fatal error`` or ``PHP Parse error``, else None.

    The file and line are the last ``in FILE:LINE`` / ``in FILE on line N`` of the line (for an
    uncaught exception: where it was thrown).
    """
    match = _FATAL.search(text[:MAX_LINE])
    if match is None:
        return None
    message = match.group("message").strip()
    wheres = list(_WHERE.finditer(message))
    if not wheres:
        return Fatal(None, None, message[:300])
    last = wheres[-1]
    number = last.group("line") or last.group("line2")
    return Fatal(last.group("file")[:MAX_PATH], int(number) if number else None, message[:300])


__all__ = [
    "BUILTIN",
    "MAX_LINE",
    "OTHER_PATHS",
    "Entry",
    "Fatal",
    "LogFormat",
    "Tally",
    "compile_format",
    "parse_line",
    "php_fatal",
    "request_path",
    "strip_query",
]
