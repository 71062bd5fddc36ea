"""Steps' changes in one round trip: the leader's change, then each later step's, guarded.

When a step that changes something (the **leader**) is about to send its change, the stage
looks at the steps right after it. A later step joins the leader's round trip (a **link**) when
its action is :attr:`~maintkit.action.Action.chainable`, it runs unconditionally (no ``when:``,
not skipped) and its check, made on what the stage has read so far, says it has to change (a
probe the lock's re-read left out is taken from the stage's first read, before the lock: the
guard reads it again under the lock anyway). Its change is planned then (the action's apply
runs against a capturing context: the one command it would send is kept, nothing is sent), and
the probes its check read are kept with what they read: the guard.

The round trip (:func:`maintkit.probes.chained.run_chain`) runs the leader's change, then for
each link: the guard (every probe its check read, read again; any difference stops the changes
there) and its change; then one read of every probe the changes read after them (each step's
verify takes it). The steps are then recorded one by one,
in order, as if each had been sent on its own: a link's step takes the check it was planned on
and its apply is replayed on its segment's outcome (the same command, the same result), so its
changes, verify, events and rollback are exactly those of a step of its own. A link the guard
stopped, or one after it, is checked again as usual on what the round trip read.

What a dead run leaves is never hidden by it: the leader's ``step.checked`` event (status
``needed``) names the steps its round trip carries (``chained``), so a takeover reports them as
applying when the run died (:mod:`maintkit.runner.reconcile`). Steps whose change ran are
recorded even when an earlier step of the round trip fails its verify or the run is interrupted
meanwhile (:meth:`Chain.owes`), so the rollback undoes them too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from maintkit.action import Context
from maintkit.caches import ProbeCache
from maintkit.errors import ApplyFailed, MaintkitError
from maintkit.probes import Probe, RawOutput
from maintkit.probes.chained import Segment, SegmentResult, run_chain, segment_size
from maintkit.results import Check, CommandResult
from maintkit.runner.plan import PlannedStage, PlannedStep
from maintkit.runner.state import RunState
from maintkit.transport.base import cancellable

__all__ = ["Chain", "Link", "lock_read", "read_ahead"]

#: a chained round trip carries at most this many later steps
MAX_LINKS = 16
#: ... and its script at most this many bytes (a command line's argument is limited to 128 KiB)
MAX_SCRIPT = 64 * 1024


def read_ahead(planned: PlannedStage, step_probes: list[list[Probe[Any]]], i: int) -> list[Probe[Any]]:
    """The probes read together for step ``i``: its own (but those only its check reads, see
    :attr:`~maintkit.probes.Probe.reread`), every later step's bulk-read probes
    (one ``stat`` answers them all), and the other probes of the later steps up to the first
    one that may change something (its change reads the rest again anyway).

    What is left out is read when its step comes (:func:`prefetch`), never taken stale: a
    change drops every cached probe of the host that its own round trip did not read.
    """
    out = [p for p in step_probes[i] if type(p).reread]  # what its verify may read
    singles = True
    for ps, group in zip(planned.steps[i + 1 :], step_probes[i + 1 :], strict=True):
        out += [p for p in group if singles or type(p).bulk is not None]
        if singles and ps.skip is None and not ps.action.changes_nothing():
            singles = False
    return out


def lock_read(planned: PlannedStage, step_probes: list[list[Probe[Any]]]) -> list[Probe[Any]]:
    """The probes the lock's read takes when the whole stage is expected to change (the stage
    never finished here with these steps): every step's, except a read-only step's
    (:meth:`~maintkit.action.Action.changes_nothing`) after a step that may change, but for its
    bulk-read probes. Such a step is checked after that change, whose round trip reads its probes
    (:func:`read_ahead`): reading them under the lock too would run its command twice. When no
    step before it changes after all, they are read when its step comes (``prefetch``).
    """
    out: list[Probe[Any]] = []
    may_change = False
    for ps, group in zip(planned.steps, step_probes, strict=True):
        deferred = may_change and ps.action.changes_nothing()
        out += [p for p in group if type(p).bulk is not None] if deferred else group
        if ps.skip is None and not ps.action.changes_nothing():
            may_change = True
    return out


class _NotChainable(Exception):
    """A check or apply asked for more than its probes and one change: the step runs on its own."""


@dataclass
class _Sent:
    """The one change an apply sent through a capturing context."""

    script: str
    probes: list[Probe[Any]]
    stdin: bytes | None
    timeout: float


@dataclass
class Link:
    """A later step whose change rides in the leader's round trip."""

    index: int
    planned: PlannedStep
    check: Check
    sent: _Sent
    guard: list[tuple[Probe[Any], RawOutput]]
    outcome: SegmentResult | None = None
    consumed: bool = False


