"""The runner: sites x stages x steps, with locks, rollback, parallelism and the audit log.

Per site: for each stage (environment) the runner connects (one connection per host per
run), sends ONE batch that takes the environment's lock and prefetches every read-only
probe the stage's steps need, then runs each step: check, apply (only when needed and
not in check mode), verify. A failure rolls back the stage's applied steps in reverse
order (``on_failure: rollback``), stops the site (``stop``) or goes on (``continue``).
Whatever happens, steps that must not be left behind (maintenance mode) are finalized
and every lock is released, also on Ctrl-C and SIGTERM.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from maintkit import locks
from maintkit._text import tail
from maintkit.action import Action, Context, ProbeCache, RunMemo, RunOptions, monotonic_ms
from maintkit.audit import (
    AuditLog,
    Redactor,
    current_actor,
    git_provenance,
    new_run_id,
    write_summary,
    write_text_atomic,
)
from maintkit.errors import (
    ConfigError,
    Interrupted,
    LockHeld,
    MaintkitError,
    NotReversible,
    PlaybookError,
    Problem,
    TransportError,
)
from maintkit.inventory import Environment, Inventory, Site
from maintkit.playbook import LoadedPlaybook, Playbook, Stage, Step
from maintkit.probes import Probe, run_batch
from maintkit.registry import Registry, default_registry
from maintkit.results import Change, Check, RunResult, SiteResult, SiteStatus, StepResult, StepStatus
from maintkit.templating import Secrets, TemplateError, evaluate, render
from maintkit.transport.base import Transport

TransportFactory = Callable[[Environment], Transport]
LOCK_EXIT = locks.LOCK_EXIT


def default_transport_factory(env: Environment) -> Transport:
    """Create the transport for an environment (SSH, or local for ``connection: local``)."""
    if env.connection == "local":
        from maintkit.transport.local import LocalTransport

        return LocalTransport(
            name=env.host or "local", become=bool(env.become), command_timeout=env.command_timeout or 600.0
        )
    from maintkit.transport.ssh import SSHTransport

    # MAINT_SSH_KEY_FILE / MAINT_KNOWN_HOSTS (set by the GitHub Action) fill in what the
    # inventory leaves out; the inventory always wins.
    key_file = env.key_file or os.environ.get("MAINT_SSH_KEY_FILE") or None
    known = [k for k in (env.known_hosts, os.environ.get("MAINT_KNOWN_HOSTS")) if k]
    return SSHTransport(
        env.host,
        port=env.port or 22,
        user=env.user,
        key_filename=os.path.expanduser(key_file) if key_file else None,
        known_hosts=[os.path.expanduser(k) for k in known],
        host_key_policy=env.host_key_policy or "strict",
        connect_timeout=env.connect_timeout or 10.0,
        command_timeout=env.command_timeout or 600.0,
        become=bool(env.become),
        proxy_command=env.proxy_command,
        keepalive_interval=env.keepalive_interval or 5.0,
        keepalive_count_max=env.keepalive_count_max or 3,
    )


class _Fact:
    """What ``when:`` sees of one earlier step: ``status`` and ``changed``."""

    def __init__(self, status: str, changed: bool) -> None:
        self.status = status
        self.changed = changed


class _Facts:
    """Attribute and item access for ``when:`` (``steps.update.changed``, ``steps['command#2']``).

    A plain dict would resolve ``steps.update`` to ``dict.update``."""

    def __init__(self, items: Mapping[str, Any]) -> None:
        self._items = dict(items)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self._items[name]
        except KeyError:
            raise AttributeError(f"no step {name!r} has run yet") from None

    def __getitem__(self, name: str) -> Any:
        return self._items[name]

    def __contains__(self, name: object) -> bool:
        return name in self._items


class TransportPool:
    """One transport per distinct host connection for the whole run."""

    def __init__(self, factory: TransportFactory) -> None:
        self._factory = factory
        self._pool: dict[tuple[Any, ...], Transport] = {}
        self._lock = threading.Lock()

    @staticmethod
    def key(env: Environment) -> tuple[Any, ...]:
        """What makes two environments share a connection."""
        return (
            env.connection,
            env.host,
            env.port,
            env.user,
            env.become,
            env.key_file,
            env.proxy_command,
            env.known_hosts,
            env.host_key_policy,
            env.connect_timeout,
            env.command_timeout,
        )

    def get(self, env: Environment) -> Transport:
        """The shared transport for ``env``'s host."""
        k = self.key(env)
        with self._lock:
            if k not in self._pool:
                self._pool[k] = self._factory(env)
            return self._pool[k]

    def close(self) -> None:
        """Close every connection."""
        with self._lock:
            for t in self._pool.values():
                with contextlib.suppress(Exception):  # closing must never mask the run's outcome
                    t.close()
            self._pool.clear()


