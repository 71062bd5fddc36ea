"""Probes of paths: :class:`FileState` (stat, hash, link target) and :class:`MissingDirs`
(which ancestors a change would create), with the :class:`FileInfo` fact."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from maintkit.probes.base import BulkReader, Probe, RawOutput, decode_hex, hex_script
from maintkit.transport.base import quote

__all__ = ["FileInfo", "FileState", "MissingDirs", "ancestors"]


_MISSING = RawOutput("MISSING\n", 0)


def _absent(path: str) -> str:
    """Shell builtins' test: nothing at ``path``, not even a dangling link."""
    return f"! [ -e {quote(path)} ] && ! [ -L {quote(path)} ]"


def _present(path: str) -> str:
    """Shell builtins' test: something at ``path`` (a dangling link too)."""
    return f"{{ [ -e {quote(path)} ] || [ -L {quote(path)} ]; }}"


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


#: what ``stat`` prints of a path: type, mode (octal), owner, group, size
_STAT_FORMAT = "'%F|%a|%U|%G|%s'"
#: the same, then the name and a link's target C-quoted (``"name" -> "target"``, or ``"name"``)
_BULK_FORMAT = "'%F|%a|%U|%G|%s|%N'"
_REGULAR = ("regular file", "regular empty file")
#: C escapes (GNU quotearg's ``c`` style) and the byte each stands for
_C_ESCAPES = {"a": 7, "b": 8, "f": 12, "n": 10, "r": 13, "t": 9, "v": 11, "\\": 92, '"': 34, "'": 39, "?": 63}
#: a piece of a C-quoted string: a run of printable ASCII but ``"`` and ``\``, an escape, or octal
_C_PIECE = re.compile(r'([ !#-\[\]-~]+)|\\([abfnrtv\\"\'?])|\\([0-7]{1,3})')


def c_unquote(text: str) -> tuple[bytes, str] | None:
    """Decode the C-quoted string at the start of ``text``: its bytes and the text after it.

    Strict: a ``"``, then printable ASCII other than ``"`` and ``\\``, the escapes
    ``\\a \\b \\f \\n \\r \\t \\v \\\\ \\" \\' \\?`` and octal ``\\ooo`` (1 to 3 digits, at most
    ``\\377``), then a ``"``. None for anything else (another quoting style, a raw control or
    non-ASCII character, an unknown escape, no closing quote).
    """
    if not text.startswith('"'):
        return None
    out, i = bytearray(), 1
    while (m := _C_PIECE.match(text, i)) is not None:
        plain, escape, octal = m.groups()
        if plain is not None:  # a whole run at once: a path is mostly plain characters
            out += plain.encode("ascii")
        elif escape is not None:
            out.append(_C_ESCAPES[escape])
        else:
            if int(octal, 8) > 0o377:
                return None
            out.append(int(octal, 8))
        i = m.end()
    return (bytes(out), text[i + 1 :]) if text[i : i + 1] == '"' else None


def name_field(text: str) -> tuple[bytes, bytes | None] | None:
    """``stat``'s ``%N`` in the ``c`` quoting style: the name and a link's target (None: not a link).

    ``"name" -> "target"`` or ``"name"`` and nothing after it; None when it is anything else.
    """
    first = c_unquote(text)
    if first is None:
        return None
    name, rest = first
    if not rest:
        return name, None
    if not rest.startswith(" -> "):
        return None
    second = c_unquote(rest[4:])
    if second is None or second[1]:
        return None
    return name, second[0]


