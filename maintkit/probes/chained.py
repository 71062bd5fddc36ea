"""Several changes in ONE round trip, each guarded by a fresh read, and one read after them all.

A chained batch is a list of :class:`Segment`: each is a change (a preamble, as in
:func:`~maintkit.probes.run_batch`) and the probes to read after it. Every segment after
the first starts with a **guard**: the probes its change was planned on are read again, each by
its own script (or by shell builtins alone, :meth:`~maintkit.probes.Probe.same_test`), and
compared byte for byte (output and exit code) with what the plan read. When any differs, the
changes stop there: that segment and the ones after it are not run (``skipped``), and the
runner checks that step again on the round trip's read. So a change in a chain runs only on
exactly the facts its check saw, as if it had been sent on its own after the change before it.

A segment whose change fails ends the changes with its exit status (``failed``); the
segments after it are ``unreached``. Every segment's probes are read ONCE, after the last
change that ran (a failing one or a guard's stop included), in the same round trip: each
segment whose change ran gets that read. Each segment's stdout and stderr are framed by
markers with random tokens (as every batch's), so what one change prints is never read as
another's. At most one segment reads the round trip's stdin; the others read ``/dev/null``.
"""

from __future__ import annotations

import secrets as _secrets
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from maintkit.probes.base import Batch, Probe, RawOutput
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


def guard_script(guard: list[tuple[Probe[Any], RawOutput]], skip_line: str, leave: str = "exit 0") -> str:
    """Shell that prints ``skip_line`` and ends the script (``leave``) unless every probe of
    ``guard`` prints exactly what it printed before, with the same exit status. A probe with a
    :meth:`~maintkit.probes.Probe.same_test` for what it printed is tested by shell builtins
    alone; any other is run again by its own script and its output compared."""
    lines = []
    skip = f"{{ printf '\\n%s\\n' {quote(skip_line)}; {leave}; }}"
    for probe, raw in guard:
        test = probe.same_test(raw)
        if test is not None:
            lines.append(f"{{ {test}; }} || {skip}")
            continue
        want = quote(f"{raw.stdout}@{raw.exit_code}")
        lines.append(
            f"_mkg=$( ( {probe.script()}\n) 2>/dev/null </dev/null; printf '@%s' \"$?\" )\n"
            f'[ "$_mkg" = {want} ] || {skip}'
        )
    return "\n".join(lines)


def segment_size(segment: Segment) -> int:
    """At most how many bytes ``segment`` adds to a chained script (its probes' reads included,
    as if read after it: the round trip's one read of them all is no longer than that)."""
    batch = Batch.of(segment.probes, bulk=True)
    return len(guard_script(segment.guard, batch.marker)) + len(batch.section(segment.preamble)) + 64


@dataclass
class _Plan:
    """A chained script's parts: a batch per segment (its markers; its change, no reads: its
    start line says the change ended well), the read of every segment's probes at the end, and
    the stderr markers between segments."""

    batches: list[Batch]
    reads: Batch
    err_marks: list[str]
    fn: str

    @classmethod
    def of(cls, segments: list[Segment]) -> _Plan:
        probes = [p for s in segments for p in s.probes]
        err_marks = ["@@mk-" + _secrets.token_hex(16) for _ in segments]
        return cls(
            [Batch.of([], bulk=True) for _ in segments],
            Batch.of(probes, bulk=True),
            err_marks,
            "_mkc" + _secrets.token_hex(6),
        )

    def script(self, segments: list[Segment]) -> str:
        """The changes in a shell function (a failing change or a guard's skip returns from it),
        then the one read, then the first failing change's status."""
        parts = [f"{self.fn}() {{"]
        for k, (seg, batch) in enumerate(zip(segments, self.batches, strict=True)):
            if k:
                parts.append(f"printf '%s\\n' {quote(self.err_marks[k])} >&2")
                parts.append(guard_script(seg.guard, f"{batch.marker} skip", "return 0"))
            parts.append(batch.section(seg.preamble, stdin=seg.stdin, leave="return"))
        status = "_mks" + self.fn[4:]  # as unguessable as the function's name: no read sets it
        parts.append("}")
        parts.append(f"{self.fn}; {status}=$?")
        parts.append(self.reads.section(None))
        return "\n".join(parts) + f"\nexit ${status}\n"


def run_chain(
    transport: Transport, segments: list[Segment], *, stdin: bytes | None = None, timeout: float = 120.0
) -> list[SegmentResult]:
    """Run ``segments`` in one round trip; one result per segment, in order."""
    if sum(1 for s in segments if s.stdin) > 1:
        raise ValueError("at most one segment of a chain reads stdin")
    plan = _Plan.of(segments)
    res = transport.run_shell(plan.script(segments), timeout=timeout, check=False, stdin=stdin)
    return _split(res, plan)


def _reads(res: CommandResult, plan: _Plan) -> tuple[str, dict[str, RawOutput]]:
    """The changes' stdout, and what the read after them all gave (nothing when it did not run)."""
    parts = plan.reads.cut(res.stdout, last=True)
    if parts is None:
        return "\n" + res.stdout, {}
    raw, _again = plan.reads.parse(parts[1])  # a probe the bulk read could not tell apart is read later, on its own
    return "\n" + parts[0], raw


def _split(res: CommandResult, plan: _Plan) -> list[SegmentResult]:
    """Each segment's share of the round trip's output; every segment whose change ran gets the
    read after them all."""
    out: list[SegmentResult] = []
    rest, read = _reads(res, plan)
    errs, going = res.stderr, True
    for k, batch in enumerate(plan.batches):
        last = k + 1 == len(plan.batches)
        err, _, errs = (errs, "", "") if last else errs.partition(plan.err_marks[k + 1] + "\n")
        if not going:
            out.append(SegmentResult("unreached", {}, "", replace(res, stdout="", stderr="")))
            continue
        if rest.startswith(f"\n{batch.marker} skip\n"):
            out.append(SegmentResult("skipped", {}, "", replace(res, stdout="", stderr=err, exit_code=0)))
            going = False
            continue
        head, sep, rest = rest.partition(f"\n{batch.marker} start\n")
        head = head.removeprefix("\n") if k == 0 else head
        if not sep:  # the change failed, or the round trip was cut in it: it ends with its status
            code = res.exit_code or 1
            failed = replace(res, stdout=head, stderr=err, exit_code=code)
            out.append(SegmentResult("failed", {}, f"__preamble_failed__:{code}\n{head}", failed))
            going = False
            continue
        # its change ended (its start line came): whatever cut the round trip later did not cut it
        done = replace(res, stdout=head, stderr=err, exit_code=0, timed_out=False)
        out.append(SegmentResult("done", dict(read), head, done))
    return out
