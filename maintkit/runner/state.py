"""What every site, stage and step of one run shares."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from maintkit.action import ProbeCache, RunOptions
from maintkit.playbook import Playbook
from maintkit.runner.events import Events
from maintkit.transport.factory import TransportPool


@dataclass
class RunState:
    """The shared state of one run: options, connections, probe cache, events and stop flags."""

    playbook: Playbook
    options: RunOptions
    pool: TransportPool
    probe_cache: ProbeCache
    events: Events
    #: who runs this (``actor@controller``), for lock holders, the audit log and the summary
    actor: str
    #: set by Ctrl-C/SIGTERM (or :meth:`Runner.request_stop`): stop after the current step
    stop: threading.Event = field(default_factory=threading.Event)
    #: set by a failed canary or ``max_fail_percentage``: start no further sites
    halt: threading.Event = field(default_factory=threading.Event)

    @property
    def check(self) -> bool:
        """True in plan mode: nothing may change, no lock is taken."""
        return self.options.check

    @property
    def run_id(self) -> str:
        """This run's id."""
        return self.options.run_id

    @property
    def state_dir(self) -> Path:
        """The state directory holding the run folders."""
        return self.options.state_dir

    def emit(self, event: str, **fields: Any) -> dict[str, Any]:
        """Record one event (see :meth:`Events.emit`)."""
        return self.events.emit(event, **fields)


__all__ = ["RunState"]
