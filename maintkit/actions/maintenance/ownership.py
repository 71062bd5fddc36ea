"""Who switched maintenance on: the owner record ``<path>/.maint/maintenance.json``.

``maintenance.enable`` writes it before any marker is on, so maintenance left on by a killed
run is always owned; the next run (or ``maint unlock``) finds the record of a run that is
known to be gone (:func:`maintkit.locks.liveness`) and takes its markers over or switches
them off.
"""

from __future__ import annotations

import json
import posixpath
from dataclasses import dataclass
from typing import Any

from maintkit import locks
from maintkit._text import tail
from maintkit.action import Context
from maintkit.actions.maintenance.markers import MaintenanceParams, Marker, switch_off
from maintkit.errors import ApplyFailed
from maintkit.probes.maintenance import Ownership, OwnershipProbe
from maintkit.transport.base import quote

OWNER_FILE = ".maint/maintenance.json"


def owner_path(env_path: str) -> str:
    """Where the run that switched maintenance on is recorded."""
    return f"{env_path.rstrip('/')}/{OWNER_FILE}"


def ownership_probe(env_path: str) -> OwnershipProbe:
    """The probe reading the owner record and the lock holder of the environment at ``env_path``."""
    return OwnershipProbe(owner_path(env_path), locks.lock_dir(env_path) + "/holder.json")


@dataclass(frozen=True)
class Leftover:
    """Maintenance switched on by a run that is gone: its run id and why it is known gone."""

    run_id: str
    why: str
    record: dict[str, Any]


def find_leftover(ctx: Context, ownership: Ownership | None = None) -> Leftover | None:
    """The owner record of a gone run (not this run, not kept on purpose), if there is one."""
    own = ownership if ownership is not None else ctx.probe(ownership_probe(ctx.path))
    rec = own.owner
    if not rec or rec.get("run_id") == ctx.run_id or rec.get("kept"):
        return None
    state = locks.liveness(rec, ctx.options.history, lock_run_id=own.lock_run_id)
    return Leftover(str(rec.get("run_id", "?")), state.why, rec) if state.dead else None


def write_owner(ctx: Context, p: MaintenanceParams, markers: list[Marker], kept: bool = False) -> None:
    """Record this run as the owner of ``markers`` (``kept``: left on on purpose)."""
    record = locks.owner_record(
        ctx.run_id, step=ctx.step_id, kept=kept, markers=[[m.kind, m.path, m.root] for m in markers]
    )
    target = owner_path(ctx.path)
    tmp = f"{target}.{ctx.run_id}.tmp"
    script = (
        f"mkdir -p -- {quote(posixpath.dirname(target))} && "
        f"printf '%s\\n' {quote(json.dumps(record))} > {quote(tmp)} && mv -f -- {quote(tmp)} {quote(target)}"
    )
    res = ctx.run_shell(script, sudo=p.sudo, check=False)
    if not res.ok:
        raise ApplyFailed(f"cannot record the maintenance owner in {target}: {tail(res.stderr or res.stdout, 300)}")


def drop_owner(ctx: Context, p: MaintenanceParams, run_id: str | None) -> None:
    """Remove the owner record (only while ``run_id`` owns it, when given)."""
    target = quote(owner_path(ctx.path))
    guard = f"grep -qF -- {quote(run_id)} {target} 2>/dev/null && " if run_id else ""
    ctx.run_shell(f"{guard}rm -f -- {target}; true", sudo=p.sudo, check=False)


def recorded_markers(record: dict[str, Any]) -> list[Marker]:
    """The markers an owner record lists."""
    out: list[Marker] = []
    for item in record.get("markers") or []:
        if isinstance(item, list) and len(item) == 3 and item[0] in ("flag", "wordpress", "magento", "laravel"):
            out.append(Marker(item[0], str(item[1]), str(item[2])))
    return out


def switch_off_leftover(ctx: Context, leftover: Leftover) -> list[str]:
    """Switch off the markers a gone run left on and drop its record; the paths switched off."""
    p = MaintenanceParams.model_validate({})
    done: list[str] = []
    for marker in recorded_markers(leftover.record):
        switch_off(ctx, marker, p)
        done.append(marker.path)
    drop_owner(ctx, p, leftover.run_id)
    return done


__all__ = [
    "OWNER_FILE",
    "Leftover",
    "drop_owner",
    "find_leftover",
    "owner_path",
    "ownership_probe",
    "recorded_markers",
    "switch_off_leftover",
    "write_owner",
]
