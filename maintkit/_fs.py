"""Atomic local files: the one writer every layer uses (audit files, promotion locks, summaries).

A write goes to a temporary file in the target's folder, is flushed and fsynced, gets its mode
(0600 unless told otherwise) before it becomes visible, is renamed over the target, and the
folder is fsynced so the rename survives a crash. A failed write leaves no temporary file.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any


def fsync_dir(path: Path) -> None:
    """fsync a folder so a rename or a new file in it is durable (best effort)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    fsync_close(fd)


def fsync_close(fd: int) -> None:
    """fsync ``fd`` (best effort: a failure is ignored), then close it."""
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


def write_text_atomic(path: Path, text: str, mode: int = 0o600, *, make_parents: bool = False) -> None:
    """Write ``text`` to ``path`` atomically: temp file in the same folder, fsync, rename, fsync folder.

    ``make_parents`` creates missing folders first (mode 0700).
    """
    path = Path(path)
    if make_parents:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def dump_json(obj: Any) -> str:
    """``obj`` as indented, key-sorted JSON text with a final newline (non-ASCII kept)."""
    return json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write_json_atomic(path: Path, obj: Any, mode: int = 0o600, *, make_parents: bool = False) -> None:
    """Write a JSON-ready ``obj`` atomically (see :func:`write_text_atomic`)."""
    write_text_atomic(path, dump_json(obj), mode, make_parents=make_parents)


__all__ = ["dump_json", "fsync_close", "fsync_dir", "write_json_atomic", "write_text_atomic"]
