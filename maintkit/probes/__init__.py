"""Read-only probes: typed facts about a host, cached per host per run and batched.

A probe is a small shell snippet (built from quoted arguments) plus a parser. The
runner collects the probes every step of a stage will need and sends them to the
host in ONE round trip (:func:`run_batch`); ``Context.probe`` then answers from the
cache. After any change on a host its cache is dropped, so verification reads fresh
state.
"""

from __future__ import annotations

import secrets as _secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

from maintkit.results import CommandResult
from maintkit.transport.base import Transport

T = TypeVar("T")


@dataclass(frozen=True)
class RawOutput:
    """What a probe's snippet printed on stdout and its exit code."""

    stdout: str
    exit_code: int


class Probe(Generic[T]):
    """Base class of probes. Subclasses are frozen dataclasses with a ``script`` and a ``parse``."""

    kind: ClassVar[str] = "probe"

    @property
    def key(self) -> str:
        """Cache key: the kind and the probe's fields."""
        return f"{self.kind}:{self!r}"

    def script(self) -> str:
        """A POSIX shell snippet printing the fact on stdout (read-only!)."""
        raise NotImplementedError

    def parse(self, raw: RawOutput) -> T:
        """Turn the snippet's output into the typed fact."""
        raise NotImplementedError


def run_batch(
    transport: Transport,
    probes: Iterable[Probe[Any]],
    *,
    preamble: str | None = None,
    timeout: float = 120.0,
    stdin: bytes | None = None,
) -> tuple[dict[str, RawOutput], str]:
    """Run many probes in one round trip.

    ``preamble`` runs first (for example taking the site lock, or an action's change that
    reads ``stdin``); if it exits non-zero the batch stops. Returns the raw output per probe
    key and the preamble's output (``__preamble_failed__:CODE`` first when it failed).
    """
    raw, head, _ = run_batch_result(transport, probes, preamble=preamble, timeout=timeout, stdin=stdin)
    return raw, head


def run_batch_result(
    transport: Transport,
    probes: Iterable[Probe[Any]],
    *,
    preamble: str | None = None,
    timeout: float = 120.0,
    stdin: bytes | None = None,
) -> tuple[dict[str, RawOutput], str, CommandResult]:
    """:func:`run_batch`, also returning the CommandResult of the round trip."""
    unique: dict[str, Probe[Any]] = {}
    for p in probes:
        unique.setdefault(p.key, p)
    marker = "@@mk-" + _secrets.token_hex(6)
    parts = []
    if preamble:
        parts.append(f"( {preamble}\n) || exit $?")
    parts.append(f"printf '\\n%s\\n' '{marker} start'")
    keys = list(unique)
    for i, key in enumerate(keys):
        parts.append(f"( {unique[key].script()}\n) 2>/dev/null </dev/null; printf '\\n%s %s %s\\n' '{marker}' {i} $?")
    script = "\n".join(parts) + "\nexit 0\n"
    result = transport.run_shell(script, timeout=timeout, check=False, stdin=stdin)
    out = result.stdout
    head, sep, body = out.partition(f"\n{marker} start\n")
    if not sep:
        if out.startswith(f"{marker} start\n"):
            head, body = "", out[len(marker) + 7 :]
        else:
            return {}, out if result.exit_code == 0 else f"__preamble_failed__:{result.exit_code}\n{out}", result
    raw: dict[str, RawOutput] = {}
    for i, key in enumerate(keys):
        tag = f"\n{marker} {i} "
        chunk, sep, rest = body.partition(tag)
        if not sep:
            break
        code_text, _, body = rest.partition("\n")
        raw[key] = RawOutput(chunk, int(code_text or 0))
    return raw, head, result


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


def decode_hex(text: str) -> str:
    """Bytes printed as hex by ``od -An -v -tx1`` back to a str (any byte of a name survives).

    Bytes that are not UTF-8 are kept as surrogate escapes (as :func:`os.fsdecode` does).
    """
    return bytes.fromhex("".join(text.split())).decode("utf-8", "surrogateescape")


def hex_script(command: str) -> str:
    """Shell pipeline printing ``command``'s exact stdout bytes as one line of hex."""
    return f"{command} | od -An -v -tx1 | tr -d ' \\n'; echo"


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
        from maintkit.transport.base import quote

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
        from maintkit.transport.base import quote

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


@dataclass(frozen=True)
class CommandProbe(Probe[RawOutput]):
    """Run an argument list read-only and return its raw output (for guards such as ``unless``)."""

    argv: tuple[str, ...]
    kind: ClassVar[str] = "cmd"

    def script(self) -> str:
        from maintkit.transport.base import join

        return join(self.argv)

    def parse(self, raw: RawOutput) -> RawOutput:
        return raw


__all__ = [
    "CommandProbe",
    "FileInfo",
    "FileState",
    "MissingDirs",
    "Probe",
    "RawOutput",
    "ancestors",
    "decode_hex",
    "hex_script",
    "run_batch",
    "run_batch_result",
]
