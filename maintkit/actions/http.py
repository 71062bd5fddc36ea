"""``http.check``: the smoke check that decides whether a change stays or is rolled back.

Requests run from the controller (where ``maint`` runs) against the environment's public URL::

    - action: http.check
      with:
        paths: [/, /cart/]                 # relative to env.url, or absolute URLs
        status: 200                        # or a list: [200, 301]
        must_not_match: "Fatal error|Warning:"
        max_latency_ms: 1500

and flows: requests sharing one cookie session, with values captured from earlier
responses and used later as ``{name}`` (a plain placeholder, not a template: templates are
rendered before the run, captures exist only while it runs)::

        flow:
          - {path: /product/, capture: {nonce: 'name="nonce" value="([^"]+)"'}}
          - {path: /cart/add, method: POST, data: {product: "42", nonce: "{nonce}"}}
          - {path: /cart/, must_match: "Blue Mug"}

This is a verification action: check() returns "ok" when every expectation holds and raises
:class:`~maintkit.errors.CheckFailed` naming each failing URL and why (status, pattern,
latency) otherwise, so a failing smoke check fails the step and the stage is rolled back.
It never changes anything. In plan mode a flow that sends anything but GET/HEAD is not
run (its POSTs would touch the shop): the step reports "unknown" instead.

Every request (every attempt) is written to the audit log as an ``http.request`` event and
in the step's data (``requests``: url, method, status, latency_ms, ok), with a latency summary.
"""

from __future__ import annotations

import re
import statistics
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, SecretStr, field_validator, model_validator

from maintkit._text import head as text_head
from maintkit.action import Action, Context, Params
from maintkit.errors import CheckFailed
from maintkit.results import Change, Check

if TYPE_CHECKING:
    from requests import PreparedRequest, Response, Session
    from requests.adapters import HTTPAdapter

Method = Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
READ_ONLY_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
USER_AGENT = "maintkit-http-check/0.1"
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _as_list(v: Any) -> Any:
    if v is None:
        return []
    return [v] if isinstance(v, str | int) else v


def _valid_patterns(v: list[str]) -> list[str]:
    for pattern in v:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"invalid regular expression {pattern!r}: {exc}") from None
    return v


def _valid_statuses(v: list[int]) -> list[int]:
    for code in v:
        if not 100 <= code <= 599:
            raise ValueError(f"invalid HTTP status {code}")
    return v


class FlowRequest(Params):
    """One request of a flow. Unset expectations fall back to the step's."""

    name: str | None = Field(None, description="Label for messages")
    path: str = Field(..., description="Path under the base URL, or an absolute URL; may use {captured} values")
    method: Method = "GET"
    data: dict[str, str] | None = Field(None, description="Form fields (application/x-www-form-urlencoded)")
    headers: dict[str, SecretStr] = Field(default_factory=dict, description="Extra headers (secret values)")
    capture: dict[str, str] = Field(default_factory=dict, description="name: regex with one group, from the body")
    status: list[int] | None = None
    must_match: list[str] | None = None
    must_not_match: list[str] | None = None
    max_latency_ms: float | None = Field(None, gt=0)
    follow_redirects: bool | None = None

    @field_validator("method", mode="before")
    @classmethod
    def _upper(cls, v: Any) -> Any:
        return v.upper() if isinstance(v, str) else v

    @field_validator("status", mode="before", json_schema_input_type=int | list[int] | None)
    @classmethod
    def _status_list(cls, v: Any) -> Any:
        return None if v is None else _as_list(v)

    @field_validator("must_match", "must_not_match", mode="before", json_schema_input_type=str | list[str] | None)
    @classmethod
    def _pattern_list(cls, v: Any) -> Any:
        return None if v is None else _as_list(v)

    @field_validator("status")
    @classmethod
    def _statuses(cls, v: list[int] | None) -> list[int] | None:
        return None if v is None else _valid_statuses(v)

    @field_validator("must_match", "must_not_match")
    @classmethod
    def _patterns(cls, v: list[str] | None) -> list[str] | None:
        return None if v is None else _valid_patterns(v)

    @field_validator("capture")
    @classmethod
    def _one_group(cls, v: dict[str, str]) -> dict[str, str]:
        for name, pattern in v.items():
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                raise ValueError(f"capture name {name!r} must be an identifier")
            try:
                groups = re.compile(pattern).groups
            except re.error as exc:
                raise ValueError(f"capture {name}: invalid regular expression: {exc}") from None
            if groups != 1:
                raise ValueError(f"capture {name}: the pattern needs exactly one group, it has {groups}")
        return v

    @property
    def label(self) -> str:
        """Name for messages."""
        return self.name or f"{self.method} {self.path}"


