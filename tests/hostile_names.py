"""Hostile names: path components that a shell, a glob or a careless parser would get wrong
(quotes, backslashes, newlines, leading dashes, spaces, globs, unicode, the longest name a file
system allows), as hypothesis strategies shared by the tests that touch trees."""

from __future__ import annotations

import os

from hypothesis import strategies as st

__all__ = ["FRAGMENTS", "clip_name", "distinct_names", "hostile_names", "valid_name"]

FRAGMENTS = [
    "'",
    '"',
    "\\",
    "\n",
    "-",
    "--",
    "-rf",
    " ",
    "*",
    "?",
    "[ab]",
    "$(id)",
    "`id`",
    "${HOME}",
    "~",
    "ü",
    "日本",
    "\t",
    "#",
    ";",
    "&",
    "|",
    "{a,b}",
    "%s%n",
    "..",
    ".",
    "x",
    "\\n",
    "é" * 20,
]

_ALPHABET = st.characters(exclude_characters="/\x00", exclude_categories=["Cs"], max_codepoint=0x2FFF)


def valid_name(name: str) -> bool:
    """Whether ``name`` can be one path component (not . or .., no slash or NUL, <= 255 bytes)."""
    return name not in (".", "..") and "/" not in name and "\x00" not in name and len(os.fsencode(name)) <= 255


def clip_name(name: str) -> str:
    """``name`` cut to at most 255 bytes (whole characters)."""
    while len(os.fsencode(name)) > 255:
        name = name[:-1]
    return name


def _longest(ch: str) -> str:
    return ch * (255 // len(ch.encode()))


def hostile_names(*, newline: bool = True) -> st.SearchStrategy[str]:
    """One path component that a shell, a glob or a careless parser would get wrong."""
    frags = st.sampled_from([f for f in FRAGMENTS if newline or "\n" not in f])
    text = st.text(alphabet=_ALPHABET, min_size=1, max_size=6)
    if not newline:
        text = text.filter(lambda s: "\n" not in s and "\r" not in s)
    parts = st.lists(st.one_of(frags, text), min_size=1, max_size=5).map("".join)
    longest = st.sampled_from([_longest("x"), _longest("é"), _longest("日"), "-" + _longest("z")[1:]])
    return st.one_of(parts, longest).filter(valid_name)


def distinct_names(n: int, *, newline: bool = True) -> st.SearchStrategy[list[str]]:
    """``n`` different hostile names."""
    return st.lists(hostile_names(newline=newline), min_size=n, max_size=n, unique=True)
