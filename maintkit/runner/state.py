"""What every site, stage and step of one run shares."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from maintkit.action import RunOptions
from maintkit.caches import ProbeCache
from maintkit.playbook import Playbook
from maintkit.runner.events import Events
from maintkit.runner.lease import Heartbeat
from maintkit.runner.publish import Publisher
from maintkit.runner.signals import Interrupts
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
    #: what SIGINT/SIGTERM do: the stop flag, the cancel token of the steps' commands, who does what
    interrupts: Interrupts = field(init=False, repr=False)
    #: renews the lease of every site lock the run holds (runner/lease.py)
    leases: Heartbeat = field(default_factory=Heartbeat)
    #: publishes the run folder and index files to the state store (None: nothing to publish)
    publisher: Publisher | None = None
    #: files written under the store's root since the last publish request (index records)
    written: set[Path] = field(default_factory=set)
    #: the fingerprints of the stages that finished without a failure, per (site, env): the index keeps them
    settled: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    _written_lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.interrupts = Interrupts(self.stop, self.emit)

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

    @property
    def history_dir(self) -> Path:
        """The state store's root: run folders and the index."""
        return self.options.history

    def note_written(self, paths: Sequence[Path]) -> None:
        """Remember files written under the store's root, for the next publish."""
        with self._written_lock:
            self.written.update(paths)

    def take_written(self) -> list[Path]:
        """The files noted since the last call (and forget them)."""
        with self._written_lock:
            out, self.written = sorted(self.written), set()
        return out

    def publish(self, message: str) -> None:
        """Ask for the run folder and the files written so far to be published (coalesced, in the background)."""
        if self.publisher is not None and self.options.run_dir is not None:
            self.publisher.request([self.options.run_dir, *self.take_written()], message)

    def emit(self, event: str, **fields: Any) -> dict[str, Any]:
        """Record one event (see :meth:`Events.emit`)."""
        return self.events.emit(event, **fields)


__all__ = ["RunState"]
