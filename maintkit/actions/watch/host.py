"""``host.health``: disk and inodes, load, memory, php-fpm saturation and the database. Read-only.

Everything is read in ONE round trip: ``df -P`` and ``df -Pi`` for each path (the site, its
backups folder, any ``paths`` given, and the database's data directory when the database is
on this host), ``/proc/loadavg``, ``nproc``, ``/proc/meminfo``, the php-fpm status page
(``fpm_status_url``, fetched on the host with curl or wget, as ``?json``) and a ``SELECT`` on
the database (``database: true``). Each metric has a warn and a fail threshold; a warning is
reported in the result and the ``host`` series point, a failure fails the step. A path that
does not exist is reported, not an error.

The database client gets ``--defaults-file=FILE`` (``db_defaults_file``) or ``--no-defaults``
as its first option (:mod:`maintkit.actions.mariadb`), so the login user's ``~/.my.cnf`` is
never read: without an option file it connects as the login user (socket authentication).
"""

from __future__ import annotations

import json
import posixpath
import re
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator

from maintkit.action import Action, Context, Params
from maintkit.actions.mariadb import client_argv
from maintkit.actions.watch.common import HOST, write_point
from maintkit.errors import CheckFailed
from maintkit.results import Change, Check
from maintkit.state.index import series
from maintkit.transport.base import join, quote

#: warn / fail defaults per metric
DEFAULTS: dict[str, tuple[float | None, float | None]] = {
    "disk_pct": (80, 90),
    "inodes_pct": (80, 90),
    "load_per_cpu": (1.5, 3),
    "mem_pct": (90, 97),
    "fpm_listen_queue": (1, 10),
}
#: a previous ``host`` point older than this is not compared with (php-fpm counters)
PREVIOUS_WINDOW = timedelta(days=7)
_LOCAL_DB_HOSTS = {"", "localhost", "127.0.0.1", "::1"}
_DF_LINE = re.compile(r"^(?P<fs>.+?)\s+(?P<a>\d+|-)\s+(?P<b>\d+|-)\s+(?P<c>\d+|-)\s+(?P<pct>\d+%|-)\s+(?P<mount>/.*)$")
_BLOCKS = re.compile(r"(\d+)-blocks")
Level = Literal["ok", "warn", "fail"]


class Threshold(Params):
    """A warn and a fail level of one metric (null: that level is off); reached at ``value >= level``."""

    warn: float | None = None
    fail: float | None = None


class HostHealthParams(Params):
    """Parameters of ``host.health``."""

    paths: list[str] | None = Field(
        None, description="Paths whose filesystems are checked (default: the env path and its backups folder)"
    )
    disk_pct: Threshold = Field(default_factory=Threshold, description="Disk use in % (default warn 80, fail 90)")
    inodes_pct: Threshold = Field(default_factory=Threshold, description="Inode use in % (default 80 / 90)")
    load_per_cpu: Threshold = Field(default_factory=Threshold, description="1-minute load per CPU (default 1.5 / 3)")
    mem_pct: Threshold = Field(default_factory=Threshold, description="Memory in use in % (default 90 / 97)")
    fpm_status_url: str | None = Field(None, description="php-fpm status page URL, fetched on the host (?json added)")
    fpm_listen_queue: Threshold = Field(default_factory=Threshold, description="php-fpm listen queue (default 1 / 10)")
    database: bool = Field(False, description="Check that the database answers (and its data directory's disk)")
    db_defaults_file: str | None = Field(
        None, description="MariaDB option file on the host (default vars.db_defaults_file)"
    )
    db_host: str | None = Field(None, description="Database host (default vars.db_host; none: the local socket)")
    db_port: int | None = Field(None, ge=1, le=65535, description="Database port (default vars.db_port)")
    db_user: str | None = Field(None, description="Database user (default vars.db_user, else the login user)")
    timeout: float = Field(10.0, gt=0, le=300, description="Seconds each read on the host may take")

    @field_validator("disk_pct", "inodes_pct", "load_per_cpu", "mem_pct", "fpm_listen_queue", mode="before")
    @classmethod
    def _defaults(cls, value: Any, info: ValidationInfo) -> Any:
        warn, fail = DEFAULTS[str(info.field_name)]
        if value is None:
            return {"warn": warn, "fail": fail}
        if isinstance(value, dict):
            return {"warn": warn, "fail": fail, **value}
        return value

    def model_post_init(self, _context: Any) -> None:
        """Fill the thresholds left out entirely with their defaults."""
        for name, (warn, fail) in DEFAULTS.items():
            if name not in self.model_fields_set:
                setattr(self, name, Threshold(warn=warn, fail=fail))