class _StatAll:
    """Reads every :class:`FileState` of a batch with one ``stat`` and one ``sha256sum``.

    The shell tests which paths exist (builtins), stats those in one call (which also prints
    each name and link target, C-quoted: ``%N`` with ``QUOTING_STYLE=c`` in the C locale), and
    hashes the regular files (up to the largest ``max_hash_bytes`` asked for a path) in one
    call. What it prints (``name`` prefixes its variables)::

        E 0 2            indices of the paths that exist
        <stat lines>     one per existing path, in that order, ending in ``"name" -> "target"``
        S0               stat's status (S1: a path vanished meanwhile; no stat lines)
        h 0              indices hashed, then one sha256sum line each, then R<status>

    Every byte >= 0x80 and every control byte of a name or target is a C escape, so each path
    is one ASCII line; the name stat printed must be the path's own, or the block's stat lines
    are not trusted and every existing path is read on its own (a stat that ignores
    QUOTING_STYLE, a BusyBox stat). sha256sum escapes a name with a newline into one line
    (only the hash is kept).
    """

    def script(self, probes: Sequence[Probe[Any]], name: str) -> str:
        paths = _largest_hash(probes)
        n = name
        cases = " ".join(f"{i}) {n}_p={quote(path)} {n}_m={m};;" for i, (path, m) in enumerate(paths.items()))
        return (
            f"{n}_at() {{ case $1 in {cases} esac; }}\n"
            f"{n}_nl='\n'\n"
            f"{n}_e=; set --\n"
            f'for {n}_i in {" ".join(str(i) for i in range(len(paths)))}; do {n}_at "${n}_i"\n'
            f'  if [ -e "${n}_p" ] || [ -L "${n}_p" ]; then {n}_e="${n}_e ${n}_i"; set -- "$@" "${n}_p"; fi\n'
            "done\n"
            f"printf 'E%s\\n' \"${n}_e\"\n"
            "[ $# -gt 0 ] || return 0\n"
            f'{n}_s=$(LC_ALL=C QUOTING_STYLE=c stat -c {_BULK_FORMAT} -- "$@") || {{ echo S1; return 0; }}\n'
            f"printf '%s\\nS0\\n' \"${n}_s\"\n"
            f'{n}_r="${n}_s${n}_nl"; {n}_sel=; set --\n'
            f"for {n}_i in ${n}_e; do\n"
            f'  {n}_x=${{{n}_r%%"${n}_nl"*}}; {n}_r=${{{n}_r#*"${n}_nl"}}; {n}_at "${n}_i"\n'
            f"  case ${n}_x in 'regular file|'*|'regular empty file|'*) ;; *) continue;; esac\n"
            f"  {n}_z=${{{n}_x#*|}}; {n}_z=${{{n}_z#*|}}; {n}_z=${{{n}_z#*|}}; {n}_z=${{{n}_z#*|}}\n"
            f'  [ "${{{n}_z%%|*}}" -le "${n}_m" ] || continue\n'
            f'  {n}_sel="${n}_sel ${n}_i"; set -- "$@" "${n}_p"\n'
            "done\n"
            f"printf 'h%s\\n' \"${n}_sel\"\n"
            "[ $# -gt 0 ] || return 0\n"
            'sha256sum -- "$@"; echo "R$?"'
        )

    def split(self, probes: Sequence[Probe[Any]], text: str) -> dict[str, RawOutput]:
        paths = list(_largest_hash(probes))
        out: dict[str, RawOutput] = {}
        try:
            seen = _StatOutput.parse(text, paths)
            for probe in probes:
                assert isinstance(probe, FileState)
                raw = seen.output(paths.index(probe.path), probe.max_hash_bytes)
                if raw is not None:
                    out[probe.key] = raw
        except (ValueError, IndexError, StopIteration):
            return {}  # not what the block prints (cut short?): every probe is read on its own
        return out


@dataclass
class _StatOutput:
    """What :class:`_StatAll`'s block printed, by path index."""

    existing: list[int]
    stat_ok: bool = True
    lines: dict[int, str] = field(default_factory=dict)  # the stat line without the name
    hashes: dict[int, str] = field(default_factory=dict)
    targets: dict[int, str] = field(default_factory=dict)  # a link's target, as hex

    @classmethod
    def parse(cls, text: str, paths: Sequence[str]) -> _StatOutput:
        """Read the block's output; ValueError/IndexError when it is not what the block prints."""
        lines = text.split("\n")
        if not lines[0].startswith("E"):
            raise ValueError("no index line")
        seen = cls([int(w) for w in lines[0][1:].split()])
        if not seen.existing:
            return seen
        if lines[1] == "S1":
            seen.stat_ok = False
            return seen
        n = len(seen.existing)
        if lines[1 + n] != "S0":
            raise ValueError("stat lines do not match the paths")
        for i, line in zip(seen.existing, lines[1 : 1 + n], strict=True):
            if not seen._stat_line(i, line, paths[i]):
                seen.stat_ok = False  # not one line per path as asked: nothing after it is trusted
                return seen
        rest = lines[2 + n :]
        if rest and rest[0][:1] == "h":
            seen._hashes(rest)
        return seen

    def _stat_line(self, i: int, line: str, path: str) -> bool:
        """Keep path ``i``'s stat line (without ``%N``) and its link target; False when the line
        is not the five fields then ``%N`` naming exactly ``path`` (a target only for a link)."""
        fields = line.split("|", 5)
        if len(fields) != 6:
            return False
        named = name_field(fields[5])
        try:
            wanted = path.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:
            return False
        if named is None or named[0] != wanted or (named[1] is not None) != (fields[0] == "symbolic link"):
            return False
        self.lines[i] = "|".join(fields[:5])
        if named[1] is not None:
            self.targets[i] = named[1].hex()
        return True

    def _hashes(self, rest: list[str]) -> None:
        """Read the ``h`` section: the indices hashed, one sha256sum line each, then R<status>."""
        picked = [int(w) for w in rest[0][1:].split()]
        if not picked:
            return
        end = next(k for k, line in enumerate(rest) if line.startswith("R"))
        sums = [line.lstrip("\\")[:64] for line in rest[1:end]]  # an escaped name starts with a backslash
        if rest[end] == "R0" and len(sums) == len(picked) and all(len(h) == 64 for h in sums):
            self.hashes = dict(zip(picked, sums, strict=True))

    def output(self, i: int, max_hash_bytes: int) -> RawOutput | None:
        """What :meth:`FileState.script` would print for path ``i``; None when it cannot be told."""
        if i not in self.existing:
            return _MISSING
        line = self.lines.get(i)
        if not self.stat_ok or line is None:
            return None
        ftype, size = line.split("|", 1)[0], int(line.rsplit("|", 1)[1])
        if ftype == "symbolic link":
            target = self.targets.get(i)
            return None if target is None else RawOutput(f"{line}\n{target}\n", 0)
        if ftype in _REGULAR and size <= max_hash_bytes:
            digest = self.hashes.get(i)
            return None if digest is None else RawOutput(f"{line}\n{digest}  -\n", 0)
        return RawOutput(f"{line}\n", 0)


