"""The probe base: :class:`Probe`, :class:`RawOutput`, the batch runner and the hex helpers.

Imported by every probe module (through :mod:`maintkit.probes`, which re-exports it); it
imports no probe module itself.

A batch is ONE shell script: an optional preamble (in a subshell of its own, so that it may
``exit``), then the probes. A probe that says it is safe to (:meth:`Probe.inline`) runs as a
function of the batch's own shell, without a subshell; the others keep one each. Probes of a
class with a :attr:`Probe.bulk` reader are read together, one command per kind of fact
(:class:`~maintkit.probes.files.FileState`: one ``stat`` for every path of the batch). Every
block's output is framed by a marker line carrying a random token chosen per batch, which
nothing a host prints can predict.
"""

from __future__ import annotations

import secrets as _secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from maintkit.results import CommandResult
from maintkit.transport.base import Transport

__all__ = ["Batch", "BulkReader", "Probe", "RawOutput", "decode_hex", "hex_script", "run_batch", "run_batch_result"]

T = TypeVar("T")


@dataclass(frozen=True)
class RawOutput:
    """What a probe's snippet printed on stdout and its exit code."""

    stdout: str
    exit_code: int


class BulkReader(Protocol):
    """Reads many probes of one class in one block of a batch (see :attr:`Probe.bulk`)."""

    def script(self, probes: Sequence[Probe[Any]], name: str) -> str:
        """The body of a shell function reading every probe; ``name`` prefixes its variables
        (no probe script uses a name starting with an underscore)."""
        ...

    def split(self, probes: Sequence[Probe[Any]], text: str) -> dict[str, RawOutput]:
        """Each probe's output (as its own :meth:`Probe.script` would print it), by key.

        A probe left out could not be told apart in ``text`` (a path that vanished between two
        commands, a file that could not be read): the batch then reads it on its own.
        """
        ...


class Probe(Generic[T]):
    """Base class of probes. Subclasses are frozen dataclasses with a ``script`` and a ``parse``."""

    kind: ClassVar[str] = "probe"
    #: reads every probe of this class in a batch together (None: each runs its own script)
    bulk: ClassVar[BulkReader | None] = None
    #: False for a costly read only checks need (never a verify), read once before the lock: the
    #: lock's re-read and the step's own change do not read it again (a later step's change
    #: still drops it, and what comes after reads it afresh)
    reread: ClassVar[bool] = True

    @property
    def key(self) -> str:
        """Cache key: the kind and the probe's fields."""
        return f"{self.kind}:{self!r}"

    def script(self) -> str:
        """A POSIX shell snippet printing the fact on stdout (read-only!)."""
        raise NotImplementedError

    def inline(self) -> bool:
        """True when :meth:`script` may run as a function of the batch's shell (no subshell).

        Such a script never ends or changes the shell it runs in (no ``exit``, ``exec``, ``cd``,
        ``set``, ``trap``...) and sets every variable it reads. Default False: a subshell.
        """
        return False

    def parse(self, raw: RawOutput) -> T:
        """Turn the snippet's output into the typed fact."""
        raise NotImplementedError

    def same_test(self, raw: RawOutput) -> str | None:
        """A shell condition made of builtins alone (no subshell, no program) that is true
        exactly when :meth:`script` would print ``raw`` now; None when there is none. A chained
        round trip's guard uses it instead of running the script and comparing its output."""
        return None

    def unchanged(self, before: RawOutput, after: RawOutput) -> bool:
        """Is ``after``, read under the run's own site lock, the fact ``before`` read without it?

        Default: the same output. A probe that also reads the lock itself leaves that part out
        (under the run's own lock it can only name this run).
        """
        return before == after


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


