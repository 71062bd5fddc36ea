"""``service.reload`` and ``service.restart``: reload or restart a service on the host.

How the service is driven, in this order:

1. ``systemctl reload|restart NAME`` when systemd runs on the host (``manager: auto``);
2. a configured ``command`` (an argument list), for hosts without systemd;
3. ``signal`` + ``pidfile``: send a signal to the pid in a pid file (``USR2`` reloads
   php-fpm, ``HUP`` reloads nginx);
4. ``service NAME reload|restart`` (SysV init scripts) when ``/etc/init.d/NAME`` exists.

A reload is an operation, not a state: check() always says it will run, unless
``only_if_changed`` names earlier steps and none of them changed. Rollback has nothing
to undo and succeeds; with ``again_after_rollback`` (default on) the operation runs once
more after the stage was rolled back, so the service picks up the restored files.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator

from maintkit._text import head as text_head
from maintkit._text import tail as text_tail
from maintkit.action import Action, Context, Params
from maintkit.errors import ApplyFailed, CheckFailed
from maintkit.probes import Probe
from maintkit.probes.service import InitSystem
from maintkit.results import Change, Check, CommandResult, StepStatus
from maintkit.transport.base import quote

Verb = Literal["reload", "restart"]
Manager = Literal["auto", "systemd", "command", "signal", "sysv"]

_SERVICE_NAME = re.compile(r"^[A-Za-z0-9@_.:+][A-Za-z0-9@_.:+-]{0,127}$")
_SIGNAL = re.compile(r"^(SIG)?[A-Z0-9]{2,8}$")


class ServiceParams(Params):
    """Parameters of ``service.reload`` / ``service.restart``."""

    name: str | None = Field(None, description="Service (unit) name, e.g. php8.2-fpm or nginx")
    manager: Manager = Field("auto", description="auto: systemd, else command, else signal, else SysV script")
    command: list[str] | None = Field(None, min_length=1, description="Argument list that reloads/restarts the service")
    signal: str | None = Field(None, description="Signal to send to the pid in `pidfile` (e.g. USR2, HUP)")
    pidfile: str | None = Field(None, description="Pid file of the service's master process (with `signal`)")
    test: list[str] | None = Field(
        None, min_length=1, description="Argument list that validates the configuration first (e.g. [nginx, -t])"
    )
    sudo: bool | None = Field(None, description="Run through sudo (default: the environment's `become`)")
    only_if_changed: list[str] | None = Field(
        None, description="Run only when one of these earlier step ids changed something"
    )
    again_after_rollback: bool = Field(
        True, description="Run once more after the stage was rolled back, so the service sees the restored state"
    )
    timeout: float = Field(120.0, gt=0, description="Seconds the command may take")

    @field_validator("name")
    @classmethod
    def _valid_name(cls, v: str | None) -> str | None:
        if v is not None and not _SERVICE_NAME.match(v):
            raise ValueError(f"invalid service name {v!r}")
        return v

    @field_validator("signal")
    @classmethod
    def _valid_signal(cls, v: str | None) -> str | None:
        if v is None:
            return None
        v = v.upper()
        if not _SIGNAL.match(v):
            raise ValueError(f"invalid signal {v!r} (use a name such as USR2 or HUP)")
        return v.removeprefix("SIG")

    @field_validator("pidfile")
    @classmethod
    def _absolute(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith("/"):
            raise ValueError("pidfile must be an absolute path")
        return v


@dataclass(frozen=True)
class ServiceSpec:
    """How to reach one service: shared by service.* and cache.clear's opcache target."""

    name: str | None = None
    manager: Manager = "auto"
    command: tuple[str, ...] | None = None
    signal: str | None = None
    pidfile: str | None = None
    sudo: bool | None = None
    timeout: float = 120.0

    @property
    def label(self) -> str:
        """Short name for messages and audit records."""
        if self.name:
            return self.name
        if self.pidfile:
            return f"pid in {self.pidfile}"
        return text_head(" ".join(self.command or ()), 80) or "service"


