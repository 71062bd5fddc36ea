"""Running the paths (each with retries) and a flow (requests sharing one cookie session)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from pydantic import SecretStr

from maintkit.actions.http.client import Sender, make_session
from maintkit.actions.http.outcome import Expect, FlowError, Outcome, join_url, substitute
from maintkit.actions.http.params import FlowRequest, HttpCheckParams

if TYPE_CHECKING:
    from requests import Session


def _headers(p: HttpCheckParams, extra: Mapping[str, SecretStr], values: Mapping[str, str]) -> dict[str, str]:
    merged = {**p.headers, **extra}
    return {name: substitute(value.get_secret_value(), values) for name, value in merged.items()}


def run_paths(sender: Sender, base: str | None) -> list[Outcome]:
    """Check every path (with retries); return the final outcome of each."""
    p = sender.params
    expect = Expect(tuple(p.status), tuple(p.must_match), tuple(p.must_not_match), p.max_latency_ms)
    finals: list[Outcome] = []
    session = make_session(p, base)
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
    session = make_session(p, base)
    with session:
        return run_requests(sender, session, base, attempt, p.flow, {})


def _expect(p: HttpCheckParams, req: FlowRequest, values: Mapping[str, str]) -> Expect:
    """The expectations of one flow request (unset ones fall back to the step's)."""
    return Expect(
        tuple(req.status if req.status is not None else p.status),
        tuple(req.must_match if req.must_match is not None else p.must_match),
        tuple(req.must_not_match if req.must_not_match is not None else p.must_not_match),
        req.max_latency_ms if req.max_latency_ms is not None else p.max_latency_ms,
        tuple(substitute(text, values) for text in req.must_contain or ()),
    )


def run_requests(
    sender: Sender,
    session: Session,
    base: str | None,
    attempt: int,
    requests: Sequence[FlowRequest],
    values: dict[str, str],
    prefix: str = "",
) -> Outcome | None:
    """Send ``requests`` in order in ``session``, capturing into ``values``; the first failing outcome, or None.

    ``prefix`` starts each request's label in messages (a preset's name)."""
    p = sender.params
    for i, req in enumerate(requests, 1):
        label = f"{prefix}{i}: {req.label}"
        try:
            expect = _expect(p, req, values)
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
            capture_headers=req.capture_headers,
        )
        if not outcome.ok:
            return outcome
    return None


__all__ = ["run_flow_once", "run_paths", "run_requests"]
