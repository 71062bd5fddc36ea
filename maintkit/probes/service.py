"""Service manager facts: which ways of driving a service a host offers (:class:`InitSystem`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from maintkit.probes import Probe, RawOutput
from maintkit.transport.base import quote


@dataclass(frozen=True)
class InitSystem(Probe[dict[str, bool]]):
    """Which service managers a host offers: ``systemd`` (running), ``sysv`` script for ``name``."""

    name: str
    kind: ClassVar[str] = "initsys"

    def inline(self) -> bool:
        return True

    def script(self) -> str:
        return (
            "if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then echo systemd; fi; "
            f"if command -v service >/dev/null 2>&1 && [ -x /etc/init.d/{quote(self.name)} ]; then echo sysv; fi; true"
        )

    def parse(self, raw: RawOutput) -> dict[str, bool]:
        words = set(raw.stdout.split())
        return {"systemd": "systemd" in words, "sysv": "sysv" in words}


__all__ = ["InitSystem"]