@dataclass(frozen=True)
class Operation:
    """A planned service operation: an argument list, or a shell script (signal mode), and a label."""

    label: str
    argv: tuple[str, ...] | None = None
    script: str | None = None


def plan_operation(ctx: Context, spec: ServiceSpec, verb: Verb) -> Operation:
    """Decide how to run ``verb`` on the service.

    Read-only (uses a cached probe). Raises CheckFailed when no way to drive the service is configured.
    """
    manager = spec.manager
    if manager == "auto":
        manager = _auto_manager(ctx, spec, verb)
    if manager in ("systemd", "sysv"):
        if not spec.name:
            raise CheckFailed(f"manager {manager} needs a service `name`")
        # `service` (a shell script) takes no `--`: a name never starts with "-" (_SERVICE_NAME)
        argv = ("systemctl", verb, "--", spec.name) if manager == "systemd" else ("service", spec.name, verb)
        return Operation(" ".join(a for a in argv if a != "--"), argv=argv)
    if manager == "command":
        if not spec.command:
            raise CheckFailed("manager command needs a `command` argument list")
        return Operation(" ".join(spec.command), argv=spec.command)
    if not (spec.signal and spec.pidfile):
        raise CheckFailed("manager signal needs `signal` and `pidfile`")
    return Operation(f"kill -{spec.signal} $(cat {spec.pidfile})", script=signal_script(spec.signal, spec.pidfile))


def _auto_manager(ctx: Context, spec: ServiceSpec, verb: Verb) -> Manager:
    has = ctx.probe(InitSystem(spec.name)) if spec.name else {"systemd": False, "sysv": False}
    if spec.name and has["systemd"]:
        return "systemd"
    if spec.command:
        return "command"
    if spec.signal and spec.pidfile:
        return "signal"
    if spec.name and has["sysv"]:
        return "sysv"
    raise CheckFailed(
        f"cannot {verb} {spec.label}: no systemd on the host and no `command` or `signal` + `pidfile` configured"
    )


def signal_script(signal: str, pidfile: str) -> str:
    """Shell script sending ``signal`` to the pid read from ``pidfile`` (validated as a number)."""
    p = quote(pidfile)
    return (
        f"pid=$(cat -- {p}) || exit 3\n"
        'case "$pid" in ""|*[!0-9]*) echo "no valid pid in pid file" >&2; exit 3;; esac\n'
        f'kill -{quote(signal)} "$pid"'
    )


def run_operation(ctx: Context, spec: ServiceSpec, op: Operation) -> CommandResult:
    """Run a planned operation; raise ApplyFailed (with the output tail) when it fails."""
    if op.script is not None:
        res = ctx.run_shell(op.script, sudo=spec.sudo, check=False, timeout=spec.timeout)
    else:
        res = ctx.run(list(op.argv or ()), sudo=spec.sudo, check=False, timeout=spec.timeout)
    if not res.ok:
        tail = text_tail(res.stderr or res.stdout, 400)
        raise ApplyFailed(f"{op.label} failed ({res.why}): {tail}", details={"service": spec.label})
    return res


def watched_changes(ctx: Context, step_ids: list[str]) -> tuple[bool | None, str]:
    """Did any of ``step_ids`` change? True / False / None (unknown in plan mode), with a reason."""
    pending: list[str] = []
    changed: list[str] = []
    for step_id in step_ids:
        res = ctx.prior_result(step_id)
        if res is None:
            raise CheckFailed(f"only_if_changed: no earlier step with id {step_id!r}")
        if res.status is StepStatus.CHANGED or res.status is StepStatus.WOULD_CHANGE:
            changed.append(step_id)
        elif res.status is StepStatus.UNKNOWN:
            pending.append(step_id)
    if changed:
        return True, f"step {', '.join(changed)} changed"
    if pending:
        return None, f"unknown: depends on step {pending[0]}"
    return False, f"none of {', '.join(step_ids)} changed"


