"""Probes of paths: :class:`FileState` (stat, hash, link target) and :class:`MissingDirs`
(which ancestors a change would create), with the :class:`FileInfo` fact."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from maintkit.probes.base import Probe, RawOutput, decode_hex, hex_script
from maintkit.transport.base import quote

__all__ = ["FileInfo", "FileState", "MissingDirs", "ancestors"]


@dataclass(frozen=True)
class FileInfo:
    """State of one path: existence, type, mode, owner, size, sha256 (files), link target (symlinks)."""

    exists: bool
    type: str = ""  # "file" | "directory" | "symlink" | other
    mode: str = ""  # octal, e.g. "644"
    owner: str = ""
    group: str = ""
    size: int = 0
    sha256: str | None = None
    target: str | None = None


_FILE_TYPES = {
    "regular file": "file",
    "regular empty file": "file",
    "directory": "directory",
    "symbolic link": "symlink",
}


@dataclass(frozen=True)
class FileState(Probe[FileInfo]):
    """Stat a path without following symlinks; hash regular files up to ``max_hash_bytes``.

    Nothing the host prints depends on the bytes of the name: the hash is read from stdin
    (``sha256sum < FILE`` never escapes a name) and a link target is printed as hex, so a
    name or target with a newline, a backslash or any other byte is read back exactly.
    """

    path: str
    max_hash_bytes: int = 64 * 1024 * 1024
    kind: ClassVar[str] = "file"

    def script(self) -> str:
        target = hex_script('readlink -n -- "$p"')
        return (
            f"p={quote(self.path)}\n"
            'if [ -e "$p" ] || [ -L "$p" ]; then stat -c \'%F|%a|%U|%G|%s\' -- "$p" || exit 1\n'
            f'  if [ -L "$p" ]; then {target}\n'
            f'  elif [ -f "$p" ] && [ "$(stat -c %s -- "$p")" -le {int(self.max_hash_bytes)} ]; then sha256sum < "$p"\n'
            "  fi\n"
            "else echo MISSING; fi"
        )

    def parse(self, raw: RawOutput) -> FileInfo:
        lines = raw.stdout.split("\n")
        if not lines or lines[0] == "MISSING" or raw.exit_code != 0 or lines[0].count("|") != 4:
            return FileInfo(False)
        ftype, mode, owner, group, size = lines[0].split("|", 4)
        t = _FILE_TYPES.get(ftype, ftype)
        info: dict[str, Any] = {
            "exists": True,
            "type": t,
            "mode": mode,
            "owner": owner,
            "group": group,
            "size": int(size),
        }
        second = lines[1].strip() if len(lines) > 1 else ""
        if t == "symlink" and second:
            info["target"] = decode_hex(second)
        elif t == "file" and second:
            info["sha256"] = second.split(" ", 1)[0]
        return FileInfo(**info)


def ancestors(path: str) -> tuple[str, ...]:
    """``/a``, ``/a/b``, ``/a/b/c`` for ``/a/b/c`` (absolute paths; the root is left out)."""
    parts = [x for x in path.split("/") if x]
    return tuple("/" + "/".join(parts[: i + 1]) for i in range(len(parts)))


@dataclass(frozen=True)
class MissingDirs(Probe["tuple[str, ...] | None"]):
    """Which of an absolute path's ancestors (the path included) do not exist, top-down.

    Read before a change so that an action knows exactly which directories it is about to
    create (and may remove again on rollback). Names are never printed back: the host
    prints the index of each existing path. None when the probe could not run.
    """

    path: str
    kind: ClassVar[str] = "missing-dirs"

    def script(self) -> str:
        paths = " ".join(quote(p) for p in ancestors(self.path)) or "/"
        return (
            f"i=0; for p in {paths}; do "
            'if [ -e "$p" ] || [ -L "$p" ]; then printf \'%s \' "$i"; fi; i=$((i+1)); done; echo END'
        )

    def parse(self, raw: RawOutput) -> tuple[str, ...] | None:
        words = raw.stdout.split()
        if raw.exit_code != 0 or not words or words[-1] != "END":
            return None
        chain = ancestors(self.path)
        existing = [int(w) for w in words[:-1] if w.isdigit()]
        deepest = max(existing, default=-1)
        return chain[deepest + 1 :]
