"""``ssl.issue``: the first certificate of a certbot lineage (unchanged when it has these names)."""

from __future__ import annotations

from typing import Any

from maintkit._text import tail as text_tail
from maintkit.action import Action, Context
from maintkit.actions.ssl.certbot import certbot_failure, reload_server
from maintkit.actions.ssl.params import SslIssueParams
from maintkit.actions.ssl.served import format_date
from maintkit.errors import ApplyFailed, NotReversible
from maintkit.probes import Probe
from maintkit.probes.ssl import CertFile, CertInfo
from maintkit.results import Change, Check


class SslIssue(Action[SslIssueParams]):
    """Obtain the first certificate of a lineage with certbot (idempotent: unchanged when it exists for these names).

    Rollback deletes a lineage it created (``certbot delete``); changing the names of an
    existing lineage is not reversible.
    """

    name = "ssl.issue"
    Params = SslIssueParams
    summary = "Issue a certificate with certbot for new shops (unchanged when the lineage has these names)."
    rollback_kind = "undo"

    def probes(self, ctx: Context) -> list[Probe[Any]]:
        return [CertFile(self.params.live_cert())]

    def check(self, ctx: Context) -> Check:
        p = self.params
        info = ctx.probe(CertFile(p.live_cert()))
        want = sorted({d.lower() for d in p.domains})
        if info is None:
            return Check.change(f"no certificate {p.cert_name!r} yet: issue for {', '.join(want)}", snapshot=None)
        have = sorted({n.lower() for n in info.names})
        ctx.record(lineage={**info.to_dict(), "path": p.live_cert()})
        if have == want:
            return Check.ok(f"{p.cert_name} covers {', '.join(want)}, valid until {format_date(info.not_after)}")
        diff = "".join(f"-{n}\n" for n in have if n not in want) + "".join(f"+{n}\n" for n in want if n not in have)
        return Check.change(
            f"{p.cert_name} covers {', '.join(have)}: reissue for {', '.join(want)}", diff=diff, snapshot=info
        )

    def apply(self, ctx: Context, check: Check) -> list[Change]:
        p = self.params
        existed: CertInfo | None = check.snapshot
        argv = [*p.certbot, "certonly", "--non-interactive", "--agree-tos", "--cert-name", p.cert_name]
        argv += ["--webroot", "-w", p.webroot or ""] if p.authenticator == "webroot" else [f"--{p.authenticator}"]
        for domain in p.domains:
            argv += ["-d", domain]
        argv += ["--email", p.email] if p.email else ["--register-unsafely-without-email"]
        if p.server:
            argv += ["--server", p.server]
        if p.key_type:
            argv += ["--key-type", p.key_type]
        if existed is not None:
            argv += ["--expand", "--renew-with-new-domains"]
        argv += [*p.dir_args(), *p.extra_args]
        res = ctx.run(argv, env=p.env or None, check=False, timeout=p.certbot_timeout)
        if not res.ok:
            raise certbot_failure(ctx, p, "certonly", res)
        ctx.invalidate()
        new = ctx.probe(CertFile(p.live_cert()))
        if new is None:
            raise ApplyFailed(f"certbot exited 0 but {p.live_cert()} is missing")
        reload_server(ctx, p.reload)
        ctx.record(lineage={**new.to_dict(), "path": p.live_cert()})
        before = list(existed.names) if existed else None
        return [
            Change(
                f"certificate {p.cert_name}",
                "issued" if existed is None else "reissued",
                before,
                list(new.names),
                existed is None,
            )
        ]

    def rollback(self, ctx: Context, changes: list[Change]) -> None:
        p = self.params
        for change in changes:
            if not change.undo:
                raise NotReversible(
                    f"the names of {p.cert_name} were changed; the previous certificate remains in archive/",
                )
            argv = [*p.certbot, "delete", "--cert-name", p.cert_name, "--non-interactive", *p.dir_args()]
            res = ctx.run(argv, env=p.env or None, check=False, timeout=p.certbot_timeout)
            if not res.ok:
                raise ApplyFailed(f"certbot delete failed: {text_tail(res.stderr or res.stdout, 400)}")


__all__ = ["SslIssue"]
