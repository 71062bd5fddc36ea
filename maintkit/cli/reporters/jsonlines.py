"""``--json``: every event as one JSON line, redacted; the last line is the result."""

from __future__ import annotations

import json
from typing import Any

import click

from maintkit.cli.redact import redact_data
from maintkit.cli.reporters.base import Reporter


class JsonReporter(Reporter):
    """Prints each event, then the result (``"event": "result"``), as JSON lines."""

    def on_event(self, record: dict[str, Any]) -> None:
        """Print one event as a JSON line."""
        with self._lock:
            click.echo(json.dumps(redact_data(record, self.redactor)))

    def finish(self, result: Any) -> None:
        """Print the result as the last JSON line; then notify."""
        click.echo(json.dumps(redact_data({"event": "result", **result.to_dict()}, self.redactor)))
        self.notify(result)


__all__ = ["JsonReporter"]
