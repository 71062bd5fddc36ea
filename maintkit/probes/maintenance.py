"""Facts for maintenance mode: which paths exist (:class:`ExistingPaths`) and who switched
maintenance on, next to who holds the environment's lock (:class:`OwnershipProbe`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, ClassVar

from maintkit.probes import Probe, RawOutput
from maintkit.transport.base import quote


@dataclass(frozen=True)
class ExistingPaths(Probe[frozenset[str]]):
    """Which of ``paths`` exist on the host (following symlinks)."""

    paths: tuple[str, ...]
    kind: ClassVar[str] = "exists"

    def inline(self) -> bool:
        return True

    def script(self) -> str:
        # the index of each existing path is printed, never the name (any byte may be in a name)
        quoted = " ".join(quote(p) for p in self.paths)
        return f'i=0; for p in {quoted}; do if [ -e "$p" ]; then printf "%s\\n" "$i"; fi; i=$((i+1)); done; true'

    def parse(self, raw: RawOutput) -> frozenset[str]:
        found = {int(w) for w in raw.stdout.split() if w.isdigit()}
        return frozenset(p for i, p in enumerate(self.paths) if i in found)


@dataclass(frozen=True)
class Ownership:
    """The maintenance owner record (empty when none) and the run id holding the lock now."""

    owner: dict[str, Any]
    lock_run_id: str


def json_record(text: str) -> dict[str, Any]:
    """The record in ``text``: its first line that starts with ``{``, as a JSON object; empty when there is none.

    Owner records and lock holder records are both written as one JSON line.
    """
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                data = json.loads(line)
            except json.JSONDecodeError:
                return {}
            return data if isinstance(data, dict) else {}
    return {}


@dataclass(frozen=True)
class OwnershipProbe(Probe[Ownership]):
    """Read the maintenance owner record and the lock holder record of an environment in one go.

    ``owner_file`` is the environment's ``.maint/maintenance.json``, ``holder_file`` the
    ``holder.json`` in its lock directory (see ``maintkit.actions.maintenance.ownership_probe``).
    """

    owner_file: str
    holder_file: str
    kind: ClassVar[str] = "maintenance-owner"

    def inline(self) -> bool:
        return True

    def script(self) -> str:
        owner, holder = quote(self.owner_file), quote(self.holder_file)
        return f"cat -- {owner} 2>/dev/null; printf '\\n@@lock\\n'; cat -- {holder} 2>/dev/null; true"

    def parse(self, raw: RawOutput) -> Ownership:
        owner, _, holder = raw.stdout.partition("\n@@lock\n")
        return Ownership(json_record(owner), str(json_record(holder).get("run_id", "")))

    def unchanged(self, before: RawOutput, after: RawOutput) -> bool:
        """The same maintenance owner (the lock's holder, under the run's own lock, is this run)."""
        return before.stdout.partition("\n@@lock\n")[0] == after.stdout.partition("\n@@lock\n")[0]


__all__ = ["ExistingPaths", "Ownership", "OwnershipProbe", "json_record"]
