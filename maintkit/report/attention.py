"""What needs attention next on a site: expiring certificates, missing backups, failed runs."""

from __future__ import annotations

from datetime import datetime, timedelta

from maintkit.report.model import Attention, Backup, FindingSummary, SiteReport, Update

__all__ = ["BACKUP_MAX_AGE", "CERT_WARN_DAYS", "FINDING_ADVICE", "attention_for"]

#: what to do about the findings of each security check (the item's own advice follows when it has one)
FINDING_ADVICE = {
    "integrity": "compare the changed files with a clean copy, restore them and find how they changed "
    "(a changed checkout or payment file can be a card skimmer)",
    "vuln": "update to the fixed versions (cms_update: {security: force} makes the next monthly update take them)",
    "malware": "take the files out of the site, restore clean copies, find how they got in and change the passwords",
    "admins": "confirm the administrators with the shop owner, then acknowledge them (see docs/security.md)",
}
_URGENT_CHECKS = ("malware", "integrity")

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
        if u.rolled_back and not _superseded(site, u):
            out.append(
                Attention(
                    "soon",
                    f"the update of {u.package} {u.from_version} -> {u.to_version} on {u.env} was rolled back: "
                    "investigate before retrying",
                )
            )
    for u in site.updates:
        if u.untried:
            out.append(
                Attention(
                    "soon",
                    f"{u.package} {u.from_version} -> {u.to_version} on {u.env}: updated without trying on "
                    "staging first (the site has no staging: direct_updates)",
                )
            )
    for line in dict.fromkeys(site.held):  # versions isolation held back, once each
        out.append(Attention("soon", f"held back: {line}; retried when a newer version appears"))
    for rb in site.rollbacks:
        if not rb.ok:
            out.append(
                Attention("urgent", f"a rollback on {rb.env} failed ({', '.join(rb.steps)}): check the site by hand")
            )
    return out + _offsite_attention(site) + _takeover_attention(site) + _health_attention(site)


def _superseded(site: SiteReport, u: Update) -> bool:
    """A later update of the same package on the same environment went through."""
    return any(
        v.package == u.package and v.env == u.env and not v.rolled_back and not v.initial
        and v.when is not None and u.when is not None and v.when > u.when
        for v in site.updates
    )  # fmt: skip


def _offsite_attention(site: SiteReport) -> list[Attention]:
    """The latest backup of each environment without an off-site copy."""
    latest: dict[str, Backup] = {}
    for b in site.backups:
        seen = latest.get(b.env)
        if seen is None or (b.when and (seen.when is None or b.when >= seen.when)):
            latest[b.env] = b
    return [
        Attention(
            "soon",
            f"the latest backup of {env} ({b.id}) has no off-site copy: a lost or hacked host would take it "
            "with the shop; copy it off-site (backup.copy)",
        )
        for env, b in sorted(latest.items())
        if not b.offsite
    ]


def _finding_attention(f: FindingSummary) -> Attention:
    """One security check with findings: how many, the worst, and what to do."""
    worst = f.items[0] if f.items else {}
    title = worst.get("title", "")
    where = worst.get("path") or (f"{worst.get('package', '')} {worst.get('version', '')}".strip())
    first = f"; worst: {title}" + (f" ({where})" if where and where not in title else "") if title else ""
    advice = worst.get("advice", "")
    todo = FINDING_ADVICE.get(f.check, "look into them")
    level = "urgent" if f.worst in ("critical", "high") or f.check in _URGENT_CHECKS else "soon"
    noun = "finding" if f.count == 1 else "findings"
    when = f" (checked {f.when:%Y-%m-%d %H:%M} UTC)" if f.when else ""
    return Attention(
        level,
        f"{f.check} on {f.env}: {f.count} {noun}{first}{when}: {todo}" + (f". {advice}" if advice else ""),
    )


def _health_attention(site: SiteReport) -> list[Attention]:
    """Security findings of the latest checks, and incidents still open."""
    out = [_finding_attention(f) for h in site.health for f in h.findings if f.count > 0]
    for h in site.health:
        for inc in h.incidents:
            if inc.open and inc.opened is not None:
                out.append(
                    Attention(
                        "urgent",
                        f"{inc.check} on {inc.env} is down since {inc.opened:%Y-%m-%d %H:%M} UTC "
                        f"({inc.failures} failed runs): {inc.reason or 'see the incidents below'}",
                    )
                )
    return out


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
