"""Known vulnerabilities of installed WordPress packages: matching the feed, and ``security:``.

:func:`matches` compares installed core, plugin and theme versions with the affected ranges
of the vulnerability feed (:mod:`maintkit.actions.watch.feed`); ``vuln.check`` reports them.
:func:`security_policy` gives cms.update's version policy the fix of each vulnerable
package, so ``security: force`` takes it beyond the level or pin (see
:func:`maintkit.actions.cms.policy.choose`).

Severity comes from the CVSS score (9.0+ critical, 7.0+ high, 4.0+ medium, else low; the
feed's rating when there is no score; medium when there is neither). ``fixed_in`` is the
lowest patched version above the installed one that no range of the advisory covers.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from maintkit.action import Context
from maintkit.actions.cms.params import CmsUpdateParams
from maintkit.actions.cms.plan import Installed
from maintkit.actions.cms.policy import SecurityFix, Version, VersionPolicy
from maintkit.actions.watch.feed import VARS_KEY, Advisory, Feed, FeedConfig, FeedError, Range, read_feed
from maintkit.errors import CheckFailed

SEVERITIES = ("critical", "high", "medium", "low")


def _bound(text: str) -> Version | None:
    return None if text in ("", "*") else Version.try_parse(text)


def in_range(version: Version, rng: Range) -> bool:
    """True when ``version`` lies in ``rng`` (``*`` unbounded; an unreadable bound matches nothing)."""
    low, high = _bound(rng.from_version), _bound(rng.to_version)
    if (low is None and rng.from_version not in ("", "*")) or (high is None and rng.to_version not in ("", "*")):
        return False
    if low is not None and (version < low or (version == low and not rng.from_inclusive)):
        return False
    return not (high is not None and (version > high or (version == high and not rng.to_inclusive)))


def affects(advisory: Advisory, version: str) -> bool:
    """True when the installed ``version`` is in one of the advisory's affected ranges."""
    v = Version.try_parse(version)
    return v is not None and any(in_range(v, r) for r in advisory.ranges)


def fixed_in(advisory: Advisory, version: str) -> str | None:
    """The lowest patched version above ``version`` that the advisory does not affect, or None."""
    cur = Version.try_parse(version)
    fixes = [
        v
        for v in (Version.try_parse(p) for p in advisory.patched_versions)
        if v is not None and (cur is None or v > cur) and not any(in_range(v, r) for r in advisory.ranges)
    ]
    return str(min(fixes)) if fixes else None


def severity(advisory: Advisory) -> str:
    """critical | high | medium | low, from the CVSS score (else the rating, else medium)."""
    score = advisory.cvss_score
    if score is not None:
        return "critical" if score >= 9.0 else "high" if score >= 7.0 else "medium" if score >= 4.0 else "low"
    return advisory.cvss_rating if advisory.cvss_rating in SEVERITIES else "medium"


@dataclass(frozen=True)
class Match:
    """One known vulnerability of one installed package."""

    package: Installed
    advisory: Advisory
    severity: str
    fixed_in: str | None

    def item(self) -> dict[str, Any]:
        """The ``findings`` series item: ``{severity, title, package, version, fixed_in, advice}``."""
        name = self.package.name
        advice = (
            f"update {name} to {self.fixed_in}"
            if self.fixed_in
            else f"no fixed release is known: deactivate or replace {name}"
        )
        return {
            "severity": self.severity,
            "title": self.advisory.title,
            "package": name,
            "version": self.package.version,
            "fixed_in": self.fixed_in,
            "advice": advice,
        }

    def public(self) -> dict[str, Any]:
        """The item plus what the step data keeps: id, type, CVE, CVSS score, references."""
        adv = self.advisory
        return {
            **self.item(),
            "id": adv.id,
            "type": self.package.kind,
            "cve": adv.cve or None,
            "cvss": adv.cvss_score,
            "references": list(adv.references),
        }


def matches(feed: Feed, packages: Iterable[Installed], ignore: Iterable[str] = ()) -> list[Match]:
    """Every advisory of ``feed`` affecting the installed version of one of ``packages``.

    ``ignore`` holds advisory ids or CVE ids acknowledged by a human.
    """
    skip = {i.strip().lower() for i in ignore}
    out = []
    for pkg in packages:
        for adv in feed.for_package(pkg.kind, pkg.name):
            if adv.id.lower() in skip or (adv.cve and adv.cve.lower() in skip):
                continue
            if affects(adv, pkg.version):
                out.append(Match(pkg, adv, severity(adv), fixed_in(adv, pkg.version)))
    return out


def security_fix(found: list[Match]) -> SecurityFix | None:
    """The fix of the known vulnerabilities of one package: the highest ``fixed_in`` of those with a fix.

    ``fixed_in`` is None (and ``reason`` names the advisories) when none has a fixed release.
    """
    if not found:
        return None
    fixed = [(v, m) for m in found if (v := Version.try_parse(m.fixed_in)) is not None]
    if not fixed:
        return SecurityFix(None, "; ".join(m.advisory.label for m in found))
    return SecurityFix(str(max(v for v, _ in fixed)), "fixes " + "; ".join(m.advisory.label for _, m in fixed))


# ----------------------------------------------------------------------------- the feed of a run
def feed_config(ctx: Context, explicit: FeedConfig | None, what: str) -> FeedConfig:
    """``explicit``, else the ``vuln_feed`` variable; CheckFailed naming ``what`` when neither is set."""
    if explicit is not None:
        return explicit
    raw = ctx.vars.get(VARS_KEY)
    if raw is None:
        raise CheckFailed(f"{what}: no vulnerability feed configured (set the {VARS_KEY} variable: url or file)")
    try:
        return FeedConfig.model_validate(raw)
    except ValueError as exc:
        raise CheckFailed(f"{what}: invalid {VARS_KEY} variable: {exc}") from None


def load_feed(ctx: Context, config: FeedConfig) -> Feed:
    """The feed, read once per run for all sites (a download is cached under the state dir)."""
    key = ("vuln-feed", config.source, str(config.max_age))
    memo = ctx.options.memo
    with memo.lock(key):
        feed = memo.get(key)
        if isinstance(feed, Feed):
            return feed
        try:
            feed = read_feed(config, ctx.options.state_dir)
        except FeedError as exc:
            raise CheckFailed(str(exc)) from None
        memo.put(key, feed)
        return feed


def security_policy(ctx: Context, params: CmsUpdateParams, packages: Iterable[Installed]) -> VersionPolicy:
    """The version policy of ``params``; with ``security`` report/force, plus the fix of each vulnerable package."""
    policy = params.policy()
    if params.security == "off":
        return policy
    feed = load_feed(ctx, feed_config(ctx, params.security_feed, "cms.update security"))
    found: dict[str, list[Match]] = {}
    for match in matches(feed, packages):
        found.setdefault(match.package.key, []).append(match)
    fixes = {key: fix for key, group in found.items() if (fix := security_fix(group)) is not None}
    ctx.record(
        security={
            "mode": params.security,
            "feed": feed.label(),
            "source": feed.source,
            "vulnerable": [m.public() for group in found.values() for m in group],
        }
    )
    return policy.model_copy(update={"fixes": fixes})


__all__ = [
    "SEVERITIES",
    "Match",
    "affects",
    "feed_config",
    "fixed_in",
    "in_range",
    "load_feed",
    "matches",
    "security_fix",
    "security_policy",
    "severity",
]
