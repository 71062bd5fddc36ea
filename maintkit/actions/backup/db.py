"""Databases for the backup actions: MariaDB/MySQL and PostgreSQL, driven by their own clients.

Credentials come from a ``password`` parameter (a SecretStr), a ``defaults_file`` or,
only when none of ``user``, ``password`` and ``defaults_file`` is given, from the login
user's option file (``~/.my.cnf``; for PostgreSQL ``~/.pgpass``). A password is written
to a temporary 0600 file inside the 0700 backup directory (through stdin, never on a
command line that ``ps`` can read) and removed afterwards.

Nothing the host's user has configured may override given credentials: MariaDB/MySQL
clients read ``~/.my.cnf`` *after* ``--defaults-extra-file``, so its user and password
would win. Every client therefore gets ``--defaults-file=FILE`` (reads only FILE) or, with
a user but no password and no file, ``--no-defaults``, as its FIRST option (see
:func:`maintkit.actions.mariadb.option_file_args`). PostgreSQL gets ``PGPASSFILE`` pointing at the
temporary file, so ``~/.pgpass`` is not read.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator

from maintkit.action import Context, Params
from maintkit.actions.mariadb import UTF8MB4, batch_field, option_file_args
from maintkit.results import CommandResult
from maintkit.transport.base import join, quote

from .codec import Compression, decompress_argv

Engine = Literal["mariadb", "mysql", "postgresql"]
_DEFINER_SED = r"s/DEFINER=`[^`]*`@`[^`]*`//g"
_MYSQL_TABLES = (
    "SELECT table_name, table_type, COALESCE(table_rows, 0) FROM information_schema.tables "
    "WHERE table_schema = DATABASE() ORDER BY table_name;"
)


class DatabaseSpec(Params):
    """One database to back up (and how to connect to it)."""

    name: str = Field(..., min_length=1, description="Database name")
    engine: Engine = Field("mariadb", description="mariadb, mysql or postgresql")
    host: str | None = Field(None, description="Server host (default: the client's default / option file)")
    port: int | None = Field(None, ge=1, le=65535)
    user: str | None = Field(
        None, description="User (default: from the option file / login user); MariaDB then reads no ~/.my.cnf"
    )
    password: SecretStr | None = Field(
        None,
        description=(
            "Password (use {{ secrets.X }}); without user, password and defaults_file: the login "
            "user's ~/.my.cnf (PostgreSQL: ~/.pgpass)"
        ),
    )
    defaults_file: str | None = Field(
        None, description="MariaDB/MySQL option file, read instead of every other one (PostgreSQL: a pgpass file)"
    )
    ignore_tables: list[str] = Field(default_factory=list, description="Tables left out of the dump")
    count_limit: int = Field(
        default=2_000_000,
        ge=0,
        description="Count rows exactly when the estimated total is at most this (else estimates)",
    )

    @field_validator("name")
    @classmethod
    def _sane(cls, v: str) -> str:
        if v.startswith("-") or "/" in v or "\n" in v:
            raise ValueError("invalid database name")
        return v

    @field_validator("password")
    @classmethod
    def _one_line(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None and ("\n" in v.get_secret_value() or "\r" in v.get_secret_value()):
            raise ValueError("a password cannot contain line breaks")
        return v

    def connection(self) -> dict[str, Any]:
        """The non-secret connection facts recorded in the manifest."""
        return {"host": self.host, "port": self.port, "user": self.user, "defaults_file": self.defaults_file}


class ConnectionOverride(Params):
    """Connection settings that override what a backup's manifest recorded (verify, restore)."""

    host: str | None = None
    port: int | None = Field(None, ge=1, le=65535)
    user: str | None = None
    password: SecretStr | None = Field(None, description="Password (use {{ secrets.X }})")
    defaults_file: str | None = None


def spec_from_item(item: dict[str, Any], override: ConnectionOverride | None) -> DatabaseSpec:
    """Rebuild how to connect to a backed-up database from its manifest item (+ overrides)."""
    conn = dict(item.get("connection") or {})
    if override is not None:
        for key in ("host", "port", "user", "defaults_file"):
            if getattr(override, key) is not None:
                conn[key] = getattr(override, key)
    return DatabaseSpec(
        name=str(item["name"]),
        engine=item.get("engine", "mariadb"),
        host=conn.get("host"),
        port=conn.get("port"),
        user=conn.get("user"),
        defaults_file=conn.get("defaults_file"),
        password=override.password if override is not None else None,
    )


def _mysql_option_value(value: str) -> str:
    return '"' + value.replace("\\", "\\\\") + '"'


def _pgpass_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace(":", "\\:")


