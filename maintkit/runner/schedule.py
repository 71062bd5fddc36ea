"""Which sites run when: ``concurrency`` threads, ``canary`` sites first, the ``max_fail_percentage`` halt."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from maintkit.inventory import Site
from maintkit.results import SiteResult, SiteStatus
from maintkit.runner.outcome import counts_as_failed
from maintkit.runner.plan import PlannedStage
from maintkit.runner.site import run_site
from maintkit.runner.state import RunState


class _Tally:
    """Finished sites and failures so far; sets the run's halt flag past ``max_fail_percentage``."""

    def __init__(self, state: RunState, total: int) -> None:
        self.state = state
        self.total = total
        self.done = self.failed = 0
        self.lock = threading.Lock()

    def add(self, results: dict[str, SiteResult], res: SiteResult) -> None:
        with self.lock:
            results[res.site] = res
            self.done += 1
            self.failed += counts_as_failed(res.status)
            limit = self.state.playbook.max_fail_percentage
            if limit is not None and self.total and self.failed * 100.0 / self.total > limit:
                self.state.halt.set()


def run_sites(
    state: RunState,
    sites: list[Site],
    plans: dict[str, list[PlannedStage]],
    results: dict[str, SiteResult],
    concurrency: int,
) -> None:
    """Run every site (canary sites first), filling ``results`` by site name."""
    canary = min(state.playbook.canary, len(sites))
    batches = [sites[:canary], sites[canary:]] if canary else [sites]
    tally = _Tally(state, len(sites))

    def one(site: Site) -> None:
        if state.halt.is_set() or state.stop.is_set():
            reason = "interrupted before start" if state.stop.is_set() else "halted: too many sites failed"
            results[site.name] = SiteResult(site.name, SiteStatus.SKIPPED, error=reason)
            state.emit("site.skipped", site=site.name, status="skipped", error=reason)
            return
        tally.add(results, run_site(state, site, plans[site.name]))

    for n, batch in enumerate(batches):
        if not batch:
            continue
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


__all__ = ["run_sites"]
