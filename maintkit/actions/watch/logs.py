"""``logs.scan``: the access and PHP error logs since the previous scan. Read-only.

Each log's inode, size and the offset read up to are kept in the state store's
``logs-offsets`` series, so a scan reads only the bytes written since the previous one, in one
round trip for every log. A log whose inode changed or that shrank was rotated: the rest of
the old file (``<path>.1``, when it is the old file) is read from the old offset first, then the
new file from its start. Only whole lines are consumed; a line still being written is read by
the next scan. At most ``max_bytes`` are read per scan (the rest is left for the next one, and
the result says so). The first scan of a log starts at its end (``first_scan: end``) or reads
it whole (``start``). In plan mode nothing is read: the result says how many bytes would be,
and no offset moves.

Access logs give requests, 4xx, 5xx, slow requests (formats with a duration) and the top
failing paths; PHP error logs give the new ``PHP Fatal error`` / ``PHP Parse error`` lines with
their file and line. Rates over their thresholds and new fatal errors fail the step.
"""

from __future__ import annotations

import posixpath
import secrets
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from maintkit.action import Action, Context, Params
from maintkit.actions.watch.common import LOGS, LOGS_OFFSETS, write_point
from maintkit.actions.watch.logformat import Fatal, Tally, compile_format, php_fatal
from maintkit.errors import CheckFailed
from maintkit.results import Change, Check
from maintkit.state.index import series
from maintkit.transport.base import quote

#: how far back the last ``logs-offsets`` point is looked for (older: the log is scanned anew)
STATE_WINDOW = timedelta(days=92)
#: fatal error places listed in the result
MAX_FATALS = 20

_READER = r"""rd() {
  n=$(( $5 - $4 )); cp=0
  if [ "$n" -gt "$left" ]; then n=$left; cp=1; fi
  left=$(( left - n ))
  printf '%s part %s %s %s %s %s\n' "$M" "$1" "$2" "$4" "$n" "$cp"
  if [ "$dry" = 0 ] && [ "$n" -gt 0 ]; then tail -c +$(( $4 + 1 )) -- "$3" 2>/dev/null | head -c "$n"; fi
  printf '\n%s end\n' "$M"
}
sc() {
  c=$(stat -Lc '%i %s' -- "$2" 2>/dev/null); r=$(stat -Lc '%i %s' -- "$2.1" 2>/dev/null)
  printf '%s stat %s %s %s\n' "$M" "$1" "${c:-- -}" "${r:-- -}"
  [ -n "$c" ] || return 0
  ci=${c% *}; cs=${c#* }; ri=${r% *}; rs=${r#* }
  case $5 in end) return 0;; start) rd "$1" cur "$2" 0 "$cs"; return 0;; esac
  if [ "$ci" = "$3" ] && [ "$cs" -ge "$4" ]; then rd "$1" cur "$2" "$4" "$cs"; return 0; fi
  if [ -n "$r" ] && [ "$rs" -ge "$4" ] && { [ "$ri" = "$3" ] || [ "$ci" = "$3" ]; }; then
    rd "$1" rot "$2.1" "$4" "$rs"
  fi
  rd "$1" cur "$2" 0 "$cs"
}
"""


class LogsScanParams(Params):
    """Parameters of ``logs.scan``."""

    access_log: str | list[str] | None = Field(
        None, description="Access log path(s), relative to the env path or absolute (default: vars.access_logs)"
    )
    format: str = Field("combined", description="combined, nginx_timed, or a regex with named groups (status, path)")
    slow_ms: float = Field(1000.0, gt=0, description="A request taking at least this many ms is slow")
    max_rate_5xx: float | None = Field(0.05, ge=0, le=1, description="Fail above this share of 5xx answers")
    max_rate_4xx: float | None = Field(None, ge=0, le=1, description="Fail above this share of 4xx answers")
    min_requests: int = Field(20, ge=0, description="Rates fail the step only from this many requests on")
    php_error_log: str | list[str] | None = Field(None, description="PHP error log path(s) (default: vars.error_logs)")
    max_php_fatals: int | None = Field(0, ge=0, description="Fail above this many new PHP fatal errors (null: never)")
    max_bytes: int = Field(64 * 1024 * 1024, ge=1024, description="Bytes read per scan at most (the rest waits)")
    first_scan: Literal["end", "start"] = Field("end", description="First scan of a log: start at its end, or read it")

    @field_validator("format")
    @classmethod
    def _format(cls, value: str) -> str:
        compile_format(value)
        return value

    @model_validator(mode="after")
    def _distinct(self) -> LogsScanParams:
        access, php = _as_list(self.access_log), _as_list(self.php_error_log)
        if len(set(access + php)) != len(access + php):
            raise ValueError("a log path is listed twice")
        return self