@dataclass
class PlannedStep:
    """A step rendered and validated for one site environment."""

    step: Step
    action: Action[Any]


@dataclass
class PlannedStage:
    """A stage rendered for one site."""

    stage: Stage
    env: Environment
    steps: list[PlannedStep]
    render_context: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Applied:
    planned: PlannedStep
    ctx: Context
    changes: list[Change]
    result: StepResult
    rolled_back: bool = False


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
    ) -> None:
        if isinstance(playbook, LoadedPlaybook):
            self.loaded: LoadedPlaybook | None = playbook
            self.playbook = playbook.playbook
        else:
            self.loaded, self.playbook = None, playbook
        self.inventory = inventory
        self.check = check
        self.diff = diff
        self.limit = limit
        self.only_env = env
        self.concurrency = concurrency or self.playbook.concurrency
        self.state_dir = Path(state_dir)
        self.registry = registry or default_registry()
        self.pool = TransportPool(transport_factory or default_transport_factory)
        self.on_event = on_event
        self.environ = os.environ if environ is None else environ
        self.handle_signals = handle_signals
        self.extra = extra or {}
        self.redactor = Redactor()
        self.run_id = new_run_id()
        self.run_dir = self.state_dir / "runs" / self.run_id
        self.probe_cache = ProbeCache()
        self.memo = RunMemo()
        self._stop = threading.Event()
        self._halt = threading.Event()
        self._audit: AuditLog | None = None
        self._promote_from = self._resolve_promote_from(promote_from)
        self._plans: dict[str, list[PlannedStage]] | None = None
        key = self.environ.get("MAINT_AUDIT_KEY")
        self._hmac_key = key.encode() if key else None
        if key:
            self.redactor.add_secret(key)

    # ------------------------------------------------------------------ planning
    def _resolve_promote_from(self, run: str | None) -> Path | None:
        if not run:
            return None
        from maintkit.audit import resolve_run_id

        run_id = resolve_run_id(self.state_dir, run)
        return self.state_dir / "runs" / run_id

    def sites(self) -> list[Site]:
        """The sites this run targets (playbook targets, narrowed by ``limit``)."""
        chosen = self.inventory.resolve_targets(self.playbook.targets)
        if self.limit:
            limited = {s.name for s in self.inventory.resolve_targets(self.limit)}
            chosen = [s for s in chosen if s.name in limited]
            if not chosen:
                raise ConfigError(Problem("--limit", None, "limit", "no targeted site matches the limit"))
        return chosen

    def _stages(self) -> list[Stage]:
        if self.only_env is None:
            return list(self.playbook.stages)
        stages = [s for s in self.playbook.stages if s.env == self.only_env]
        if not stages:
            known = ", ".join(s.env for s in self.playbook.stages)
            raise ConfigError(
                Problem("--env", None, "env", f"the playbook has no stage for {self.only_env!r} ({known})")
            )
        return stages

    def _source_problem(self, loc: tuple[str | int, ...], message: str) -> Problem:
        message = self.redactor.redact_text(message)  # validation errors echo rendered values
        if self.loaded is not None:
            return self.loaded.source.problem(loc, message)
        return Problem(self.playbook.path or self.playbook.name, None, ".".join(map(str, loc)), message)

    def render_context(self, site: Site, env: Environment, secrets: Secrets) -> dict[str, Any]:
        """The template context of one site environment."""
        merged = {**self.playbook.vars, **site.vars_for(env)}
        return {
            "site": {"name": site.name, "platform": site.platform, "vars": site.vars},
            "env": {
                "name": env.name,
                "host": env.host,
                "path": env.path,
                "url": (env.url or "").rstrip("/"),
                "platform": env.platform,
                "vars": merged,
            },
            "vars": merged,
            "secrets": secrets,
            "run": {"id": self.run_id, "check": self.check},
            "playbook": {"name": self.playbook.name},
        }

    def plan(self) -> dict[str, list[PlannedStage]]:
        """Render and validate every step for every site; raise ConfigError listing all problems."""
        if self._plans is not None:
            return self._plans
        problems: list[Problem] = []
        plans: dict[str, list[PlannedStage]] = {}
        secrets = Secrets(self.environ, on_read=self.redactor.add_secret)
        stage_index = {id(s): i for i, s in enumerate(self.playbook.stages)}
        for site in self.sites():
            site_plan: list[PlannedStage] = []
            for stage in self._stages():
                si = stage_index[id(stage)]
                if stage.env not in site.environments:
                    problems.append(
                        self._source_problem(
                            ("stages", si, "env"),
                            f"site {site.name!r} has no environment {stage.env!r} in the inventory",
                        )
                    )
                    continue
                env = site.environments[stage.env]
                rctx = self.render_context(site, env, secrets)
                steps: list[PlannedStep] = []
                for i, step in enumerate(stage.steps):
                    loc: tuple[str | int, ...] = ("stages", si, "steps", i)
                    planned = self._plan_step(step, rctx, loc, site, problems)
                    if planned is not None:
                        steps.append(planned)
                site_plan.append(PlannedStage(stage, env, steps, rctx))
            plans[site.name] = site_plan
        if problems:
            raise PlaybookError(problems)
        self._plans = plans
        return plans

    def _plan_step(
        self, step: Step, rctx: dict[str, Any], loc: tuple[str | int, ...], site: Site, problems: list[Problem]
    ) -> PlannedStep | None:
        try:
            cls = self.registry.get(step.action)
        except MaintkitError as exc:
            problems.append(self._source_problem((*loc, "action"), str(exc)))
            return None
        try:
            rendered = render(step.with_, rctx)
        except TemplateError as exc:
            problems.append(self._source_problem((*loc, "with"), f"site {site.name}: {exc.problems[0].message}"))
            return None
        try:
            params: BaseModel = cls.Params.model_validate(rendered)
        except ValidationError as exc:
            for err in exc.errors():
                problems.append(self._source_problem((*loc, "with", *err["loc"]), f"site {site.name}: {err['msg']}"))
            return None
        return PlannedStep(step, cls(params, step.id))

    # ------------------------------------------------------------------ events
    def _emit(self, event: str, **fields: Any) -> dict[str, Any]:
        record: dict[str, Any]
        if self._audit is not None:
            record = self._audit.event(event, **fields)
        else:
            record = self.redactor.redact({"event": event, "run_id": self.run_id, **fields})
        if self.on_event is not None:
            with contextlib.suppress(Exception):  # a display problem must not break a run
                self.on_event(record)
        return record

    # ------------------------------------------------------------------ run
    def run(self) -> RunResult:
        """Execute the playbook. Returns a RunResult; raises ConfigError before anything runs."""
        plans = self.plan()
        started = time.monotonic()
        self._open_run_folder()
        sites = [s for s in self.sites() if s.name in plans]
        self._emit("run.started", check=self.check, sites=[s.name for s in sites], concurrency=self.concurrency)
        restore = self._install_signals()
        results: dict[str, SiteResult] = {}
        try:
            self._run_sites(sites, plans, results)
        finally:
            restore()
            self.pool.close()
        ordered = [self._scrub(results[s.name]) for s in sites if s.name in results]
        status = self._overall(ordered)
        result = RunResult(
            run_id=self.run_id,
            playbook=self.playbook.name,
            check=self.check,
            status=status,
            sites=ordered,
            run_dir=str(self.run_dir),
            duration_ms=monotonic_ms(started),
        )
        self._emit("run.finished", status=status, changed=result.changed, duration_ms=round(result.duration_ms, 1))
        self._write_summary(result)
        return result

    def _scrub(self, site: SiteResult) -> SiteResult:
        """Redact secrets from everything a caller may print (errors carry command output)."""
        r = self.redactor
        site.error = r.redact_text(site.error) if site.error else site.error
        for step in site.steps:
            step.error = r.redact_text(step.error) if step.error else step.error
            step.reason = r.redact_text(step.reason)
            step.diff = r.redact_text(step.diff) if step.diff else step.diff
            step.depends_on = r.redact_text(step.depends_on) if step.depends_on else step.depends_on
            step.data = r.redact(step.data)
            for change in step.changes:
                change.target = r.redact_text(change.target)
                change.summary = r.redact_text(change.summary)
                change.before, change.after = r.redact(change.before), r.redact(change.after)
        return site

    def _overall(self, results: list[SiteResult]) -> str:
        statuses = {r.status for r in results}
        if self._stop.is_set() or SiteStatus.INTERRUPTED in statuses:
            return "interrupted"
        if statuses & {SiteStatus.FAILED, SiteStatus.ROLLED_BACK}:
            return "failed"
        if SiteStatus.LOCKED in statuses:
            return "locked"
        if SiteStatus.SKIPPED in statuses and self._halt.is_set():
            return "failed"
        return "ok"

    def _open_run_folder(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.run_dir, 0o700)
        prov = git_provenance(Path(self.playbook.path).resolve()) if self.playbook.path else {}
        common = {
            "actor": current_actor(),
            "playbook": self.playbook.name,
            "playbook_commit": prov.get("commit"),
            "playbook_dirty": prov.get("dirty"),
        }
        self._audit = AuditLog(
            self.run_dir, self.run_id, common=common, redactor=self.redactor, hmac_key=self._hmac_key
        )
        text = (
            self.loaded.text
            if self.loaded is not None
            else json.dumps(self.playbook.model_dump(by_alias=True), indent=2)
        )
        write_text_atomic(self.run_dir / "playbook.yml", self.redactor.redact_text(text))
        if self.inventory.path:
            write_text_atomic(self.run_dir / "inventory.path", str(Path(self.inventory.path).resolve()) + "\n")

    def _write_summary(self, result: RunResult) -> None:
        assert self._audit is not None
        summary = {
            **result.to_dict(),
            "started": self._started_iso,
            "finished": datetime.now(UTC).isoformat(timespec="seconds"),
            "actor": current_actor(),
            "promote_from": str(self._promote_from.name) if self._promote_from else None,
        }
        write_summary(self.run_dir, self.redactor.redact(summary), self._audit)
        self._audit.close()

    @property
    def _started_iso(self) -> str:
        return datetime.strptime(self.run_id.split("-")[0], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC).isoformat()

    def request_stop(self) -> None:
        """Ask the run to stop after the current step (what SIGINT/SIGTERM do)."""
        self._stop.set()

    def _install_signals(self) -> Callable[[], None]:
        if not self.handle_signals or threading.current_thread() is not threading.main_thread():
            return lambda: None
        previous: dict[int, Any] = {}

        def handler(signum: int, frame: Any) -> None:
            if not self._stop.is_set():
                self._emit("run.interrupt_requested", signal=signal.Signals(signum).name)
            self._stop.set()

        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, handler)

        def restore() -> None:
            for sig, old in previous.items():
                signal.signal(sig, old)

        return restore

    def _run_sites(
        self, sites: list[Site], plans: dict[str, list[PlannedStage]], results: dict[str, SiteResult]
    ) -> None:
        canary = min(self.playbook.canary, len(sites))
        batches = [sites[:canary], sites[canary:]] if canary else [sites]
        done = failed = 0
        total = len(sites)
        lock = threading.Lock()

        def one(site: Site) -> None:
            nonlocal done, failed
            if self._halt.is_set() or self._stop.is_set():
                reason = "interrupted before start" if self._stop.is_set() else "halted: too many sites failed"
                results[site.name] = SiteResult(site.name, SiteStatus.SKIPPED, error=reason)
                self._emit("site.skipped", site=site.name, status="skipped", error=reason)
                return
            res = self._run_site(site, plans[site.name])
            with lock:
                results[site.name] = res
                done += 1
                failed += res.status in (SiteStatus.FAILED, SiteStatus.ROLLED_BACK)
                limit = self.playbook.max_fail_percentage
                if limit is not None and total and failed * 100.0 / total > limit:
                    self._halt.set()

        for n, batch in enumerate(batches):
            if not batch:
                continue
            workers = max(1, min(self.concurrency, len(batch)))
            if workers == 1:
                for site in batch:
                    one(site)
            else:
                with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="maint-site") as pool:
                    list(pool.map(one, batch))
            if canary and n == 0 and any(results[s.name].failed for s in batch):
                self._halt.set()
                self._emit("run.halted", reason="canary site failed", sites=[s.name for s in batch])

    # ------------------------------------------------------------------ one site
    def _run_site(self, site: Site, stages: list[PlannedStage]) -> SiteResult:
        started = time.monotonic()
        result = SiteResult(site.name, SiteStatus.OK)
        held: list[tuple[Environment, Transport]] = []
        self._emit("site.started", site=site.name)
        cause: tuple[str, str] | None = None  # (env, why) of a stage that could not start
        current = ""
        try:
            for planned in stages:
                if self._stop.is_set():
                    result.status = SiteStatus.INTERRUPTED
                    break
                current = planned.env.name
                status = self._run_stage(site, planned, result, held)
                if status is not SiteStatus.OK:
                    result.status = status
                    break
        except LockHeld as exc:
            result.status = SiteStatus.LOCKED
            result.error = str(exc)
        except MaintkitError as exc:
            result.status = SiteStatus.FAILED
            result.error = self._add_error(result.error, str(exc))
            why = "the host could not be reached" if isinstance(exc, TransportError) else "the stage could not start"
            cause = (current, f"{why}: {exc}")
        except Exception as exc:  # a bug must not leave locks behind
            result.status = SiteStatus.FAILED
            result.error = self._add_error(result.error, f"internal error: {type(exc).__name__}: {exc}")
            cause = (current, f"internal error: {type(exc).__name__}: {exc}")
        finally:
            for env, transport in reversed(held):
                self._cleanup_failed(result, self._release_lock(site, env, transport))
        self._record_not_run(site, stages, result, cause)
        if result.status is SiteStatus.OK and any(s.status is StepStatus.FAILED for s in result.steps):
            result.status = SiteStatus.FAILED
        if result.error is None:
            failed = next((s for s in result.steps if s.status is StepStatus.FAILED), None)
            result.error = f"step {failed.step} failed: {failed.error}" if failed else None
        result.duration_ms = monotonic_ms(started)
        self._emit(
            "site.finished",
            site=site.name,
            status=result.status.value,
            changes=result.changed,
            error=result.error,
            duration_ms=round(result.duration_ms, 1),
        )
        return result

    @staticmethod
    def _add_error(current: str | None, error: str) -> str:
        """The site error: the first cause, then what else went wrong."""
        return f"{current}; also: {error}" if current else error

    def _cleanup_failed(self, result: SiteResult, error: str | None) -> None:
        """A cleanup that failed (finalize, lock release) fails the site, with the reason."""
        if error is None:
            return
        if result.status in (SiteStatus.OK, SiteStatus.ROLLED_BACK):
            result.status = SiteStatus.FAILED
        result.error = self._add_error(result.error, error)

    def _record_not_run(
        self, site: Site, stages: list[PlannedStage], result: SiteResult, cause: tuple[str, str] | None = None
    ) -> None:
        """Every planned step appears in the audit log: the ones never reached say why."""
        reached = {(s.env, s.step) for s in result.steps}
        why = {
            SiteStatus.INTERRUPTED: "the run was interrupted",
            SiteStatus.LOCKED: "the site is locked by another run",
        }.get(result.status, "an earlier step failed")
        if cause is not None and result.status is not SiteStatus.INTERRUPTED:
            why = f"stage {cause[0]} did not run: {cause[1]}"
        for planned in stages:
            for ps in planned.steps:
                if (planned.env.name, ps.step.id) not in reached:
                    reason = cause[1] if cause is not None and planned.env.name == cause[0] else why
                    self._emit(
                        "step.not_run",
                        site=site.name,
                        env=planned.env.name,
                        step=ps.step.id,
                        action=ps.action.name,
                        status="not-run",
                        reason=reason,
                    )

    def _base_context(self, site: Site, planned: PlannedStage, transport: Transport) -> Context:
        options = RunOptions(
            check=self.check,
            diff=self.diff,
            run_id=self.run_id,
            run_dir=self.run_dir,
            state_dir=self.state_dir,
            promote_from=self._promote_from,
            extra=self.extra,
            memo=self.memo,
        )
        secrets = planned.render_context.get("secrets")
        used: Mapping[str, str] = secrets.used if isinstance(secrets, Secrets) else {}

        def emit(event: str, **fields: Any) -> None:
            self._emit(event, site=site.name, env=planned.env.name, host=planned.env.display_host, **fields)

        return Context(
            site=site,
            env=planned.env,
            transport=transport,
            options=options,
            stage_promote=planned.stage.promote,
            probe_cache=self.probe_cache,
            emit=emit,
            secrets=used,
            stop_requested=self._stop.is_set,
        )

    def _lock_script(self, site: Site, env: Environment) -> str:
        holder = locks.owner_record(
            self.run_id, actor=current_actor(), playbook=self.playbook.name, site=site.name, env=env.name
        )
        return locks.acquire_script(env.path, holder)

    def _lock_error(self, site: Site, env: Environment, output: str) -> LockHeld:
        holder = locks.parse_holder(output.split(locks.LOCKED_MARK, 1)[-1])
        state = locks.liveness(holder, self.state_dir, stale_after=locks.DEFAULT_STALE_AGE)
        msg = f"{site.name}/{env.name} is locked by {locks.describe(holder)}"
        if state.dead:
            msg += (
                f"; the lock looks stale ({state.why}). If no run is active, clear it with: "
                f"maint unlock {site.name} --env {env.name}"
            )
        else:
            msg += f". Wait for it to finish, or if it died: maint unlock {site.name} --env {env.name}"
        return LockHeld(msg, holder, state.dead)

    def _release_lock(self, site: Site, env: Environment, transport: Transport) -> str | None:
        """Release the lock; the error (naming site and environment) when that failed."""
        try:
            transport.run_shell(locks.release_script(env.path, self.run_id), check=True, timeout=30)
            self._emit("lock.released", site=site.name, env=env.name, host=env.display_host)
        except MaintkitError as exc:
            self._emit("lock.release_failed", site=site.name, env=env.name, host=env.display_host, error=str(exc))
            return f"could not release the lock of {site.name}/{env.name}: {exc}"
        return None

    @staticmethod
    def _step_probes(planned: PlannedStage, base: Context) -> list[list[Probe[Any]]]:
        """The read-only probes each step declares (an action that cannot tell yet gives none)."""
        out: list[list[Probe[Any]]] = []
        for ps in planned.steps:
            try:
                out.append(list(ps.action.probes(replace(base, step_id=ps.step.id))))
            except MaintkitError:
                out.append([])
        return out

    def _prefetch(
        self,
        site: Site,
        planned: PlannedStage,
        base: Context,
        held: list[tuple[Environment, Transport]],
        step_probes: list[list[Probe[Any]]],
    ) -> None:
        probes = [p for group in step_probes for p in group]
        already = any(e is planned.env for e, _ in held)
        preamble = None if (self.check or already) else self._lock_script(site, planned.env)
        raw, head = run_batch(base.transport, probes, preamble=preamble, timeout=planned.env.command_timeout or 600)
        if locks.LOCKED_MARK in head:
            raise self._lock_error(site, planned.env, head)
        if head.startswith("__preamble_failed__"):
            code, _, text = head.partition("\n")
            detail = tail(text, 300) or f"exit status {code.rpartition(':')[2]}"
            raise MaintkitError(f"{site.name}/{planned.env.name}: cannot take the lock: {detail}")
        if preamble is not None:
            held.append((planned.env, base.transport))
            self._emit("lock.acquired", site=site.name, env=planned.env.name, host=planned.env.display_host)
        for key, value in raw.items():
            self.probe_cache.put(base.host_key, key, value)

    def _run_stage(
        self, site: Site, planned: PlannedStage, result: SiteResult, held: list[tuple[Environment, Transport]]
    ) -> SiteStatus:
        env = planned.env
        transport = self.pool.get(env)
        base = self._base_context(site, planned, transport)
        self._emit("stage.started", site=site.name, env=env.name, host=env.display_host, promote=planned.stage.promote)
        step_probes = self._step_probes(planned, base)
        self._prefetch(site, planned, base, held, step_probes)
        applied: list[_Applied] = []
        status = SiteStatus.OK
        for i, ps in enumerate(planned.steps):
            if self._stop.is_set():
                status = SiteStatus.INTERRUPTED
                break
            # after a change, this step's probes (for verify) and every later step's are read
            # again in the same round trip as the change, or in one batch right after it
            base.refresh = [p for group in step_probes[i:] for p in group]
            outcome = self._run_step(site, planned, ps, base, result, applied)
            if outcome is not None:
                status = outcome
                break
        if status is SiteStatus.INTERRUPTED and not self.check:
            status = self._on_failure(site, planned, applied, "rollback", interrupted=True)
        for error in self._finalize(applied, ok=status is SiteStatus.OK):
            self._cleanup_failed(result, error)
            if status in (SiteStatus.OK, SiteStatus.ROLLED_BACK):
                status = SiteStatus.FAILED
        self._emit("stage.finished", site=site.name, env=env.name, status=status.value)
        return status

    def _refresh(self, ctx: Context) -> None:
        """Read the probes of this and later steps that the change left unknown, in one round trip."""
        missing = [p for p in ctx.refresh if self.probe_cache.get(ctx.host_key, p.key) is None]
        if missing:
            raw, _ = run_batch(ctx.transport, missing, timeout=ctx.env.command_timeout or 600.0)
            for key, value in raw.items():
                self.probe_cache.put(ctx.host_key, key, value)

    def _step_context(self, base: Context, ps: PlannedStep, result: SiteResult) -> Context:
        return replace(base, step_id=ps.step.id, prior=list(result.steps), data={}, primed=set())

    def _when(self, ps: PlannedStep, planned: PlannedStage, result: SiteResult, ctx: Context) -> bool | None:
        if not ps.step.when:
            return True
        stages: dict[str, dict[str, _Fact]] = {}
        for r in result.steps:
            stages.setdefault(r.env, {})[r.step] = _Fact(
                status=r.status.value, changed=r.status in (StepStatus.CHANGED, StepStatus.WOULD_CHANGE)
            )
        here = stages.get(planned.env.name, {})
        if self.check and any(
            r.status in (StepStatus.WOULD_CHANGE, StepStatus.UNKNOWN) and r.step in ps.step.when for r in result.steps
        ):
            return None
        unknown: list[str] = []

        def will_change(step_id: str) -> bool:
            """Read-only check of a later step of this stage: would it change anything?"""
            later = next((p for p in planned.steps if p.step.id == step_id), None)
            if later is None:
                raise TemplateError(f"will_change: no step {step_id!r} in stage {planned.env.name!r}")
            check = later.action.check(replace(ctx, step_id=step_id))
            if check.needed is None:
                unknown.append(step_id)
            return check.needed is not False

        context = {
            **planned.render_context,
            "steps": _Facts(here),
            "stages": _Facts({env: _Facts(steps) for env, steps in stages.items()}),
            "will_change": will_change,
        }
        value = bool(evaluate(ps.step.when, context))
        return None if (self.check and unknown) else value

    def _record(self, res: StepResult, event: str, host: str, status_override: str | None = None, **extra: Any) -> None:
        self._emit(
            event,
            site=res.site,
            env=res.env,
            host=host,
            step=res.step,
            action=res.action,
            status=status_override or res.status.value,
            reason=res.reason,
            changes=[c.public() for c in res.changes],
            duration_ms=round(res.duration_ms, 1),
            error=res.error,
            depends_on=res.depends_on,
            data=res.data or None,
            **extra,
        )

    def _run_step(
        self,
        site: Site,
        planned: PlannedStage,
        ps: PlannedStep,
        base: Context,
        result: SiteResult,
        applied: list[_Applied],
    ) -> SiteStatus | None:
        env = planned.env
        host = env.display_host
        res = StepResult(site.name, env.name, ps.step.id, ps.action.name, StepStatus.NOT_RUN)
        result.steps.append(res)
        started = time.monotonic()
        ctx = self._step_context(base, ps, result)
        ctx.prior = result.steps[:-1]
        try:
            when = self._when(ps, planned, result, ctx)
        except MaintkitError as exc:
            return self._fail(site, planned, ps, res, applied, exc, started, result)
        if when is None:
            res.status, res.reason = StepStatus.UNKNOWN, "unknown: its condition depends on an earlier step"
            self._record(res, "step.checked", host)
            return None
        if not when:
            res.status, res.reason = StepStatus.SKIPPED, f"condition false: {ps.step.when}"
            self._record(res, "step.skipped", host)
            return None
        pending = ctx.pending_step() if self.check else None
        try:
            if self.check and pending and ps.action.depends_on_previous:
                chk = Check.unknown(f"unknown: depends on step {pending}", depends_on=pending)
            else:
                chk = ps.action.check(ctx)
        except MaintkitError as exc:
            if self.check and pending:
                chk = Check.unknown(f"unknown: depends on step {pending} ({exc})", depends_on=pending)
            else:
                res.data.update(ctx.data)
                return self._fail(site, planned, ps, res, applied, exc, started, result)
        res.reason, res.diff, res.depends_on = chk.reason, chk.diff, chk.depends_on
        res.data.update(chk.data)
        res.data.update(ctx.data)
        if self.check:
            res.status = {True: StepStatus.WOULD_CHANGE, False: StepStatus.UNCHANGED, None: StepStatus.UNKNOWN}[
                chk.needed
            ]
            res.duration_ms = monotonic_ms(started)
            self._record(res, "step.checked", host, diff=chk.diff if self.diff else None)
            return None
        if chk.needed is False:
            res.status = StepStatus.UNCHANGED
            res.duration_ms = monotonic_ms(started)
            self._record(res, "step.checked", host)
            return None
        self._record(res, "step.checked", host, status_override="needed")
        entry: _Applied | None = None
        try:
            ctx.invalidate()  # apply reads fresh state; only what it reads after its change survives it
            changes = ps.action.apply(ctx, chk)
            self.probe_cache.invalidate(ctx.host_key, keep=ctx.primed)
            self._refresh(ctx)
            res.changes = changes
            entry = _Applied(ps, ctx, changes, res)
            applied.append(entry)
            res.status = StepStatus.CHANGED
            res.data.update(ctx.data)
            self._record(res, "step.applied", host, diff=chk.diff if self.diff else None)
            ps.action.verify(ctx)
            res.data.update(ctx.data)
        except MaintkitError as exc:
            ctx.invalidate()
            partial = list(getattr(exc, "changes", None) or [])
            if entry is None and partial:  # apply changed something, then failed: undo that too
                res.changes = partial
                applied.append(_Applied(ps, ctx, partial, res))
            return self._fail(site, planned, ps, res, applied, exc, started, result)
        res.duration_ms = monotonic_ms(started)
        self._record(res, "step.verified", host)
        return None

    def _fail(
        self,
        site: Site,
        planned: PlannedStage,
        ps: PlannedStep,
        res: StepResult,
        applied: list[_Applied],
        exc: MaintkitError,
        started: float,
        site_result: SiteResult,
    ) -> SiteStatus | None:
        phase = getattr(exc, "phase", "step")
        res.status = StepStatus.FAILED
        res.error = f"{phase}: {exc}"
        res.duration_ms = monotonic_ms(started)
        details = getattr(exc, "details", None)
        if details:
            res.data.update(details)
        self._record(res, "step.failed", planned.env.display_host, phase=phase)
        if self.check:
            return None
        if site_result.error is None:  # the site error names the step whose failure was the cause
            site_result.error = f"step {res.step} failed: {res.error}"
        policy = ps.step.on_failure or self.playbook.on_failure
        if policy == "continue":
            return None
        return self._on_failure(site, planned, applied, policy)

    def _on_failure(
        self, site: Site, planned: PlannedStage, applied: list[_Applied], policy: str, interrupted: bool = False
    ) -> SiteStatus:
        final = SiteStatus.INTERRUPTED if interrupted else SiteStatus.FAILED
        if policy != "rollback":
            return final
        ok = True
        for entry in reversed(applied):
            if entry.rolled_back:
                continue
            ok = self._rollback_one(site, planned, entry) and ok
        if interrupted:
            return SiteStatus.INTERRUPTED
        return SiteStatus.ROLLED_BACK if ok else SiteStatus.FAILED

    def _rollback_one(self, site: Site, planned: PlannedStage, entry: _Applied) -> bool:
        res = entry.result
        started = time.monotonic()
        where = {
            "site": site.name,
            "env": planned.env.name,
            "host": planned.env.display_host,
            "step": res.step,
            "action": res.action,
        }
        try:
            entry.planned.action.rollback(entry.ctx, entry.changes)
        except NotReversible as exc:
            res.reason = f"not reversible: {exc}"
            self._emit("step.not_reversible", **where, error=str(exc))
            return False
        except MaintkitError as exc:
            if res.status is not StepStatus.FAILED:
                res.status = StepStatus.ROLLBACK_FAILED
            res.error = f"rollback: {exc}"
            self._emit("step.rollback_failed", **where, error=str(exc))
            return False
        finally:
            entry.ctx.invalidate()
        entry.rolled_back = True
        if res.status is not StepStatus.FAILED:
            res.status = StepStatus.ROLLED_BACK
        res.reason = "rolled back"
        self._emit(
            "step.rolled_back",
            **where,
            status="rolled-back",
            changes=[c.public() for c in entry.changes],
            duration_ms=round(monotonic_ms(started), 1),
        )
        return True

    def _finalize(self, applied: list[_Applied], ok: bool) -> list[str]:
        """Finalize every step that changed something; the errors (each naming its step)."""
        errors: list[str] = []
        for entry in reversed(applied):
            try:
                entry.planned.action.finalize(entry.ctx, entry.changes, ok)
            except MaintkitError as exc:
                self._emit(
                    "step.finalize_failed",
                    site=entry.result.site,
                    env=entry.result.env,
                    step=entry.result.step,
                    action=entry.result.action,
                    error=str(exc),
                )
                errors.append(f"finalize of step {entry.result.step} failed: {exc}")
        return errors


def run_playbook(playbook: Playbook | LoadedPlaybook, inventory: Inventory, **kwargs: Any) -> RunResult:
    """Convenience: ``Runner(playbook, inventory, **kwargs).run()``."""
    return Runner(playbook, inventory, **kwargs).run()


__all__ = ["Interrupted", "Runner", "TransportPool", "default_transport_factory", "run_playbook"]