@dataclass
class DbClient:
    """How to run one engine's tools against one database, with credentials in place."""

    spec: DatabaseSpec
    tools: frozenset[str]
    cred_file: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    #: how the MariaDB/MySQL dumps it writes are compressed (PostgreSQL's custom format compresses itself)
    compression: Compression = "gzip"
    #: run the dump and its compressor at low priority (:data:`LOW_PRIORITY_SETUP`)
    low_priority: bool = False

    @property
    def mysql(self) -> bool:
        """True for MariaDB/MySQL."""
        return self.spec.engine != "postgresql"

    def _tool(self, preferred: str, fallback: str) -> str:
        return preferred if preferred in self.tools or fallback not in self.tools else fallback

    def option_file_args(self) -> list[str]:
        """Which option files a MariaDB/MySQL client reads; must come FIRST on its command line.

        The temporary credentials file (a password was given; it ``!include``s the
        ``defaults_file``), else the ``defaults_file``: ``--defaults-file`` reads only that
        file, so ``~/.my.cnf`` cannot override it. A user without password or file:
        ``--no-defaults`` (no option file at all). Nothing given: the client's default
        option files, ``~/.my.cnf`` included (the documented default).
        """
        s = self.spec
        return option_file_args(self.cred_file or s.defaults_file, explicit_user=bool(s.user))

    def _mysql_common(self) -> list[str]:
        s = self.spec
        out = self.option_file_args()
        if s.host:
            out.append(f"--host={s.host}")
        if s.port:
            out.append(f"--port={s.port}")
        if s.user:
            out.append(f"--user={s.user}")
        return out

    def _pg_common(self) -> list[str]:
        s = self.spec
        out: list[str] = []
        if s.host:
            out += ["-h", s.host]
        if s.port:
            out += ["-p", str(s.port)]
        if s.user:
            out += ["-U", s.user]
        return [*out, "-w"]

    def client(self, db: str | None = None) -> list[str]:
        """The SQL client reading statements from stdin, tab-separated output without headers."""
        if self.mysql:
            # names are UTF-8 whatever the host's locale (else the client may talk latin1: ``café`` is not found)
            argv = [self._tool("mariadb", "mysql"), *self._mysql_common(), UTF8MB4]
            argv += ["--batch", "--skip-column-names"]
            return [*argv, db] if db else argv
        return [
            "psql",
            *self._pg_common(),
            "-X",
            "-q",
            "-A",
            "-t",
            "-F",
            "\t",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            db or "postgres",
        ]

    def dump_argv(self) -> list[str]:
        """The dump command writing the database to stdout."""
        s = self.spec
        if self.mysql:
            argv = [self._tool("mariadb-dump", "mysqldump"), *self._mysql_common()]
            argv += ["--single-transaction", "--routines", "--triggers", "--no-tablespaces", "--hex-blob"]
            argv += [f"--ignore-table={s.name}.{t}" for t in s.ignore_tables]
            return [*argv, s.name]
        argv = ["pg_dump", *self._pg_common(), "-Fc", "--no-owner"]
        argv += [f"--exclude-table-data={t}" for t in s.ignore_tables]
        return [*argv, "-d", s.name]

    def dump_suffix(self) -> str:
        """File suffix of this engine's dumps (MariaDB/MySQL: by :attr:`compression`)."""
        if not self.mysql:
            return ".pgdump"
        return ".sql.zst" if self.compression == "zstd" else ".sql.gz"

    def sql(self, ctx: Context, statements: str, db: str | None = None, timeout: float | None = None) -> CommandResult:
        """Run SQL (given on stdin) and return the result (check=True)."""
        kwargs: dict[str, Any] = {"timeout": timeout} if timeout else {}
        return ctx.run(self.client(db), stdin=statements.encode(), env=self.env or None, **kwargs)

    def quote_ident(self, name: str) -> str:
        """Quote an identifier for this engine."""
        if self.mysql:
            return "`" + name.replace("`", "``") + "`"
        return '"' + name.replace('"', '""') + '"'

    def quote_literal(self, text: str) -> str:
        """Quote a string literal for this engine."""
        if self.mysql:
            return "'" + text.replace("\\", "\\\\").replace("'", "''") + "'"
        return "'" + text.replace("'", "''") + "'"

    # -- inspection ---------------------------------------------------------------------------

    def tables(self, ctx: Context, db: str) -> dict[str, tuple[str, int]]:
        """name -> (type "table"/"view", estimated rows)."""
        if self.mysql:
            q = _MYSQL_TABLES
        else:
            q = (
                "SELECT c.relname, CASE WHEN c.relkind IN ('v','m') THEN 'VIEW' ELSE 'BASE TABLE' END, "
                "GREATEST(c.reltuples, 0)::bigint FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = 'public' AND c.relkind IN ('r','p','v','m') ORDER BY 1;"
            )
        out: dict[str, tuple[str, int]] = {}
        for line in self.sql(ctx, q, db).stdout.splitlines():
            parts = line.split("\t")
            if len(parts) >= 3:
                kind = "view" if "VIEW" in parts[1].upper() else "table"
                out[self.name_from_output(parts[0])] = (kind, int(float(parts[2] or 0)))
        return out

    def name_from_output(self, field: str) -> str:
        """A name as the client printed it, as the name itself: MariaDB/MySQL's ``--batch``
        output escapes a backslash, a tab, a newline and a NUL (``psql``'s unaligned output
        does not)."""
        return batch_field(field) if self.mysql else field

    def state_sql(self, marker: str) -> str:
        """MariaDB/MySQL: the statements of :meth:`tables`, then a row ``marker<TAB>1`` (exact counts
        follow: the estimated rows of the base tables not ignored are at most ``count_limit``) or
        ``marker<TAB>0`` (estimates only), then ``name<TAB>rows`` per base table when exact.

        The server builds the ``COUNT(*)`` union from ``information_schema`` (identifiers quoted
        with backticks, names as string literals by ``QUOTE``), so one client run does both reads.
        """
        s = self.spec
        base = "FROM information_schema.tables WHERE table_schema = DATABASE() AND UPPER(table_type) NOT LIKE '%VIEW%'"
        if s.ignore_tables:
            base += " AND table_name NOT IN (" + ", ".join(self.quote_literal(t) for t in s.ignore_tables) + ")"
        one = "CONCAT('SELECT ', QUOTE(table_name), ', COUNT(*) FROM `', REPLACE(table_name, '`', '``'), '`')"
        nothing = "'SELECT 1 FROM DUAL WHERE FALSE'"
        return "\n".join(
            [
                _MYSQL_TABLES,
                "SET SESSION group_concat_max_len = 4294967295;",
                f"SET @mk_exact = (SELECT COALESCE(SUM(COALESCE(table_rows, 0)), 0) <= {int(s.count_limit)} {base});",
                f"SELECT '{marker}', @mk_exact;",
                f"SET @mk_q = IF(@mk_exact, COALESCE((SELECT GROUP_CONCAT({one} ORDER BY table_name "
                f"SEPARATOR ' UNION ALL ') {base}), {nothing}), {nothing});",
                "PREPARE mk_counts FROM @mk_q;",
                "EXECUTE mk_counts;",
                "DEALLOCATE PREPARE mk_counts;",
            ]
        )

    def count_rows(self, ctx: Context, db: str, tables: Sequence[str], timeout: float | None = None) -> dict[str, int]:
        """Exact row counts of ``tables`` (one query)."""
        if not tables:
            return {}
        schema = "" if self.mysql else "public."
        # identifiers are quoted by quote_ident; nothing else is interpolated
        parts = [f"SELECT {i}, COUNT(*) FROM {schema}{self.quote_ident(t)}" for i, t in enumerate(tables)]  # noqa: S608
        res = self.sql(ctx, " UNION ALL ".join(parts) + ";", db, timeout=timeout)
        counts: dict[str, int] = {}
        for line in res.stdout.splitlines():
            idx, _, n = line.partition("\t")
            if idx.strip().isdigit():
                counts[tables[int(idx)]] = int(n)
        return counts

    # -- databases ------------------------------------------------------------------------------

    def create_database(self, ctx: Context, db: str) -> None:
        """CREATE DATABASE ``db``."""
        self.sql(ctx, f"CREATE DATABASE {self.quote_ident(db)};")

    def drop_database(self, ctx: Context, db: str) -> CommandResult:
        """DROP DATABASE IF EXISTS ``db`` (not checked: look at the result)."""
        return ctx.run(self.client(), stdin=f"DROP DATABASE IF EXISTS {self.quote_ident(db)};".encode(), check=False)

    def drop_tables(self, ctx: Context, db: str, names: Sequence[str], views: Sequence[str] = ()) -> None:
        """Drop tables and views of ``db`` (foreign key checks off for MySQL)."""
        stmts: list[str] = []
        if self.mysql:
            stmts.append("SET FOREIGN_KEY_CHECKS=0;")
        stmts += [f"DROP VIEW IF EXISTS {self.quote_ident(v)};" for v in views]
        stmts += [f"DROP TABLE IF EXISTS {self.quote_ident(t)}{'' if self.mysql else ' CASCADE'};" for t in names]
        if len(stmts) > (1 if self.mysql else 0):
            self.sql(ctx, "\n".join(stmts), db)

    def restore_script(
        self, dump: str, db: str, *, strip_definers: bool, clean: bool, compression: str = "gzip"
    ) -> str:
        """Shell script loading ``dump`` into ``db`` (non-zero exit on any failure); a MariaDB/MySQL
        dump is decompressed with its manifest item's ``compression``."""
        if self.mysql:
            stages = [join(decompress_argv(compression, dump))]
            if strip_definers:
                stages.append(join(["sed", "-e", _DEFINER_SED]))
            return pipeline(*stages, join(self.client(db)))
        argv = ["pg_restore", *self._pg_common(), "--no-owner", "--no-acl", "--exit-on-error"]
        if clean:
            argv += ["--clean", "--if-exists"]
        return join([*argv, "-d", db, "--", dump])