@dataclass(frozen=True)
class LogFile:
    """One log to scan: its path on the host and whether it is an access or a PHP error log."""

    path: str
    kind: Literal["access", "php"]


@dataclass
class Part:
    """Bytes of one file read by a scan: ``cur`` (the log) or ``rot`` (``<path>.1``)."""

    kind: str
    start: int
    length: int
    capped: bool
    data: bytes = b""


@dataclass
class Scanned:
    """What the host said about one log: its stat, its rotated file's stat, the parts read."""

    current: tuple[str, int] | None = None
    rotated: tuple[str, int] | None = None
    parts: list[Part] = field(default_factory=list)


# ----------------------------------------------------------------------------- the round trip
def scan_script(
    logs: list[LogFile], state: dict[str, Any], first_scan: str, max_bytes: int, dry: bool, marker: str
) -> str:
    """The shell script that stats every log and prints the parts to read (their bytes unless ``dry``)."""
    lines = [f"M={quote(marker)}; left={int(max_bytes)}; dry={1 if dry else 0}", _READER]
    for i, log in enumerate(logs):
        old = state.get(log.path)
        if isinstance(old, dict) and old.get("inode") and isinstance(old.get("offset"), int):
            mode, inode, offset = "cont", str(old["inode"]), int(old["offset"])
        else:
            mode, inode, offset = first_scan, "-", 0
        lines.append(f"sc {i} {quote(log.path)} {quote(inode)} {offset} {mode}")
    return "\n".join(lines) + "\n"


def parse_output(out: bytes, marker: str) -> dict[int, Scanned]:
    """The :class:`Scanned` of every log index in the output of :func:`scan_script`."""
    tag = marker.encode()
    trailer = b"\n" + tag + b" end\n"
    found: dict[int, Scanned] = {}
    pos = 0
    while (start := out.find(tag + b" ", pos)) >= 0:
        eol = out.find(b"\n", start)
        if eol < 0:
            break
        fields = out[start:eol].decode("ascii", "replace").split()
        pos = eol + 1
        if len(fields) == 7 and fields[1] == "stat":
            found[int(fields[2])] = Scanned(_stat(fields[3:5]), _stat(fields[5:7]))
        elif len(fields) == 7 and fields[1] == "part":
            end = out.find(trailer, pos)
            if end < 0:
                break
            part = Part(fields[3], int(fields[4]), int(fields[5]), fields[6] == "1", out[pos:end])
            found.setdefault(int(fields[2]), Scanned()).parts.append(part)
            pos = end + len(trailer)
    return found


def _stat(pair: list[str]) -> tuple[str, int] | None:
    if pair[0] == "-" or not pair[1].isdigit():
        return None
    return pair[0], int(pair[1])


def whole_lines(data: bytes, capped: bool) -> int:
    """Bytes of ``data`` up to its last newline (all of it when a capped read holds no newline)."""
    cut = data.rfind(b"\n") + 1
    return len(data) if cut == 0 and capped else cut


# ----------------------------------------------------------------------------- one log's outcome
@dataclass
class Outcome:
    """What a scan of one log gives: its lines, its new state, and notes for the result."""

    lines: list[str] = field(default_factory=list)
    state: dict[str, Any] | None = None
    read: int = 0
    capped: bool = False
    notes: list[str] = field(default_factory=list)


