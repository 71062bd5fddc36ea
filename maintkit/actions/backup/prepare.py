"""A new backup's folders, made in the round trip of the first command that writes into them.

The backup directory gets ``mkdir -p`` then ``chmod 700``, and the backup's own
``<dir>/<id>.partial`` gets ``mkdir -m 700`` (one that already exists is a clash, and fails).
Instead of a round trip of their own, these three commands go in front of the first script
that writes anything there (:meth:`FolderPrep.run_shell`): the script starts only after they
succeeded, and a line framed by a random marker says so (it is taken out of the output again).
When they fail, nothing of the script runs and the command fails exactly as the preparation
alone did: its own command line, exit code and stderr (:class:`~maintkit.errors.CommandFailed`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from maintkit.action import Context
from maintkit.errors import CommandFailed
from maintkit.results import CommandResult
from maintkit.transport.base import DEFAULT_TIMEOUT, chain, checked, output_marker


@dataclass
class FolderPrep:
    """The folders of one new backup: ``directory`` (0700) and ``part`` (0700, must not exist yet)."""

    ctx: Context
    directory: str
    part: str
    #: the folders were made (from here on, ``part`` is this backup's own)
    done: bool = False
    #: the error of the preparation, when it failed (raised as it is, never wrapped)
    failure: CommandFailed | None = None

    @property
    def command(self) -> str:
        """The preparation's command line (every operand quoted, after ``--``)."""
        d = self.directory
        return chain(["mkdir", "-p", "--", d], ["chmod", "700", "--", d], ["mkdir", "-m", "700", "--", self.part])

    def run_shell(self, script: str, *, check: bool = True, **kwargs: Any) -> CommandResult:
        """:meth:`Context.run_shell` of ``script``, with the preparation in front while it is pending.

        Raises the preparation's own CommandFailed when the folders could not be made (also
        with ``check=False``: the script did not run at all).
        """
        if self.done:
            return self.ctx.run_shell(script, check=check, **kwargs)
        line = f"{output_marker()} made\n"
        prefix = f"{self.command} || exit $?\necho '{line[:-1]}'\n"
        res = self.ctx.run_shell(prefix + script, check=False, **kwargs)
        res = self._settle(res, line, self._limit(kwargs))
        # what failed after the preparation is shown as the script it was
        return checked(replace(res, command=res.command.replace(prefix, "", 1)), self._limit(kwargs), check)

    def ensure(self) -> None:
        """Make the folders in a round trip of their own, when no command has made them yet."""
        if not self.done:
            self.run_shell("true")

    def _limit(self, kwargs: dict[str, Any]) -> float:
        return float(kwargs.get("timeout") or self.ctx.env.command_timeout or DEFAULT_TIMEOUT)

    def _settle(self, res: CommandResult, line: str, limit: float) -> CommandResult:
        """``res`` without the preparation's line; the preparation's error when that line is missing."""
        head, found, rest = res.stdout.partition(line)
        if found and not head:
            self.done = True
            raw = res.stdout_bytes
            cut = raw[len(line) :] if raw is not None and raw.startswith(line.encode()) else raw
            return replace(res, stdout=rest, stdout_bytes=cut)
        alone = replace(res, command=self.command)
        try:
            checked(alone, limit, True)
        except CommandFailed as exc:
            self.failure = exc
        else:  # it exited 0, yet never said the folders were made
            self.failure = CommandFailed(alone)
        raise self.failure


__all__ = ["FolderPrep"]