class _ReadsCache(ProbeCache):
    """The stage's probe cache as a planned check sees it, falling back on what the stage's first
    read saw (before the lock; the guard reads it again under it): every value it reads is
    kept for the guard; a key read by neither is not read now (the step is not chained)."""

    def __init__(self, inner: ProbeCache, first: Mapping[str, RawOutput]) -> None:
        super().__init__()
        self.inner, self.first = inner, first
        self.values: dict[str, RawOutput] = {}

    def get(self, host: str, key: str) -> RawOutput | None:
        value = self.values.get(key) or self.inner.get(host, key) or self.first.get(key)
        if value is None:
            raise _NotChainable(f"{key} is not read yet")
        self.values[key] = value
        return value

    def has(self, host: str, key: str) -> bool:
        return self.inner.has(host, key)

    def put(self, host: str, key: str, raw: RawOutput) -> None:
        raise _NotChainable("a planned check writes nothing")

    def invalidate(self, host: str, keep: set[str] | None = None) -> None:
        raise _NotChainable("a planned check drops nothing")


class _Capture:
    """A planned step's context: its one change is kept, never sent; nothing else may be sent."""

    def __init__(self) -> None:
        self.sent: list[_Sent] = []

    def run_and_probe(
        self, ctx: Context, script: str, probes: list[Probe[Any]], stdin: bytes | None, timeout: float
    ) -> tuple[str, CommandResult]:
        if self.sent:
            raise _NotChainable("a second change")
        self.sent.append(_Sent(script, probes, stdin, timeout))
        return "", CommandResult(ctx.env.display_host, "", 0)

    def direct(self, ctx: Context, what: str) -> None:
        raise _NotChainable(what)


class _Leader:
    """The leader's context: its change goes out with the links' changes, in one round trip."""

    def __init__(self, links: list[Link]) -> None:
        self.links = links

    def run_and_probe(
        self, ctx: Context, script: str, probes: list[Probe[Any]], stdin: bytes | None, timeout: float
    ) -> tuple[str, CommandResult] | None:
        ctx.chain = None  # one change: anything after it is sent as usual
        segments = _fitting(self.links, Segment(script, probes, [], stdin is not None))
        links = self.links[: len(segments) - 1]
        if not links:
            return None  # nothing fits beside it after all: the context sends it alone
        data = stdin if stdin is not None else next((ln.sent.stdin for ln in links if ln.sent.stdin is not None), None)
        total = timeout + sum(ln.sent.timeout for ln in links)
        with cancellable(None):  # the changes of a round trip that was sent are always learnt
            results = run_chain(ctx.transport, segments, stdin=data, timeout=total)
        for link, res in zip(links, results[1:], strict=True):
            link.outcome = res
        ctx.keep_reads(results[0].raw)
        return results[0].head, results[0].result

    def direct(self, ctx: Context, what: str) -> None:
        """The leader's own commands before its change go out as usual."""


def _fitting(links: list[Link], leader: Segment) -> list[Segment]:
    """The leader's segment and the links' up to the first that would read stdin where another
    segment does, or make the script longer than :data:`MAX_SCRIPT`."""
    out, taken, size = [leader], leader.stdin, segment_size(leader)
    for link in links:
        seg = Segment(link.sent.script, link.sent.probes, link.guard, link.sent.stdin is not None)
        size += segment_size(seg)
        if (seg.stdin and taken) or size > MAX_SCRIPT:
            break
        taken = taken or seg.stdin
        out.append(seg)
    return out


