"""One database into a new backup: its tables and row counts before the dump, the dump, the
counts again after it (a count that moved during the dump becomes a range), and the dump file's
size and sha256.

MariaDB/MySQL do all of it in ONE round trip (:func:`dump_in_one`): one shell runs the client
twice (before and after) and the dump between them. Each client run lists the tables and, when
the estimated total is at most ``count_limit``, counts the rows of every base table exactly,
with a ``COUNT(*)`` union the server builds from ``information_schema`` (a prepared statement),
so the count needs no second client run. Sections of the output are framed by a random marker
no table name can make. PostgreSQL keeps one command per part (:func:`dump_stepwise`). Either
runs its shell through the ``run_shell`` it is given: ``backup.create`` makes the backup's
folders in front of the first one (:mod:`.prepare`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from maintkit._text import tail as text_tail
from maintkit.action import Context
from maintkit.errors import ApplyFailed, CommandFailed
from maintkit.results import CommandResult
from maintkit.transport.base import checked, join, output_marker, quote

from .codec import compress_argv
from .common import facts_line, timeout_kwargs
from .db import LOW_PRIORITY_SETUP, DbClient, low, pipeline

#: the parts of :func:`dump_in_one`'s script, in order (each announced on stdout and stderr)
_STAGES = ("before", "dump", "after", "facts")
#: how a dump runs its shell: :meth:`Context.run_shell` or a stand-in with the same arguments
ShellRunner = Callable[..., CommandResult]


def table_state(client: DbClient, ctx: Context, timeout: float | None) -> tuple[dict[str, str], dict[str, int], bool]:
    """(name -> type, name -> rows, exact?) of the source database, with one command per read."""
    tables = client.tables(ctx, client.spec.name)
    kinds = {name: kind for name, (kind, _) in tables.items()}
    base = [n for n, (kind, _) in tables.items() if kind == "table" and n not in client.spec.ignore_tables]
    estimated = sum(rows for n, (kind, rows) in tables.items() if n in base)
    if estimated <= client.spec.count_limit:
        return kinds, client.count_rows(ctx, client.spec.name, base, timeout), True
    return kinds, {n: tables[n][1] for n in base}, False


def table_manifest(
    kinds: dict[str, str], before: dict[str, int], after: dict[str, int], exact: bool, ignored: list[str]
) -> dict[str, dict[str, Any]]:
    """The manifest's ``tables``: views, exact rows (or a range when they moved), or estimates."""
    out: dict[str, dict[str, Any]] = {}
    for name, kind in sorted(kinds.items()):
        if name in ignored:
            continue
        if kind == "view":
            out[name] = {"type": "view"}
        elif not exact:
            out[name] = {"type": "table", "rows_estimate": after.get(name, before.get(name, 0))}
        else:
            a, b = before.get(name), after.get(name, before.get(name))
            if a is None or b is None or a == b:
                out[name] = {"type": "table", "rows": b if b is not None else a}
            else:
                out[name] = {"type": "table", "rows_min": min(a, b), "rows_max": max(a, b)}
    return out


def _item(client: DbClient, name: str, exact: bool, tables: dict[str, dict[str, Any]]) -> dict[str, Any]:
    spec = client.spec
    return {
        "type": "database",
        "engine": spec.engine,
        "name": spec.name,
        "file": name,
        "compression": client.compression if client.mysql else "pg_dump-custom",
        "connection": spec.connection(),
        "ignored_tables": list(spec.ignore_tables),
        "counts": "exact" if exact else "estimate",
        "tables": tables,
    }


def _dump_pipeline(client: DbClient, out: str) -> str:
    """A MariaDB/MySQL dump through its compressor into ``out`` (both at low priority when the
    client says so: a backup taken on a live shop leaves it the CPU and the disk first)."""
    on = client.low_priority
    dump, squeeze = join(client.dump_argv()), join(compress_argv(client.compression, threads=False))
    return pipeline(low(dump, on), low(squeeze, on), out=out, low_priority=on)


def dump_stepwise(
    ctx: Context, client: DbClient, workdir: str, timeout: float | None, run_shell: ShellRunner | None = None
) -> dict[str, Any]:
    """Dump one database into ``workdir`` with one command per part; the manifest item (without size/sha256).

    ``run_shell`` runs the dump (default :meth:`Context.run_shell`; ``backup.create`` makes its
    folders in that round trip); a MariaDB/MySQL dump is compressed as ``client.compression``."""
    spec = client.spec
    kinds, before, exact = table_state(client, ctx, timeout)
    name = f"db-{spec.name}{client.dump_suffix()}"
    out = f"{workdir}/{name}"
    if client.mysql:
        script = _dump_pipeline(client, out)
    else:
        setup = LOW_PRIORITY_SETUP if client.low_priority else ""
        script = f"{setup}umask 077; {low(join(client.dump_argv()), client.low_priority)} > {quote(out)}"
    res = (run_shell or ctx.run_shell)(script, env=client.env or None, check=False, **timeout_kwargs(timeout))
    if not res.ok:
        tail = text_tail(res.stderr or res.stdout, 800)
        raise ApplyFailed(f"dumping database {spec.name} failed ({res.why}): {tail}")
    _, after, _ = table_state(client, ctx, timeout) if exact else (kinds, before, exact)
    return _item(client, name, exact, table_manifest(kinds, before, after, exact, spec.ignore_tables))


