"""MariaDB/MySQL client command lines: which option files a client reads.

The one place that decides the option-file arguments of ``mariadb``, ``mariadb-dump``,
``mysql`` and ``mysqldump`` for every action (``backup.*`` and ``cms.update``).

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


def client_argv(binary: str, defaults_file: str | None = None, *, explicit_user: bool = False) -> list[str]:
    """``binary`` followed by its option-file arguments (see :func:`option_file_args`)."""
    return [binary, *option_file_args(defaults_file, explicit_user=explicit_user)]


__all__ = ["client_argv", "option_file_args"]