def outcome(log: LogFile, old: dict[str, Any] | None, scanned: Scanned | None) -> Outcome:
    """The lines of ``log`` read by this scan and where the next scan starts."""
    out = Outcome(state=old)
    if scanned is None or scanned.current is None:
        out.notes.append(f"{log.path}: not found")
        return out
    inode, size = scanned.current
    if not scanned.parts:  # a first scan starting at the end
        out.state = {"inode": inode, "offset": size, "size": size}
        out.notes.append(f"{log.path}: first scan, starts at byte {size}")
        return out
    rotated = [p for p in scanned.parts if p.kind == "rot"]
    if old is not None and (str(old.get("inode")) != inode or size < int(old.get("offset", 0))):
        note = "rest of the rotated file read first" if rotated else f"{log.path}.1 not found, its rest is not counted"
        out.notes.append(f"{log.path}: rotated ({note})")
    for part in scanned.parts:
        out.read += len(part.data)
        out.capped = out.capped or part.capped
        if part.kind == "rot" and part.capped:  # the old file is not finished: stay on it
            used = whole_lines(part.data, True)
            out.lines += _lines(part.data[:used])
            out.state = {"inode": str((old or {}).get("inode")), "offset": part.start + used, "size": size}
            return out
        used = len(part.data) if part.kind == "rot" else whole_lines(part.data, part.capped)
        out.lines += _lines(part.data[:used])
        if part.kind == "cur":
            out.state = {"inode": inode, "offset": part.start + used, "size": size}
    return out


def _lines(data: bytes) -> list[str]:
    return [line for line in data.decode("utf-8", "replace").split("\n") if line.strip()]


# ----------------------------------------------------------------------------- the action
class LogsScan(Action[LogsScanParams]):
    """Count requests, 4xx/5xx, slow requests and new PHP fatal errors since the previous scan."""

    check_only = True
    name = "logs.scan"
    Params = LogsScanParams
    summary = "Access and PHP error logs since the previous scan: 4xx/5xx rates, slow requests, new fatal errors."
    rollback_kind = "noop"
    rollback_reason = "a scan changes nothing on the host"

    def check(self, ctx: Context) -> Check:
        logs = self._logs(ctx)
        state = _last_state(ctx)
        marker = "@@logs-" + secrets.token_hex(8)
        p = self.params
        script = scan_script(logs, state, p.first_scan, p.max_bytes, ctx.check_mode, marker)
        res = ctx.run_shell(script, check=False)
        out = res.stdout_bytes if res.stdout_bytes is not None else res.stdout.encode()
        scanned = parse_output(out, marker)
        if not scanned and logs:
            raise CheckFailed(f"could not read the logs ({res.why}): {res.stderr.strip()[:300]}")
        if ctx.check_mode:
            return Check.ok(_plan_reason(logs, scanned))
        return self._judge(ctx, logs, state, scanned)

    def apply(self, ctx: Context, check: Check) -> list[Change]:
        return []

    def rollback(self, ctx: Context, changes: list[Change]) -> None:
        """Nothing to undo: a scan changes nothing."""

    def _logs(self, ctx: Context) -> list[LogFile]:
        p = self.params
        access = _as_list(p.access_log) if p.access_log is not None else _var_list(ctx, "access_logs")
        php = _as_list(p.php_error_log) if p.php_error_log is not None else _var_list(ctx, "error_logs")
        logs = [LogFile(_absolute(ctx, path), "access") for path in access]
        seen = {log.path for log in logs}
        logs += [
            LogFile(full, "php") for full in dict.fromkeys(_absolute(ctx, path) for path in php) if full not in seen
        ]
        if not logs:
            raise CheckFailed("no log to scan: set access_log / php_error_log (or vars.access_logs / vars.error_logs)")
        return logs

    def _judge(self, ctx: Context, logs: list[LogFile], state: dict[str, Any], scanned: dict[int, Scanned]) -> Check:
        tally = Tally(slow_ms=self.params.slow_ms)
        fmt = compile_format(self.params.format)
        fatals: list[Fatal] = []
        new_state = dict(state)
        notes: list[str] = []
        read, capped = 0, False
        for i, log in enumerate(logs):
            old = state.get(log.path) if isinstance(state.get(log.path), dict) else None
            got = outcome(log, old, scanned.get(i))
            for line in got.lines:
                if log.kind == "access":
                    tally.add_line(fmt, line)
                elif (fatal := php_fatal(line)) is not None:
                    fatals.append(fatal)
            if got.state is not None:
                new_state[log.path] = got.state
            notes += got.notes
            read, capped = read + got.read, capped or got.capped
        if capped:
            notes.append(f"capped at {self.params.max_bytes} bytes: the rest is read by the next scan")
        point = logs_point(tally, fmt.timed, len(fatals))
        write_point(ctx, LOGS, point)
        if new_state != state:
            write_point(ctx, LOGS_OFFSETS, {"logs": new_state})
        data = {**point, "unparsed": tally.unparsed, "bytes_read": read, "capped": capped, "notes": notes}
        data["fatals"] = [{"where": w, "count": n} for w, n in Counter(f.where for f in fatals).most_common(MAX_FATALS)]
        ctx.record(**data)
        failures = self._failures(tally, data["fatals"], len(fatals))
        if failures:
            raise CheckFailed("; ".join(failures), details=data)
        return Check.ok(_ok_reason(tally, len(fatals), read, notes, self.params.min_requests))

    def _failures(self, tally: Tally, places: list[dict[str, Any]], fatals: int) -> list[str]:
        p = self.params
        out: list[str] = []
        if tally.requests >= max(p.min_requests, 1):
            for label, count, limit in (
                ("5xx", tally.status_5xx, p.max_rate_5xx),
                ("4xx", tally.status_4xx, p.max_rate_4xx),
            ):
                if limit is not None and count / tally.requests > limit:
                    out.append(
                        f"{label} rate {_pct(count / tally.requests)} ({count} of {tally.requests}) over {_pct(limit)}"
                    )
        if p.max_php_fatals is not None and fatals > p.max_php_fatals:
            where = ", ".join(f"{x['where']} ({x['count']})" for x in places)
            out.append(f"{fatals} new PHP fatal error{'s' if fatals != 1 else ''}: {where}")
        return out


