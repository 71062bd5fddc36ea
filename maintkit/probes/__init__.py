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


@dataclass(frozen=True)
class FileState(Probe[FileInfo]):
    """Stat a path without following symlinks; hash regular files up to ``max_hash_bytes``."""

    path: str
    max_hash_bytes: int = 64 * 1024 * 1024
    kind: ClassVar[str] = "file"

    def script(self) -> str:
        from maintkit.transport.base import quote

        p = quote(self.path)
        return (
            f"if [ -e {p} ] || [ -L {p} ]; then stat -c '%F|%a|%U|%G|%s' -- {p}; "
            f"if [ -L {p} ]; then readlink -- {p}; "
            f"elif [ -f {p} ] && [ $(stat -c %s -- {p}) -le {int(self.max_hash_bytes)} ]; then sha256sum -- {p}; fi; "
            "else echo MISSING; fi"
        )

    def parse(self, raw: RawOutput) -> FileInfo:
        lines = raw.stdout.strip("\n").split("\n")
        if not lines or lines[0] == "MISSING" or raw.exit_code != 0 or "|" not in lines[0]:
            return FileInfo(False)
        ftype, mode, owner, group, size = lines[0].split("|", 4)
        kind = {
            "regular file": "file",
            "regular empty file": "file",
            "directory": "directory",
            "symbolic link": "symlink",
        }
        t = kind.get(ftype, ftype)
        info: dict[str, Any] = {
            "exists": True,
            "type": t,
            "mode": mode,
            "owner": owner,
            "group": group,
            "size": int(size),
        }
        if t == "symlink" and len(lines) > 1:
            info["target"] = lines[1]
        elif t == "file" and len(lines) > 1:
            info["sha256"] = lines[1].split(" ", 1)[0]
        return FileInfo(**info)


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


__all__ = ["CommandProbe", "FileInfo", "FileState", "Probe", "RawOutput", "run_batch", "run_batch_result"]