class HttpCheckParams(Params):
    """Parameters of ``http.check``."""

    url: str | None = Field(None, description="Base URL (default: the environment's url)")
    paths: list[str] = Field(default_factory=list, description="Paths under the base URL, or absolute URLs")
    method: Literal["GET", "HEAD"] = Field("GET", description="Method for `paths`")
    status: list[int] = Field(default_factory=lambda: [200], description="Expected status (a number or a list)")
    must_match: list[str] = Field(default_factory=list, description="Regexes the body must match")
    must_not_match: list[str] = Field(default_factory=list, description="Regexes the body must not match")
    max_latency_ms: float | None = Field(None, gt=0, description="Slowest acceptable response, in ms")
    verify: bool | str = Field(True, description="TLS verification: true, false, or a CA bundle path")
    follow_redirects: bool = Field(True, description="Follow redirects (the final response is checked)")
    retries: int = Field(2, ge=0, le=20, description="Extra attempts per URL (per flow) after a failure")
    backoff_s: float = Field(1.0, ge=0, description="Wait before retry n: backoff_s * 2**(n-1)")
    timeout: float = Field(10.0, gt=0, description="Seconds per request")
    headers: dict[str, SecretStr] = Field(default_factory=dict, description="Extra headers (secret values)")
    resolve: str | None = Field(None, description="Connect to this IP address for the base URL's host name")
    flow: list[FlowRequest] = Field(default_factory=list, description="Requests sharing a cookie session")

    @field_validator("status", mode="before", json_schema_input_type=int | list[int])
    @classmethod
    def _status_list(cls, v: Any) -> Any:
        return _as_list(v)

    @field_validator("must_match", "must_not_match", "paths", mode="before", json_schema_input_type=str | list[str])
    @classmethod
    def _text_list(cls, v: Any) -> Any:
        return _as_list(v)

    @field_validator("status")
    @classmethod
    def _statuses(cls, v: list[int]) -> list[int]:
        if not v:
            raise ValueError("give at least one expected status")
        return _valid_statuses(v)

    @field_validator("must_match", "must_not_match")
    @classmethod
    def _patterns(cls, v: list[str]) -> list[str]:
        return _valid_patterns(v)

    @field_validator("paths")
    @classmethod
    def _paths(cls, v: list[str]) -> list[str]:
        for p in v:
            if not (p.startswith("/") or urlsplit(p).scheme in ("http", "https")):
                raise ValueError(f"{p!r}: give a path starting with / or an absolute http(s) URL")
        return v

    @model_validator(mode="after")
    def _something(self) -> HttpCheckParams:
        if not self.paths and not self.flow:
            self.paths = ["/"]
        return self


# ---------------------------------------------------------------------------- requests


@dataclass
class Outcome:
    """What one request did and which expectations failed."""

    url: str
    method: str
    status: int | None
    latency_ms: float
    reasons: list[str] = field(default_factory=list)
    attempt: int = 1
    flow_step: str | None = None
    final_url: str | None = None
    body: str = field(default="", repr=False)

    @property
    def ok(self) -> bool:
        """True when every expectation held."""
        return not self.reasons

    def public(self) -> dict[str, Any]:
        """The audit-log form (no body, no captured values)."""
        out: dict[str, Any] = {
            "url": self.url,
            "method": self.method,
            "status": self.status,
            "latency_ms": round(self.latency_ms, 1),
            "ok": self.ok,
            "attempt": self.attempt,
        }
        if self.flow_step is not None:
            out["flow_step"] = self.flow_step
        if self.final_url is not None:
            out["final_url"] = self.final_url
        if self.reasons:
            out["reason"] = "; ".join(self.reasons)
        return out


@dataclass(frozen=True)
class Expect:
    """Expectations for one request."""

    status: tuple[int, ...]
    must_match: tuple[str, ...] = ()
    must_not_match: tuple[str, ...] = ()
    max_latency_ms: float | None = None


class FlowError(Exception):
    """A flow cannot continue (unknown placeholder); the message is safe to show."""


def substitute(text: str, values: Mapping[str, str]) -> str:
    """Replace ``{name}`` with captured values; an unknown name is an error (not jinja, not format)."""

    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            known = ", ".join(sorted(values)) or "none"
            raise FlowError(f"unknown placeholder {{{name}}} (captured so far: {known})")
        return values[name]

    return _PLACEHOLDER.sub(one, text)


def join_url(base: str | None, path: str) -> str:
    """``path`` under ``base`` (an absolute URL is returned as is)."""
    if urlsplit(path).scheme:
        return path
    if not base:
        raise FlowError(f"{path!r} is relative but there is no base URL (set `url` or the environment's url)")
    return base.rstrip("/") + ("" if path.startswith("/") else "/") + path


