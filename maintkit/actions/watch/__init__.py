"""The watch family: read-only actions run on a schedule by the ``health`` playbook.

``host.health`` (disk, load, memory, php-fpm, database), ``logs.scan`` (access and PHP error
logs since the last scan), ``integrity.check`` (core, plugin and package files against known
checksums), ``admins.audit`` (administrators against a baseline), ``vuln.check`` (known
vulnerabilities) and ``malware.scan`` (ClamAV, optionally YARA). Each one records what it saw,
appends a point to its series in the state store (:mod:`maintkit.actions.watch.common`, the
contract in ``docs/health.md``) and fails its step when a threshold is crossed or a finding
exists. None of them changes anything (``rollback_kind = "noop"``).

Modules: ``common`` (series names, :func:`write_point`), one module per action. The action
classes are imported lazily (``from maintkit.actions.watch import HostHealth``), so importing
the package costs nothing and a module can be added without touching the others.
"""

from __future__ import annotations

import importlib
from typing import Any

from maintkit.actions.watch.common import (
    ADMINS_BASELINE,
    FINDINGS,
    HEALTH,
    HOST,
    HTTP,
    INCIDENTS,
    LOGS,
    LOGS_OFFSETS,
    findings_point,
    last_point,
    write_point,
)

#: action class name -> module of this package that defines it
_LAZY = {
    "HostHealth": "host",
    "LogsScan": "logs",
    "IntegrityCheck": "integrity",
    "AdminsAudit": "admins",
    "VulnCheck": "vuln",
    "MalwareScan": "malware",
}


def __getattr__(name: str) -> Any:
    """Import an action class on first use."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


__all__ = [
    "ADMINS_BASELINE",
    "FINDINGS",
    "HEALTH",
    "HOST",
    "HTTP",
    "INCIDENTS",
    "LOGS",
    "LOGS_OFFSETS",
    "findings_point",
    "last_point",
    "write_point",
]
