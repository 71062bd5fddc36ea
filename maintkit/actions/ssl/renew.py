"""``ssl.renew``: renew a certbot lineage when it is due by our threshold, reload, verify from outside."""

from __future__ import annotations

import ssl
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from maintkit._text import tail as text_tail
from maintkit.action import Action, Context
from maintkit.actions.ssl.certbot import certbot_failure, reload_server
from maintkit.actions.ssl.params import SslRenewParams
from maintkit.actions.ssl.served import (
    Endpoint,
    Served,
    fetch_served,
    format_date,
    format_left,
    resolve_endpoint,
    served_or_fail,
)
from maintkit.errors import ApplyFailed, CheckFailed, VerifyFailed
from maintkit.probes import Probe
from maintkit.probes.ssl import CertFile, CertInfo
from maintkit.results import Change, Check
from maintkit.state import index

_CONFIRM = 3  # handshakes in a row that must show the renewed certificate


@dataclass
class _RenewPlan:
    mode: Literal["renew", "reload"]
    file: CertInfo
    served: Served | None = None
    data: dict[str, Any] = field(default_factory=dict)


def _stale(served: CertInfo, lineage: CertInfo) -> bool:
    """The server serves an older certificate of this lineage (same names, expires sooner)."""
    return (
        served.serial != lineage.serial
        and {n.lower() for n in served.names} == {n.lower() for n in lineage.names}
        and served.not_after < lineage.not_after
    )


