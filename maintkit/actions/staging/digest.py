"""What one side of a refresh looks like, read in ONE round trip.

A side's digests are its database's (every base table's exact row count and ``CHECKSUM
TABLE``) and its files' (the sorted listing's sha256, :func:`~.files.listing_script`); on the
target the last refresh's record is read in the same round trip. The database part is one
client run: the server builds the count query and the ``CHECKSUM TABLE`` list from
``information_schema`` (names quoted there, ``QUOTE()`` and doubled backquotes) and runs both
as prepared statements, a marker row between their results. Sections of the shell's output are
framed by lines of a random marker (:func:`~maintkit.transport.base.output_marker`), which no
table or file name can make.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from maintkit._text import tail
from maintkit.actions.mariadb import batch_rows, query_argv
from maintkit.actions.staging.dbcopy import DbDigest
from maintkit.actions.staging.files import listing_script
from maintkit.actions.staging.params import StagingRefreshParams
from maintkit.actions.staging.sides import Side
from maintkit.errors import CheckFailed
from maintkit.results import CommandResult
from maintkit.transport.base import join, output_marker, quote, split_at_line

__all__ = ["Digests", "digest_sql", "parse_db_digest", "read_side"]

#: a statement with two columns and no row (what a database without tables runs instead)
_NO_ROWS = "SELECT 1, 2 FROM DUAL WHERE FALSE"
_TABLES = "information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_TYPE = 'BASE TABLE'"
_IDENT = "CONCAT('`', REPLACE(TABLE_NAME, '`', '``'), '`')"


@dataclass
class Digests:
    """What one side looks like: database and file digests (empty when not copied)."""

    db: str = ""
    files: str = ""
    rows: dict[str, int] = field(default_factory=dict)

    def public(self) -> dict[str, str]:
        """The digests recorded in the marker."""
        return {"db": self.db, "files": self.files}


def digest_sql(marker: str) -> str:
    """SQL for one client run: ``name, count`` of every base table, a row ``marker``, then
    ``CHECKSUM TABLE`` of them all (nothing for a database without tables)."""
    # only constants and the marker (hex); the table names are quoted by the server
    counts = f"CONCAT('SELECT ', QUOTE(TABLE_NAME), ', COUNT(*) FROM ', {_IDENT})"  # noqa: S608
    run = "PREPARE mk_s FROM @mk_q; EXECUTE mk_s; DEALLOCATE PREPARE mk_s;"
    return (
        "SET SESSION group_concat_max_len = 4294967295; "  # noqa: S608
        f"SELECT GROUP_CONCAT({counts} ORDER BY TABLE_NAME SEPARATOR ' UNION ALL '), "
        f"GROUP_CONCAT({_IDENT} ORDER BY TABLE_NAME SEPARATOR ', ') INTO @mk_counts, @mk_tables FROM {_TABLES}; "
        f"SET @mk_q = COALESCE(@mk_counts, '{_NO_ROWS}'); {run} "
        f"SELECT '{marker}'; "
        f"SET @mk_q = COALESCE(CONCAT('CHECKSUM TABLE ', @mk_tables), '{_NO_ROWS}'); {run}"
    )


def parse_db_digest(text: str, marker: str) -> DbDigest:
    """The :class:`DbDigest` in the client's ``--batch`` output of :func:`digest_sql` (the names
    unescaped: the real names, as the copy and the rollback quote them)."""
    parts = split_at_line(text, marker)
    if parts is None:
        raise ValueError(f"{marker} is not in the digest's output")
    counts, sums = (batch_rows(part) for part in parts)  # sums: ``database.table`` (no dot in a database name)
    checks = {row[0].split(".", 1)[-1]: row[1] if len(row) > 1 else "" for row in sums}
    return DbDigest({row[0]: (int(row[1]), checks.get(row[0], "")) for row in counts if len(row) > 1})


def read_side(
    side: Side, p: StagingRefreshParams, excl: list[str], timeout: float, record: str | None = None
) -> tuple[Digests, dict[str, Any] | None]:
    """The digests of ``side`` (what the refresh copies of it) and, with ``record`` (a path),
    the last refresh's record read there (None when absent or not a JSON object): one round
    trip. A failing database read or file listing raises CheckFailed."""
    m = output_marker()
    script = []
    with_db = p.database and side.db is not None
    if with_db and side.db is not None:
        script.append(f"{join(query_argv(side.db.name, side.db.defaults_file, digest_sql(m)))} || exit $?")
    script.append(f"echo {m}-db")
    if p.files:
        script.append(f"( {listing_script(side.path, excl)}\n)\necho {m}-files $?")
    if record is not None:
        script.append(f"exec cat -- {quote(record)} 2>/dev/null")
    res = side.shell("\n".join(script), timeout, check=False)
    db_out, rest = split_at_line(res.stdout, f"{m}-db") or (res.stdout, None)
    if rest is None:
        name = side.db.name if side.db is not None else ""
        raise CheckFailed(f"mariadb on {side.env.name} ({name}) failed: {tail(res.stderr or res.stdout)}")
    out = Digests()
    if with_db:
        d = parse_db_digest(db_out, m)
        out.db, out.rows = d.digest, d.rows()
    if p.files:
        out.files, rest = _files(side, res, rest, m)
    return out, (_record(rest) if record is not None else None)


def _files(side: Side, res: CommandResult, rest: str, m: str) -> tuple[str, str]:
    """The files' digest in ``rest`` (``missing`` when the tree is not there), and what follows."""
    head, found, after = rest.partition(f"{m}-files ")
    status, _, after = after.partition("\n")
    if found and status == "3":  # the listing's cd failed
        return "missing", after
    if not found or status != "0":
        raise CheckFailed(f"cannot list the files of {side.env.name}: {tail(res.stderr)}")
    return head.split(" ", 1)[0].strip(), after


def _record(text: str) -> dict[str, Any] | None:
    """The last refresh's record (a JSON object), or None."""
    try:
        data = json.loads(text) if text else None
    except json.JSONDecodeError:
        return None
    return data if isinstance(data, dict) else None