def logs_point(tally: Tally, timed: bool, php_fatals: int) -> dict[str, Any]:
    """The ``logs`` series point of a scan (``slow`` is null when no line carried a duration)."""
    return {
        "requests": tally.requests,
        "status_4xx": tally.status_4xx,
        "status_5xx": tally.status_5xx,
        "slow": tally.slow if timed and tally.timed else None,
        "rate_4xx": tally.rate(tally.status_4xx),
        "rate_5xx": tally.rate(tally.status_5xx),
        "top_failing": tally.top_failing(),
        "php_fatals": php_fatals,
    }


def _last_state(ctx: Context) -> dict[str, Any]:
    since = datetime.now(UTC) - STATE_WINDOW
    points = series(ctx.options.history, ctx.site.name, ctx.env.name, LOGS_OFFSETS, since=since)
    logs = points[-1].get("logs") if points else None
    return dict(logs) if isinstance(logs, dict) else {}


def _as_list(value: str | list[str] | None) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def _var_list(ctx: Context, name: str) -> list[str]:
    raw = ctx.vars.get(name)
    if isinstance(raw, str):
        return [raw]
    return [str(x) for x in raw] if isinstance(raw, list) else []


def _absolute(ctx: Context, path: str) -> str:
    return posixpath.normpath(posixpath.join(ctx.path, path))


def _pct(rate: float) -> str:
    return f"{rate * 100:.1f}%"


def _plan_reason(logs: list[LogFile], scanned: dict[int, Scanned]) -> str:
    parts = []
    for i, log in enumerate(logs):
        got = scanned.get(i)
        if got is None or got.current is None:
            parts.append(f"{log.path}: not found")
        elif not got.parts:
            parts.append(f"{log.path}: first scan would start at byte {got.current[1]}")
        else:
            what = " + ".join(f"{p.length} bytes of {log.path}{'.1' if p.kind == 'rot' else ''}" for p in got.parts)
            parts.append(f"would read {what}")
    return "; ".join(parts)


def _ok_reason(tally: Tally, fatals: int, read: int, notes: list[str], min_requests: int) -> str:
    text = f"{tally.requests} requests"
    if tally.requests:
        rate5, rate4 = tally.status_5xx / tally.requests, tally.status_4xx / tally.requests
        text += f", 5xx {_pct(rate5)} ({tally.status_5xx}), 4xx {_pct(rate4)} ({tally.status_4xx})"
    if tally.requests and tally.requests < min_requests:
        text += f" (rates not judged below {min_requests} requests)"
    if tally.timed:
        text += f", {tally.slow} slow"
    text += f"; {fatals} new PHP fatal error{'s' if fatals != 1 else ''}; {read} bytes read"
    return "; ".join([text, *notes])


__all__ = ["LogFile", "LogsScan", "LogsScanParams", "logs_point", "outcome", "parse_output", "scan_script"]
