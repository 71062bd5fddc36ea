"""The probe of a read-only command: :class:`CommandProbe` (guards such as ``unless``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from maintkit.probes.base import Probe, RawOutput
from maintkit.transport.base import join

__all__ = ["CommandProbe"]

#: first words that would change or end the batch's own shell (its options, directory, traps,
#: variables, positional parameters, open files) or are shell syntax: such a command keeps a
#: subshell of its own; any other command runs as a plain child of the batch's shell
_SHELL_WORDS = (
    ". alias bg break builtin case cd command continue declare disown do done elif else enable esac eval exec "
    "exit export fc fg fi for function getopts hash if in jobs let local logout mapfile popd pushd read "
    "readarray readonly return select set shift shopt source suspend then time trap typeset ulimit umask "
    "unalias unset until wait while { } ! [[ ]]"
)
_SHELL_STATE = frozenset(_SHELL_WORDS.split())


@dataclass(frozen=True)
class CommandProbe(Probe[RawOutput]):
    """Run an argument list read-only and return its raw output (for guards such as ``unless``)."""

    argv: tuple[str, ...]
    kind: ClassVar[str] = "cmd"

    def script(self) -> str:
        return join(self.argv)

    def inline(self) -> bool:
        first = self.argv[0] if self.argv else ""
        return bool(first) and first not in _SHELL_STATE and "=" not in first and not first.startswith("_")

    def parse(self, raw: RawOutput) -> RawOutput:
        return raw
