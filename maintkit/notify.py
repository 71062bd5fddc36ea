"""Notifications when a run ends: Slack, Telegram, e-mail, generic JSON webhooks.

A playbook lists where to send them::

    notify:
      - url: "{{ secrets.SLACK_WEBHOOK_URL }}"        # https://hooks.slack.com/services/...
        on: [failure]
      - url: "tgram://{{ secrets.TELEGRAM_BOT_TOKEN }}/123456789"
        on: [failure, changed]
      - url: "https://hooks.example.net/maint"         # generic JSON webhook
        on: [success, failure]

``on`` picks the outcomes: ``success`` (the run ended ok), ``failure`` (anything else)
and ``changed`` (at least one step changed something).

URLs of the form ``json://`` / ``jsons://`` and plain ``http(s)://`` URLs that are not a
known service receive maintkit's JSON document (see :func:`payload`) by HTTP POST. Every
other scheme (``slack://``, ``tgram://``, ``mailto://``, ``discord://``... and
``https://hooks.slack.com/...``) is sent with `apprise <https://github.com/caronc/apprise>`_,
imported only when needed. Message texts pass through the run's redactor; URLs are shown
only as scheme and host.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from maintkit.errors import MaintkitError
from maintkit.playbook import Notify, Playbook
from maintkit.results import RunResult
from maintkit.templating import Secrets, TemplateError, render_string

_JSON_SCHEMES = {"json": "http", "jsons": "https"}


class NotifyError(MaintkitError):
    """A notification could not be sent."""


@dataclass(frozen=True)
class Sent:
    """The outcome of one notification."""

    target: str
    ok: bool
    detail: str = ""


def outcomes(result: RunResult) -> set[str]:
    """The ``on`` values a result matches: success or failure, plus changed."""
    found = {"success" if result.ok else "failure"}
    if result.changed:
        found.add("changed")
    return found


def wanted(notify: Notify, result: RunResult) -> bool:
    """True when ``notify`` asks for one of the result's outcomes."""
    return bool(set(notify.on) & outcomes(result))


def display_url(url: str) -> str:
    """A URL safe to show: scheme and host only (tokens often sit in the path or user part)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme in ("tgram", "slack", "discord", "mailto", "mailtos"):
        return f"{parts.scheme}://…"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}/…" if parts.path not in ("", "/") else f"{parts.scheme}://{host}{port}"


def explain_failures(result: RunResult, redactor: Any = None) -> list[str]:
    """A short, readable explanation of every site that did not end ok (empty when all did).

    Top-level lines name the site and the step; indented lines give the error, what was
    rolled back and where to look.
    """
    lines: list[str] = []
    for site in result.sites:
        status = site.status.value
        if status == "ok":
            continue
        failed = next((s for s in site.steps if s.status.value in ("failed", "rollback-failed")), None)
        if failed is not None:
            lines.append(f"{site.site}: {status} at {failed.env} step {failed.step} ({failed.action})")
            lines.append(f"    {_redact(redactor, failed.error or failed.reason or 'failed')}")
        else:
            lines.append(f"{site.site}: {status}")
            if site.error:
                lines.append(f"    {_redact(redactor, site.error)}")
        undone = [s.step for s in site.steps if s.status.value == "rolled-back"]
        broken = [s.step for s in site.steps if s.status.value == "rollback-failed"]
        if undone:
            lines.append(f"    rolled back: {', '.join(undone)}")
        if broken:
            lines.append(f"    ROLLBACK FAILED, check by hand: {', '.join(broken)}")
        if status == "rolled-back" and not broken:
            lines.append("    the site is back where it was before this stage")
    if lines and result.run_dir:
        lines.append(f"details: maint runs {result.run_id}   (run folder {result.run_dir})")
    return lines


def _redact(redactor: Any, text: str) -> str:
    if redactor is None:
        from maintkit.audit import Redactor

        redactor = Redactor.from_environ()
    return str(redactor.redact_text(text))


def _run_url(environ: Mapping[str, str]) -> str | None:
    if environ.get("GITHUB_ACTIONS") == "true" and environ.get("GITHUB_RUN_ID"):
        server = environ.get("GITHUB_SERVER_URL", "https://github.com")
        return f"{server}/{environ.get('GITHUB_REPOSITORY', '')}/actions/runs/{environ['GITHUB_RUN_ID']}"
    return None


def message(result: RunResult, redactor: Any = None) -> tuple[str, str]:
    """(title, body) of the notification for ``result``, redacted."""
    mode = "plan" if result.check else "run"
    bad = [s.site for s in result.sites if s.failed]
    title = f"maint {mode} {result.playbook}: {result.status}"
    if bad:
        title += f" ({', '.join(bad[:5])}{'…' if len(bad) > 5 else ''})"
    body = [f"{len(result.sites)} site(s), {result.changed} step(s) changed, run {result.run_id}."]
    for site in result.sites:
        body.append(f"- {site.site}: {site.status.value}, {site.changed} changed")
    explanation = explain_failures(result, redactor)
    if explanation:
        body += ["", *explanation]
    return _redact(redactor, title), _redact(redactor, "\n".join(body))


def payload(result: RunResult, redactor: Any = None, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The JSON document posted to webhooks.

    Its ``version``/``title``/``message``/``type`` fields match apprise's JSON format, so
    receivers written for either work; the other fields carry the run's outcome.
    """
    env = os.environ if environ is None else environ
    title, body = message(result, redactor)
    return {
        "version": "1.0",
        "type": "success" if result.ok else "failure",
        "title": title,
        "message": body,
        "event": "run.finished",
        "run_id": result.run_id,
        "playbook": result.playbook,
        "check": result.check,
        "status": result.status,
        "changed": result.changed,
        "sites": [
            {
                "site": s.site,
                "status": s.status.value,
                "changed": s.changed,
                "error": _redact(redactor, s.error) if s.error else None,
            }
            for s in result.sites
        ],
        "run_url": _run_url(env),
    }