def _describe_exception(exc: Exception, timeout: float) -> str:
    import requests

    text = str(exc)
    if isinstance(exc, requests.Timeout):
        return f"timed out after {timeout:g} s"
    if isinstance(exc, requests.exceptions.SSLError):
        found = re.search(r"\[SSL(?:: [A-Z_]+)?\] ([^'\"(]+)", text)
        return "TLS error: " + (found.group(1).strip() if found else type(exc).__name__)
    errno = re.search(r"\[Errno -?\d+\] ([^')\]]+)", text)
    if errno:
        return f"connection failed: {errno.group(1).strip()}"
    return f"request failed: {type(exc).__name__}"


def evaluate(outcome: Outcome, expect: Expect, head: bool) -> None:
    """Add a reason to ``outcome`` for every expectation that does not hold."""
    if outcome.status is None:
        return
    if outcome.status not in expect.status:
        wanted = expect.status[0] if len(expect.status) == 1 else list(expect.status)
        outcome.reasons.append(f"status {outcome.status} (expected {wanted})")
    if not head:
        for pattern in expect.must_match:
            if not re.search(pattern, outcome.body):
                outcome.reasons.append(f"body does not match {pattern!r}")
        for pattern in expect.must_not_match:
            found = re.search(pattern, outcome.body)
            if found:
                snippet = text_head(found.group(0), 80)
                outcome.reasons.append(f"body matches {pattern!r} ({snippet!r})")
    if expect.max_latency_ms is not None and outcome.latency_ms > expect.max_latency_ms:
        outcome.reasons.append(f"latency {outcome.latency_ms:.0f} ms > {expect.max_latency_ms:g} ms")


def _make_session(p: HttpCheckParams, base: str | None) -> Session:
    import requests

    session = requests.Session()
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
            if resp.history and resp.url != url:
                outcome.final_url = resp.url
        except requests.RequestException as exc:
            latency = (time.monotonic() - started) * 1000.0
            reason = _describe_exception(exc, self.params.timeout)
            outcome = Outcome(url, method, None, latency, [reason], attempt=attempt, flow_step=flow_step)
        evaluate(outcome, expect, head=method == "HEAD")
        if outcome.ok and capture and values is not None:
            _capture(outcome, capture, values)
        self.outcomes.append(outcome)
        self.ctx.event("http.request", step=self.ctx.step_id, **outcome.public())
        return outcome

    def wait(self, attempt: int) -> None:
        """Back off before the next attempt."""
        delay = self.params.backoff_s * (2 ** (attempt - 1))
        if delay > 0:
            time.sleep(delay)


def _headers(p: HttpCheckParams, extra: Mapping[str, SecretStr], values: Mapping[str, str]) -> dict[str, str]:
    merged = {**p.headers, **extra}
    return {name: substitute(value.get_secret_value(), values) for name, value in merged.items()}


def run_paths(sender: Sender, base: str | None) -> list[Outcome]:
    """Check every path (with retries); return the final outcome of each."""
    p = sender.params
    expect = Expect(tuple(p.status), tuple(p.must_match), tuple(p.must_not_match), p.max_latency_ms)
    finals: list[Outcome] = []
    session = _make_session(p, base)
    with session:
        for path in p.paths:
            url = join_url(base, path)
            headers = _headers(p, {}, {})
            for attempt in range(1, p.retries + 2):
                outcome = sender.send(
                    session, p.method, url, expect=expect, headers=headers, follow=p.follow_redirects, attempt=attempt
                )
                if outcome.ok or attempt > p.retries:
                    break
                sender.wait(attempt)
            finals.append(outcome)
    return finals


def run_flow_once(sender: Sender, base: str | None, attempt: int) -> Outcome | None:
    """Run the flow in a fresh cookie session; return the first failing outcome, or None."""
    p = sender.params
    values: dict[str, str] = {}
    session = _make_session(p, base)
    with session:
        for i, req in enumerate(p.flow, 1):
            label = f"{i}: {req.label}"
            expect = Expect(
                tuple(req.status if req.status is not None else p.status),
                tuple(req.must_match if req.must_match is not None else p.must_match),
                tuple(req.must_not_match if req.must_not_match is not None else p.must_not_match),
                req.max_latency_ms if req.max_latency_ms is not None else p.max_latency_ms,
            )
            try:
                url = join_url(base, substitute(req.path, values))
                data = {k: substitute(v, values) for k, v in req.data.items()} if req.data is not None else None
                headers = _headers(p, req.headers, values)
            except FlowError as exc:
                return Outcome(req.path, req.method, None, 0.0, [str(exc)], attempt=attempt, flow_step=label)
            follow = p.follow_redirects if req.follow_redirects is None else req.follow_redirects
            outcome = sender.send(
                session,
                req.method,
                url,
                expect=expect,
                data=data,
                headers=headers,
                follow=follow,
                attempt=attempt,
                flow_step=label,
                capture=req.capture,
                values=values,
            )
            if not outcome.ok:
                return outcome
    return None


