"""Alerts: an incident that opened (``down``) or closed (``recovered``), sent through the notifications.

A playbook's ``notify:`` entries with ``alert`` in ``on`` receive them (webhook JSON or apprise
URLs, exactly as run notifications, see :mod:`maintkit.notify`)::

    notify:
      - url: "{{ secrets.get('MAINT_ALERT_URL') or '' }}"
        on: [alert]

A URL that renders empty is no target (the secret is not set). Titles, bodies and documents
pass through the run's redactor.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from maintkit.health.incidents import Transition
from maintkit.notify import NotifyError, Sent, _run_url, deliver, display_url
from maintkit.playbook import Playbook
from maintkit.templating import Secrets, TemplateError, render_string


@dataclass
class Alert:
    """One alert and where it was sent."""

    kind: str
    site: str
    env: str
    check: str
    sent: list[Sent] = field(default_factory=list)


def duration_text(seconds: float) -> str:
    """``3d 4h``, ``1h 05m``, ``4m 30s`` or ``12s``."""
    s = max(0, round(seconds))
    days, rest = divmod(s, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


def alert_message(playbook: str, transition: Transition) -> tuple[str, str]:
    """(title, body) of the alert about ``transition``."""
    inc = transition.incident
    where = f"{inc['site']}/{inc['env']}"
    check, failures = inc["check"], inc.get("failures")
    if transition.kind == "down":
        title = f"maint {playbook}: {check} down on {where}"
        body = f"{check} on {where} failed {failures} runs in a row since {inc['opened']}.\n{inc.get('reason') or ''}"
    else:
        title = f"maint {playbook}: {check} recovered on {where}"
        took = duration_text(float(inc.get("duration_s") or 0))
        body = (
            f"{check} on {where} passes again after {failures} failed runs: down {took} "
            f"({inc['opened']} to {inc['closed']})."
        )
    return title, f"{body}\nrun {inc.get('run_id')}"


def alert_document(playbook: str, transition: Transition, environ: Mapping[str, str]) -> dict[str, Any]:
    """The JSON document posted to webhooks (apprise's JSON fields, then the incident)."""
    title, body = alert_message(playbook, transition)
    inc = transition.incident
    return {
        "version": "1.0",
        "type": "failure" if transition.kind == "down" else "success",
        "title": title,
        "message": body,
        "event": f"health.{transition.kind}",
        "playbook": playbook,
        **{k: inc.get(k) for k in ("run_id", "site", "env", "check", "state", "opened", "closed", "failures")},
        **{k: inc.get(k) for k in ("duration_s", "reason")},
        "run_url": _run_url(environ),
    }


def alert_urls(playbook: Playbook, redactor: Any, environ: Mapping[str, str]) -> list[tuple[str, str | None]]:
    """(url, problem) of every ``notify:`` entry with ``alert`` in ``on`` (empty URLs left out)."""
    secrets = Secrets(environ, on_read=redactor.add_secret)
    context = {"secrets": secrets, "playbook": {"name": playbook.name}}
    out: list[tuple[str, str | None]] = []
    for item in playbook.notify:
        if "alert" not in item.on:
            continue
        try:
            url = render_string(item.url, context)
        except TemplateError as exc:
            out.append((redactor.redact_text(item.url), redactor.redact_text(str(exc))))
            continue
        if url and str(url).strip() and str(url) != "None":
            out.append((str(url).strip(), None))
    return out


def send_alerts(
    playbook: Playbook, transitions: list[Transition], redactor: Any, environ: Mapping[str, str] | None = None
) -> list[Alert]:
    """Send one alert per transition to every alert target; never raises for a failed send."""
    env = os.environ if environ is None else environ
    targets = alert_urls(playbook, redactor, env) if transitions else []
    alerts: list[Alert] = []
    for transition in transitions:
        inc = transition.incident
        alert = Alert(transition.kind, str(inc["site"]), str(inc["env"]), str(inc["check"]))
        title, body = (redactor.redact_text(t) for t in alert_message(playbook.name, transition))
        document = redactor.redact(alert_document(playbook.name, transition, env))
        for url, problem in targets:
            if problem is not None:
                alert.sent.append(Sent(url, False, problem))
                continue
            try:
                deliver(url, document, title, body, transition.kind != "down")
            except NotifyError as exc:
                alert.sent.append(Sent(display_url(url), False, redactor.redact_text(str(exc))))
                continue
            alert.sent.append(Sent(display_url(url), True))
        alerts.append(alert)
    return alerts


__all__ = ["Alert", "alert_document", "alert_message", "alert_urls", "duration_text", "send_alerts"]
