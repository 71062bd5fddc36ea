"""Redaction of everything ``maint`` prints: text and JSON data, with every known secret masked."""

from __future__ import annotations

import json
from typing import Any


def redact_for_output(text: str, redactor: Any = None) -> str:
    """Redact ``text`` before printing it.

    Masks every secret registered in this process (values templates rendered from
    ``secrets.*``, SecretStr values, ``redactor``'s secrets), the values of environment
    variables with sensitive names, and ``key=value`` style secrets.
    """
    from maintkit.audit import Redactor

    text = Redactor.from_environ().redact_text(text)
    return str(redactor.redact_text(text)) if redactor is not None else text


def redact_data(obj: Any, redactor: Any = None) -> Any:
    """``obj`` as plain JSON data (unknown objects become strings) with every secret masked."""
    data = json.loads(json.dumps(obj, default=str))
    if redactor is None:
        from maintkit.audit import Redactor

        redactor = Redactor.from_environ()
    return redactor.redact(data)


def redact_with(redactor: Any, text: str) -> str:
    """``text`` through ``redactor`` (or, without one, through a redactor of this process's secrets)."""
    if redactor is None:
        from maintkit.audit import Redactor

        redactor = Redactor.from_environ()
    return str(redactor.redact_text(text))
