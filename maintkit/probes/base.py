"""The probe base: :class:`Probe`, :class:`RawOutput`, the batch runner and the hex helpers.

Imported by every probe module (through :mod:`maintkit.probes`, which re-exports it); it
imports no probe module itself.
"""

from __future__ import annotations

import secrets as _secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

from maintkit.results import CommandResult
from maintkit.transport.base import Transport

__all__ = ["Probe", "RawOutput", "decode_hex", "hex_script", "run_batch", "run_batch_result"]

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


def decode_hex(text: str) -> str:
    """Bytes printed as hex by ``od -An -v -tx1`` back to a str (any byte of a name survives).

    Bytes that are not UTF-8 are kept as surrogate escapes (as :func:`os.fsdecode` does).
    """
    return bytes.fromhex("".join(text.split())).decode("utf-8", "surrogateescape")


def hex_script(command: str) -> str:
    """Shell pipeline printing ``command``'s exact stdout bytes as one line of hex."""
    return f"{command} | od -An -v -tx1 | tr -d ' \\n'; echo"
