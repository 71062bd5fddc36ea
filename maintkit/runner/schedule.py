"""Which sites run when: ``concurrency`` threads, ``canary`` sites first, the ``max_fail_percentage`` halt.

A run of one machine runs its canary sites, then all the others (``concurrency`` at a time); its
failures are counted as sites finish. A shard of a group (``--shard K/N``, see
:mod:`maintkit.runner.shard`) runs the others in batches of ``concurrency`` sites and, before each
batch, adds the failures the other shards recorded in the store: ``max_fail_percentage`` is then
a share of the whole fleet, and a failed canary in shard 1 halts every shard.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from maintkit.inventory import Site
from maintkit.results import SiteResult, SiteStatus
from maintkit.runner.outcome import counts_as_failed
from maintkit.runner.plan import PlannedStage
from maintkit.runner.shard import Fleet, GroupTally
from maintkit.runner.site import run_site
from maintkit.runner.state import RunState


class _Tally:
    """Finished sites and failures so far; sets the run's halt flag past ``max_fail_percentage``.

    ``total`` is the number of sites the percentage is of (the whole fleet for a shard);
    ``elsewhere`` holds the sites the other shards of the group saw fail.
    """

    def __init__(self, state: RunState, total: int) -> None:
        self.state = state
        self.total = total
        self.done = 0
        self.failed: set[str] = set()
        self.elsewhere: set[str] = set()
        self.lock = threading.Lock()

    def add(self, results: dict[str, SiteResult], res: SiteResult) -> None:
        with self.lock:
            results[res.site] = res
            self.done += 1
            if counts_as_failed(res.status):
                self.failed.add(res.site)
            self._judge()

    def merge(self, elsewhere: set[str]) -> None:
        """Add the failures of the other shards and judge again."""
        with self.lock:
            self.elsewhere = set(elsewhere)
            self._judge()

    def _judge(self) -> None:
        limit = self.state.playbook.max_fail_percentage
        if limit is None or not self.total or self.state.halt.is_set():
            return
        failed = len(self.failed | self.elsewhere)
        if failed * 100.0 / self.total > limit:
            self.state.halt.set()
            self.state.emit(
                "run.halted",
                reason="max_fail_percentage",
                failed=failed,
                failed_here=len(self.failed),
                total=self.total,
                max_fail_percentage=limit,
            )


def _batches(sites: list[Site], canary: int, size: int | None) -> list[list[Site]]:
    """The canary batch (when any), then the others: all at once, or ``size`` at a time."""
    head = [sites[:canary]] if canary else []
    rest = sites[canary:]
    if size is None:
        return [*head, rest]
    return [*head, *(rest[i : i + size] for i in range(0, len(rest), size))]


def run_sites(
    state: RunState,
    sites: list[Site],
    plans: dict[str, list[PlannedStage]],
    results: dict[str, SiteResult],
    concurrency: int,
    group: GroupTally | None = None,
) -> None:
    """Run every site (canary sites first), filling ``results`` by site name.

    With ``group`` (a shard of a run group), the canary sites are those of the fleet that this
    shard holds, the percentage is of the whole fleet, and the group's failures are read from the
    store before each batch.
    """
    fleet: Fleet | None = group.fleet if group else None
    if fleet is not None:
        canary = sum(1 for s in sites if s.name in fleet.sites[: fleet.canary])
    else:
        canary = min(state.playbook.canary, len(sites))
    tally = _Tally(state, len(fleet.sites) if fleet else len(sites))

    def one(site: Site) -> None:
        try:
            if state.halt.is_set() or state.stop.is_set():
                reason = "interrupted before start" if state.stop.is_set() else "halted: too many sites failed"
                results[site.name] = SiteResult(site.name, SiteStatus.SKIPPED, error=reason)
                state.emit("site.skipped", site=site.name, status="skipped", error=reason)
                return
            tally.add(results, run_site(state, site, plans[site.name]))
        finally:
            state.pool.release(site.name)  # its connections close once no unfinished site needs them

    for n, batch in enumerate(_batches(sites, canary, max(1, concurrency) if group else None)):
        if not batch:
            continue
        if group is not None and not (canary and n == 0):
            _consult(state, group, tally)
        workers = max(1, min(concurrency, len(batch)))
        if workers == 1:
            for site in batch:
                one(site)
        else:
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="maint-site") as pool:
                list(pool.map(one, batch))
        if canary and n == 0 and any(results[s.name].failed for s in batch):
            state.halt.set()
            state.emit("run.halted", reason="canary site failed", sites=[s.name for s in batch])


def _consult(state: RunState, group: GroupTally, tally: _Tally) -> None:
    """Before a batch of a shard: the other shards' failures (and canary halt) from the store."""
    if state.halt.is_set() or state.stop.is_set():
        return
    try:
        failed, canary_halted = group.refresh()
    except Exception as exc:  # the store could not be read: go on with what is known, say so
        state.emit("run.group_unread", group=group.fleet.group, error=f"{type(exc).__name__}: {exc}")
        return
    if canary_halted:
        state.halt.set()
        state.emit("run.halted", reason="canary site failed in shard 1", group=group.fleet.group)
        return
    tally.merge(failed)


__all__ = ["run_sites"]
