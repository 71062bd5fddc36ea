"""The release layout on the host: its paths, the releases log, and the atomic switch of ``current``.

Layout (``P`` is the environment's path)::

    P/releases/<UTC time>-<sha7>/   one directory per release, with .maint-release.json once complete
    P/shared/                       files and directories linked into every release
    P/current -> releases/<name>    switched atomically (new symlink, then mv -T)
    P/.maint/releases.jsonl         the releases log: one JSON object per line
    P/.maint/repo                   cached bare clone (transfer: clone)
"""

from __future__ import annotations

import contextlib
import json
import posixpath
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from maintkit.action import Context
from maintkit.actions.deploy.host import label, output_tail, run_command
from maintkit.actions.deploy.params import Command
from maintkit.actions.file import switch_symlink
from maintkit.errors import ApplyFailed, CheckFailed, MaintkitError
from maintkit.identity import actor_name
from maintkit.probes.deploy import LOG, DeployState, ReleaseLayout
from maintkit.results import Change
from maintkit.transport.base import quote

HOST_CACHE = ".maint/repo"


class Paths:
    """Absolute paths of one environment's layout."""

    def __init__(self, root: str) -> None:
        self.root = root.rstrip("/") or "/"
        self.releases = posixpath.join(self.root, "releases")
        self.shared = posixpath.join(self.root, "shared")
        self.current = posixpath.join(self.root, "current")
        self.meta = posixpath.join(self.root, ".maint")
        self.log = posixpath.join(self.root, LOG)
        self.cache = posixpath.join(self.root, HOST_CACHE)

    def release(self, name: str) -> str:
        """The directory of release ``name``."""
        return posixpath.join(self.releases, name)


def now() -> datetime:
    """The current UTC time (release names, markers, log entries)."""
    return datetime.now(UTC)


def _read_text(ctx: Context, path: str) -> str:
    res = ctx.run_shell(f"if [ -f {quote(path)} ]; then cat -- {quote(path)}; fi", check=False)
    if not res.ok:
        raise ApplyFailed(f"cannot read {path}: {output_tail(res)}")
    return res.stdout


def append_log(ctx: Context, entries: Sequence[dict[str, Any]]) -> None:
    """Append entries to ``<path>/.maint/releases.jsonl`` (rewritten atomically, mode 0600)."""
    paths = Paths(ctx.path)
    ctx.run(["mkdir", "-p", "--", paths.meta])
    old = _read_text(ctx, paths.log)
    if old and not old.endswith("\n"):
        old += "\n"
    lines = "".join(json.dumps(e, sort_keys=True, separators=(",", ":")) + "\n" for e in entries)
    ctx.put((old + lines).encode(), paths.log, mode=0o600)


def entry(ctx: Context, status: str, release: str, commit: str | None, **extra: Any) -> dict[str, Any]:
    """One releases-log entry, stamped with the time, the actor and the run."""
    return {
        "time": now().isoformat(timespec="seconds"),
        "status": status,
        "release": release,
        "commit": commit,
        "actor": actor_name(),
        "run_id": ctx.run_id,
        **{k: v for k, v in extra.items() if v is not None},
    }


def log_after_switch(ctx: Context, entries: list[dict[str, Any]], change: Change, what: str) -> None:
    """Append ``entries`` to the releases log once ``current`` was switched; a failure raises
    ApplyFailed carrying ``change``, so the runner knows to switch it back."""
    try:
        append_log(ctx, entries)
    except MaintkitError as exc:
        raise ApplyFailed(
            f"{what}, but writing {LOG} failed: {exc}", details={"switched": True}, changes=[change]
        ) from exc


@contextlib.contextmanager
def carrying(changes: list[Change], what: str) -> Iterator[None]:
    """Work done after ``changes`` (a switch of ``current``): a failure in it carries them.

    The runner then undoes them. An ApplyFailed without changes gets them; any other
    maintkit error becomes ``ApplyFailed("<what>, but <error>")`` with them.
    """
    try:
        yield
    except ApplyFailed as exc:
        if not exc.changes:
            exc.changes = list(changes)
        raise
    except MaintkitError as exc:
        raise ApplyFailed(f"{what}, but {exc}", details={"switched": True}, changes=list(changes)) from exc


def switch_current(ctx: Context, target_release: str | None, raw_target: str | None = None) -> None:
    """Point ``current`` at ``releases/<name>`` atomically (or at ``raw_target``; None removes it)."""
    paths = Paths(ctx.path)
    if target_release is None and raw_target is None:
        res = ctx.run(["rm", "-f", "--", paths.current], check=False)
        if not res.ok:
            raise ApplyFailed(f"cannot remove {paths.current}: {output_tail(res)}")
        return
    switch_symlink(ctx, paths.current, raw_target or f"releases/{target_release}")


def run_after_switch(ctx: Context, commands: Sequence[Command]) -> list[str]:
    """Run the after-switch commands in ``<path>/current``; return the failures (label: output)."""
    failures = []
    for cmd in commands:
        res = run_command(ctx, cmd, cwd=Paths(ctx.path).current)
        if not res.ok:
            failures.append(f"{label(cmd)}: exit {res.exit_code}: {output_tail(res)}")
    return failures


def fresh_state(ctx: Context) -> DeployState:
    """The release layout read now (the probe cache of the host is dropped first)."""
    ctx.invalidate()
    return ctx.probe(ReleaseLayout(ctx.path))


def check_layout(state: DeployState, path: str) -> None:
    """CheckFailed when ``current`` exists but is no symlink (maintkit never replaces such a thing)."""
    if state.current_kind == "other":
        raise CheckFailed(
            f"{path}/current exists and is not a symlink: move it away (e.g. into {path}/releases/) first"
        )


__all__ = [
    "HOST_CACHE",
    "Paths",
    "append_log",
    "carrying",
    "check_layout",
    "entry",
    "fresh_state",
    "log_after_switch",
    "now",
    "run_after_switch",
    "switch_current",
]
