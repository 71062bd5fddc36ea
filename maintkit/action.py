"""The Action base class and the Context every action phase receives.

An action is an idempotent unit of work::

    class MyAction(Action[MyParams]):
        name = "my.action"
        Params = MyParams

        def check(self, ctx):       # read-only: what would change?
            ...
        def apply(self, ctx, check):  # only when check.needed and not --check
            ...
        def verify(self, ctx):      # default: check() again must say "nothing to do"
            ...
        def rollback(self, ctx, changes):  # undo apply (default: NotReversible)
            ...
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, ClassVar, Generic, Literal, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict

from maintkit._http_cache import GetCache
from maintkit.caches import ProbeCache as ProbeCache  # re-exported: plugins import it from here
from maintkit.caches import RunMemo as RunMemo
from maintkit.errors import NotReversible, VerifyFailed
from maintkit.inventory import Environment, Site
from maintkit.probes import Probe, RawOutput
from maintkit.results import Change, Check, CommandResult, StepResult, StepStatus
from maintkit.transport.base import Transport

P = TypeVar("P", bound=BaseModel)
T = TypeVar("T")


class Params(BaseModel):
    """Base for action parameter models: unknown fields are errors."""

    model_config = ConfigDict(extra="forbid")


class NoParams(Params):
    """For actions without parameters."""


@dataclass
class RunOptions:
    """Options of the whole run that actions may read."""

    check: bool = False
    diff: bool = False
    run_id: str = ""
    #: the name of the playbook being run
    playbook: str = ""
    run_dir: Path | None = None
    state_dir: Path = Path(".maint")
    promote_from: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    #: ``-e`` variables: over the inventory's variables in :attr:`Context.vars` (docs/cli.md)
    extra_vars: dict[str, Any] = field(default_factory=dict)
    #: per-run memos shared by all sites (see :class:`RunMemo`)
    memo: RunMemo = field(default_factory=RunMemo)
    #: the run's downloads: one GET per URL for every site and step (see :mod:`maintkit._http_cache`)
    http_cache: GetCache = field(default_factory=GetCache)
    #: the state store's root (run folders and ``index/``, see docs/state.md); None: ``state_dir``
    history_dir: Path | None = None
    #: told about every file an action writes under ``history_dir`` (the runner publishes them)
    on_state_write: Callable[[Sequence[Path]], None] | None = None
    #: redacts a record before it is written under ``history_dir`` (the run's redactor)
    redact: Callable[[Any], Any] | None = None
    #: the run's shared transport for another environment (``staging.refresh`` reads its source)
    transport_for: Callable[[Environment], Transport] | None = None

    @property
    def history(self) -> Path:
        """Where run history is read and written: the store's root, else the state folder."""
        return self.history_dir if self.history_dir is not None else self.state_dir


class ChainHook(Protocol):
    """What a context's commands go through while the runner chains steps in one round trip
    (``maintkit.runner.chain``): it plans a later step's change, sends a step's change with
    the later ones, or hands a later step the outcome its change already had."""

    def run_and_probe(
        self, ctx: Context, script: str, probes: list[Probe[Any]], stdin: bytes | None, timeout: float
    ) -> tuple[str, CommandResult] | None:
        """:meth:`Context.run_and_probe_result` for the chain (None: the context sends it as usual)."""
        ...

    def direct(self, ctx: Context, what: str) -> None:
        """Any other command through ``ctx`` (``what`` names it): raises when it may not be sent."""
        ...


