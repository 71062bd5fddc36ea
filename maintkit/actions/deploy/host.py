"""Commands on the deploy host: build and after-switch commands, removing release directories."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

from maintkit._text import head, tail
from maintkit.action import Context
from maintkit.actions.deploy.params import Command
from maintkit.errors import ApplyFailed, MaintkitError
from maintkit.results import CommandResult


def output_tail(res: CommandResult) -> str:
    """The end of what a command said (stderr, else stdout), for error messages."""
    return tail(res.stderr.strip() or res.stdout, 500)


def run_command(ctx: Context, cmd: Command, *, cwd: str | None = None, **kwargs: Any) -> CommandResult:
    """Run a build or after-switch command: an argument list (quoted) or, explicitly, a shell script."""
    if isinstance(cmd, list):
        return ctx.run(cmd, cwd=cwd, check=False, **kwargs)
    return ctx.run_shell(cmd, cwd=cwd, check=False, **kwargs)


def label(cmd: Command) -> str:
    """A command as one short line, for messages."""
    text = " ".join(cmd) if isinstance(cmd, list) else cmd.strip().splitlines()[0]
    return head(text, 120)


def remove_dirs(ctx: Context, paths: Sequence[str]) -> None:
    """``rm -rf`` exactly these (release) directories; ApplyFailed when that fails."""
    if paths:
        res = ctx.run(["rm", "-rf", "--", *paths], check=False)
        if not res.ok:
            raise ApplyFailed(f"cannot remove {', '.join(paths)}: {output_tail(res)}")


def discard(ctx: Context, rdir: str) -> None:
    """Remove a half-built release; a failure here must not hide why the deploy failed."""
    with contextlib.suppress(MaintkitError):  # the next run removes it (no completion marker)
        ctx.run(["rm", "-rf", "--", rdir], check=False)


def stop_requested(ctx: Context) -> bool:
    """True when the run was asked to stop (SIGINT/SIGTERM) and the context can tell.

    Used to abandon a release before the switch instead of switching and rolling back. The
    runner exposes it as ``Context.stop_requested`` (a callable); without it this is False.
    """
    probe = getattr(ctx, "stop_requested", None)
    return bool(probe()) if callable(probe) else False


__all__ = ["discard", "label", "output_tail", "remove_dirs", "run_command", "stop_requested"]
