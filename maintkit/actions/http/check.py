"""``http.check``: the action (paths, then the flow; CheckFailed naming each failing URL)."""

from __future__ import annotations

from maintkit.action import Action, Context
from maintkit.actions.http.client import Sender
from maintkit.actions.http.flow import run_flow_once, run_paths
from maintkit.actions.http.outcome import FlowError, Outcome, latency_summary
from maintkit.actions.http.params import READ_ONLY_METHODS, HttpCheckParams
from maintkit.actions.http.presets import run_preset_once, writes_of
from maintkit.actions.watch.common import http_point
from maintkit.errors import CheckFailed
from maintkit.results import Change, Check


class HttpCheck(Action[HttpCheckParams]):
    """Smoke-check URLs and flows; raise CheckFailed (naming URL and reason) when an expectation fails."""

    check_only = True
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
            raise CheckFailed(str(exc)) from None
        requests_data = [o.public() for o in sender.outcomes]
        summary = latency_summary(sender.outcomes)
        ctx.record(requests=requests_data, latency=summary)
        http_point(ctx, ok=not failures, count=len(sender.outcomes), failed=len(failures), latency=summary)
        if failures:
            raise CheckFailed(
                self._message(failures),
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
        if not p.flow and p.preset is None:
            return None
        if ctx.check_mode and (why := _not_read_only(p)):
            return why
        run_once = run_flow_once if p.preset is None else run_preset_once
        for attempt in range(1, p.retries + 2):
            failed = run_once(sender, base, attempt)
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
        total = len(self.params.paths) + (1 if self.params.flow or self.params.preset else 0)
        return f"{len(failures)} of {total} checks failed: " + " | ".join(parts)

    def apply(self, ctx: Context, check: Check) -> list[Change]:
        """Never called: check() never reports a change."""
        return []

    def rollback(self, ctx: Context, changes: list[Change]) -> None:
        """Nothing to undo: http.check changes nothing."""


def _not_read_only(p: HttpCheckParams) -> str:
    """Why plan mode must not run the step's flow (it sends more than GET/HEAD), or ""."""
    if p.preset is not None:
        sent = writes_of(p)
        if not sent:
            return ""
        return (
            f"unknown: would run the {p.preset} flow (it sends {', '.join(sent)}: adds to the cart); "
            "not run in plan mode because it is not read-only"
        )
    requests = p.flow
    writes = [r for r in requests if r.method not in READ_ONLY_METHODS]
    if not writes:
        return ""
    methods = ", ".join(sorted({r.method for r in writes}))
    return (
        f"unknown: would run a flow of {len(requests)} requests ({len(writes)} {methods}); "
        "not run in plan mode because it is not read-only"
    )


__all__ = ["HttpCheck"]