class SslRenew(Action[SslRenewParams]):
    """Renew a certbot lineage when it is due by ``renew_days``, reload the server, verify from outside.

    Uses whatever authenticator the lineage is configured with (``certbot renew --cert-name``,
    forced when our threshold says due). A failed renewal is reported with the tail of
    certbot's log; the old certificate keeps being served. Rollback keeps the renewed
    certificate (it is as valid as the old one, which stays in ``archive/``) and succeeds.
    """

    name = "ssl.renew"
    Params = SslRenewParams
    summary = "Renew a certbot certificate when due, reload the web server, verify the served certificate."
    rollback_kind = "noop"
    rollback_reason = "a renewed certificate is valid and kept; the previous one stays in archive/"

    def probes(self, ctx: Context) -> list[Probe[Any]]:
        return [CertFile(self.params.live_cert())]

    def _endpoint(self, ctx: Context) -> Endpoint | None:
        p = self.params
        return resolve_endpoint(ctx, p.host, p.port, p.server_name) if p.served else None

    def check(self, ctx: Context) -> Check:
        p = self.params
        info = ctx.probe(CertFile(p.live_cert()))
        if info is None:
            raise CheckFailed(
                f"no certbot certificate {p.cert_name!r} ({p.live_cert()} is missing or unreadable); "
                "issue it with ssl.issue",
            )
        endpoint = self._endpoint(ctx)
        served = served_or_fail(endpoint, p.ca_bundle, p.timeout) if endpoint else None
        data: dict[str, Any] = {"lineage": {**info.to_dict(), "path": p.live_cert()}}
        if served is not None:
            data["cert"] = served.to_dict()
        ctx.record(**data)
        self._index(ctx, "checked", {**info.to_dict(), "path": p.live_cert()})
        left = info.days_left
        if left < p.renew_days:
            reason = (
                f"due: valid until {format_date(info.not_after)}, {format_left(left)} left "
                f"(renews below {p.renew_days:g})"
            )
            return Check.change(reason, snapshot=_RenewPlan("renew", info, served, data), **data)
        if served is not None and _stale(served.info, info):
            reason = (
                f"the lineage is renewed (valid until {format_date(info.not_after)}) but {served.endpoint} still "
                f"serves serial {served.info.serial} ({format_left(served.info.days_left)} left): reload needed"
            )
            return Check.change(reason, snapshot=_RenewPlan("reload", info, served, data), **data)
        reason = f"valid until {format_date(info.not_after)}, {format_left(left)} left"
        if served is not None and served.info.serial != info.serial:
            reason += f"; note: {served.endpoint} serves another certificate ({', '.join(served.info.names)})"
        return Check.ok(reason, **data)

    def apply(self, ctx: Context, check: Check) -> list[Change]:
        p = self.params
        plan: _RenewPlan = check.snapshot
        before = {"serial": plan.file.serial, "not_after": plan.file.not_after.isoformat(timespec="seconds")}
        if plan.mode == "reload":
            reload_server(ctx, p.reload)
            return [Change(f"certificate {p.cert_name}", "web server reloaded", before=before, after=before)]
        argv = [*p.certbot, "renew", "--cert-name", p.cert_name, "--no-random-sleep-on-renew", "--force-renewal"]
        argv += ["--non-interactive", *p.dir_args(), *p.extra_args]
        res = ctx.run(argv, env=p.env or None, check=False, timeout=p.certbot_timeout)
        if not res.ok:
            raise certbot_failure(ctx, p, "renew", res)
        ctx.invalidate()
        new = ctx.probe(CertFile(p.live_cert()))
        if new is None or new.serial == plan.file.serial:
            raise ApplyFailed(
                f"certbot renew exited 0 but {p.live_cert()} did not change: {text_tail(res.stdout, 400)}",
            )
        reload_server(ctx, p.reload)
        after = {"serial": new.serial, "not_after": new.not_after.isoformat(timespec="seconds")}
        ctx.record(lineage={**new.to_dict(), "path": p.live_cert()}, renewed={"from": before, "to": after})
        self._index(ctx, "renewed", {**new.to_dict(), "path": p.live_cert(), "renewed": {"from": before, "to": after}})
        return [Change(f"certificate {p.cert_name}", "renewed", before=before, after=after)]

    def verify(self, ctx: Context) -> None:
        p = self.params
        ctx.invalidate()
        info = ctx.probe(CertFile(p.live_cert()))
        if info is None:
            raise VerifyFailed(f"{p.live_cert()} is missing after renewal")
        need = p.verify_days if p.verify_days is not None else p.renew_days
        endpoint = self._endpoint(ctx)
        if endpoint is None:
            self._days_ok(info, need)
            return
        served = self._wait_served(endpoint, info.serial)
        ctx.record(cert=served.to_dict())
        if served.info.serial != info.serial:
            raise VerifyFailed(
                f"{endpoint} still serves serial {served.info.serial}, not the renewed {info.serial} "
                f"(after {p.verify_timeout:g} s): is the web server using {p.live_cert()} and did it reload?",
                details={"cert": served.to_dict()},
            )
        if not served.chain_ok:
            raise VerifyFailed(f"the renewed certificate's chain does not verify: {served.chain_error}")
        self._days_ok(served.info, need)

    def _index(self, ctx: Context, event: str, facts: dict[str, Any]) -> None:
        """Append this lineage's state to the certificate history of the store's index."""
        record = {"action": self.name, "step": ctx.step_id, "run_id": ctx.run_id, "event": event}
        ctx.write_index(index.record_cert, {**record, "cert_name": self.params.cert_name, **facts})

    def _days_ok(self, info: CertInfo, need: float) -> None:
        if info.days_left <= need:
            raise VerifyFailed(
                f"the renewed certificate has only {format_left(info.days_left)} left (needs more than {need:g}); "
                "the CA issues shorter certificates than renew_days: lower renew_days or set verify_days",
            )

    def _wait_served(self, endpoint: Endpoint, serial: str) -> Served:
        """The served certificate once ``_CONFIRM`` handshakes in a row show ``serial`` (or the deadline's).

        A reloading server hands connections to old and new workers for a moment: one handshake
        with the new certificate does not yet mean every client gets it.
        """
        p = self.params
        deadline = time.monotonic() + p.verify_timeout
        seen = 0
        while True:
            try:
                served = fetch_served(endpoint, ca_bundle=p.ca_bundle, timeout=p.timeout)
            except (OSError, ssl.SSLError, ValueError) as exc:
                seen = 0
                if time.monotonic() >= deadline:
                    raise VerifyFailed(f"cannot read the certificate served by {endpoint}: {exc}") from None
            else:
                seen = seen + 1 if served.info.serial == serial else 0
                if seen >= _CONFIRM or time.monotonic() >= deadline:
                    return served
            time.sleep(0.1 if seen else 0.3)

    def rollback(self, ctx: Context, changes: list[Change]) -> None:
        """Keep the renewed certificate: it is as valid as the old one (which remains in ``archive/``)."""
        for change in changes:
            ctx.event(
                "ssl.rollback_kept",
                target=change.target,
                reason="a renewed certificate is kept on rollback: it is valid, the previous one remains in archive/",
            )


__all__ = ["SslRenew"]
