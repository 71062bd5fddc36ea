"""The MariaDB client's ``--batch`` output read back as values (``batch_field``/``batch_rows``),
and the statement clients' character set (``client_argv``): a table name read from one
statement is quoted into the next, so it must come back exactly, whatever it holds; and the
cut of such output at a marker line (``split_at_line``)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from maintkit.actions.mariadb import batch_field, batch_rows, client_argv
from maintkit.transport.base import split_at_line


def client_escape(value: str) -> str:
    """What the client writes in ``--batch`` mode for ``value`` (mysql.cc ``print_tab_data``)."""
    return value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\0", "\\0")


def test_escaped_fields_come_back_exactly() -> None:
    assert batch_field("back\\\\slash") == "back\\slash"
    assert batch_field("a\\tb\\nc\\0d") == "a\tb\nc\0d"
    assert batch_field("plain `name` it's ünï") == "plain `name` it's ünï"
    assert batch_rows("t1\t2\nback\\\\slash\t5\n\n") == [["t1", "2"], ["back\\slash", "5"]]


@given(st.text())
def test_any_value_the_client_escapes_is_read_back_as_it_was(value: str) -> None:
    assert batch_field(client_escape(value)) == value
    [row] = batch_rows(client_escape(value) + "\t" + client_escape(value[::-1]) + "\n")
    assert row == [value, value[::-1]]


def test_statement_clients_talk_utf8mb4_after_their_option_file() -> None:
    assert client_argv("mariadb", "/s/db.cnf") == [
        "mariadb",
        "--defaults-file=/s/db.cnf",
        "--default-character-set=utf8mb4",
    ]
    assert client_argv("mysql", None, explicit_user=True) == [
        "mysql",
        "--no-defaults",
        "--default-character-set=utf8mb4",
    ]
    assert client_argv("mariadb-dump", "/s/db.cnf") == [
        "mariadb-dump",
        "--defaults-file=/s/db.cnf",
    ]  # the dump sets its own


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a\nb\n@@mk-1\nc\nd\n", ("a\nb", "c\nd\n")),
        ("@@mk-1\nc\n", ("", "c\n")),
        ("a\n@@mk-1", ("a", "")),
        ("a\n@@mk-1 x\n@@mk-1\n@@mk-1\n", ("a\n@@mk-1 x", "@@mk-1\n")),  # only a whole line, the first
        ("a\nb@@mk-1\n", None),
    ],
)
def test_split_at_line_cuts_at_the_first_whole_line(text: str, expected: tuple[str, str] | None) -> None:
    assert split_at_line(text, "@@mk-1") == expected
