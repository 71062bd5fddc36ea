"""``maint daemon`` for the harnesses: started once (untimed), its last run's resources, stopped.

A run handed to the daemon is a fork of the daemon, not a child of the harness: the harness's
own RSS figure is then the caller's (about 24 MB). The daemon's status tells the run's real
peak RSS (``last_run.max_rss_mb``, pages shared with the daemon included, as ``ps`` counts
them); its CPU is counted by :func:`common.adopted_cpu` (the daemon's reaped children), once
the harness has become a subreaper before starting it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def maint_exe() -> str:
    """The ``maint`` console script beside this interpreter (else the one on PATH)."""
    exe = Path(sys.executable).with_name("maint")
    return str(exe) if exe.exists() else "maint"


@dataclass
class MaintDaemon:
    """One ``maint daemon`` of this installation, with ``--idle 0``."""

    pid: int = 0

    def status(self) -> dict[str, Any]:
        """``maint daemon status --json``."""
        out = subprocess.run([maint_exe(), "daemon", "status", "--json"], check=True, capture_output=True, text=True)
        answer: dict[str, Any] = json.loads(out.stdout)
        return answer

    def start(self) -> None:
        """Start it once: later calls find it running (its pid is alive)."""
        if self.pid and Path(f"/proc/{self.pid}").exists():
            return
        subprocess.run([maint_exe(), "daemon", "start", "--idle", "0"], check=True, capture_output=True)
        self.pid = int(self.status()["pid"])

    def last_run_rss_mb(self) -> float:
        """The peak RSS of the last run it served, in MB (0 when it served none)."""
        last = self.status().get("last_run") or {}
        return float(last.get("max_rss_mb") or 0.0)

    def stop(self) -> None:
        """``maint daemon stop`` (it waits until the daemon is gone)."""
        subprocess.run([maint_exe(), "daemon", "stop"], check=True, capture_output=True)
        self.pid = 0