def _capture(outcome: Outcome, capture: Mapping[str, str], values: dict[str, str]) -> None:
    for name, pattern in capture.items():
        found = re.search(pattern, outcome.body)
        if found is None:
            outcome.reasons.append(f"capture of {name!r} failed: {pattern!r} not found in the body")
            return
        values[name] = found.group(1)


def latency_summary(outcomes: list[Outcome]) -> dict[str, Any]:
    """Count, median, p95 and max latency of the requests that got an answer."""
    times = sorted(o.latency_ms for o in outcomes if o.status is not None)
    if not times:
        return {"count": 0}
    p95 = times[min(len(times) - 1, max(0, round(0.95 * len(times) + 0.5) - 1))]
    return {
        "count": len(times),
        "median_ms": round(statistics.median(times), 1),
        "p95_ms": round(p95, 1),
        "max_ms": round(times[-1], 1),
    }


class HttpCheck(Action[HttpCheckParams]):
    """Smoke-check URLs and flows; raise CheckFailed (naming URL and reason) when an expectation fails."""

    name = "http.check"
    Params = HttpCheckParams
    summary = "Smoke-check URLs and cookie-session flows (status, regex, latency); failure rolls back."
    depends_on_previous = True
    rollback_kind = "noop"
    rollback_reason = "a check changes nothing"

    def check(self, ctx: Context) -> Check:
        p = self.params
        base = p.url or ctx.env.url
        sender = Sender(ctx, p)
        failures: list[Outcome] = []
        try:
            if p.paths:
                failures += [o for o in run_paths(sender, base) if not o.ok]
            flow_state = self._flow(ctx, sender, base, failures)
        except FlowError as exc:
            raise CheckFailed(str(exc), action=self.name) from None
        requests_data = [o.public() for o in sender.outcomes]
        summary = latency_summary(sender.outcomes)
        ctx.record(requests=requests_data, latency=summary)
        if failures:
            raise CheckFailed(
                self._message(failures),
                action=self.name,
                details={
                    "failures": [o.public() for o in failures],
                    "requests": requests_data,
                    "latency": summary,
                },
            )
        if flow_state is not None:
            return Check.unknown(flow_state)
        median = f", median {summary['median_ms']:.0f} ms" if summary.get("count") else ""
        count = len(sender.outcomes)
        return Check.ok(f"{count} request{'' if count == 1 else 's'} ok{median}")

    def _flow(self, ctx: Context, sender: Sender, base: str | None, failures: list[Outcome]) -> str | None:
        """Run the flow (with retries). Returns a plan-mode 'unknown' reason when it must not run."""
        p = self.params
        if not p.flow:
            return None
        writes = [r for r in p.flow if r.method not in READ_ONLY_METHODS]
        if ctx.check_mode and writes:
            methods = ", ".join(sorted({r.method for r in writes}))
            return (
                f"unknown: would run a flow of {len(p.flow)} requests ({len(writes)} {methods}); "
                "not run in plan mode because it is not read-only"
            )
        for attempt in range(1, p.retries + 2):
            failed = run_flow_once(sender, base, attempt)
            if failed is None:
                return None
            if attempt > p.retries:
                failures.append(failed)
                return None
            sender.wait(attempt)
        return None

    def _message(self, failures: list[Outcome]) -> str:
        parts = []
        for o in failures:
            where = f"flow step {o.flow_step}: " if o.flow_step else ""
            redirected = f" (redirected to {o.final_url})" if o.final_url else ""
            parts.append(f"{where}{o.method} {o.url}{redirected}: {'; '.join(o.reasons)}")
        total = len(self.params.paths) + (1 if self.params.flow else 0)
        return f"{len(failures)} of {total} checks failed: " + " | ".join(parts)

    def apply(self, ctx: Context, check: Check) -> list[Change]:
        """Never called: check() never reports a change."""
        return []

    def rollback(self, ctx: Context, changes: list[Change]) -> None:
        """Nothing to undo: http.check changes nothing."""


__all__ = [
    "Expect",
    "FlowError",
    "FlowRequest",
    "HttpCheck",
    "HttpCheckParams",
    "Outcome",
    "evaluate",
    "join_url",
    "latency_summary",
    "substitute",
]