class _ServiceAction(Action[ServiceParams]):
    """Common implementation of service.reload and service.restart."""

    Params = ServiceParams
    rollback_kind = "noop"
    rollback_reason = "a reload leaves no state; after a failed stage it runs again on the restored files"
    verb: ClassVar[Verb] = "reload"

    @property
    def spec(self) -> ServiceSpec:
        """The service as configured."""
        p = self.params
        return ServiceSpec(
            name=p.name,
            manager=p.manager,
            command=tuple(p.command) if p.command else None,
            signal=p.signal,
            pidfile=p.pidfile,
            sudo=p.sudo,
            timeout=p.timeout,
        )

    def probes(self, ctx: Context) -> list[Probe[Any]]:
        return [InitSystem(self.params.name)] if self.params.name else []

    def expects_change(self, ctx: Context) -> str | None:
        """A reload or restart without ``only_if_changed`` runs every time."""
        return None if self.params.only_if_changed else f"a {self.verb} always runs"

    def check(self, ctx: Context) -> Check:
        p = self.params
        if not (p.name or p.command or (p.signal and p.pidfile)):
            raise CheckFailed("give a service `name`, a `command`, or `signal` + `pidfile`")
        op = plan_operation(ctx, self.spec, self.verb)
        how = op.label
        if p.only_if_changed:
            changed, why = watched_changes(ctx, p.only_if_changed)
            if changed is None:
                pending = why.rsplit(" ", 1)[-1]
                return Check.unknown(f"{why}: would {self.verb} {self.spec.label} if it changes", depends_on=pending)
            if not changed:
                return Check.ok(f"no {self.verb} needed: {why}")
            return Check.change(f"{why}: will {self.verb} {self.spec.label} ({how})", snapshot=op)
        return Check.change(f"will {self.verb} {self.spec.label} ({how}); a {self.verb} always runs", snapshot=op)

    def apply(self, ctx: Context, check: Check) -> list[Change]:
        op: Operation = check.snapshot
        if self.params.test:
            res = ctx.run(self.params.test, sudo=self.params.sudo, check=False, timeout=self.params.timeout)
            if not res.ok:
                tail = text_tail(res.stderr or res.stdout, 400)
                raise ApplyFailed(
                    f"configuration test {' '.join(self.params.test)} failed ({res.why}); "
                    f"{self.spec.label} was not {self.verb}ed: {tail}"
                )
        run_operation(ctx, self.spec, op)
        ctx.record(service=self.spec.label, operation=self.verb, via=op.label)
        return [Change(target=self.spec.label, summary=f"{self.verb}ed", after={"via": op.label}, undo=op)]

    def verify(self, ctx: Context) -> None:
        """The command's exit status is the verification (a re-check would always say 'run again')."""

    def rollback(self, ctx: Context, changes: list[Change]) -> None:
        """Nothing to undo: a reload or restart leaves no state behind (see ``again_after_rollback``)."""

    def finalize(self, ctx: Context, changes: list[Change], ok: bool) -> None:
        """After a failed (rolled back) stage, run the operation again so the service sees the restored files."""
        if ok or not self.params.again_after_rollback or not changes:
            return
        op: Operation = changes[0].undo
        try:
            run_operation(ctx, self.spec, op)
        except ApplyFailed as exc:
            raise ApplyFailed(f"{self.verb} after rollback: {exc.message}") from None
        ctx.event("service.after_rollback", step=self.step_id, service=self.spec.label, operation=self.verb)


class ServiceReload(_ServiceAction):
    """Reload a service (systemctl reload, a command, or a signal to its master)."""

    name = "service.reload"
    summary = "Reload a service (systemctl, a command, or a signal); only_if_changed makes it conditional."
    verb = "reload"


class ServiceRestart(_ServiceAction):
    """Restart a service (systemctl restart, or a command)."""

    name = "service.restart"
    summary = "Restart a service (systemctl or a command); only_if_changed makes it conditional."
    verb = "restart"


__all__ = [
    "InitSystem",
    "Operation",
    "ServiceParams",
    "ServiceReload",
    "ServiceRestart",
    "ServiceSpec",
    "plan_operation",
    "run_operation",
    "signal_script",
    "watched_changes",
]