# ----------------------------------------------------------------------------- the round trip
@dataclass(frozen=True)
class DbTarget:
    """How to reach the database: the client's argv and whether its data directory is on this host."""

    argv_mariadb: list[str]
    argv_mysql: list[str]
    local: bool


def _section(name: str, arg: int, command: str) -> str:
    return f"printf '%s %s %s\\n' \"$M\" {name} {arg}; {command}; printf '\\n%s rc %s\\n' \"$M\" $?"


def host_script(paths: list[str], marker: str, *, timeout: float, fpm_url: str | None, db: DbTarget | None) -> str:
    """The script printing every reading in marked sections (``M name index`` ... ``M rc CODE``)."""
    t = int(max(1, timeout))
    lines = [
        f"M={quote(marker)}",
        't() { if command -v timeout >/dev/null 2>&1; then timeout "$@"; else shift; "$@"; fi; }',
    ]
    for i, path in enumerate(paths):
        lines.append(_section("df", i, f"LC_ALL=C t {t} df -P -- {quote(path)} 2>&1"))
        lines.append(_section("dfi", i, f"LC_ALL=C t {t} df -Pi -- {quote(path)} 2>&1"))
    lines.append(_section("load", 0, "cat /proc/loadavg"))
    lines.append(_section("nproc", 0, "nproc 2>/dev/null || getconf _NPROCESSORS_ONLN"))
    lines.append(_section("mem", 0, "cat /proc/meminfo"))
    if fpm_url is not None:
        curl = join(["curl", "-fsS", "--max-time", str(t), "--", fpm_url])
        wget = join(["wget", "-q", "-O", "-", "-T", str(t), "--", fpm_url])
        fetch = (
            f"if command -v curl >/dev/null 2>&1; then {curl} 2>&1; "
            f"elif command -v wget >/dev/null 2>&1; then {wget} 2>&1; "
            "else echo 'neither curl nor wget on the host'; false; fi"
        )
        lines.append(_section("fpm", 0, fetch))
    if db is not None:
        lines.append(_db_lines(db, t))
    return "\n".join(lines) + "\n"


def _db_lines(db: DbTarget, t: int) -> str:
    query = ["--batch", "--skip-column-names", f"--connect-timeout={t}", "-e", "SELECT @@datadir"]
    pick = (
        f"if command -v mariadb >/dev/null 2>&1; then set -- {join(db.argv_mariadb + query)}; "
        f"else set -- {join(db.argv_mysql + query)}; fi"
    )
    text = pick + "\n" + _section("db", 0, f'd=$(t {t} "$@" </dev/null 2>&1); rc=$?; printf "%s" "$d"; (exit $rc)')
    if db.local:
        datadir = 'dd=$(printf "%s\\n" "$d" | tail -n 1)'
        text += f'\nif [ "$rc" = 0 ]; then {datadir}; ' + _section("dbdf", 0, f'LC_ALL=C t {t} df -P -- "$dd" 2>&1')
        text += "; " + _section("dbdfi", 0, f'LC_ALL=C t {t} df -Pi -- "$dd" 2>&1') + "; fi"
    return text


