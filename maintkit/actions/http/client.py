"""The requests client of ``http.check``: sessions (optionally resolving the host to a fixed
address), sending one request, measuring and recording it."""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from maintkit.action import Context
from maintkit.actions.http.outcome import Expect, Outcome, evaluate
from maintkit.actions.http.params import HttpCheckParams

if TYPE_CHECKING:
    from requests import PreparedRequest, Response, Session
    from requests.adapters import HTTPAdapter

USER_AGENT = "maintkit-http-check/0.1"


def _causes(exc: BaseException) -> list[BaseException]:
    """``exc`` and every exception behind it (``reason``, causes, contexts, exception args), nearest first."""
    seen: list[BaseException] = []
    todo = [exc]
    while todo and len(seen) < 32:
        current = todo.pop(0)
        if any(current is s for s in seen):
            continue
        seen.append(current)
        nested = [getattr(current, "reason", None), current.__cause__, current.__context__, *current.args]
        todo.extend(n for n in nested if isinstance(n, BaseException))
    return seen


def _describe_exception(exc: Exception, timeout: float) -> str:
    """What went wrong, from the exception chain's own reason (the OS's words), never from its text."""
    import socket
    import ssl

    import requests

    if isinstance(exc, requests.Timeout):
        return f"timed out after {timeout:g} s"
    causes = _causes(exc)
    for cause in causes:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return f"TLS error: certificate verify failed: {cause.verify_message}"
        if isinstance(cause, ssl.SSLError):
            return f"TLS error: {cause.reason or cause.strerror or type(cause).__name__}"
    for cause in causes:
        if isinstance(cause, socket.gaierror):
            return f"cannot resolve the host name: {cause.strerror or cause}"
        if isinstance(cause, OSError) and cause.strerror:
            return f"connection failed: {cause.strerror}"
    if isinstance(exc, requests.exceptions.SSLError):
        return "TLS error"
    return f"request failed: {type(exc).__name__}"


def make_session(p: HttpCheckParams, base: str | None) -> Session:
    """A requests session without ``~/.netrc``: our User-Agent, the TLS setting and, with ``resolve``, the address."""
    from maintkit import _http

    session = _http.Session()  # no ~/.netrc
    session.headers["User-Agent"] = USER_AGENT
    session.verify = p.verify
    if p.verify is False:
        import urllib3

        urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)  # the user opted out of TLS checks
    if p.resolve and base:
        host = urlsplit(base).hostname
        if host:
            session.mount(f"http://{host}", _resolving_adapter(host, p.resolve, tls=False))
            session.mount(f"https://{host}", _resolving_adapter(host, p.resolve, tls=True))
    return session


def _resolving_adapter(hostname: str, address: str, *, tls: bool) -> HTTPAdapter:
    """An adapter connecting to ``address`` for ``hostname`` (Host header, SNI and cookies keep the name)."""
    from requests.adapters import HTTPAdapter

    class ResolveAdapter(HTTPAdapter):
        def init_poolmanager(self, connections: int, maxsize: int, block: bool = False, **kw: Any) -> None:
            if tls:  # SNI and certificate checks use the name, not the address
                kw.setdefault("server_hostname", hostname)
                kw.setdefault("assert_hostname", hostname)
            super().init_poolmanager(connections, maxsize, block, **kw)

        def send(self, request: PreparedRequest, *args: Any, **kwargs: Any) -> Response:
            parts = urlsplit(request.url or "")
            if (parts.hostname or "").lower() != hostname.lower():
                return super().send(request, *args, **kwargs)
            direct = request.copy()
            addr = f"[{address}]" if ":" in address else address
            direct.url = urlunsplit(parts._replace(netloc=addr + (f":{parts.port}" if parts.port else "")))
            direct.headers["Host"] = parts.netloc.rsplit("@", 1)[-1]
            response = super().send(direct, *args, **kwargs)
            response.request = request
            response.url = request.url or ""
            return response

    return ResolveAdapter()


@dataclass
class Sender:
    """Sends requests, measures them and reports each one to the audit log."""

    ctx: Context
    params: HttpCheckParams
    outcomes: list[Outcome] = field(default_factory=list)

    def send(
        self,
        session: Session,
        method: str,
        url: str,
        *,
        expect: Expect,
        data: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        follow: bool,
        attempt: int,
        flow_step: str | None = None,
        capture: Mapping[str, str] | None = None,
        values: dict[str, str] | None = None,
        capture_headers: Mapping[str, str] | None = None,
    ) -> Outcome:
        """One request: measure, evaluate, capture values (into ``values``), record."""
        import requests

        started = time.monotonic()
        try:
            resp = session.request(
                method,
                url,
                data=data,
                headers=headers,
                timeout=self.params.timeout,
                allow_redirects=follow,
                verify=self.params.verify,  # per request: a session setting loses to REQUESTS_CA_BUNDLE
            )
            latency = (time.monotonic() - started) * 1000.0
            body = "" if method == "HEAD" else resp.text
            outcome = Outcome(url, method, resp.status_code, latency, attempt=attempt, flow_step=flow_step, body=body)
            outcome.headers = resp.headers
            if resp.history and resp.url != url:
                outcome.final_url = resp.url
        except requests.RequestException as exc:
            latency = (time.monotonic() - started) * 1000.0
            reason = _describe_exception(exc, self.params.timeout)
            outcome = Outcome(url, method, None, latency, [reason], attempt=attempt, flow_step=flow_step)
        evaluate(outcome, expect, head=method == "HEAD")
        if outcome.ok and capture and values is not None:
            _capture(outcome, capture, values)
        if outcome.ok and capture_headers and values is not None:
            _capture_headers(outcome, capture_headers, values)
        self.outcomes.append(outcome)
        self.ctx.event("http.request", step=self.ctx.step_id, **outcome.public())
        return outcome

    def wait(self, attempt: int) -> None:
        """Back off before the next attempt."""
        back_off(self.params.backoff_s, attempt)


def back_off(backoff_s: float, attempt: int) -> None:
    """Wait ``backoff_s * 2**(attempt-1)`` seconds after failed attempt ``attempt`` (1, 2, 4... times)."""
    delay = backoff_s * (2 ** (attempt - 1))
    if delay > 0:
        time.sleep(delay)


def _capture(outcome: Outcome, capture: Mapping[str, str], values: dict[str, str]) -> None:
    for name, pattern in capture.items():
        found = re.search(pattern, outcome.body)
        if found is None:
            outcome.reasons.append(f"capture of {name!r} failed: {pattern!r} not found in the body")
            return
        values[name] = found.group(1)


def _capture_headers(outcome: Outcome, capture: Mapping[str, str], values: dict[str, str]) -> None:
    for name, header in capture.items():
        value = outcome.headers.get(header)
        if not value:
            outcome.reasons.append(f"capture of {name!r} failed: no {header} header in the response")
            return
        values[name] = value


__all__ = ["USER_AGENT", "Sender", "back_off", "make_session"]