#: sets ``$mk_low``, the prefix that runs a program at low priority: niceness 10 and, where the
#: host has an ionice (util-linux) that works there, the lowest best-effort I/O class
LOW_PRIORITY_SETUP = (
    'mk_low="nice -n 10"; if command -v ionice >/dev/null 2>&1 && ionice -c2 -n7 true 2>/dev/null; '
    'then mk_low="$mk_low ionice -c2 -n7"; fi\n'
)


def low(command: str, on: bool = True) -> str:
    """``command`` (a quoted command line) run through ``$mk_low`` (see :data:`LOW_PRIORITY_SETUP`)
    when ``on``; an unset ``$mk_low`` runs it as it is."""
    return f"$mk_low {command}" if on else command


def pipeline(*stages: str, out: str | None = None, low_priority: bool = False) -> str:
    """``stage1 | stage2 | ... [> out]`` failing when ANY stage fails (POSIX sh has no pipefail).

    Each stage is an already-quoted command line. A failing stage is named on stderr. Files
    it creates are private (umask 077). ``low_priority`` sets ``$mk_low`` first, for stages
    built with :func:`low`.
    """
    if not stages:
        raise ValueError("empty pipeline")
    parts = [f'{{ {stage} || echo $? > "$rcd/{i}"; }}' for i, stage in enumerate(stages[:-1])]
    parts.append(stages[-1])
    target = f" > {quote(out)}" if out else ""
    return (
        (LOW_PRIORITY_SETUP if low_priority else "") + "umask 077\n"
        "rcd=$(mktemp -d) || exit 90\n"
        f"{' | '.join(parts)}{target}\n"
        "rc=$?\n"
        'for f in "$rcd"/*; do [ -f "$f" ] || continue; '
        'echo "pipeline stage $(basename "$f") failed with exit $(cat "$f")" >&2; rc=91; done\n'
        'rm -rf "$rcd"\n'
        "exit $rc\n"
    )