def parse_sections(out: str, marker: str) -> dict[tuple[str, int], tuple[str, int]]:
    """``{(name, index): (text, exit code)}`` of the marked sections of :func:`host_script`'s output."""
    found: dict[tuple[str, int], tuple[str, int]] = {}
    current: tuple[str, int] | None = None
    body: list[str] = []
    for line in out.split("\n"):
        fields = line.split(" ")
        if fields[0] != marker or len(fields) != 3:
            body.append(line)
            continue
        if fields[1] == "rc" and current is not None:
            code = int(fields[2]) if fields[2].isdigit() else 1
            found[current] = ("\n".join(body).strip("\n"), code)
            current, body = None, []
        elif fields[2].isdigit():
            current, body = (fields[1], int(fields[2])), []
    return found


# ----------------------------------------------------------------------------- parsing
def parse_df(text: str) -> tuple[str, int | None, int | None] | None:
    """``(mount, used %, available bytes)`` of ``df -P`` / ``df -Pi`` output (bytes None for -i), or None."""
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) < 2:
        return None
    match = _DF_LINE.match(lines[-1])
    if match is None:
        return None
    pct = int(match.group("pct")[:-1]) if match.group("pct") != "-" else None
    unit = _BLOCKS.search(lines[0])
    free = int(match.group("c")) * int(unit.group(1)) if unit and match.group("c") != "-" else None
    return match.group("mount"), pct, free


def parse_load(text: str) -> float | None:
    """The 1-minute load average of ``/proc/loadavg``."""
    try:
        return float(text.split()[0])
    except (IndexError, ValueError):
        return None


def parse_int(text: str) -> int | None:
    """A positive integer printed alone (``nproc``), or None."""
    value = text.strip()
    return int(value) if value.isdigit() and 0 < len(value) < 7 and int(value) > 0 else None


def parse_meminfo(text: str) -> float | None:
    """Memory in use in % (``MemTotal`` - ``MemAvailable``; old kernels: free + buffers + cached)."""
    values: dict[str, int] = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        words = rest.split()
        if words and words[0].isdigit():
            values[key.strip()] = int(words[0])
    total = values.get("MemTotal")
    if not total:
        return None
    available = values.get("MemAvailable")
    if available is None:
        available = values.get("MemFree", 0) + values.get("Buffers", 0) + values.get("Cached", 0)
    return round((total - min(available, total)) * 100 / total, 1)


def parse_fpm(text: str) -> dict[str, int] | None:
    """``{active, total, max_children_reached, listen_queue}`` of php-fpm's ``?json`` status, or None."""
    try:
        data = json.loads(text)
    except ValueError:
        return None
    keys = {
        "active": "active processes",
        "total": "total processes",
        "max_children_reached": "max children reached",
        "listen_queue": "listen queue",
    }
    if not isinstance(data, dict) or not all(isinstance(data.get(k), int) for k in keys.values()):
        return None
    return {name: int(data[k]) for name, k in keys.items()}


# ----------------------------------------------------------------------------- judging
@dataclass
class Verdict:
    """Problems found, by level, and notes that change no level."""

    fail: list[str] = field(default_factory=list)
    warn: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def status(self) -> Level:
        """``fail``, ``warn`` or ``ok``."""
        return "fail" if self.fail else "warn" if self.warn else "ok"

    def judge(self, value: float | None, limit: Threshold, text: str, unit: str = "") -> None:
        """Add ``text`` with the level ``value`` reaches (nothing when it reaches none)."""
        if value is None:
            return
        if limit.fail is not None and value >= limit.fail:
            self.fail.append(f"{text} (fail at {_num(limit.fail)}{unit})")
        elif limit.warn is not None and value >= limit.warn:
            self.warn.append(f"{text} (warn at {_num(limit.warn)}{unit})")


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