@dataclass
class Context:
    """Everything an action phase may use. Passed explicitly; there are no globals."""

    site: Site
    env: Environment
    transport: Transport
    options: RunOptions
    step_id: str = ""
    stage_promote: str | None = None
    #: the stage updates without a staging stage first (the site's ``direct_updates: true``)
    direct_update: bool = False
    prior: list[StepResult] = field(default_factory=list)
    probe_cache: ProbeCache = field(default_factory=ProbeCache)
    emit: Callable[..., Any] | None = None
    data: dict[str, Any] = field(default_factory=dict)
    secrets: Mapping[str, str] = field(default_factory=dict)
    #: True once Ctrl-C/SIGTERM asked the run to stop: long applies (builds) may stop early
    stop_requested: Callable[[], bool] | None = None
    #: probe keys read fresh by apply's last command (kept for verify; see run_and_probe): any
    #: later command through the context forgets them, it may have changed what they read
    primed: set[str] = field(default_factory=set)
    #: probes of this and later steps to read again right after a change (set by the runner)
    refresh: list[Probe[Any]] = field(default_factory=list)
    #: set by the runner while steps' changes share one round trip (see :class:`ChainHook`)
    chain: ChainHook | None = None

    # ---- convenience -------------------------------------------------------
    @property
    def check_mode(self) -> bool:
        """True in ``--check``/plan mode: nothing may change."""
        return self.options.check

    @property
    def run_id(self) -> str:
        """This run's id."""
        return self.options.run_id

    @property
    def path(self) -> str:
        """The environment's path on the host."""
        return self.env.path

    @property
    def vars(self) -> dict[str, Any]:
        """Site vars overlaid by environment vars, then by ``-e`` extra vars."""
        return {**self.site.vars_for(self.env), **self.options.extra_vars}

    @property
    def host_key(self) -> str:
        """Probe cache namespace: this site's environment on its host.

        Per site, not per host: sites run in parallel, and another site's change on a shared
        host (the usual agency server) would otherwise drop this site's reads at any moment
        (a WordPress state read costs a PHP boot). Nothing is lost by it: the order of two
        sites' steps on one host is not defined, so no read of one site was ever promised to
        see another site's change.
        """
        env = self.env
        return f"{env.connection}:{env.user}@{env.host}:{env.port}/{self.site.name}/{env.name}"

    # ---- commands ------------------------------------------------------------
    def run(self, argv: Sequence[str], **kwargs: Any) -> CommandResult:
        """Run an argument list on the host (quoted); see :meth:`Transport.run`.

        Like every command sent through the context, it may change the host: what an earlier
        :meth:`run_and_probe` read is no longer kept for verify (:attr:`primed`)."""
        self._direct("run")
        kwargs.setdefault("timeout", self.env.command_timeout)
        return self.transport.run(argv, **kwargs)

    def run_shell(self, script: str, **kwargs: Any) -> CommandResult:
        """Run an explicit shell script on the host (it drops :attr:`primed`, as :meth:`run`)."""
        self._direct("run_shell")
        kwargs.setdefault("timeout", self.env.command_timeout)
        return self.transport.run_shell(script, **kwargs)

    def run_each(self, *argvs: Sequence[str], **kwargs: Any) -> CommandResult:
        """Run several argument lists in one round trip, one after the other, stopping at the
        first that fails (each quoted, see :func:`~maintkit.transport.base.chain`)."""
        from maintkit.transport.base import chain

        return self.run_shell(chain(*argvs), **kwargs)

    def put(self, data: bytes, path: str, *, mode: int | None = None) -> None:
        """Write a file atomically on the host (it drops :attr:`primed`, as :meth:`run`)."""
        self._direct("put")
        self.transport.put(data, path, mode=mode)

    def get(self, path: str) -> bytes:
        """Read a file from the host."""
        if self.chain is not None:
            self.chain.direct(self, "get")
        return self.transport.get(path)

    def stream(self, argv: Sequence[str], sink: IO[bytes], **kwargs: Any) -> CommandResult:
        """Run an argument list and stream its stdout into ``sink`` (it drops :attr:`primed`)."""
        self._direct("stream")
        kwargs.setdefault("timeout", self.env.command_timeout)
        return self.transport.run(argv, stdout_sink=sink, **kwargs)

    def _direct(self, what: str) -> None:
        """Before a command that may change the host: the chain may refuse it; :attr:`primed` is dropped."""
        if self.chain is not None:
            self.chain.direct(self, what)
        self.primed.clear()

    # ---- probes --------------------------------------------------------------
    def probe(self, probe: Probe[T]) -> T:
        """Answer a probe from the per-run cache, running it on a miss."""
        raw = self.probe_cache.get(self.host_key, probe.key)
        if raw is None:
            from maintkit.probes import run_batch

            if self.chain is not None:
                self.chain.direct(self, "probe")
            results, _ = run_batch(self.transport, [probe], timeout=self.env.command_timeout or 600.0)
            raw = results.get(probe.key, RawOutput("", 1))
            self.probe_cache.put(self.host_key, probe.key, raw)
        return probe.parse(raw)

    def invalidate(self) -> None:
        """Drop cached probes of this host (called by the runner after apply/rollback)."""
        self.primed.clear()
        self.probe_cache.invalidate(self.host_key)

    def run_and_probe(
        self, script: str, probes: Sequence[Probe[Any]], *, stdin: bytes | None = None, timeout: float | None = None
    ) -> str:
        """Run a changing ``script`` and, in the same round trip, read ``probes`` afterwards.

        The fresh probe results are kept for :meth:`Action.verify`, which then needs no round
        trip of its own. Returns the script's stdout; raises CommandFailed when it fails.
        """
        from maintkit.errors import CommandFailed

        head, result = self.run_and_probe_result(script, probes, stdin=stdin, timeout=timeout)
        if head.startswith("__preamble_failed__"):
            raise CommandFailed(result)
        return head

    def run_and_probe_result(
        self,
        script: str,
        probes: Sequence[Probe[Any]],
        *,
        stdin: bytes | None = None,
        timeout: float | None = None,
        sudo: bool | None = None,
    ) -> tuple[str, CommandResult]:
        """:meth:`run_and_probe` without raising: the script's stdout (``__preamble_failed__:CODE``
        first when it failed, and then no probe was read) and the round trip's result, whose
        stderr is the script's.

        ``sudo`` as in :meth:`run_shell`, for the script only (the probes follow ``become``, as
        every probe read does). A script that must run without ``sudo`` on an environment with
        ``become`` runs alone, and the runner reads the probes afterwards."""
        from maintkit.probes import run_batch_result
        from maintkit.transport.base import build_command

        become = bool(getattr(self.transport, "become", False))
        if sudo is not None and sudo != become:
            if not sudo:
                res = self.run_shell(script, stdin=stdin, timeout=timeout, sudo=False, check=False)
                return (res.stdout if res.ok else f"__preamble_failed__:{res.exit_code}\n{res.stdout}"), res
            script = build_command(script=script, sudo=True, sudo_user=getattr(self.transport, "sudo_user", None))
        wanted = list({p.key: p for p in [*probes, *self.refresh]}.values())
        limit = timeout or self.env.command_timeout or 600.0
        sent = None
        if self.chain is not None and sudo is not None:
            self.chain.direct(self, "run_and_probe with sudo")
        elif self.chain is not None:
            sent = self.chain.run_and_probe(self, script, wanted, stdin, limit)
        if sent is not None:
            return sent
        raw, head, result = run_batch_result(self.transport, wanted, preamble=script, stdin=stdin, timeout=limit)
        self.keep_reads(raw)
        return head, result

    def keep_reads(self, raw: Mapping[str, RawOutput]) -> None:
        """What a change's round trip read after it: cached, and kept for verify (:attr:`primed`);
        what an earlier command read, this one may have changed."""
        self.primed.clear()
        for key, value in raw.items():
            self.probe_cache.put(self.host_key, key, value)
            self.primed.add(key)

    # ---- plan honesty --------------------------------------------------------
    def pending_step(self) -> str | None:
        """In check mode: id of the latest earlier step of this stage that would change or is unknown."""
        for res in reversed(self.prior):
            if res.status in (StepStatus.WOULD_CHANGE, StepStatus.UNKNOWN):
                return res.step
        return None

    def prior_result(self, step_id: str) -> StepResult | None:
        """The result of an earlier step of this site by id."""
        for res in reversed(self.prior):
            if res.step == step_id:
                return res
        return None

    def event(self, event: str, **fields: Any) -> None:
        """Write an extra event into the audit log (e.g. ``http.request``)."""
        if self.emit is not None:
            self.emit(event, **fields)

    def record(self, **data: Any) -> None:
        """Attach data to this step's result (written to the audit log and used by reports)."""
        self.data.update(data)

    def write_index(self, writer: Callable[..., list[Path]], data: Mapping[str, Any]) -> list[Path]:
        """Record ``data`` in the store's index for this site and environment (never in plan mode).

        ``writer`` is one of :mod:`maintkit.state.index`'s ``record_*`` functions; ``data`` is
        redacted first, and the paths written are handed to the runner to publish.
        """
        if self.check_mode:
            return []
        opts = self.options
        clean = opts.redact(dict(data)) if opts.redact is not None else dict(data)
        paths = writer(opts.history, self.site.name, self.env.name, clean)
        if opts.on_state_write is not None:
            opts.on_state_write(paths)
        return paths


