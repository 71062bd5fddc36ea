"""What one request did (:class:`Outcome`), what it had to do (:class:`Expect`), and the
text helpers of flows: ``{name}`` placeholders and URLs under a base."""

from __future__ import annotations

import re
import statistics
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from maintkit._text import head as text_head

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


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
    #: the response headers (for ``capture_headers``); never in the audit log
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)

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
    #: literal texts the body must contain
    must_contain: tuple[str, ...] = ()


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
        for text in expect.must_contain:
            if text not in outcome.body:
                outcome.reasons.append(f"body does not contain {text_head(text, 80)!r}")
        for pattern in expect.must_not_match:
            found = re.search(pattern, outcome.body)
            if found:
                snippet = text_head(found.group(0), 80)
                outcome.reasons.append(f"body matches {pattern!r} ({snippet!r})")
    if expect.max_latency_ms is not None and outcome.latency_ms > expect.max_latency_ms:
        outcome.reasons.append(f"latency {outcome.latency_ms:.0f} ms > {expect.max_latency_ms:g} ms")


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


__all__ = ["Expect", "FlowError", "Outcome", "evaluate", "join_url", "latency_summary", "substitute"]
