"""The runner: sites x stages x steps, with locks, rollback, parallelism and the audit log.

Per site: for each stage (environment) the runner connects (one connection per host per
run), sends ONE read-only batch that prefetches every probe the stage's steps need and
looks at the environment's lock, then runs each step: check, apply (only when needed and
not in check mode; the lock is taken before the stage's first change, with every probe
read again under it), verify. A failure rolls back the stage's applied steps in reverse
order (``on_failure: rollback``), stops the site (``stop``) or goes on (``continue``).
Whatever happens, steps that must not be left behind (maintenance mode) are finalized
and every lock is released, also on Ctrl-C and SIGTERM.

The parts: :mod:`.plan` (render and validate), :mod:`.schedule` (which sites run when),
:mod:`.site` (one site's stages and locks), :mod:`.stage` (first read, lock, rollback, finalize),
:mod:`.step` (check, apply, verify), :mod:`.conditions` (``when:``), :mod:`.locks`,
:mod:`.outcome` (the one place a site's status is decided), :mod:`.folder` (run folder and
summary), :mod:`.events`, :mod:`.signals` and :mod:`.state`.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from maintkit.action import RunOptions, monotonic_ms
from maintkit.audit import AuditLog, Redactor
from maintkit.caches import ProbeCache, RunMemo
from maintkit.errors import Interrupted
from maintkit.identity import current_actor
from maintkit.ids import new_run_id
from maintkit.inventory import Environment, Inventory, Site
from maintkit.locks import LOCK_EXIT
from maintkit.playbook import LoadedPlaybook, Playbook
from maintkit.registry import Registry, default_registry
from maintkit.results import RunResult, SiteResult
from maintkit.runner.events import Events
from maintkit.runner.folder import open_run_folder, playbook_provenance, scrub, write_run_summary
from maintkit.runner.outcome import run_status
from maintkit.runner.plan import PlannedStage, PlannedStep, Planner, PlanScope
from maintkit.runner.publish import Publisher
from maintkit.runner.schedule import run_sites
from maintkit.runner.select import StepSelection
from maintkit.runner.shard import Fleet, GroupTally, Shard, split
from maintkit.runner.signals import install_stop_handlers
from maintkit.runner.state import RunState
from maintkit.runner.trace import traced
from maintkit.state import LocalStore, StateStore
from maintkit.state.index import record_runs
from maintkit.templating import Secrets
from maintkit.transport.factory import TransportFactory, TransportPool, default_transport_factory, factory_for


class Runner:
    """Runs one playbook against the sites of an inventory.

    ``Runner(playbook, inventory).run()`` returns a :class:`RunResult`. Rendering and
    validation happen before anything connects: bad input raises
    :class:`~maintkit.errors.ConfigError` and nothing runs.
    """

    def __init__(
        self,
        playbook: Playbook | LoadedPlaybook,
        inventory: Inventory,
        *,
        check: bool = False,
        diff: bool = False,
        limit: list[str] | None = None,
        env: str | None = None,
        concurrency: int | None = None,
        state_dir: str | Path = ".maint",
        registry: Registry | None = None,
        transport_factory: TransportFactory | None = None,
        promote_from: str | None = None,
        on_event: Callable[[dict[str, Any]], None] | None = None,
        environ: Mapping[str, str] | None = None,
        handle_signals: bool = True,
        extra: dict[str, Any] | None = None,
        store: StateStore | None = None,
        shard: Shard | None = None,
        group: str | None = None,
        extra_vars: dict[str, Any] | None = None,
        selection: StepSelection | None = None,
        trace_commands: bool = False,
    ) -> None:
        if isinstance(playbook, LoadedPlaybook):
            self.loaded: LoadedPlaybook | None = playbook
            self.playbook = playbook.playbook
        else:
            self.loaded, self.playbook = None, playbook
        self.inventory = inventory
        self.check, self.diff, self.limit, self.only_env = check, diff, limit, env
        self.concurrency = concurrency or self.playbook.concurrency
        self.state_dir = Path(state_dir)
        self.registry = registry or default_registry()
        self.environ = os.environ if environ is None else environ
        factory = transport_factory or factory_for(self.environ)
        #: ``-e`` variables (over playbook and inventory vars) and the step selection (docs/cli.md)
        self.extra_vars, self.selection = dict(extra_vars or {}), selection or StepSelection()
        self.pool = TransportPool(traced(factory, self._show) if trace_commands else factory)
        self.on_event = on_event
        self.handle_signals = handle_signals
        self.extra = extra or {}
        self.shard, self.group = shard, group  # ``--shard K/N`` and its run group (see :mod:`.shard`)
        self.redactor = Redactor()
        self.run_id = new_run_id()
        self._open_history(store)
        self.probe_cache = ProbeCache()
        self.memo = RunMemo()
        self._promote_from = self._resolve_promote_from(promote_from)
        key = self.environ.get("MAINT_AUDIT_KEY")
        self._hmac_key = key.encode() if key else None
        if key:
            self.redactor.add_secret(key)
        scope = PlanScope(self.run_id, check, limit, env, self.extra_vars, self.selection, bool(promote_from))
        self._planner = Planner(self.playbook, self.loaded, inventory, self.registry,
                                redactor=self.redactor, environ=self.environ, scope=scope)  # fmt: skip
        self._state = self._make_state()

    def _open_history(self, store: StateStore | None) -> None:
        """The store run folders and the index are kept in (docs/state.md), pulled before anything reads it."""
        self.store: StateStore = store if store is not None else LocalStore(state_dir=self.state_dir)
        self.store.pull()
        self.history_dir = self.store.root
        self.run_dir = self.history_dir / "runs" / self.run_id
        #: why the final publish of the state failed ("state not saved: ..."), or None
        self.state_error: str | None = None

    def _make_state(self) -> RunState:
        options = RunOptions(
            check=self.check,
            diff=self.diff,
            run_id=self.run_id,
            playbook=self.playbook.name,
            run_dir=self.run_dir,
            state_dir=self.state_dir,
            promote_from=self._promote_from,
            extra=self.extra,
            extra_vars=self.extra_vars,
            memo=self.memo,
            history_dir=self.history_dir,
            redact=self.redactor.redact,
            transport_for=self.pool.get,
        )
        events = Events(self.run_id, self.redactor, self.on_event)
        state = RunState(self.playbook, options, self.pool, self.probe_cache, events, current_actor(self.environ))
        options.on_state_write = state.note_written
        state.publisher = Publisher(self.store, on_error=self._publish_failed)
        return state

    def _resolve_promote_from(self, run: str | None) -> Path | None:
        if not run:
            return None
        from maintkit.audit import resolve_run_id

        run_id = resolve_run_id(self.history_dir, run)
        return self.history_dir / "runs" / run_id

    # ------------------------------------------------------------------ planning
    def sites(self) -> list[Site]:
        """The sites this run targets (playbook targets, narrowed by ``limit``)."""
        return self._planner.sites()

    def render_context(self, site: Site, env: Environment, secrets: Secrets) -> dict[str, Any]:
        """The template context of one site environment."""
        return self._planner.render_context(site, env, secrets)

    def plan(self) -> dict[str, list[PlannedStage]]:
        """Render and validate every step for every site; raise ConfigError listing all problems."""
        return self._planner.plan()

    @property
    def notes(self) -> list[str]:
        """What the plan cannot know and why (a promotion without a version lock); set by :meth:`plan`."""
        return list(self._planner.notes)

    # ------------------------------------------------------------------ run
    def run(self) -> RunResult:
        """Execute the playbook. Returns a RunResult; raises ConfigError before anything runs."""
        plans = self.plan()
        started = time.monotonic()
        state = self._state
        state.events.on_event = self.on_event
        sites, fleet, tally = self._shard([s for s in self.sites() if s.name in plans])
        fleet_fields = fleet.fields() if fleet else {}
        restore: Callable[[], None] | None = None
        results: dict[str, SiteResult] = {}
        try:
            audit = self._open(sites, plans)
            state.emit("run.started", **self._started_fields([s.name for s in sites], fleet_fields))
            restore = install_stop_handlers(self._on_signal, self.handle_signals)
            run_sites(state, sites, plans, results, self.concurrency, tally)
        except BaseException:
            if restore is not None:
                restore()
            raise
        finally:
            self.pool.close()
        ordered = [scrub(results[s.name], self.redactor) for s in sites if s.name in results]
        status = run_status(ordered, stopped=state.stop.is_set(), halted=state.halt.is_set())
        result = RunResult(
            run_id=self.run_id,
            playbook=self.playbook.name,
            check=self.check,
            status=status,
            sites=ordered,
            run_dir=str(self.run_dir),
            duration_ms=monotonic_ms(started),
            notes=list(self._planner.notes),
        )
        self._index_runs(result)
        state.emit(
            "run.finished", status=status.value, changed=result.changed, duration_ms=round(result.duration_ms, 1)
        )
        write_run_summary(
            result,
            audit,
            actor=state.actor,
            promote_from=self._promote_from,
            extra=fleet_fields,
        )
        try:
            self._final_publish(result)
        finally:
            restore()  # handled until the state is published: a SIGTERM must not cut the push short
        return result

    def _open(self, sites: list[Site], plans: dict[str, list[PlannedStage]]) -> AuditLog:
        """Connect ahead while the run folder is written; the run's audit log.

        Every site claims its environments' connections (each is closed when the last site
        using it finishes); the first sites' first connections are opened now, in the background.
        The playbook's git provenance (the git command, a few processes side by side) waits until
        the first of them is under way, and the audit log opens once it is known (every event
        carries it).
        """
        for site in sites:
            self.pool.claim(site.name, site.environments.values())
        dialed = threading.Event()
        first = sites[: max(1, self.playbook.canary or self.concurrency)]
        self.pool.warm([env for s in first if (env := _first_env(plans[s.name])) is not None], dialed.set)
        audit = open_run_folder(
            self.run_dir,
            self.run_id,
            self.playbook,
            self.loaded,
            self.inventory,
            redactor=self.redactor,
            actor=self._state.actor,
            hmac_key=self._hmac_key,
            provenance=playbook_provenance(self.playbook, dialed),
        )
        self._state.events.audit = audit
        return audit

    def _started_fields(self, sites: list[str], fleet_fields: dict[str, Any]) -> dict[str, Any]:
        """What ``run.started`` records: mode, sites, concurrency, the fleet, and (when given) ``-e``,
        the step selection and a plan's notes."""
        out: dict[str, Any] = {"check": self.check, "sites": sites, "concurrency": self.concurrency, **fleet_fields}
        if self.extra_vars:
            out["extra_vars"] = self.extra_vars
        if self.selection:
            out["selection"] = self.selection.public()
        if self._planner.notes:
            out["notes"] = list(self._planner.notes)
        return out

    def _show(self, event: str, **fields: Any) -> None:
        """An event that is only shown (``-vv`` command lines), redacted, never written to the audit log."""
        if self.on_event is not None:
            with contextlib.suppress(Exception):
                self.on_event(self.redactor.redact({"event": event, "run_id": self.run_id, **fields}))

    def _shard(self, sites: list[Site]) -> tuple[list[Site], Fleet | None, GroupTally | None]:
        """This shard's sites, its fleet and its group's tally; all sites (and no tally) without ``--shard``."""
        if self.group is None:
            return sites, None, None
        canary = min(self.playbook.canary, len(sites))
        fleet = Fleet(self.group, self.shard, tuple(s.name for s in sites), canary)
        if self.shard is None:
            return sites, fleet, None
        mine = split(sites, lambda s: s.name, canary, self.shard)
        return mine, fleet, GroupTally(fleet, self.run_id, self.playbook.name, self.history_dir, self.store.pull)

    # ------------------------------------------------------------------ the state store
    def _index_runs(self, result: RunResult) -> None:
        """Record in the index, per site and environment that ran, this run and how it ended (not plans).

        A watching playbook's health record, incidents and alerts come first (:meth:`_watch`).
        """
        self.health = self._watch(result)
        if self.check:
            return
        finished = datetime.now(UTC).isoformat(timespec="milliseconds")
        runs = [
            (site.site, env, site.status.value)
            for site in result.sites
            for env in dict.fromkeys(s.env for s in site.steps if s.env)
        ]
        written = record_runs(
            self.history_dir, runs, self.playbook.name, self.run_id, finished, settled=self._state.settled
        )
        for (site_name, env, _), paths in zip(runs, written, strict=True):
            if isinstance(paths, Exception):
                self._state.emit("state.index_failed", site=site_name, env=env, error=str(paths))
            else:
                self._state.note_written(paths)

    def _watch(self, result: RunResult) -> Any:
        """A watching playbook's health record, incidents, alerts and metrics (:mod:`maintkit.health`).

        Kept as :attr:`health` (a :class:`maintkit.health.HealthRun`; None for other playbooks and plans).
        """
        if self.playbook.alerts is None or self.check:
            return None  # not a watching playbook: the health package is not even imported
        from maintkit.health import after_run

        state = self._state
        return after_run(
            self.playbook, result, self.plan(), self.history_dir, self.redactor,
            environ=self.environ, emit=state.emit, written=state.note_written, extra=self.extra,
        )  # fmt: skip

    def _final_publish(self, result: RunResult) -> None:
        """Publish the sealed run folder and the index; a failure sets :attr:`state_error` (exit 1)."""
        state = self._state
        state.events.audit = None  # sealed: later events are only shown
        assert state.publisher is not None
        message = f"maint run {self.run_id}: {self.playbook.name} {result.status.value}"
        error = state.publisher.close([self.run_dir, *state.take_written()], message)
        if error is not None:
            self.state_error = f"state not saved: {error}"
            state.emit("state.not_saved", store=self.store.describe(), error=error)

    def _publish_failed(self, error: str) -> None:
        """A publish during the run failed: a warning in the audit log (the final publish retries)."""
        with contextlib.suppress(ValueError):  # the audit log may just have been sealed
            self._state.emit("state.publish_failed", store=self.store.describe(), error=error)

    def request_stop(self) -> None:
        """Ask the run to stop after the current step (a signal also stops the command running now)."""
        self._state.stop.set()

    def _on_signal(self, name: str) -> None:
        """SIGINT/SIGTERM: stop and clean up, then say what is left, then abandon (:mod:`.signals`)."""
        self._state.interrupts.signal(name)


def _first_env(stages: list[PlannedStage]) -> Environment | None:
    """The environment a site connects to first (None: its first stage has no step to run)."""
    if not stages or all(ps.skip is not None for ps in stages[0].steps):
        return None
    return stages[0].env


def run_playbook(playbook: Playbook | LoadedPlaybook, inventory: Inventory, **kwargs: Any) -> RunResult:
    """Convenience: ``Runner(playbook, inventory, **kwargs).run()``."""
    return Runner(playbook, inventory, **kwargs).run()


__all__ = [
    "LOCK_EXIT",
    "Interrupted",
    "PlannedStage",
    "PlannedStep",
    "Runner",
    "TransportFactory",
    "TransportPool",
    "default_transport_factory",
    "run_playbook",
]
