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
from maintkit.actions.mariadb import client_argv
from maintkit.errors import ApplyFailed, RollbackFailed
from maintkit.transport.base import join, quote

_SQL_IDENT = re.compile(r"^[A-Za-z0-9_$]{1,64}$")


@dataclass
class DbUndo:
    """A dump taken before an update, with what is needed to restore it without PHP."""

    database: str
    dump: str  # gzip file on the host
    defaults_file: str | None  # MariaDB option file (0600) or None for ~/.my.cnf
    tables_before: list[str]
    schema_before: dict[str, str] = field(default_factory=dict)
    options_table: str | None = None  # WordPress: <prefix>options
    schema_options: list[str] = field(default_factory=list)


def db_query(ctx: Context, database: str, defaults_file: str | None, sql: str) -> list[list[str]]:
    """Run one SQL statement with the mariadb client; rows of tab-separated columns."""
    argv = [*client_argv("mariadb", defaults_file), "--batch", "--skip-column-names", "-e", sql, database]
    res = ctx.run(argv, check=False)
    if not res.ok:
        raise RollbackFailed(f"mariadb query on {database} failed: {tail(res.stderr)}")
    return [line.split("\t") for line in res.stdout.splitlines() if line]


def list_tables(ctx: Context, database: str, defaults_file: str | None) -> list[str]:
    """Table names of ``database``."""
    return [row[0] for row in db_query(ctx, database, defaults_file, "SHOW TABLES")]


def read_options(ctx: Context, undo: DbUndo) -> dict[str, str]:
    """Current values of the schema options (WordPress) recorded in ``undo``."""
    if not undo.options_table or not undo.schema_options:
        return {}
    if not _SQL_IDENT.match(undo.options_table):
        raise RollbackFailed(f"unsafe table name {undo.options_table!r}")
    names = [n for n in undo.schema_options if re.fullmatch(r"[A-Za-z0-9_.:-]{1,191}", n)]
    in_list = ", ".join("'" + n + "'" for n in names)
    # Identifiers and values are validated above (no quoting characters possible).
    sql = f"SELECT option_name, option_value FROM `{undo.options_table}` WHERE option_name IN ({in_list})"  # noqa: S608
    return {row[0]: (row[1] if len(row) > 1 else "") for row in db_query(ctx, undo.database, undo.defaults_file, sql)}


def dump_database(ctx: Context, database: str, defaults_file: str | None, dest_gz: str) -> None:
    """``mariadb-dump`` into ``dest_gz`` (mode 0600); credentials from the option file, never argv."""
    sql = dest_gz[:-3] if dest_gz.endswith(".gz") else dest_gz + ".sql"
    argv = [
        *client_argv("mariadb-dump", defaults_file),
        "--single-transaction",
        "--routines",
        "--triggers",
        "--hex-blob",
        f"--result-file={sql}",
        database,
    ]
    script = (
        f"umask 077\n{join(argv)} || {{ rc=$?; rm -f -- {quote(sql)}; exit $rc; }}\n"
        f"gzip -f -- {quote(sql)} && chmod 600 -- {quote(dest_gz)}"
    )
    res = ctx.run_shell(script, check=False)
    if not res.ok:
        raise ApplyFailed(f"database dump of {database} failed: {tail(res.stderr or res.stdout)}")


def restore_database(ctx: Context, undo: DbUndo) -> list[str]:
    """Load the dump back and drop tables the update created; returns the dropped tables."""
    sql = undo.dump[:-3] + ".restore.sql" if undo.dump.endswith(".gz") else undo.dump + ".restore.sql"
    client = join([*client_argv("mariadb", undo.defaults_file), undo.database])
    script = (
        f"umask 077\ngzip -dc -- {quote(undo.dump)} > {quote(sql)} || exit 3\n"
        f"{client} < {quote(sql)}; rc=$?\nrm -f -- {quote(sql)}\nexit $rc\n"
    )
    res = ctx.run_shell(script, check=False)
    if not res.ok:
        raise RollbackFailed(f"restoring database {undo.database} failed: {tail(res.stderr or res.stdout)}")
    extra = [t for t in list_tables(ctx, undo.database, undo.defaults_file) if t not in set(undo.tables_before)]
    dropped = []
    for table in extra:
        if _SQL_IDENT.match(table):
            db_query(ctx, undo.database, undo.defaults_file, f"DROP TABLE `{table}`")
            dropped.append(table)
    return dropped


__all__ = ["DbUndo", "db_query", "dump_database", "list_tables", "read_options", "restore_database"]