class HostHealth(Action[HostHealthParams]):
    """Disk, inodes, load, memory, php-fpm saturation and the database of the host, against thresholds."""

    check_only = True
    name = "host.health"
    Params = HostHealthParams
    summary = "Disk and inode use, load, memory, php-fpm pool saturation and the database, with warn/fail levels."
    rollback_kind = "noop"
    rollback_reason = "a check changes nothing"

    def check(self, ctx: Context) -> Check:
        p = self.params
        paths = list(dict.fromkeys(self._paths(ctx)))
        db = self._db(ctx) if p.database else None
        fpm_url = _json_url(p.fpm_status_url) if p.fpm_status_url else None
        marker = "@@host-" + secrets.token_hex(8)
        script = host_script(paths, marker, timeout=p.timeout, fpm_url=fpm_url, db=db)
        res = ctx.run_shell(script, check=False, timeout=p.timeout * (2 * len(paths) + 6) + 30)
        sections = parse_sections(res.stdout, marker)
        if not sections:
            raise CheckFailed(f"could not read the host's state ({res.why}): {res.stderr.strip()[:300]}")
        verdict = Verdict()
        point = self._point(ctx, paths, sections, verdict)
        point["status"] = verdict.status
        write_point(ctx, HOST, point)
        ctx.record(**point, problems=verdict.fail + verdict.warn, notes=verdict.notes)
        if verdict.fail:
            raise CheckFailed("; ".join(verdict.fail), details={**point, "warnings": verdict.warn})
        return Check.ok(_reason(point, verdict))

    def apply(self, ctx: Context, check: Check) -> list[Change]:
        return []

    def rollback(self, ctx: Context, changes: list[Change]) -> None:
        """Nothing to undo: a check changes nothing."""

    def _paths(self, ctx: Context) -> list[str]:
        base = ctx.path.rstrip("/") or "/"
        if self.params.paths is None:
            backups = ctx.vars.get("backup_dir") or f"{base.rstrip('/')}/.maint/backups"
            return [base, str(backups)]
        return [posixpath.normpath(posixpath.join(base, x)) for x in self.params.paths]

    def _db(self, ctx: Context) -> DbTarget:
        p, v = self.params, ctx.vars
        defaults_file = p.db_defaults_file or v.get("db_defaults_file")
        host = p.db_host or v.get("db_host")
        port = p.db_port or v.get("db_port")
        user = p.db_user or v.get("db_user")
        extra = [f"--host={host}"] if host else []
        extra += [f"--port={int(port)}"] if port else []
        extra += [f"--user={user}"] if user else []
        # always an explicit option file or none at all: ~/.my.cnf is never read
        cnf = str(defaults_file) if defaults_file else None
        mariadb, mysql = (client_argv(b, cnf, explicit_user=True) for b in ("mariadb", "mysql"))
        return DbTarget(mariadb + extra, mysql + extra, str(host or "") in _LOCAL_DB_HOSTS)

    def _point(
        self, ctx: Context, paths: list[str], sections: dict[tuple[str, int], tuple[str, int]], verdict: Verdict
    ) -> dict[str, Any]:
        p = self.params
        disk = [_disk(path, sections.get(("df", i)), sections.get(("dfi", i)), verdict) for i, path in enumerate(paths)]
        point: dict[str, Any] = {"disk": [d for d in disk if d is not None]}
        load1 = parse_load(sections.get(("load", 0), ("", 1))[0])
        cpus = parse_int(sections.get(("nproc", 0), ("", 1))[0])
        mem = parse_meminfo(sections.get(("mem", 0), ("", 1))[0])
        point.update(load1=load1, cpus=cpus, mem_used_pct=mem, fpm=None, db_ok=None)
        if p.database:
            point["db_ok"] = _database(sections, point["disk"], verdict)
        for entry in point["disk"]:
            where = f"{entry['path']} ({entry['mount']})"
            verdict.judge(entry["used_pct"], p.disk_pct, f"disk {where}: {entry['used_pct']}% used", "%")
            verdict.judge(entry["inodes_pct"], p.inodes_pct, f"inodes {where}: {entry['inodes_pct']}% used", "%")
        if load1 is not None and cpus:
            per = load1 / cpus
            verdict.judge(per, p.load_per_cpu, f"load {load1} on {cpus} CPUs ({per:.2f} per CPU)")
        verdict.judge(mem, p.mem_pct, f"memory {mem}% used", "%")
        if p.fpm_status_url:
            point["fpm"] = self._fpm(ctx, sections.get(("fpm", 0)), verdict)
        return point

    def _fpm(self, ctx: Context, section: tuple[str, int] | None, verdict: Verdict) -> dict[str, int] | None:
        text, code = section or ("", 1)
        fpm = parse_fpm(text) if code == 0 else None
        if fpm is None:
            verdict.fail.append(f"php-fpm status page unreadable: {text.strip()[:200] or f'exit {code}'}")
            return None
        before = _previous_fpm(ctx)
        grew = fpm["max_children_reached"] - before if before is not None else 0
        if grew > 0:
            verdict.fail.append(f"php-fpm reached pm.max_children {grew} more time(s) since the last check")
        elif before is None and fpm["max_children_reached"] > 0:
            verdict.warn.append(
                f"php-fpm reached pm.max_children {fpm['max_children_reached']} time(s) since it started"
            )
        verdict.judge(fpm["listen_queue"], self.params.fpm_listen_queue, f"php-fpm listen queue {fpm['listen_queue']}")
        return fpm