@contextmanager
def connect(
    ctx: Context,
    spec: DatabaseSpec,
    workdir: str,
    tools: frozenset[str],
    *,
    run_shell: Callable[..., CommandResult] | None = None,
    compression: Compression = "gzip",
    low_priority: bool = False,
) -> Iterator[DbClient]:
    """A :class:`DbClient` with a temporary credentials file in ``workdir`` when a password is given.

    The file is created 0600 from stdin (``umask 077; cat > FILE``) and removed on exit,
    also when the body fails. ``run_shell`` runs the command that writes it (default
    :meth:`Context.run_shell`; ``backup.create`` makes its folders in that round trip); the
    client's dumps are compressed with ``compression`` (at low priority with ``low_priority``).
    """
    client = DbClient(spec, tools, compression=compression, low_priority=low_priority)
    if spec.password is None:
        if spec.engine == "postgresql" and spec.defaults_file:
            client.env["PGPASSFILE"] = spec.defaults_file
        yield client
        return
    path = f"{workdir.rstrip('/')}/.cred-{secrets.token_hex(6)}"
    secret = spec.password.get_secret_value()
    if spec.engine == "postgresql":
        body = f"*:*:*:*:{_pgpass_value(secret)}\n"
    else:
        body = f"[client]\npassword={_mysql_option_value(secret)}\n"
        if spec.defaults_file:
            body = f"!include {spec.defaults_file}\n" + body
    try:
        (run_shell or ctx.run_shell)(f"umask 077; cat > {quote(path)}", stdin=body.encode(), timeout=60)
        client.cred_file = path
        if spec.engine == "postgresql":
            client.env["PGPASSFILE"] = path
        yield client
    finally:
        ctx.run(["rm", "-f", "--", path], check=False, timeout=60)


def tools_needed(engine: str) -> tuple[str, ...]:
    """Client commands an engine may use."""
    if engine == "postgresql":
        return ("pg_dump", "pg_restore", "psql")
    return ("mariadb-dump", "mysqldump", "mariadb", "mysql", "gzip")


def missing_tools(engine: str, found: frozenset[str]) -> list[str]:
    """What is missing to back up / restore ``engine``."""
    if engine == "postgresql":
        return [t for t in ("pg_dump", "pg_restore", "psql") if t not in found]
    out = []
    if not found & {"mariadb-dump", "mysqldump"}:
        out.append("mariadb-dump or mysqldump")
    if not found & {"mariadb", "mysql"}:
        out.append("mariadb or mysql")
    if "gzip" not in found:
        out.append("gzip")
    return out
