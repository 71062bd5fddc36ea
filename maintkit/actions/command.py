"""``command``: run a command, made idempotent by ``creates`` / ``removes`` / ``unless`` / ``onlyif`` guards."""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from maintkit._text import head, tail
from maintkit.action import Action, Context, Params
from maintkit.errors import ApplyFailed, Interrupted, NotReversible, VerifyFailed
from maintkit.probes import CommandProbe, FileState, Probe, RawOutput
from maintkit.results import Change, Check

Command = list[str] | str


class CommandParams(Params):
    """Parameters of ``command``."""

    argv: list[str] | None = Field(None, min_length=1, description="Argument list (quoted for you)")
    shell: str | None = Field(None, description="A shell script, run explicitly with sh -c (you quote)")
    creates: str | None = Field(None, description="Skip when this path exists")
    removes: str | None = Field(None, description="Skip when this path does not exist")
    unless: Command | None = Field(None, description="Skip when this command exits 0 (list = argv, str = shell)")
    onlyif: Command | None = Field(None, description="Run only when this command exits 0")
    read_only: bool = Field(False, description="The command changes nothing: run it in plan mode too, never 'changed'")
    cwd: str | None = None
    env: dict[str, str] = Field(default_factory=dict)
    sudo: bool | None = None
    timeout: float | None = Field(None, gt=0)
    ok_codes: list[int] = Field(default_factory=lambda: [0])
    undo: Command | None = Field(None, description="Command that undoes this one (makes it reversible)")

    @model_validator(mode="after")
    def _one_command(self) -> CommandParams:
        if (self.argv is None) == (self.shell is None):
            raise ValueError("give exactly one of argv and shell")
        return self


def _guard_probe(cmd: Command) -> CommandProbe:
    return CommandProbe(tuple(cmd) if isinstance(cmd, list) else ("sh", "-c", cmd))


class CommandAction(Action[CommandParams]):
    """Run a command. Without a guard it always runs (and plan mode says so)."""

    name = "command"
    Params = CommandParams
    summary = "Run a command; creates/removes/unless/onlyif guards make it idempotent."
    rollback_kind = "none"
    rollback_reason = "unless the step gives undo:, which rollback then runs"

    def probes(self, ctx: Context) -> list[Probe[Any]]:
        p = self.params
        out: list[Probe[Any]] = []
        if p.creates:
            out.append(FileState(p.creates))
        if p.removes:
            out.append(FileState(p.removes))
        if p.unless is not None:
            out.append(_guard_probe(p.unless))
        if p.onlyif is not None:
            out.append(_guard_probe(p.onlyif))
        if p.read_only and p.argv is not None and p.cwd is None and not p.env:
            out.append(CommandProbe(tuple(p.argv)))
        return out

    def changes_nothing(self) -> bool:
        """A ``read_only`` command changes nothing."""
        return self.params.read_only

    def expects_change(self, ctx: Context) -> str | None:
        """A command without a guard (and not ``read_only``) runs every time."""
        p = self.params
        if p.read_only or any(g is not None for g in (p.creates, p.removes, p.unless, p.onlyif)):
            return None
        return "always runs (no creates/removes/unless/onlyif guard)"

    def check(self, ctx: Context) -> Check:
        p = self.params
        if p.creates and ctx.probe(FileState(p.creates)).exists:
            return Check.ok(f"{p.creates} exists")
        if p.removes and not ctx.probe(FileState(p.removes)).exists:
            return Check.ok(f"{p.removes} does not exist")
        if p.unless is not None and ctx.probe(_guard_probe(p.unless)).exit_code == 0:
            return Check.ok("the unless command succeeded")
        if p.onlyif is not None and ctx.probe(_guard_probe(p.onlyif)).exit_code != 0:
            return Check.ok("the onlyif command failed")
        if p.read_only:
            return self._run_read_only(ctx)
        if not any(g is not None for g in (p.creates, p.removes, p.unless, p.onlyif)):
            return Check.change("always runs (no creates/removes/unless/onlyif guard)")
        return Check.change("guard says the command must run")

    def _run_read_only(self, ctx: Context) -> Check:
        p = self.params
        if p.argv is not None and p.cwd is None and not p.env:
            raw: RawOutput = ctx.probe(CommandProbe(tuple(p.argv)))
            code, out = raw.exit_code, raw.stdout
        else:
            res = self._execute(ctx, check=False)
            code, out = res.exit_code, res.stdout
        if code not in p.ok_codes:
            from maintkit.errors import CheckFailed

            raise CheckFailed(f"read-only command exited {code}: {tail(out, 300)}")
        return Check.ok("read-only command ran", stdout=tail(out, 2000))

    def _execute(self, ctx: Context, *, check: bool) -> Any:
        p = self.params
        kwargs: dict[str, Any] = {"cwd": p.cwd, "env": p.env or None, "sudo": p.sudo, "check": False}
        if p.timeout:
            kwargs["timeout"] = p.timeout
        res = ctx.run(p.argv, **kwargs) if p.argv is not None else ctx.run_shell(p.shell or "", **kwargs)
        if check and res.exit_code not in p.ok_codes:
            raise ApplyFailed(
                f"command exited {res.exit_code}{' (timed out)' if res.timed_out else ''}: "
                f"{tail(res.stderr or res.stdout, 500)}",
            )
        return res

    def apply(self, ctx: Context, check: Check) -> list[Change]:
        label = " ".join(self.params.argv) if self.params.argv else (self.params.shell or "").strip().split("\n")[0]
        try:
            res = self._execute(ctx, check=True)
        except Interrupted as exc:  # stopped part-way: with undo:, the stage's rollback runs it
            stopped = [Change(target=head(label, 200), summary="stopped part-way")] if self.params.undo else []
            raise ApplyFailed(str(exc), changes=stopped) from exc
        return [Change(target=head(label, 200), summary=f"ran (exit {res.exit_code})", after={"exit": res.exit_code})]

    def verify(self, ctx: Context) -> None:
        p = self.params
        if any(g is not None for g in (p.creates, p.removes, p.unless)):
            ctx.invalidate()
            again = self.check(ctx)
            if again.needed:
                raise VerifyFailed(f"the command ran but its guard still says it must run: {again.reason}")

    def rollback(self, ctx: Context, changes: list[Change]) -> None:
        undo = self.params.undo
        if undo is None:
            raise NotReversible("command has no undo command")
        res = ctx.run(undo, check=False) if isinstance(undo, list) else ctx.run_shell(undo, check=False)
        if not res.ok:
            raise ApplyFailed(f"undo command exited {res.exit_code}: {tail(res.stderr, 300)}")