def _disk(
    path: str, df: tuple[str, int] | None, dfi: tuple[str, int] | None, verdict: Verdict
) -> dict[str, Any] | None:
    blocks = parse_df(df[0]) if df is not None and df[1] == 0 else None
    if blocks is None:
        if df is not None:
            verdict.notes.append(f"path not found: {path}")
        return None
    inodes = parse_df(dfi[0]) if dfi is not None and dfi[1] == 0 else None
    mount, used, free = blocks
    return {
        "path": path,
        "mount": mount,
        "used_pct": used,
        "inodes_pct": inodes[1] if inodes else None,
        "free_bytes": free,
    }


def _database(sections: dict[tuple[str, int], tuple[str, int]], disk: list[dict[str, Any]], verdict: Verdict) -> bool:
    """Whether the database answered; its data directory's filesystem joins ``disk`` when read."""
    text, code = sections.get(("db", 0), ("", 1))
    if code != 0:
        verdict.fail.append(f"database does not answer: {text.strip()[-300:] or f'exit {code}'}")
        return False
    datadir = text.strip().splitlines()[-1].rstrip("/") if text.strip() else ""
    entry = _disk(datadir, sections.get(("dbdf", 0)), sections.get(("dbdfi", 0)), verdict) if datadir else None
    if entry is not None and all(d["path"] != entry["path"] for d in disk):
        disk.append(entry)
    return True


def _previous_fpm(ctx: Context) -> int | None:
    since = datetime.now(UTC) - PREVIOUS_WINDOW
    for point in reversed(series(ctx.options.history, ctx.site.name, ctx.env.name, HOST, since=since)):
        fpm = point.get("fpm")
        if isinstance(fpm, dict) and isinstance(fpm.get("max_children_reached"), int):
            return int(fpm["max_children_reached"])
    return None


def _json_url(url: str) -> str:
    if re.search(r"[?&]json(?:&|=|$)", url):
        return url
    return url + ("&" if "?" in url else "?") + "json"


def _reason(point: dict[str, Any], verdict: Verdict) -> str:
    disk = max(point["disk"], key=lambda d: d["used_pct"] or 0, default=None)
    parts = []
    if disk is not None:
        parts.append(f"disk {disk['used_pct']}% used at most ({disk['mount']})")
    if point["load1"] is not None:
        parts.append(f"load {point['load1']} on {point['cpus']} CPUs")
    if point["mem_used_pct"] is not None:
        parts.append(f"memory {point['mem_used_pct']}% used")
    if point["fpm"] is not None:
        parts.append(f"php-fpm {point['fpm']['active']}/{point['fpm']['total']} busy")
    if point["db_ok"]:
        parts.append("database answers")
    head = "host ok: " if verdict.status == "ok" else "warn: " + "; ".join(verdict.warn) + "; "
    return head + ", ".join(parts) + "".join(f"; {n}" for n in verdict.notes)


__all__ = ["HostHealth", "HostHealthParams", "Threshold", "host_script", "parse_df", "parse_fpm", "parse_sections"]
