"""A plugin state backend: ``dir``, a shared folder (a network mount, a synced folder) as the store.

Select it with ``--state dir:/mnt/maint-state`` (or ``state: {backend: dir, remote: /mnt/...}``).
Each controller keeps a private copy of the store in its state folder (``root``);
:meth:`DirStore.pull` copies what is new in the shared folder into it and
:meth:`DirStore.publish` copies the paths a run wrote into the shared folder, each file
atomically (temporary file and rename), so readers never see half a file. Run folders are
unique paths, so two controllers never write the same file at once.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any


def _files(top: Path) -> Iterator[Path]:
    """Every regular file under ``top`` (``top`` itself when it is a file)."""
    if top.is_file():
        yield top
    elif top.is_dir():
        yield from (p for p in sorted(top.rglob("*")) if p.is_file() and not p.is_symlink())


def _copy(src: Path, dst: Path) -> None:
    """Copy ``src`` to ``dst`` atomically, mode 0600, keeping the modification time."""
    dst.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=dst.parent, prefix=f".{dst.name}.", suffix=".tmp")
    os.close(fd)
    try:
        shutil.copy2(src, tmp)
        os.chmod(tmp, 0o600)
        os.replace(tmp, dst)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class DirStore:
    """The ``dir`` state backend: a shared folder, mirrored into the state folder."""

    name = "dir"

    def __init__(self, options: Mapping[str, Any], *, state_dir: Path, environ: Mapping[str, str]) -> None:
        shared = options.get("remote")
        if not isinstance(shared, str) or not shared:
            raise ValueError("the dir state backend needs a folder (dir:/shared/folder)")
        unknown = sorted(set(options) - {"remote"})
        if unknown:
            raise ValueError(f"unknown dir state option(s): {', '.join(unknown)}")
        self.shared = Path(shared).expanduser().absolute()
        digest = hashlib.sha256(str(self.shared).encode()).hexdigest()[:16]
        self._root = Path(state_dir).absolute() / "stores" / f"dir-{digest}"
        self._lock = threading.Lock()

    @property
    def root(self) -> Path:
        """This controller's copy of the store (mode 0700)."""
        self._root.mkdir(parents=True, exist_ok=True, mode=0o700)
        return self._root

    def describe(self) -> str:
        """``dir (/shared/folder)``."""
        return f"dir ({self.shared})"

    def pull(self) -> None:
        """Copy every file of the shared folder that is missing here or differs in size or time."""
        with self._lock:
            for src in _files(self.shared):
                dst = self.root / src.relative_to(self.shared)
                s = src.stat()
                if not dst.exists() or (dst.stat().st_size, dst.stat().st_mtime_ns) != (s.st_size, s.st_mtime_ns):
                    _copy(src, dst)

    def publish(self, paths: Sequence[Path], message: str) -> None:
        """Copy the files under ``paths`` into the shared folder (the message is not kept)."""
        with self._lock:
            for path in paths:
                full = self.root / path
                if not full.resolve().is_relative_to(self.root.resolve()):
                    raise ValueError(f"not a path inside the state store: {path}")
                for src in _files(full):
                    _copy(src, self.shared / src.relative_to(self.root))

    def close(self) -> None:
        """Nothing to close."""