#: What an action's rollback does (see :attr:`Action.rollback_kind`).
RollbackKind = Literal["undo", "noop", "none"]


class Action(Generic[P]):
    """Base class of actions. Subclass with a ``name``, a ``Params`` model and the phases."""

    name: ClassVar[str] = ""
    Params: ClassVar[type[BaseModel]] = NoParams
    summary: ClassVar[str] = ""
    #: True when check() can only be honest after earlier steps really ran (e.g. http.check
    #: after a deploy); in plan mode the runner then reports "unknown: depends on step X".
    depends_on_previous: ClassVar[bool] = False
    #: True when the action only reads (its check never asks for a change): after an earlier
    #: step's change the runner reads its probes in that change's round trip, and goes on to the
    #: next step's (see :meth:`changes_nothing`)
    check_only: ClassVar[bool] = False
    #: What rollback() does: "undo" reverses apply(); "noop" there is nothing lasting to undo
    #: (say why in ``rollback_reason``; rollback succeeds so earlier steps can roll back);
    #: "none" it cannot be undone. Unset: taken from the older ``reversible`` flag.
    rollback_kind: ClassVar[RollbackKind | None] = None
    #: One line shown by ``maint actions``: why the rollback is a no-op or impossible.
    rollback_reason: ClassVar[str] = ""
    #: Older spelling kept for plugins: True means rollback_kind "undo".
    reversible: ClassVar[bool] = False
    #: the runner may send this action's change in one round trip with the steps' changes
    #: around it (docs/architecture.md, "Changes in one round trip"). Only for an action whose
    #: check reads nothing but its probes and whose apply is a pure function of the check and
    #: of ONE :meth:`Context.run_and_probe` (no other command, no reading its output back).
    chainable: ClassVar[bool] = False

    @classmethod
    def rollback_mode(cls) -> RollbackKind:
        """This action's rollback kind: ``undo``, ``noop`` or ``none``."""
        if cls.rollback_kind is not None:
            return cls.rollback_kind
        return "undo" if cls.reversible else "none"

    def __init__(self, params: P, step_id: str | None = None) -> None:
        self.params: P = params
        self.step_id = step_id or self.name

    def probes(self, ctx: Context) -> list[Probe[Any]]:
        """Probes check() will need, fetched ahead in one batch per host. Optional."""
        return []

    def changes_nothing(self) -> bool:
        """True when this step can never change anything (default :attr:`check_only`).

        Only a hint for reading ahead: after a change, the probes of the later steps up to the
        first one that may change are read in the change's own round trip (the rest when their
        step comes). A wrong answer costs a round trip, never a stale read.
        """
        return self.check_only

    def expects_change(self, ctx: Context) -> str | None:
        """Why this step will almost surely change something, judged only from what the
        controller knows (never a read of the host); None when it cannot tell (the default).

        Only a hint for the stage's lock: a stage with such a step takes its lock in its first
        round trip (every probe read under it) instead of reading first and locking before the
        first change. Right, it saves a round trip; wrong, it costs one (the release). The
        steps' checks and changes are the same either way.
        """
        return None

    def check(self, ctx: Context) -> Check:
        """Read-only: decide whether anything would change."""
        raise NotImplementedError

    def apply(self, ctx: Context, check: Check) -> list[Change]:
        """Make the change; return what changed with what is needed to undo it."""
        raise NotImplementedError

    def verify(self, ctx: Context) -> None:
        """Confirm the change took effect. Default: a fresh check() must find nothing to do.

        The runner has dropped every cached probe of the host except those read after the
        change in the same round trip (:meth:`Context.run_and_probe`), so this reads fresh state.
        """
        again = self.check(ctx)
        if again.needed:
            raise VerifyFailed(f"still not in the desired state after apply: {again.reason}", action=self.name)

    def rollback(self, ctx: Context, changes: list[Change]) -> None:
        """Undo ``changes``. Default: not reversible."""
        raise NotReversible(f"{self.name} cannot be rolled back", action=self.name)

    @classmethod
    def change_from_record(cls, record: dict[str, Any]) -> Change | None:
        """Rebuild a :class:`Change` with its undo data from the audit log's record of it.

        Used to undo the applied steps of a run that died (a lock taken over): only
        actions whose recorded changes hold everything their rollback needs override this.
        None (the default): the record is not enough to undo the change.
        """
        return None

    def finalize(self, ctx: Context, changes: list[Change], ok: bool) -> None:
        """Called at the end of the stage when this step changed something (also after failures).

        Used for things that must never be left behind, such as maintenance mode.
        """


def monotonic_ms(start: float) -> float:
    """Milliseconds since ``start`` (a time.monotonic() value)."""
    return (time.monotonic() - start) * 1000.0
