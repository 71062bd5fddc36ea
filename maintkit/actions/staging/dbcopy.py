"""The database side of ``staging.refresh``: identity, digest, copy, and the target's snapshot.

Credentials always come from option files given first with ``--defaults-file``
(:func:`maintkit.actions.mariadb.client_argv`), never from argv. The copy is one stream:
``mariadb-dump`` on the source piped into ``mariadb`` on the target, on the target's host
when it reads the source directly, else through the controller (compressed into a temporary
file on the controller's disk, never held in memory: zstd when both hosts have it, else
``gzip -1``; the target decompresses by the stream's first bytes).
"""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import dataclass
from typing import IO

from maintkit._text import tail
from maintkit.actions.compression import GZIP_FAST, HAS_ZSTD, ZSTD_ONE_THREAD, decompress_argv
from maintkit.actions.dumpfile import choose_file, compressor, report_written, unpack_command, written_file
from maintkit.actions.mariadb import batch_rows, client_argv, query_argv
from maintkit.actions.staging.params import DbRef
from maintkit.actions.staging.sides import Side, Sides
from maintkit.errors import ApplyFailed, CheckFailed
from maintkit.transport.base import join, output_marker, split_at_line

DUMP_OPTIONS = ["--single-transaction", "--routines", "--triggers", "--hex-blob", "--add-drop-table"]


def pipe_script(producer: str, consumer: str) -> str:
    """POSIX shell for ``producer | consumer`` that fails when either side fails (no pipefail in sh)."""
    return (
        "exec 4>&1\n"
        f'rcs=$( {{ {{ {producer} 3>&- 4>&-; echo "p=$?" >&3; }} '
        f'| {{ {consumer} 3>&-; echo "c=$?" >&3; }} >&4; }} 3>&1 )\n'
        'case "$rcs" in *p=0*) ;; *) echo "the producer failed ($rcs)" >&2; exit 3;; esac\n'
        'case "$rcs" in *c=0*) ;; *) echo "the consumer failed ($rcs)" >&2; exit 4;; esac\n'
    )


#: the first bytes of a zstd frame (RFC 8878); a gzip stream starts with 1f 8b
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def stream_compressor(sides: Sides, timeout: float) -> str:
    """The source's compressor of a stream through the controller: zstd when both hosts have
    it (the source decides; the target's is read first), else ``gzip -1``."""
    if not sides.target_has_zstd(timeout):
        return GZIP_FAST
    return f"if {HAS_ZSTD}; then {ZSTD_ONE_THREAD}; else {GZIP_FAST}; fi"


def stream_decompressor(spool: IO[bytes]) -> str:
    """The target's decompressor for the spooled stream, by its first bytes (the spool is
    rewound): zstd's frame, else gzip."""
    spool.seek(0)
    head = spool.read(4)
    spool.seek(0)
    return join(decompress_argv("zstd" if head == ZSTD_MAGIC else "gzip"))


def query(side: Side, db: DbRef, sql: str, timeout: float) -> list[list[str]]:
    """Rows of one SQL statement on ``side`` (tab-separated columns, each value unescaped)."""
    res = side.run(query_argv(db.name, db.defaults_file, sql), timeout, check=False)
    if not res.ok:
        raise CheckFailed(f"mariadb on {side.env.name} ({db.name}) failed: {tail(res.stderr or res.stdout)}")
    return batch_rows(res.stdout)


def server_of(side: Side, db: DbRef, timeout: float) -> str:
    """Which server holds ``db``: host/port/socket of its option file, qualified by the SSH host when local."""
    values: dict[str, str] = {}
    if db.defaults_file:
        pattern = "^[[:space:]]*(host|port|socket)[[:space:]]*="  # never the password line
        res = side.run(["grep", "-E", "--", pattern, db.defaults_file], timeout, check=False)
        for line in res.stdout.splitlines():
            key, _, value = line.partition("=")
            if key.strip() in ("host", "port", "socket"):
                values[key.strip()] = value.strip().strip("\"'")
    host = values.get("host", "localhost")
    where = f"{host}:{values.get('port', '3306')}:{values.get('socket', '')}"
    if host in ("localhost", "127.0.0.1", "::1", ""):
        where = f"{side.env.host}/{where}"
    return where


def same_database(sides: Sides, timeout: float) -> bool:
    """True when source and target name the same database on the same server."""
    src, dst = sides.source.db, sides.target.db
    if src is None or dst is None or src.name != dst.name:
        return False
    return server_of(sides.source, src, timeout) == server_of(sides.target, dst, timeout)


@dataclass
class DbDigest:
    """Exact row counts and ``CHECKSUM TABLE`` values of every table, and their digest."""

    tables: dict[str, tuple[int, str]]

    @property
    def digest(self) -> str:
        """sha256 over the sorted ``table count checksum`` lines."""
        lines = "".join(f"{t}\t{c}\t{s}\n" for t, (c, s) in sorted(self.tables.items()))
        return hashlib.sha256(lines.encode()).hexdigest()

    def rows(self) -> dict[str, int]:
        """Row count per table."""
        return {t: c for t, (c, _) in self.tables.items()}


