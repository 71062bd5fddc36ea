"""maintkit: idempotent, audited maintenance of online shops over SSH.

Library use::

    from maintkit import load_inventory, load_playbook, Runner

    result = Runner(load_playbook("monthly-update"), load_inventory("inventory.yml")).run()
    for site in result.sites:
        print(site.site, site.status.value, site.changed)

Names are imported lazily so that ``import maintkit`` (and ``maint --help``) stay fast.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "Action": "maintkit.action",
    "Context": "maintkit.action",
    "Params": "maintkit.action",
    "NoParams": "maintkit.action",
    "Check": "maintkit.results",
    "Change": "maintkit.results",
    "CommandResult": "maintkit.results",
    "StepResult": "maintkit.results",
    "SiteResult": "maintkit.results",
    "RunResult": "maintkit.results",
    "StepStatus": "maintkit.results",
    "SiteStatus": "maintkit.results",
    "Inventory": "maintkit.inventory",
    "Site": "maintkit.inventory",
    "Environment": "maintkit.inventory",
    "load_inventory": "maintkit.inventory",
    "Playbook": "maintkit.playbook",
    "Stage": "maintkit.playbook",
    "Step": "maintkit.playbook",
    "load_playbook": "maintkit.playbook",
    "playbook_from_text": "maintkit.playbook",
    "Registry": "maintkit.registry",
    "default_registry": "maintkit.registry",
    "Runner": "maintkit.runner",
    "run_playbook": "maintkit.runner",
    "Transport": "maintkit.transport.base",
    "verify_run": "maintkit.audit",
    "MaintkitError": "maintkit.errors",
    "ConfigError": "maintkit.errors",
    "PlaybookError": "maintkit.errors",
    "InventoryError": "maintkit.errors",
    "TransportError": "maintkit.errors",
    "HostUnreachable": "maintkit.errors",
    "HostKeyError": "maintkit.errors",
    "CommandFailed": "maintkit.errors",
    "ActionError": "maintkit.errors",
    "LockHeld": "maintkit.errors",
}

__all__ = [
    "Action",
    "ActionError",
    "Change",
    "Check",
    "CommandFailed",
    "CommandResult",
    "ConfigError",
    "Context",
    "Environment",
    "HostKeyError",
    "HostUnreachable",
    "Inventory",
    "InventoryError",
    "LockHeld",
    "MaintkitError",
    "NoParams",
    "Params",
    "Playbook",
    "PlaybookError",
    "Registry",
    "RunResult",
    "Runner",
    "Site",
    "SiteResult",
    "SiteStatus",
    "Stage",
    "Step",
    "StepResult",
    "StepStatus",
    "Transport",
    "TransportError",
    "default_registry",
    "load_inventory",
    "load_playbook",
    "playbook_from_text",
    "run_playbook",
    "verify_run",
]

if TYPE_CHECKING:  # pragma: no cover
    from maintkit.action import Action, Context, NoParams, Params
    from maintkit.audit import verify_run
    from maintkit.errors import (
        ActionError,
        CommandFailed,
        ConfigError,
        HostKeyError,
        HostUnreachable,
        InventoryError,
        LockHeld,
        MaintkitError,
        PlaybookError,
        TransportError,
    )
    from maintkit.inventory import Environment, Inventory, Site, load_inventory
    from maintkit.playbook import Playbook, Stage, Step, load_playbook, playbook_from_text
    from maintkit.registry import Registry, default_registry
    from maintkit.results import Change, Check, CommandResult, RunResult, SiteResult, SiteStatus, StepResult, StepStatus
    from maintkit.runner import Runner, run_playbook
    from maintkit.transport.base import Transport


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'maintkit' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