@dataclass
class Batch:
    """One batch script: its marker, its bulk groups and single probes, in the order they run
    (:func:`run_batch_result` sends one; :mod:`~maintkit.probes.chained` builds a chained
    round trip from several)."""

    marker: str
    groups: list[tuple[BulkReader, list[Probe[Any]]]]
    singles: list[Probe[Any]]

    @classmethod
    def of(cls, probes: Iterable[Probe[Any]], *, bulk: bool) -> Batch:
        unique: dict[str, Probe[Any]] = {}
        for p in probes:
            unique.setdefault(p.key, p)
        groups: dict[int, tuple[BulkReader, list[Probe[Any]]]] = {}
        singles: list[Probe[Any]] = []
        for p in unique.values():
            reader = type(p).bulk if bulk else None
            if reader is None:
                singles.append(p)
            else:
                groups.setdefault(id(reader), (reader, []))[1].append(p)
        return cls("@@mk-" + _secrets.token_hex(6), list(groups.values()), singles)

    def script(self, preamble: str | None) -> str:
        """The whole batch: the preamble, the probes, ``exit 0``."""
        return self.section(preamble) + "\nexit 0\n"

    def section(self, preamble: str | None, *, stdin: bool = True, leave: str = "exit") -> str:
        """The batch without its final ``exit 0`` (a section of a longer script); the preamble
        reads the round trip's stdin unless ``stdin`` is false, and a preamble that fails ends
        the script (``leave``: ``return`` inside a shell function) with its status."""
        fn = "_mk" + self.marker[5:]  # shell names of this batch's functions: as unguessable as the marker
        parts = [f"( {preamble}\n){'' if stdin else ' </dev/null'} || {leave} $?"] if preamble else []
        parts.append(f"printf '\\n%s\\n' '{self.marker} start'")
        for g, (reader, group) in enumerate(self.groups):
            parts.append(self._block(f"{fn}b{g}", reader.script(group, f"_mb{g}"), f"b{g}", inline=True))
        for i, probe in enumerate(self.singles):
            parts.append(self._block(f"{fn}_{i}", probe.script(), str(i), inline=probe.inline()))
        return "\n".join(parts)

    def _block(self, name: str, body: str, tag: str, *, inline: bool) -> str:
        frame = f"printf '\\n%s %s %s\\n' '{self.marker}' {tag} $?"
        if inline:
            return f"{name}() {{\n{body}\n}}\n{name} 2>/dev/null </dev/null; {frame}"
        return f"( {body}\n) 2>/dev/null </dev/null; {frame}"

    def cut(self, out: str, *, last: bool = False) -> tuple[str, str] | None:
        """``out`` split at this batch's start line (its first, or with ``last`` its last): what
        was printed before it and after it; None when the line never came."""
        line = f"\n{self.marker} start\n"
        before, sep, after = ("\n" + out).rpartition(line) if last else ("\n" + out).partition(line)
        return (before[1:], after) if sep else None

    def parse(self, body: str) -> tuple[dict[str, RawOutput], list[Probe[Any]]]:
        """Each probe's output from the batch's stdout after its start line; and the probes a
        bulk reader could not answer for (to be read on their own)."""
        raw: dict[str, RawOutput] = {}
        again: list[Probe[Any]] = []
        tags = [(f"b{g}", None) for g in range(len(self.groups))] + [(str(i), p) for i, p in enumerate(self.singles)]
        for tag, probe in tags:
            chunk, sep, rest = body.partition(f"\n{self.marker} {tag} ")
            if not sep:
                break
            code_text, _, body = rest.partition("\n")
            if probe is not None:
                raw[probe.key] = RawOutput(chunk, int(code_text or 0))
                continue
            reader, group = self.groups[int(tag[1:])]
            answered = reader.split(group, chunk)
            raw.update(answered)
            again.extend(p for p in group if p.key not in answered)
        return raw, again


def run_batch_result(
    transport: Transport,
    probes: Iterable[Probe[Any]],
    *,
    preamble: str | None = None,
    timeout: float = 120.0,
    stdin: bytes | None = None,
) -> tuple[dict[str, RawOutput], str, CommandResult]:
    """:func:`run_batch`, also returning the CommandResult of the round trip."""
    raw, head, result, again = _run_once(transport, probes, preamble, timeout, stdin, bulk=True)
    if again:  # rare: a bulk reader could not tell these apart; read them one by one
        more, _, _, _ = _run_once(transport, again, None, timeout, None, bulk=False)
        raw.update(more)
    return raw, head, result


def _run_once(
    transport: Transport,
    probes: Iterable[Probe[Any]],
    preamble: str | None,
    timeout: float,
    stdin: bytes | None,
    *,
    bulk: bool,
) -> tuple[dict[str, RawOutput], str, CommandResult, list[Probe[Any]]]:
    batch = Batch.of(probes, bulk=bulk)
    result = transport.run_shell(batch.script(preamble), timeout=timeout, check=False, stdin=stdin)
    out = result.stdout
    parts = batch.cut(out)
    if parts is None:
        failed = out if result.exit_code == 0 else f"__preamble_failed__:{result.exit_code}\n{out}"
        return {}, failed, result, []
    head, body = parts
    raw, again = batch.parse(body)
    return raw, head, result, again


def decode_hex(text: str) -> str:
    """Bytes printed as hex by ``od -An -v -tx1`` back to a str (any byte of a name survives).

    Bytes that are not UTF-8 are kept as surrogate escapes (as :func:`os.fsdecode` does).
    """
    return bytes.fromhex("".join(text.split())).decode("utf-8", "surrogateescape")


def hex_script(command: str) -> str:
    """Shell pipeline printing ``command``'s exact stdout bytes as one line of hex."""
    return f"{command} | od -An -v -tx1 | tr -d ' \\n'; echo"
