"""The decoder of ``stat``'s ``%N`` in the ``c`` quoting style, and how the bulk FileState
reader uses it: a line is trusted only when it names exactly its own path.

The block's output below is written by hand (what GNU stat 9 prints with ``LC_ALL=C
QUOTING_STYLE=c``); the same reader against the real shell and stat is tested in
``tests/lab/test_stat_names.py``.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from maintkit.probes import FileState, RawOutput
from maintkit.probes.files import _StatAll, c_unquote, name_field

HASH = "ab" * 32


def test_every_escape_decodes_to_its_byte() -> None:
    assert c_unquote(r'"\a\b\f\n\r\t\v\\\"\'\?"') == (bytes([7, 8, 12, 10, 13, 9, 11, 92, 34, 39, 63]), "")


def test_printable_ascii_is_itself_and_the_rest_is_returned() -> None:
    plain = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) not in '"\\')
    assert c_unquote(f'"{plain}" -> x') == (plain.encode(), " -> x")
    assert c_unquote('""') == (b"", "")


@pytest.mark.parametrize(
    ("text", "value"),
    [
        (r'"\0"', b"\x00"),
        (r'"\7"', b"\x07"),
        (r'"\12"', b"\n"),
        (r'"\377"', b"\xff"),
        (r'"\303\251"', "é".encode()),
        (r'"\1234"', b"S4"),  # three digits at most: the fourth is a plain character
        (r'"\08"', b"\x008"),  # 8 is not an octal digit
        (r'"\12a"', b"\na"),
        (r'"x\001\177?"', b"x\x01\x7f?"),
    ],
)
def test_octal_escapes_take_one_to_three_digits(text: str, value: bytes) -> None:
    assert c_unquote(text) == (value, "")


@pytest.mark.parametrize(
    "text",
    [
        "",
        "abc",  # not quoted
        "'abc'",  # the shell-escape style
        '"abc',  # unterminated
        '"abc\\',  # unterminated after a backslash
        '"abc\\"',  # the closing quote is escaped
        r'"\400"',  # more than a byte
        r'"\x41"',  # no hex escapes in this style
        r'"\e"',
        r'"\8"',
        '"a\tb"',  # a raw control character
        '"a\nb"',
        '"é"',  # a raw non-ASCII character
        '"\ufffd"',  # a byte the transport could not decode
    ],
)
def test_anything_else_is_not_a_c_quoted_string(text: str) -> None:
    assert c_unquote(text) is None


def test_a_name_and_a_target_may_contain_the_arrow_inside_their_quotes() -> None:
    assert name_field(r'"a -> b" -> "c -> \"d\""') == (b"a -> b", b'c -> "d"')
    assert name_field('"a -> b"') == (b"a -> b", None)
    assert name_field(r'"li\nnk" -> "tar\nget \"q\" \\ \377 \303\251"') == (
        b"li\nnk",
        b'tar\nget "q" \\ \xff \xc3\xa9',
    )


@pytest.mark.parametrize(
    "text",
    [
        '"a" -> "b"x',  # a trailing byte
        '"a" -> "b" ',
        '"a"x',
        '"a" ',
        '"a" ->"b"',
        '"a" -> b',
        '"a" -> "b',
        '"a" -> "b" -> "c"',
        '"a""b"',
        '"a?""?"',  # a trigraph split by concatenation: not one string
        "'a' -> 'b'",
        "a -> b",
    ],
)
def test_a_name_field_with_anything_around_or_after_it_is_not_parsed(text: str) -> None:
    assert name_field(text) is None


PROBES = [FileState("/s/a"), FileState("/s/-l ink"), FileState("/s/d"), FileState("/s/gone")]


def _text(name0: str = '"/s/a"', link: str = r'"/s/-l ink" -> "x\n|y"') -> str:
    lines = [
        f"regular file|644|root|root|3|{name0}",
        f"symbolic link|777|root|root|3|{link}",
        'directory|755|root|root|4096|"/s/d"',
    ]
    return "E 0 1 2\n" + "\n".join(lines) + f"\nS0\nh 0\n{HASH}  /s/a\nR0\n"


def test_each_path_gets_what_its_own_script_prints() -> None:
    assert _StatAll().split(PROBES, _text()) == {
        PROBES[0].key: RawOutput(f"regular file|644|root|root|3\n{HASH}  -\n", 0),
        PROBES[1].key: RawOutput("symbolic link|777|root|root|3\n780a7c79\n", 0),
        PROBES[2].key: RawOutput("directory|755|root|root|4096\n", 0),
        PROBES[3].key: RawOutput("MISSING\n", 0),
    }


@pytest.mark.parametrize(
    ("name0", "link"),
    [
        ('"/s/b"', r'"/s/-l ink" -> "x"'),  # a line naming another path
        ('"/s/a" -> "x"', r'"/s/-l ink" -> "x"'),  # a target for a regular file
        ('"/s/a"', r'"/s/-l ink"'),  # a link without its target
        ("'/s/a'", "'/s/-l ink' -> 'x'"),  # a stat that ignored QUOTING_STYLE
        ('"/s/a"', r'"/s/-l ink" -> "x\q"'),
        ('"/s/a/"', r'"/s/-l ink" -> "x"'),
    ],
)
def test_a_line_that_does_not_name_its_path_exactly_leaves_every_existing_path_out(name0: str, link: str) -> None:
    assert _StatAll().split(PROBES, _text(name0, link)) == {PROBES[3].key: RawOutput("MISSING\n", 0)}


def test_a_name_that_is_not_bytes_is_left_out() -> None:
    probes = [FileState("/s/\ud800")]  # a lone surrogate no host name decodes to
    assert _StatAll().split(probes, 'E 0\ndirectory|755|root|root|4096|"/s/\\355\\240\\200"\nS0\nh\n') == {}


def _c_quote(raw: bytes) -> str:
    """``raw`` quoted as GNU quotearg's ``c`` style does (``stat``'s ``%N`` in the C locale)."""
    names = {7: "a", 8: "b", 12: "f", 10: "n", 13: "r", 9: "t", 11: "v", 92: "\\", 34: '"'}
    out = []
    for byte in raw:
        if byte in names:
            out.append("\\" + names[byte])
        elif 32 <= byte < 127:
            out.append(chr(byte))
        else:
            out.append(f"\\{byte:03o}")
    return '"' + "".join(out) + '"'


@settings(max_examples=300)
@given(st.binary(max_size=80), st.sampled_from(["", " -> x", "tail"]))
def test_any_bytes_quoted_come_back_as_they_were(raw: bytes, rest: str) -> None:
    assert c_unquote(_c_quote(raw) + rest) == (raw, rest)