class _Replay:
    """A link's context: its change already ran; its apply gets that outcome."""

    def __init__(self, link: Link) -> None:
        self.link = link

    def run_and_probe(
        self, ctx: Context, script: str, probes: list[Probe[Any]], stdin: bytes | None, timeout: float
    ) -> tuple[str, CommandResult]:
        ctx.chain = None
        outcome = self.link.outcome
        if outcome is None or [p.key for p in probes] != [p.key for p in self.link.sent.probes]:
            raise ApplyFailed("internal: the step's change is not the one its round trip carried")
        ctx.keep_reads(outcome.raw)
        return outcome.head, outcome.result

    def direct(self, ctx: Context, what: str) -> None:
        raise ApplyFailed(f"internal: a step whose change was chained sent another command ({what})")


class Chain:
    """The chained round trips of one stage: planned at a leader, replayed step by step."""

    def __init__(
        self,
        state: RunState,
        planned: PlannedStage,
        step_probes: list[list[Probe[Any]]],
        base: Context,
        first: Mapping[str, RawOutput],
    ) -> None:
        """``first``: what the stage's first read saw (before the lock), by probe key."""
        self.state, self.planned, self.step_probes, self.base = state, planned, step_probes, base
        self.first = first
        self.links: dict[int, Link] = {}
        self._known = {p.key: p for group in step_probes for p in group}

    def owes(self, index: int) -> bool:
        """Did step ``index``'s change run in an earlier step's round trip (not recorded yet)?"""
        link = self.links.get(index)
        if link is None or link.consumed or link.outcome is None:
            return False
        return link.outcome.outcome in ("done", "failed")

    def replay(self, index: int, ctx: Context) -> Check | None:
        """For a step :meth:`owes`: its planned check, with ``ctx`` set to replay its change."""
        if not self.owes(index):
            return None
        link = self.links[index]
        link.consumed = True
        ctx.chain = _Replay(link)
        return link.check

    def lead(self, index: int, ctx: Context, check: Check) -> list[Link]:
        """Plan the links of step ``index``'s change (its ``check``) and set ``ctx`` to send them
        with it; the links, as its ``step.checked`` event names them."""
        if self.state.check or not self.planned.steps[index].action.chainable:
            return []
        planned: list[Link] = []
        for j in range(index + 1, min(len(self.planned.steps), index + 1 + MAX_LINKS)):
            link = self._plan(j, read_ahead(self.planned, self.step_probes, j))
            if link is None:
                break
            planned.append(link)
        if not planned:
            return []
        # what fits beside the leader's own change (planned the same way; unknown: it reads stdin)
        leader = self._leader_segment(index, ctx, check) or Segment("", [], [], True)
        links = planned[: len(_fitting(planned, leader)) - 1]
        for link in links:
            self.links[link.index] = link
        if links:
            ctx.chain = _Leader(links)
        return links

    def _leader_segment(self, index: int, ctx: Context, check: Check) -> Segment | None:
        """The leader's change as it will send it (None when its apply sends anything else first)."""
        capture = _Capture()
        probe_cache = _ReadsCache(self.state.probe_cache, self.first)
        planning = replace(ctx, data={}, primed=set(), probe_cache=probe_cache, chain=capture)
        try:
            self.planned.steps[index].action.apply(planning, check)
        except (_NotChainable, MaintkitError):
            return None
        if len(capture.sent) != 1:
            return None
        sent = capture.sent[0]
        return Segment(sent.script, sent.probes, [], sent.stdin is not None)

    def _plan(self, j: int, refresh: list[Probe[Any]]) -> Link | None:
        ps = self.planned.steps[j]
        if ps.skip is not None or ps.step.when is not None or not ps.action.chainable or self.owes(j):
            return None
        reads, capture = _ReadsCache(self.state.probe_cache, self.first), _Capture()
        ctx = replace(
            self.base, step_id=ps.step.id, data={}, primed=set(), refresh=refresh, probe_cache=reads, chain=capture
        )
        try:
            check = ps.action.check(ctx)
            if check.needed is not True:
                return None
            ps.action.apply(ctx, check)
        except (_NotChainable, MaintkitError):
            return None
        if len(capture.sent) != 1 or any(k not in self._known for k in reads.values):
            return None
        return Link(j, ps, check, capture.sent[0], [(self._known[k], v) for k, v in reads.values.items()])
