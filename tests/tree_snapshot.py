"""Full tree snapshots for comparing a directory before and after an operation.

``snapshot(root)`` maps every path under ``root`` (relative, POSIX form, the root
itself as ``"."``) to ``(type, mode, digest)``:

- type: ``"dir"``, ``"file"``, ``"link"`` or ``"other"`` (fifo, socket, device);
- mode: the permission bits (``stat.S_IMODE``) of the entry itself (not followed);
- digest: sha256 hex of the file content, of the link target (``os.readlink``) for
  symlinks, ``""`` for directories and other entries.

Names are kept exactly, including newlines, backslashes, leading dashes and
non-UTF-8 bytes (decoded with ``surrogateescape``). Symlinks are never followed.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

Entry = tuple[str, int, str]


def _digest_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 16), b""):
            h.update(chunk)
    return h.hexdigest()


def _entry(path: str) -> Entry:
    st = os.lstat(path)
    mode = stat.S_IMODE(st.st_mode)
    if stat.S_ISLNK(st.st_mode):
        target = os.fsencode(os.readlink(path))
        return ("link", mode, hashlib.sha256(target).hexdigest())
    if stat.S_ISDIR(st.st_mode):
        return ("dir", mode, "")
    if stat.S_ISREG(st.st_mode):
        return ("file", mode, _digest_file(path))
    return ("other", mode, "")


def snapshot(root: Path) -> dict[str, Entry]:
    """Return ``{relative path: (type, mode, sha256)}`` for ``root`` and everything under it.

    A missing root gives an empty dict, so "the tree did not exist" compares
    equal only to "the tree does not exist".
    """
    base = os.fspath(root)
    if not os.path.lexists(base):
        return {}
    result: dict[str, Entry] = {".": _entry(base)}
    if result["."][0] != "dir":
        return result
    for dirpath, dirnames, filenames in os.walk(base, followlinks=False):
        for name in [*dirnames, *filenames]:
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, base)
            result[rel] = _entry(full)
    return result


def diff(before: dict[str, Entry], after: dict[str, Entry]) -> dict[str, tuple[Entry | None, Entry | None]]:
    """Return the paths whose entry differs, with ``(before, after)`` (``None`` when absent)."""
    keys = set(before) | set(after)
    return {k: (before.get(k), after.get(k)) for k in sorted(keys) if before.get(k) != after.get(k)}
