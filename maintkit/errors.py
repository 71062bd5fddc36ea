"""The maintkit exception tree.

::

    MaintkitError
    ├── ConfigError(file, line, field)
    │   ├── PlaybookError
    │   └── InventoryError
    ├── RegistryError
    │   ├── UnknownAction
    │   └── DuplicateAction
    ├── TransportError(host)
    │   ├── HostUnreachable
    │   │   └── ConnectionLost
    │   ├── HostKeyError
    │   └── CommandFailed(result)
    ├── ActionError(action, phase, site, env)
    │   ├── CheckFailed
    │   ├── ApplyFailed
    │   ├── VerifyFailed
    │   └── NotReversible
    ├── RollbackFailed
    ├── LockHeld(holder)
    ├── Interrupted
    └── StateError

Library exceptions (paramiko, fabric, invoke, requests...) are translated into
these at the boundary where they enter maintkit, so callers only ever need to
catch :class:`MaintkitError` subclasses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from maintkit._text import redact_text, tail

if TYPE_CHECKING:
    from maintkit.results import Change, CommandResult


class MaintkitError(Exception):
    """Base class of every error maintkit raises on purpose."""


@dataclass(frozen=True)
class Problem:
    """One problem in a configuration file: where it is and what is wrong."""

    file: str
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        field = f" {self.field}:" if self.field else ""
        return f"{where}:{field} {self.message}"


class ConfigError(MaintkitError):
    """Invalid user input (playbook, inventory, CLI flags). Nothing has run.

    Carries one or more :class:`Problem` entries, each naming file, line and field.
    """

    def __init__(self, problems: list[Problem] | Problem | str) -> None:
        if isinstance(problems, str):
            problems = [Problem("<input>", None, "", problems)]
        elif isinstance(problems, Problem):
            problems = [problems]
        self.problems: list[Problem] = problems
        super().__init__("\n".join(str(p) for p in problems))

    @property
    def file(self) -> str:
        """File of the first problem."""
        return self.problems[0].file

    @property
    def line(self) -> int | None:
        """Line of the first problem."""
        return self.problems[0].line

    @property
    def field(self) -> str:
        """Field path of the first problem."""
        return self.problems[0].field


class PlaybookError(ConfigError):
    """A playbook is invalid."""


class InventoryError(ConfigError):
    """An inventory is invalid."""


class RegistryError(MaintkitError):
    """Problem with the action registry."""


class UnknownAction(RegistryError):
    """No action is registered under that name."""


class DuplicateAction(RegistryError):
    """Two different actions claim one name."""


class TransportError(MaintkitError):
    """Talking to a host failed."""

    def __init__(self, host: str, message: str) -> None:
        self.host = host
        super().__init__(f"{host}: {message}")


class HostUnreachable(TransportError):
    """The host cannot be reached (refused, timed out, name not resolved, cut)."""


class ConnectionLost(HostUnreachable):
    """An open connection stopped answering keepalives (network cut, host gone).

    The message reads ``connection to HOST lost (no reply to keepalive for N s) ...``.
    """


class HostKeyError(TransportError):
    """The host key is unknown or changed and the policy refuses it."""


class CommandFailed(TransportError):
    """A command exited non-zero (or timed out); ``result`` holds what it did."""

    def __init__(self, result: CommandResult, message: str | None = None) -> None:
        self.result = result
        msg = redact_text(message or f"command failed with exit {result.exit_code}: {result.command}")
        output = tail(result.stderr or result.stdout, 400)
        if output and message is None:
            msg += f"\n{output}"
        super().__init__(result.host, msg)


class ActionError(MaintkitError):
    """An action failed in one of its phases."""

    phase = "action"

    def __init__(
        self,
        message: str,
        *,
        action: str = "",
        site: str = "",
        env: str = "",
        details: dict[str, Any] | None = None,
        changes: list[Change] | None = None,
    ) -> None:
        self.message = message
        self.action = action
        self.site = site
        self.env = env
        self.details = details or {}
        #: what the action had already changed when it failed (the runner rolls these back)
        self.changes: list[Change] = list(changes or [])
        super().__init__(message)


class CheckFailed(ActionError):
    """The read-only check could not determine the state, or found a blocking problem."""

    phase = "check"


class ApplyFailed(ActionError):
    """Applying the change failed."""

    phase = "apply"


class VerifyFailed(ActionError):
    """After applying, the state is not what the action promised."""

    phase = "verify"


class NotReversible(ActionError):
    """The action cannot undo what it did."""

    phase = "rollback"


class RollbackFailed(MaintkitError):
    """Undoing a change failed; the site needs a human."""


class LockHeld(MaintkitError):
    """Another run holds the site lock."""

    def __init__(self, message: str, holder: dict[str, Any] | None = None, stale: bool = False) -> None:
        self.holder = holder or {}
        self.stale = stale
        super().__init__(message)


class Interrupted(MaintkitError):
    """The run was interrupted (Ctrl-C or SIGTERM)."""


class StateError(MaintkitError):
    """The state store could not be read or written (the message names no credential)."""