def _ident(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def copy_database(sides: Sides, timeout: float, keep: list[str]) -> list[str]:
    """Load the source's dump into the target, then drop target tables the source lacks; returns those."""
    src, dst = sides.source, sides.target
    assert src.db is not None and dst.db is not None
    dump = join([*client_argv("mariadb-dump", src.db.defaults_file), *DUMP_OPTIONS, src.db.name])
    load = join([*client_argv("mariadb", dst.db.defaults_file), dst.db.name])
    if sides.via_host:
        res = dst.shell(pipe_script(dump, load), timeout, check=False)
        if not res.ok:
            raise ApplyFailed(f"copying database {src.db.name} into {dst.db.name} failed: {tail(res.stderr)}")
    else:
        _copy_through_controller(sides, dump, load, timeout)
    extra = [t for t in _tables(dst, dst.db, timeout) if t not in set(keep)]
    for table in extra:
        query(dst, dst.db, f"DROP TABLE {_ident(table)}", timeout)
    return extra


def _tables(side: Side, db: DbRef, timeout: float) -> list[str]:
    return [row[0] for row in query(side, db, "SHOW TABLES", timeout)]


def _copy_through_controller(sides: Sides, dump: str, load: str, timeout: float) -> None:
    src, dst = sides.source, sides.target
    with tempfile.TemporaryFile(prefix="maint-refresh-") as spool:
        res = src.shell(pipe_script(dump, stream_compressor(sides, timeout)), timeout, check=False, stdout_sink=spool)
        if not res.ok:
            raise ApplyFailed(f"dumping {src.db.name if src.db else '?'} on {src.env.name} failed: {tail(res.stderr)}")
        res = dst.shell(pipe_script(stream_decompressor(spool), load), timeout, check=False, stdin=spool)
        if not res.ok:
            raise ApplyFailed(f"loading into {dst.db.name if dst.db else '?'} failed: {tail(res.stderr)}")


def run_sql(side: Side, db: DbRef, statements: list[str], timeout: float) -> None:
    """Run the configured SQL statements on the target, in order."""
    for sql in statements:
        argv = [*client_argv("mariadb", db.defaults_file), "--batch", "-e", sql, db.name]
        res = side.run(argv, timeout, check=False)
        if not res.ok:
            raise ApplyFailed(f"SQL on {side.env.name} failed ({sql[:80]}): {tail(res.stderr)}")


def snapshot_database(side: Side, db: DbRef, dest: str, timeout: float) -> tuple[list[str], str]:
    """The table names of ``db`` on ``side``'s host, then its dump (mode 0600) into one of the two
    files ``dest`` stands for (:mod:`maintkit.actions.dumpfile`: zstd where the host has it, else
    gzip -1), in ONE round trip: the target's previous database. Returns the tables and the file
    written (one of the two names computed from ``dest``). A failing table list raises
    CheckFailed as :func:`query` does (nothing dumped); a failing dump ApplyFailed."""
    marker = output_marker()
    show = join(query_argv(db.name, db.defaults_file, "SHOW TABLES"))
    dump = join([*client_argv("mariadb-dump", db.defaults_file), *DUMP_OPTIONS, db.name])
    into = f'{compressor(dest)} > "$mk_o"'
    script = (
        f"{show} || exit $?\necho {marker}\n"
        f"umask 077\n{choose_file(dest)}\n{pipe_script(dump, into)}{report_written(dest)}"
    )
    res = side.shell(script, timeout, check=False)
    parts = split_at_line(res.stdout, marker)
    if parts is None:
        raise CheckFailed(f"mariadb on {side.env.name} ({db.name}) failed: {tail(res.stderr or res.stdout)}")
    if not res.ok:
        raise ApplyFailed(f"snapshot of database {db.name} failed: {tail(res.stderr)}")
    tables, dumped = parts
    return [row[0] for row in batch_rows(tables)], written_file(dest, dumped)


def restore_from(side: Side, db: DbRef, dump: str, tables_before: list[str], timeout: float) -> list[str]:
    """Load the dump :func:`snapshot_database` wrote for ``dump`` (whichever of its two files exists) back
    into ``db`` and drop tables that were not there; returns the dropped ones."""
    load = join([*client_argv("mariadb", db.defaults_file), db.name])
    res = side.shell(pipe_script(f"( {unpack_command(dump)} )", load), timeout, check=False)
    if not res.ok:
        raise ApplyFailed(f"restoring database {db.name} from {dump} failed: {tail(res.stderr)}")
    extra = [t for t in _tables(side, db, timeout) if t not in set(tables_before)]
    for table in extra:
        query(side, db, f"DROP TABLE {_ident(table)}", timeout)
    return extra


__all__ = [
    "DbDigest",
    "copy_database",
    "pipe_script",
    "query",
    "restore_from",
    "run_sql",
    "same_database",
    "server_of",
    "snapshot_database",
]
