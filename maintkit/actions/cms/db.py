"""The database side of ``cms.update``: dump before an update, restore it on rollback.

Only the MariaDB client tools run here, never PHP, so a rollback works when the update
broke the site. Credentials come from an option file given with ``--defaults-file`` as the
client's first option (:func:`maintkit.actions.mariadb.client_argv`), never from argv.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from maintkit._text import tail
from maintkit.action import Context
from maintkit.actions.dumpfile import choose_file, compressor, dump_files, report_written, unpack_command, written_file
from maintkit.actions.mariadb import batch_rows, client_argv, query_argv
from maintkit.errors import ApplyFailed, RollbackFailed
from maintkit.results import CommandResult
from maintkit.transport.base import join, output_marker, quote

_SQL_IDENT = re.compile(r"^[A-Za-z0-9_$]{1,64}$")


@dataclass
class DbUndo:
    """A dump taken before an update, with what is needed to restore it without PHP."""

    database: str
    dump: str  # the dump's file on the host: see maintkit.actions.dumpfile (zstd, else gzip)
    defaults_file: str | None  # MariaDB option file (0600) or None for ~/.my.cnf
    tables_before: list[str]
    schema_before: dict[str, str] = field(default_factory=dict)
    options_table: str | None = None  # WordPress: <prefix>options
    schema_options: list[str] = field(default_factory=list)


def _query_failed(database: str, res: CommandResult) -> RollbackFailed:
    return RollbackFailed(f"mariadb query on {database} failed: {tail(res.stderr)}")


def db_query(ctx: Context, database: str, defaults_file: str | None, sql: str) -> list[list[str]]:
    """Run SQL (one statement or several) with the mariadb client; rows of tab-separated columns."""
    res = ctx.run(query_argv(database, defaults_file, sql), check=False)
    if not res.ok:
        raise _query_failed(database, res)
    return batch_rows(res.stdout)


def list_tables(ctx: Context, database: str, defaults_file: str | None) -> list[str]:
    """Table names of ``database``."""
    return [row[0] for row in db_query(ctx, database, defaults_file, "SHOW TABLES")]


def _options_sql(undo: DbUndo) -> str | None:
    """The SELECT of the schema options (WordPress) recorded in ``undo``; None when there are none."""
    if not undo.options_table or not undo.schema_options:
        return None
    if not _SQL_IDENT.match(undo.options_table):
        raise RollbackFailed(f"unsafe table name {undo.options_table!r}")
    names = [n for n in undo.schema_options if re.fullmatch(r"[A-Za-z0-9_.:-]{1,191}", n)]
    in_list = ", ".join("'" + n + "'" for n in names)
    # Identifiers and values are validated above (no quoting characters possible).
    return f"SELECT option_name, option_value FROM `{undo.options_table}` WHERE option_name IN ({in_list})"  # noqa: S608


def _schema_sql(undo: DbUndo, marker: str) -> str:
    """``SHOW TABLES``, then (with schema options) a row holding only ``marker`` and the options' SELECT."""
    options = _options_sql(undo)
    return "SHOW TABLES" if options is None else f"SHOW TABLES; SELECT '{marker}'; {options}"


def parse_schema(undo: DbUndo, stdout: str, marker: str) -> tuple[list[str], dict[str, str]]:
    """The tables and the schema options out of one run of :func:`schema_command`'s query."""
    rows = batch_rows(stdout)
    cut = rows.index([marker]) if [marker] in rows else len(rows)
    if cut == len(rows) and _options_sql(undo) is not None:
        raise RollbackFailed(f"mariadb query on {undo.database} failed: no end of the table list")
    options = {row[0]: (row[1] if len(row) > 1 else "") for row in rows[cut + 1 :]}
    return [row[0] for row in rows[:cut]], options


def schema_command(undo: DbUndo) -> tuple[str, str]:
    """The client run of :func:`read_schema` as a quoted command line, and the marker that
    :func:`parse_schema` needs to read its output."""
    marker = output_marker()
    return join(query_argv(undo.database, undo.defaults_file, _schema_sql(undo, marker))), marker


def read_schema(ctx: Context, undo: DbUndo) -> tuple[list[str], dict[str, str]]:
    """The tables of ``undo.database`` and the current values of its schema options, in ONE client run."""
    marker = output_marker()
    res = ctx.run(query_argv(undo.database, undo.defaults_file, _schema_sql(undo, marker)), check=False)
    if not res.ok:
        raise _query_failed(undo.database, res)
    return parse_schema(undo, res.stdout, marker)


