"""MariaDB/MySQL client command lines: which option files a client reads, its character set,
and how its ``--batch`` output is read back.

The one place that decides the option-file arguments of ``mariadb``, ``mariadb-dump``,
``mysql`` and ``mysqldump`` for every action (``backup.*``, ``cms.update``,
``staging.refresh``, ``admins.audit``, the host check).

MariaDB/MySQL clients read ``~/.my.cnf`` *after* ``--defaults-extra-file``, so the login
user's settings would override what maintkit was told. The option-file argument therefore
comes FIRST and is either ``--defaults-file=FILE`` (reads only FILE) or, for an explicit
user without any file, ``--no-defaults`` (reads no option file at all). With neither, the
client reads its default option files, ``~/.my.cnf`` included: the documented default.
"""

from __future__ import annotations


def option_file_args(defaults_file: str | None = None, *, explicit_user: bool = False) -> list[str]:
    """The option-file arguments a MariaDB/MySQL client needs; they must come FIRST.

    ``defaults_file``: ``--defaults-file=FILE``. Else ``explicit_user`` (a user given without
    password or file): ``--no-defaults``. Else nothing (the client's default option files).
    """
    if defaults_file:
        return [f"--defaults-file={defaults_file}"]
    if explicit_user:
        return ["--no-defaults"]
    return []


#: the client programs that run statements (and read their results): they talk utf8mb4
_SQL_CLIENTS = ("mariadb", "mysql")
#: the character set argument of a statement client (after the option-file argument)
UTF8MB4 = "--default-character-set=utf8mb4"


def client_argv(binary: str, defaults_file: str | None = None, *, explicit_user: bool = False) -> list[str]:
    """``binary`` followed by its option-file arguments (see :func:`option_file_args`); the
    statement clients (``mariadb``, ``mysql``) then ``--default-character-set=utf8mb4``: an
    option file given with ``--defaults-file`` replaces the system's, where Debian sets utf8mb4,
    and the client's own default (latin1) turns a table name or a value outside latin1 into
    ``?`` in what it reads back, and such a name in a later statement into another name."""
    charset = [UTF8MB4] if binary in _SQL_CLIENTS else []
    return [binary, *option_file_args(defaults_file, explicit_user=explicit_user), *charset]


def query_argv(database: str, defaults_file: str | None, sql: str) -> list[str]:
    """``mariadb`` running ``sql`` in ``database``: tab-separated rows without a header (read
    them with :func:`batch_rows`)."""
    return [*client_argv("mariadb", defaults_file), "--batch", "--skip-column-names", "-e", sql, database]


#: what ``--batch`` output writes for a backslash, a tab, a newline and a NUL in a value
_BATCH_ESCAPES = {"t": "\t", "n": "\n", "\\": "\\", "0": "\0"}


def batch_field(value: str) -> str:
    """One field of the client's ``--batch`` output as the value it stands for (the client
    writes ``\\t``, ``\\n``, ``\\\\`` and ``\\0`` for a tab, a newline, a backslash and a NUL):
    a table name read there is the name to quote in the next statement."""
    if "\\" not in value:
        return value
    out, i = [], 0
    while i < len(value):
        if value[i] == "\\" and i + 1 < len(value):
            out.append(_BATCH_ESCAPES.get(value[i + 1], value[i + 1]))
            i += 2
        else:
            out.append(value[i])
            i += 1
    return "".join(out)


def batch_rows(text: str) -> list[list[str]]:
    """The rows of the client's ``--batch`` output (one a line), each field unescaped."""
    return [[batch_field(f) for f in line.split("\t")] for line in text.split("\n") if line]


__all__ = ["UTF8MB4", "batch_field", "batch_rows", "client_argv", "option_file_args", "query_argv"]