def post_json(url: str, body: dict[str, Any], timeout: float = 10.0) -> None:
    """POST ``body`` as JSON to ``url`` (``json://`` means http, ``jsons://`` https)."""
    import requests

    from maintkit import _http

    parts = urlsplit(url)
    scheme = _JSON_SCHEMES.get(parts.scheme, parts.scheme)
    target = urlunsplit((scheme, parts.netloc, parts.path or "/", parts.query, ""))
    try:
        resp = _http.post(target, json=body, timeout=timeout, headers={"User-Agent": "maintkit"})
    except requests.RequestException as exc:
        raise NotifyError(f"{display_url(url)}: {type(exc).__name__}") from None
    if resp.status_code >= 300:
        raise NotifyError(f"{display_url(url)}: HTTP {resp.status_code}")


def _apprise_plugin(url: str) -> Any:
    """apprise's plugin instance for ``url``, or None when apprise is missing or does not know it."""
    try:
        import apprise
    except ImportError:
        return None
    return apprise.Apprise.instantiate(url, suppress_exceptions=True)


def send_apprise(url: str, title: str, body: str, ok: bool) -> None:
    """Send through apprise (Slack, Telegram, e-mail and many more)."""
    try:
        import apprise
    except ImportError:
        raise NotifyError(
            f"{display_url(url)}: this kind of URL needs apprise, maintkit's 'notify' extra "
            "(pip install 'maintkit[notify]', or pip install apprise)"
        ) from None
    sender = apprise.Apprise()
    if not sender.add(url):
        raise NotifyError(f"{display_url(url)}: not a URL apprise understands")
    kind = apprise.NotifyType.SUCCESS if ok else apprise.NotifyType.FAILURE
    if not sender.notify(title=title, body=body, notify_type=kind):
        raise NotifyError(f"{display_url(url)}: sending failed")


def deliver(url: str, document: dict[str, Any], title: str, body: str, ok: bool) -> None:
    """Send one message to ``url``: ``document`` by JSON POST to webhooks, else ``title``/``body`` via apprise."""
    scheme = urlsplit(url).scheme
    if scheme in _JSON_SCHEMES:
        post_json(url, document)
        return
    if scheme in ("http", "https"):
        plugin = _apprise_plugin(url)
        if plugin is None or type(plugin).__name__ == "NotifyJSON":
            post_json(url, document)
            return
    send_apprise(url, title, body, ok)


def send(url: str, result: RunResult, redactor: Any = None, environ: Mapping[str, str] | None = None) -> None:
    """Send one notification about ``result`` to ``url``."""
    title, body = message(result, redactor)
    deliver(url, payload(result, redactor, environ), title, body, result.ok)


def notify_run(
    playbook: Playbook,
    result: RunResult,
    *,
    redactor: Any = None,
    environ: Mapping[str, str] | None = None,
) -> list[Sent]:
    """Send the playbook's notifications that match ``result``; never raises for a failed send.

    Plans (``result.check``) never notify: a dry run has no side effects anywhere.
    URLs are rendered with ``{{ secrets.NAME }}`` (environment variables); the values read
    are added to ``redactor`` so they never show up in messages.
    """
    if result.check:
        return []
    env = os.environ if environ is None else environ
    if redactor is None:
        from maintkit.audit import Redactor

        redactor = Redactor.from_environ(env)
    secrets = Secrets(env, on_read=redactor.add_secret)
    context = {"secrets": secrets, "playbook": {"name": playbook.name}, "run": {"id": result.run_id}}
    sent: list[Sent] = []
    for item in playbook.notify:
        if not wanted(item, result):
            continue
        try:
            url = str(render_string(item.url, context))
        except TemplateError as exc:
            sent.append(Sent(_redact(redactor, item.url), False, _redact(redactor, str(exc))))
            continue
        target = display_url(url)
        try:
            send(url, result, redactor, env)
        except NotifyError as exc:
            sent.append(Sent(target, False, _redact(redactor, str(exc))))
            continue
        sent.append(Sent(target, True))
    return sent


__all__ = [
    "NotifyError",
    "Sent",
    "deliver",
    "explain_failures",
    "message",
    "notify_run",
    "outcomes",
    "payload",
    "post_json",
    "send",
    "wanted",
]
