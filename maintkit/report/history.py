"""What the state store's index adds to a report: every certificate check of the period.

The run folders say what a period's runs saw; ``index/<site>/<env>/certs.jsonl`` (written by
``ssl.check`` and ``ssl.renew``, see :mod:`maintkit.state.index`) keeps each check in one
small file per environment, wherever the run that made it ran.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from maintkit.report.model import CertCheck
from maintkit.report.reading import as_float, as_text, parse_ts
from maintkit.state import index

__all__ = ["cert_history"]


def _name(rec: Mapping[str, Any]) -> str:
    names = rec.get("names")
    first = names[0] if isinstance(names, list) and names else None
    return as_text(rec.get("server_name") or first or rec.get("cert_name") or rec.get("subject")) or "certificate"


def cert_history(root: Path, site: str, start: datetime, end: datetime) -> list[CertCheck]:
    """The certificate checks and renewals the index holds for ``site`` in ``[start, end)``, oldest first."""
    try:
        envs = index.environments(root, site)
    except ValueError:  # a name the index cannot hold: nothing was recorded
        return []
    out: list[CertCheck] = []
    for env in envs:
        for rec in index.certs(root, site, env):
            when = parse_ts(rec.get("ts"))
            if when is None or not (start <= when < end):
                continue
            problems = rec.get("problems")
            out.append(
                CertCheck(
                    when=when,
                    env=env,
                    name=_name(rec),
                    event=as_text(rec.get("event")) or "checked",
                    serial=as_text(rec.get("serial")),
                    not_after=parse_ts(rec.get("not_after")),
                    days_left=as_float(rec.get("days_left")),
                    run_id=as_text(rec.get("run_id")),
                    problems="; ".join(str(p) for p in problems) if isinstance(problems, list) else "",
                )
            )
    out.sort(key=lambda c: (c.when, c.env, c.name))
    return out
