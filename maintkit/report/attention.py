"""What needs attention next on a site: expiring certificates, missing backups, failed runs."""

from __future__ import annotations

from datetime import datetime, timedelta

from maintkit.report.model import Attention, SiteReport

__all__ = ["BACKUP_MAX_AGE", "CERT_WARN_DAYS", "attention_for"]

CERT_WARN_DAYS = 30
BACKUP_MAX_AGE = timedelta(hours=48)


def attention_for(site: SiteReport, ref: datetime) -> list[Attention]:
    """What to do next on ``site``, judged at ``ref`` (certificates, backups, failed runs, rollbacks)."""
    out: list[Attention] = []
    for cert in site.certificates:
        if cert.days_left is not None and cert.days_left < 0:
            out.append(Attention("urgent", f"certificate {cert.name} expired on {cert.not_after:%Y-%m-%d}"))
        elif cert.days_left is not None and cert.days_left < CERT_WARN_DAYS:
            when = f" on {cert.not_after:%Y-%m-%d}" if cert.not_after else ""
            level = "urgent" if cert.days_left < 14 else "soon"
            out.append(
                Attention(level, f"certificate {cert.name} expires in {int(cert.days_left)} days{when}: renew it")
            )
        elif not cert.ok:
            out.append(Attention("urgent", f"certificate {cert.name} failed its last check"))
    verified = [b for b in site.backups if b.verified and b.when is not None]
    recent = [b for b in verified if b.when is not None and ref - b.when <= BACKUP_MAX_AGE]
    if not recent:
        if verified:
            last = max(b.when for b in verified if b.when is not None)
            out.append(
                Attention(
                    "urgent",
                    f"no verified backup in the last 48 hours (last verified backup {last:%Y-%m-%d %H:%M} UTC)",
                )
            )
        elif site.backups:
            out.append(
                Attention("urgent", "no verified backup in the last 48 hours (backups were taken but not verified)")
            )
        else:
            out.append(Attention("urgent", "no verified backup in the last 48 hours (none in this period)"))
    if site.last_status and site.last_status not in ("ok",):
        out.append(Attention("urgent", f"the last run ended {site.last_status}: see the incidents below"))
    for u in site.updates:
        if u.rolled_back:
            out.append(
                Attention(
                    "soon",
                    f"the update of {u.package} {u.from_version} -> {u.to_version} on {u.env} was rolled back: "
                    "investigate before retrying",
                )
            )
    for rb in site.rollbacks:
        if not rb.ok:
            out.append(
                Attention("urgent", f"a rollback on {rb.env} failed ({', '.join(rb.steps)}): check the site by hand")
            )
    return out + _takeover_attention(site)


def _takeover_attention(site: SiteReport) -> list[Attention]:
    """A dead run whose changes could not all be undone when its lock was taken over."""
    return [
        Attention(
            "urgent",
            f"run {t.dead_run} died on {t.env}; when its lock was taken over, {', '.join(t.incomplete)} "
            "could not be undone: check the site by hand",
        )
        for t in site.takeovers
        if t.incomplete
    ]
