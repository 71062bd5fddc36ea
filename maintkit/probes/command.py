"""The probe of a read-only command: :class:`CommandProbe` (guards such as ``unless``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from maintkit.probes.base import Probe, RawOutput
from maintkit.transport.base import join

__all__ = ["CommandProbe"]


@dataclass(frozen=True)
class CommandProbe(Probe[RawOutput]):
    """Run an argument list read-only and return its raw output (for guards such as ``unless``)."""

    argv: tuple[str, ...]
    kind: ClassVar[str] = "cmd"

    def script(self) -> str:
        return join(self.argv)

    def parse(self, raw: RawOutput) -> RawOutput:
        return raw
