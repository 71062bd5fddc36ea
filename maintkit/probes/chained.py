"""Several changes and their reads in ONE round trip, each change guarded by a fresh read.

A chained batch is a list of :class:`Segment`: each is a change (a preamble, as in
:func:`~maintkit.probes.run_batch`) and the probes read right after it. Every segment after
the first starts with a **guard**: the probes its change was planned on are read again, each by
its own script, and compared byte for byte (output and exit code) with what the plan read.
When any differs, the round trip stops there: that segment and the ones after it are not run
(``skipped``), and the runner checks that step again on the reads of the segment before. So
a change in a chain runs only on exactly the facts its check saw, as if it had been sent on
its own after the change before it.

A segment whose change fails ends the round trip with its exit status (``failed``); the
segments after it are ``unreached``. Each segment's stdout and stderr are framed by markers
with random tokens (as every batch's), so what one change prints is never read as another's.
At most one segment reads the round trip's stdin; the others read ``/dev/null``.
"""

from __future__ import annotations

import secrets as _secrets
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from maintkit.probes.base import Probe, RawOutput, _Batch
from maintkit.results import CommandResult
from maintkit.transport.base import Transport, quote

__all__ = ["Segment", "SegmentResult", "guard_script", "run_chain", "segment_size"]

Outcome = Literal["done", "failed", "skipped", "unreached"]


@dataclass
class Segment:
    """One change of a chained round trip, the probes read after it, and its guard."""

    preamble: str
    probes: list[Probe[Any]]
    #: what the change was planned on: each probe with the output it gave then (none for the first)
    guard: list[tuple[Probe[Any], RawOutput]] = field(default_factory=list)
    #: the change reads the round trip's stdin (at most one segment does)
    stdin: bool = False


@dataclass
class SegmentResult:
    """What one segment did: its outcome, its probes' reads, and the round trip's result as
    :func:`~maintkit.probes.run_batch_result` gives it for a batch of its own."""

    outcome: Outcome
    raw: dict[str, RawOutput]
    head: str
    result: CommandResult


def guard_script(guard: list[tuple[Probe[Any], RawOutput]], skip_line: str) -> str:
    """Shell that prints ``skip_line`` and ends the script (exit 0) unless every probe of
    ``guard`` prints exactly what it printed before, with the same exit status."""
    lines = []
    for probe, raw in guard:
        want = quote(f"{raw.stdout}@{raw.exit_code}")
        lines.append(
            f"_mkg=$( ( {probe.script()}\n) 2>/dev/null </dev/null; printf '@%s' \"$?\" )\n"
            f"[ \"$_mkg\" = {want} ] || {{ printf '\\n%s\\n' {quote(skip_line)}; exit 0; }}"
        )
    return "\n".join(lines)


def segment_size(segment: Segment) -> int:
    """How many bytes ``segment`` adds to a chained script."""
    batch = _Batch.of(segment.probes, bulk=True)
    return len(guard_script(segment.guard, batch.marker)) + len(batch.section(segment.preamble)) + 64


def _script(segments: list[Segment], batches: list[_Batch], err_marks: list[str]) -> str:
    parts = []
    for k, (seg, batch) in enumerate(zip(segments, batches, strict=True)):
        if k:
            parts.append(f"printf '%s\\n' {quote(err_marks[k])} >&2")
            parts.append(guard_script(seg.guard, f"{batch.marker} skip"))
        parts.append(batch.section(seg.preamble, stdin=seg.stdin))
        parts.append(f"printf '\\n%s\\n' '{batch.marker} end'")
    return "\n".join(parts) + "\nexit 0\n"


def run_chain(
    transport: Transport, segments: list[Segment], *, stdin: bytes | None = None, timeout: float = 120.0
) -> list[SegmentResult]:
    """Run ``segments`` in one round trip; one result per segment, in order."""
    if sum(1 for s in segments if s.stdin) > 1:
        raise ValueError("at most one segment of a chain reads stdin")
    batches = [_Batch.of(s.probes, bulk=True) for s in segments]
    err_marks = ["@@mk-" + _secrets.token_hex(16) for _ in segments]
    res = transport.run_shell(_script(segments, batches, err_marks), timeout=timeout, check=False, stdin=stdin)
    return _split(res, batches, err_marks)


def _split(res: CommandResult, batches: list[_Batch], err_marks: list[str]) -> list[SegmentResult]:
    """Each segment's share of the round trip's output."""
    out: list[SegmentResult] = []
    rest, errs, going = "\n" + res.stdout, res.stderr, True
    for k, batch in enumerate(batches):
        err, _, errs = errs.partition(err_marks[k + 1] + "\n") if k + 1 < len(batches) else (errs, "", "")
        if not going:
            out.append(SegmentResult("unreached", {}, "", replace(res, stdout="", stderr="")))
            continue
        if rest.startswith(f"\n{batch.marker} skip\n"):
            out.append(SegmentResult("skipped", {}, "", replace(res, stdout="", stderr=err, exit_code=0)))
            going = False
            continue
        head, sep, after = rest.partition(f"\n{batch.marker} start\n")
        head = head.removeprefix("\n") if k == 0 else head
        if not sep:  # the change failed: the round trip ended with its status
            code = res.exit_code or 1
            failed = replace(res, stdout=head, stderr=err, exit_code=code)
            out.append(SegmentResult("failed", {}, f"__preamble_failed__:{code}\n{head}", failed))
            going = False
            continue
        body, sep, rest = after.partition(f"\n{batch.marker} end\n")
        raw, _again = batch.parse(body)  # a probe the bulk read could not tell apart is read later, on its own
        going = bool(sep)  # cut short (a timeout): nothing after it is known
        done = replace(res, stdout=head, stderr=err, exit_code=0 if sep else res.exit_code)
        out.append(SegmentResult("done", raw, head, done))
    return out