# ---------------------------------------------------------------------------------------------
# MariaDB/MySQL: everything in one round trip


def _script(client: DbClient, out: str, marker: str) -> str:
    """The shell of :func:`dump_in_one`; the counts after the dump only when those before were exact."""
    query = f"printf '%s\\n' {quote(client.state_sql(marker))} | {join(client.client(client.spec.name))}"
    dump = _dump_pipeline(client, out)

    def stage(name: str) -> str:
        return f"echo '{marker} {name}'; echo '{marker} {name}' >&2\n"

    return (
        f"{stage('before')}state=$({query}) || exit $?\nprintf '%s\\n' \"$state\"\n"
        f"{stage('dump')}( {dump} ) || exit $?\n"
        f'case "$state" in *{quote(marker + chr(9) + "1")}*)\n{stage("after")}{query} || exit $?\n;; esac\n'
        f"{stage('facts')}{facts_line(out)}"
    )


def _sections(text: str, marker: str) -> tuple[dict[str, str], str | None]:
    """The output of each stage of :func:`_script` by name, and the last stage that started."""
    found: dict[str, list[str]] = {}
    current: str | None = None
    for line in text.split("\n"):
        head, _, name = line.partition(" ")
        if head == marker and name in _STAGES:
            current = name
            found[current] = []
        elif current is not None:
            found[current].append(line)
    return {k: "\n".join(v) for k, v in found.items()}, current


def _parse_state(
    client: DbClient, text: str, marker: str
) -> tuple[dict[str, str], dict[str, int], dict[str, int], bool]:
    """(name -> type, name -> estimated rows of the counted kind, name -> exact rows, exact?) of one client run."""
    kinds: dict[str, str] = {}
    estimates: dict[str, int] = {}
    counts: dict[str, int] = {}
    exact: bool | None = None
    for line in text.split("\n"):
        if exact is None:
            parts = line.split("\t")
            if parts[0] == marker and len(parts) == 2:
                exact = parts[1] == "1"
            elif len(parts) >= 3:
                name = client.name_from_output(parts[0])
                kinds[name] = "view" if "VIEW" in parts[1].upper() else "table"
                estimates[name] = int(float(parts[2] or 0))
        else:
            name, _, rows = line.rpartition("\t")
            if rows.strip().isdigit():
                counts[client.name_from_output(name)] = int(rows)
    if exact is None:
        raise ApplyFailed(f"cannot read the tables of database {client.spec.name}: no end of the table list")
    base = {n: estimates[n] for n, kind in kinds.items() if kind == "table" and n not in client.spec.ignore_tables}
    return kinds, base, counts, exact


def _failed(
    res: CommandResult, client: DbClient, stage: str, out_path: str, out: str, err: str, limit: float
) -> Exception:
    """The error of a failed part: what that part's own command raised when it ran alone."""
    if stage == "dump":
        tail = text_tail(err or out, 800)
        return ApplyFailed(f"dumping database {client.spec.name} failed ({res.why}): {tail}")
    command = facts_line(out_path) if stage == "facts" else join(client.client(client.spec.name))
    part = CommandResult(res.host, command, res.exit_code, out, err, res.duration_ms, res.timed_out)
    try:
        checked(part, limit, True)
    except CommandFailed as exc:
        return exc
    return CommandFailed(part)


def dump_in_one(
    ctx: Context, client: DbClient, workdir: str, timeout: float | None, run_shell: ShellRunner | None = None
) -> dict[str, Any]:
    """Dump one MariaDB/MySQL database into ``workdir`` in ONE round trip, compressed as
    ``client.compression``; the manifest item with its size and sha256. A failing part raises
    what that part's own command raised before.

    ``run_shell`` runs the round trip (default :meth:`Context.run_shell`; ``backup.create``
    makes its folders in it, in front of the rest)."""
    spec = client.spec
    name = f"db-{spec.name}{client.dump_suffix()}"
    out = f"{workdir}/{name}"
    marker = output_marker()
    script = _script(client, out, marker)
    res = (run_shell or ctx.run_shell)(script, env=client.env or None, check=False, **timeout_kwargs(timeout))
    outs, last = _sections(res.stdout, marker)
    errs, _ = _sections(res.stderr, marker)
    if not res.ok or last != "facts":
        stage = last or "before"
        limit = timeout or ctx.env.command_timeout or 600.0
        raise _failed(res, client, stage, out, outs.get(stage, res.stdout), errs.get(stage, res.stderr), limit)
    kinds, estimates, counted, exact = _parse_state(client, outs["before"], marker)
    before = counted if exact else estimates
    after = before
    if exact:
        _, after_estimates, after_counted, after_exact = _parse_state(client, outs.get("after", ""), marker)
        after = after_counted if after_exact else after_estimates
    size, _, digest = outs["facts"].strip().partition(" ")
    if not size.isdigit() or len(digest) != 64:
        raise ApplyFailed(f"cannot read back the dump {out}: {text_tail(errs.get('facts', ''), 400)}")
    item = _item(client, name, exact, table_manifest(kinds, before, after, exact, spec.ignore_tables))
    item["size"], item["sha256"] = int(size), digest
    return item