def _largest_hash(probes: Sequence[Probe[Any]]) -> dict[str, int]:
    """Each path of ``probes`` (in order) with the largest ``max_hash_bytes`` asked for it."""
    paths: dict[str, int] = {}
    for p in probes:
        assert isinstance(p, FileState)
        paths[p.path] = max(paths.get(p.path, 0), int(p.max_hash_bytes))
    return paths


@dataclass(frozen=True)
class FileState(Probe[FileInfo]):
    """Stat a path without following symlinks; hash regular files up to ``max_hash_bytes``.

    Nothing the host prints depends on the bytes of the name: the hash is read from stdin
    (``sha256sum < FILE`` never escapes a name) and a link target is printed as hex, so a
    name or target with a newline, a backslash or any other byte is read back exactly.
    ``stat`` runs in the C locale: elsewhere ``%F`` is translated ("Verzeichnis").
    """

    path: str
    max_hash_bytes: int = 64 * 1024 * 1024
    kind: ClassVar[str] = "file"
    bulk: ClassVar[BulkReader | None] = _StatAll()

    def script(self) -> str:
        target = hex_script('readlink -n -- "$p"')
        # one stat: the size to compare is the line's last field
        return (
            f"p={quote(self.path)}\n"
            f'if [ -e "$p" ] || [ -L "$p" ]; then if s=$(LC_ALL=C stat -c {_STAT_FORMAT} -- "$p"); then\n'
            "  printf '%s\\n' \"$s\"\n"
            f'  if [ -L "$p" ]; then {target}\n'
            f'  elif [ -f "$p" ] && [ "${{s##*|}}" -le {int(self.max_hash_bytes)} ]; then sha256sum < "$p"\n'
            "  fi\n"
            "else false; fi\n"
            "else echo MISSING; fi"
        )

    def inline(self) -> bool:
        return True

    def same_test(self, raw: RawOutput) -> str | None:
        """For a path that was missing: it is still missing (the script's first test)."""
        return _absent(self.path) if raw == _MISSING else None

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

    def inline(self) -> bool:
        return True

    def script(self) -> str:
        paths = " ".join(quote(p) for p in ancestors(self.path)) or "/"
        return (
            f"i=0; for p in {paths}; do "
            'if [ -e "$p" ] || [ -L "$p" ]; then printf \'%s \' "$i"; fi; i=$((i+1)); done; echo END'
        )

    def same_test(self, raw: RawOutput) -> str | None:
        """Each ancestor exists exactly when it did (the script's one test per path)."""
        paths = ancestors(self.path) or ("/",)
        existing = [int(w) for w in raw.stdout.split()[:-1] if w.isdigit()]
        if raw.exit_code != 0 or raw.stdout != "".join(f"{i} " for i in existing) + "END\n":
            return None
        if any(i >= len(paths) for i in existing):
            return None
        tests = [_present(p) if i in existing else _absent(p) for i, p in enumerate(paths)]
        return " && ".join(tests)

    def parse(self, raw: RawOutput) -> tuple[str, ...] | None:
        words = raw.stdout.split()
        if raw.exit_code != 0 or not words or words[-1] != "END":
            return None
        chain = ancestors(self.path)
        existing = [int(w) for w in words[:-1] if w.isdigit()]
        deepest = max(existing, default=-1)
        return chain[deepest + 1 :]