def _dump_script(database: str, defaults_file: str | None, dest: str) -> str:
    """``mariadb-dump | zstd`` into ``<stem>.zst``, or ``| gzip -1`` into ``<stem>.gz`` on a host
    without zstd (:mod:`maintkit.actions.dumpfile`; mode 0600 by the umask); when either side
    fails, the partial file is removed and the script exits with the compressor's status when the
    compression failed (the dump then dies of a broken pipe), else with the dump's. On success it
    prints which of the two files it wrote (:func:`~maintkit.actions.dumpfile.report_written`).

    One pipe: the dump and its compression run at once and no uncompressed copy is written
    (inside a maintenance window, when one is open before the update, this is time the shop is
    closed). zstd at its default level, one thread, keeps up with the dump and writes a smaller
    file than gzip; ``gzip -1``, its fastest level, where there is no zstd. POSIX sh has no
    ``pipefail``: each side writes its status to descriptor 4, which the command substitution
    reads.
    """
    argv = [*client_argv("mariadb-dump", defaults_file), "--single-transaction", "--routines", "--triggers"]
    dump = join([*argv, "--hex-blob", database])
    return (
        f"umask 077\n{choose_file(dest)}\n"
        f'st=$( {{ {{ {dump} 4>&-; echo "d$?" >&4; }} | {compressor(dest)} > "$mk_o" 4>&-; echo "g$?" >&4; }} 4>&1 )\n'
        f'case $st in "d0\ng0") {report_written(dest)} ;; *)\n'
        '  rm -f -- "$mk_o"\n'
        "  d=${st#d}; d=${d%%[!0123456789]*}; g=${st##*g}\n"
        '  [ "${g:-1}" -ne 0 ] && exit "${g:-1}"; exit "${d:-1}" ;;\nesac'
    )


def read_and_dump_script(undo: DbUndo) -> tuple[str, str]:
    """The shell of :func:`read_and_dump`, and the marker :func:`dumped` reads its output with."""
    marker = output_marker()
    query = join(query_argv(undo.database, undo.defaults_file, _schema_sql(undo, marker)))
    done = f"{marker}-dump"  # printed on both streams once the read succeeded
    script = f"{query} || exit $?\necho {done}; echo {done} >&2\n" + _dump_script(
        undo.database, undo.defaults_file, undo.dump
    )
    return script, marker


def dumped(undo: DbUndo, res: CommandResult, marker: str) -> None:
    """Read what :func:`read_and_dump_script` did into ``undo`` (``tables_before``,
    ``schema_before``, and ``dump``: the one of its two files the dump wrote); raises as
    :func:`read_and_dump` says."""
    done = f"{marker}-dump"
    lines = res.stdout.split("\n")
    if done not in lines:
        raise _query_failed(undo.database, res)
    cut = lines.index(done)
    undo.tables_before, undo.schema_before = parse_schema(undo, "\n".join(lines[:cut]), marker)
    out = "\n".join(lines[cut + 1 :])
    if not res.ok:
        err = res.stderr.split(f"{done}\n", 1)[-1]
        raise ApplyFailed(f"database dump of {undo.database} failed: {tail(err or out)}")
    undo.dump = written_file(undo.dump, out)


def read_and_dump(ctx: Context, undo: DbUndo) -> None:
    """Read the tables and schema options into ``undo`` (``tables_before``, ``schema_before``), then
    dump the database into ``undo.dump``: one round trip.

    A failing read raises as :func:`read_schema` does (nothing dumped); a failing dump raises
    ApplyFailed with the dump's own stderr; the partial dump file is removed.
    """
    script, marker = read_and_dump_script(undo)
    dumped(undo, ctx.run_shell(script, check=False), marker)


def restore_script(undo: DbUndo) -> str:
    """The shell that loads the dump back: whichever of its two files the dump wrote
    (:func:`~maintkit.actions.dumpfile.unpack_command`), decompressed into a private
    file first (a damaged archive never half-loads the database), then the client, then the
    file removed; exit 3 when the decompression failed, else the client's status."""
    _, gz = dump_files(undo.dump)
    sql = gz.removesuffix(".gz") + ".restore.sql"
    client = join([*client_argv("mariadb", undo.defaults_file), undo.database])
    return (
        f"umask 077\n{unpack_command(undo.dump)} > {quote(sql)} || {{ rm -f -- {quote(sql)}; exit 3; }}\n"
        f"{client} < {quote(sql)}; rc=$?\nrm -f -- {quote(sql)}\nexit $rc\n"
    )


def restore_database(ctx: Context, undo: DbUndo) -> list[str]:
    """Load the dump back (:func:`restore_script`) and drop tables the update created; returns
    the dropped tables."""
    res = ctx.run_shell(restore_script(undo), check=False)
    if not res.ok:
        raise RollbackFailed(f"restoring database {undo.database} failed: {tail(res.stderr or res.stdout)}")
    extra = [t for t in list_tables(ctx, undo.database, undo.defaults_file) if t not in set(undo.tables_before)]
    dropped = []
    for table in extra:
        if _SQL_IDENT.match(table):
            db_query(ctx, undo.database, undo.defaults_file, f"DROP TABLE `{table}`")
            dropped.append(table)
    return dropped


__all__ = [
    "DbUndo",
    "db_query",
    "dumped",
    "list_tables",
    "parse_schema",
    "read_and_dump",
    "read_and_dump_script",
    "read_schema",
    "restore_database",
    "schema_command",
]
