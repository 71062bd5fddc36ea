"""``ssl.check``: the certificate the server serves, read from the controller (read-only)."""

from __future__ import annotations

from typing import Any

from maintkit.action import Action, Context
from maintkit.actions.ssl.params import SslCheckParams
from maintkit.actions.ssl.served import Served, format_date, format_left, resolve_endpoint, served_or_fail
from maintkit.errors import CheckFailed
from maintkit.probes import Probe
from maintkit.probes.ssl import OpensslEnddate
from maintkit.results import Change, Check
from maintkit.state import index


class SslCheck(Action[SslCheckParams]):
    """Read the certificate the server serves, from the controller (read-only; never changes anything).

    Fails below ``fail_days``, when the chain does not verify or the names do not cover the
    server name; warns below ``warn_days``. Records ``cert`` (expiry, issuer, serial...) for reports.
    """

    name = "ssl.check"
    Params = SslCheckParams
    summary = "Check the served TLS certificate from outside: expiry, names, chain (read-only)."
    rollback_kind = "noop"
    rollback_reason = "a check changes nothing"
    depends_on_previous = True

    def probes(self, ctx: Context) -> list[Probe[Any]]:
        return [OpensslEnddate(self.params.cert_file)] if self.params.cert_file else []

    def check(self, ctx: Context) -> Check:
        p = self.params
        endpoint = resolve_endpoint(ctx, p.host, p.port, p.server_name)
        if endpoint is None:
            raise CheckFailed("no host to connect to: set url on the environment or host: on the step")
        served = served_or_fail(endpoint, p.ca_bundle, p.timeout)
        cert = served.to_dict()
        warnings = self._file_warnings(ctx, served, cert)
        ctx.record(cert=cert)
        problems = self._problems(served)
        ctx.write_index(
            index.record_cert,
            {"action": self.name, "step": ctx.step_id, "run_id": ctx.run_id, "event": "checked", **cert,
             "problems": problems},
        )  # fmt: skip
        if problems and not p.report_only:
            raise CheckFailed(f"{endpoint}: " + "; ".join(problems), details={"cert": cert})
        warnings = problems + warnings
        days = served.info.days_left
        if days < p.warn_days and not problems:
            warnings.insert(0, f"expires in {format_left(days)} (warn below {p.warn_days:g})")
        reason = (
            f"{endpoint}: valid until {format_date(served.info.not_after)}, {format_left(days)} left, "
            f"issuer {served.info.issuer}, serial {served.info.serial}"
        )
        if warnings:
            reason += "; warning: " + "; ".join(warnings)
            ctx.record(warnings=warnings)
        return Check.ok(reason, cert=cert, warnings=warnings)

    def rollback(self, ctx: Context, changes: list[Change]) -> None:
        """Nothing to undo: ssl.check never changes anything."""

    def _problems(self, served: Served) -> list[str]:
        p = self.params
        info = served.info
        out = []
        if info.days_left < 0:
            out.append(f"the certificate expired on {format_date(info.not_after)}")
        elif info.days_left < p.fail_days:
            out.append(
                f"expires in {format_left(info.days_left)} (fail below {p.fail_days:g}), "
                f"on {format_date(info.not_after)}"
            )
        if p.require_trusted and not served.chain_ok:
            out.append(f"the chain does not verify: {served.chain_error}")
        if p.require_name and not info.covers(served.endpoint.server_name):
            out.append(
                f"the certificate names {', '.join(info.names) or '(none)'} do not cover {served.endpoint.server_name}"
            )
        return out

    def _file_warnings(self, ctx: Context, served: Served, cert: dict[str, Any]) -> list[str]:
        path = self.params.cert_file
        if not path:
            return []
        facts = ctx.probe(OpensslEnddate(path))
        if facts is None:
            raise CheckFailed(f"cannot read the certificate file {path} on {ctx.env.display_host}")
        end, serial = facts
        cert["file"] = {"path": path, "not_after": end.isoformat(timespec="seconds"), "serial": serial}
        if serial and serial != served.info.serial.lstrip("0"):
            return [
                f"{path} (serial {serial}, valid until {format_date(end)}) is not the certificate served: "
                "reload the web server?"
            ]
        return []


__all__ = ["SslCheck"]
