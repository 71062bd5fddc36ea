"""One scanner for secret leaks, shared by every test that needs it.

:func:`assert_no_secret` looks for a secret, and for every 8-character piece of it, in
files (directories are walked), and in captured texts (stdout, stderr, reports...).
A piece is what a cut made before redaction leaves behind, so finding one is a leak too.
"""

from __future__ import annotations

import secrets as _random
import string
from collections.abc import Iterable
from pathlib import Path

#: Shorter pieces than this are not considered a leak (they could occur by chance).
FRAGMENT = 8

Source = Path | tuple[str, str | bytes]


def new_secret(length: int = 48) -> str:
    """A random secret of letters and digits (always holds an upper-case letter, so no piece
    of it can look like the lower-case hex of hashes and run ids)."""
    alphabet = string.ascii_letters + string.digits
    while True:
        value = "".join(_random.choice(alphabet) for _ in range(length))
        if all(any(c.isupper() for c in value[i : i + FRAGMENT]) for i in range(length - FRAGMENT + 1)):
            return value


def fragments(secret: str, size: int = FRAGMENT) -> list[str]:
    """The secret itself and every piece of ``size`` characters of it."""
    return [secret, *(secret[i : i + size] for i in range(len(secret) - size + 1))]


def _expand(sources: Iterable[Source]) -> Iterable[tuple[str, bytes]]:
    for src in sources:
        if isinstance(src, Path):
            files = [src] if src.is_file() else sorted(p for p in src.rglob("*") if p.is_file())
            for f in files:
                yield str(f), f.read_bytes()
        else:
            label, text = src
            yield label, text if isinstance(text, bytes) else text.encode("utf-8", "surrogateescape")


def find_leaks(sources: Iterable[Source], secret: str) -> list[str]:
    """``"<where>: <piece>"`` for every source that holds the secret or a piece of it."""
    pieces = [p.encode() for p in fragments(secret)]
    leaks = []
    for where, data in _expand(sources):
        for piece in pieces:
            if piece in data:
                leaks.append(f"{where}: {piece.decode()!r}")
                break
    return leaks


def assert_no_secret(sources: Iterable[Source], secret: str) -> int:
    """Fail naming every file or text that shows ``secret`` or a piece (8 characters) of it.

    ``sources``: paths (a directory means every file under it) and ``(label, text)`` pairs.
    Returns how many files and texts were scanned (so a caller can assert it scanned some).
    """
    expanded = list(_expand(sources))
    leaks = find_leaks([(w, d) for w, d in expanded], secret)
    assert not leaks, "secret leaked:\n" + "\n".join(leaks)
    return len(expanded)
