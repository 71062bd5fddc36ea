"""The run's event stream: every event goes to the audit log (once it is open) and to ``on_event``."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from maintkit.audit import AuditLog, Redactor

EventSink = Callable[[dict[str, Any]], None]


class Events:
    """Writes the run's events: redacted, into the audit log, then to the caller's callback."""

    def __init__(self, run_id: str, redactor: Redactor, on_event: EventSink | None = None) -> None:
        self.run_id = run_id
        self.redactor = redactor
        self.on_event = on_event
        #: the run's audit log, set when the run folder opens (before that, events are only shown)
        self.audit: AuditLog | None = None

    def emit(self, event: str, **fields: Any) -> dict[str, Any]:
        """Record ``event`` with ``fields``; the record as written (redacted)."""
        record: dict[str, Any]
        if self.audit is not None:
            record = self.audit.event(event, **fields)
        else:
            record = self.redactor.redact({"event": event, "run_id": self.run_id, **fields})
        if self.on_event is not None:
            with contextlib.suppress(Exception):  # a display problem must not break a run
                self.on_event(record)
        return record


__all__ = ["EventSink", "Events"]
