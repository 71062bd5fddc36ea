"""``vuln.check``: known vulnerabilities of what is installed. Read-only.

- WordPress: core, plugins and themes (read through the PHP helper of ``cms.update``, the
  same ``cms_update`` settings) against the vulnerability feed (Wordfence Intelligence
  format, :mod:`maintkit.actions.watch.feed`): URL or file, cached, its age in the result.
- Composer platforms: ``composer audit --format=json --locked`` in the project, as
  ``cms.update`` runs composer (same command, environment and directory). A project whose
  repositories publish no advisories (packagist.org disabled, only artifact/path/vcs
  repositories) fails: composer would answer "no advisories" without having asked anyone.

Every run appends one ``findings`` point (``check: vuln``), also when clean. The step fails
when a finding reaches ``fail_on`` (default: every finding); lower ones are warnings.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import Field

from maintkit._text import tail
from maintkit.action import Action, Context, Params
from maintkit.actions.cms import COMPOSER_PLATFORMS, platform_of
from maintkit.actions.cms.drivers import ComposerDriver, WordPressDriver
from maintkit.actions.cms.params import effective_params
from maintkit.actions.cms.security import feed_config, load_feed, matches
from maintkit.actions.watch.common import FINDINGS, SEVERITIES, findings_point, write_point
from maintkit.actions.watch.feed import FeedConfig
from maintkit.errors import CheckFailed, MaintkitError
from maintkit.results import Change, Check

Severity = Literal["critical", "high", "medium", "low"]
#: severity of a composer advisory that carries none (composer < 2.6 prints none)
COMPOSER_DEFAULT_SEVERITY = "high"


class VulnCheckParams(Params):
    """Parameters of ``vuln.check``."""

    feed: FeedConfig | None = Field(None, description="Vulnerability feed {url | file, max_age} (default: vuln_feed)")
    fail_on: Severity = Field("low", description="Fail at this severity or worse; lower findings only warn")
    ignore: list[str] = Field(default_factory=list, description="Acknowledged advisory ids or CVE ids")
    cms: dict[str, Any] | None = Field(
        None, description="cms.update settings (root, php, composer, composer_env) over the cms_update variable"
    )


# ----------------------------------------------------------------------------- composer audit
def advisory_sources(composer_json: dict[str, Any]) -> list[str]:
    """The repositories of a composer project that can publish security advisories.

    packagist.org unless it is disabled, and every repository of type ``composer``; artifact,
    path, vcs and package repositories publish none.
    """
    repos = composer_json.get("repositories") or []
    entries = list(repos.values()) if isinstance(repos, dict) else list(repos)
    if isinstance(repos, dict):
        entries += [{name: False} for name, value in repos.items() if value is False]
    packagist = True
    out = []
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        if entry.get("packagist.org") is False or entry.get("packagist") is False:
            packagist = False
        elif entry.get("type") == "composer" and entry.get("url"):
            out.append(str(entry["url"]))
    return (["packagist.org"] if packagist else []) + out


def parse_audit(stdout: str) -> list[dict[str, Any]] | None:
    """The advisories of ``composer audit --format=json`` output, or None when it printed no JSON.

    Each: ``{package, id, title, cve, link, affected, severity}``. composer prints
    ``"advisories": []`` when clean and a mapping of package -> list (or index-keyed object).
    """
    start = stdout.find("{")
    try:
        doc = json.loads(stdout[start:]) if start >= 0 else None
    except json.JSONDecodeError:
        return None
    if not isinstance(doc, dict) or "advisories" not in doc:
        return None
    raw = doc["advisories"]
    out: list[dict[str, Any]] = []
    for package, advs in raw.items() if isinstance(raw, dict) else []:
        for adv in advs.values() if isinstance(advs, dict) else advs if isinstance(advs, list) else []:
            if not isinstance(adv, dict):
                continue
            sev = str(adv.get("severity") or "").lower()
            out.append(
                {
                    "package": str(adv.get("packageName") or package),
                    "id": str(adv.get("advisoryId") or ""),
                    "title": str(adv.get("title") or "(untitled advisory)"),
                    "cve": adv.get("cve") or None,
                    "link": adv.get("link") or None,
                    "affected": str(adv.get("affectedVersions") or ""),
                    "severity": sev if sev in SEVERITIES else COMPOSER_DEFAULT_SEVERITY,
                }
            )
    return out


def composer_item(adv: dict[str, Any], version: str) -> dict[str, Any]:
    """The ``findings`` item of one composer advisory."""
    where = f" (affected: {adv['affected']})" if adv["affected"] else ""
    return {
        "severity": adv["severity"],
        "title": adv["title"] + (f" ({adv['cve']})" if adv["cve"] else ""),
        "package": adv["package"],
        "version": version,
        "fixed_in": None,
        "advice": f"update {adv['package']} to a release outside the affected versions{where}",
    }


# ----------------------------------------------------------------------------- the action
class VulnCheck(Action[VulnCheckParams]):
    """Known vulnerabilities: WordPress against the feed, composer packages through composer audit."""

    check_only = True
    name = "vuln.check"
    Params = VulnCheckParams
    summary = "Known vulnerabilities: WordPress core/plugins/themes against a feed, composer audit; never changes."
    rollback_kind = "noop"
    rollback_reason = "a check changes nothing"

    def check(self, ctx: Context) -> Check:
        platform = platform_of(ctx)
        if platform == "wordpress":
            items, data = self._wordpress(ctx)
        elif platform in COMPOSER_PLATFORMS:
            items, data = self._composer(ctx, platform)
        else:
            raise CheckFailed(f"vuln.check has no way to list packages on platform {platform!r}")
        point = findings_point("vuln", items)
        write_point(ctx, FINDINGS, point)
        data = {**data, "count": point["count"], "findings": point["items"]}
        return self._verdict(ctx, items, data)

    def apply(self, ctx: Context, check: Check) -> list[Change]:
        return []

    def rollback(self, ctx: Context, changes: list[Change]) -> None:
        """Nothing to undo: the check changes nothing."""

    def _verdict(self, ctx: Context, items: list[dict[str, Any]], data: dict[str, Any]) -> Check:
        where = data.get("feed") or data.get("source", "")
        if not items:
            return Check.ok(f"no known vulnerability in {data['packages']} package(s) ({where})", **data)
        limit = SEVERITIES.index(self.params.fail_on)
        failing = [i for i in items if SEVERITIES.index(i["severity"]) <= limit]
        counts = ", ".join(f"{n} {s}" for s in SEVERITIES if (n := sum(i["severity"] == s for i in items)))
        lines = "; ".join(f"{i['package']} {i['version']}: {i['title']} ({i['advice']})" for i in items[:10])
        more = f" and {len(items) - 10} more" if len(items) > 10 else ""
        text = f"{len(items)} known vulnerabilit{'y' if len(items) == 1 else 'ies'} ({counts}): {lines}{more} ({where})"
        if failing:
            ctx.record(**data)
            raise CheckFailed(text, details=data)
        return Check.ok(f"warning: {text}", **data)

    def _wordpress(self, ctx: Context) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        feed = load_feed(ctx, feed_config(ctx, self.params.feed, "vuln.check"))
        driver = WordPressDriver.read_only(ctx, self.params.cms)
        state = driver.state(ctx)
        found = matches(feed, state.packages, self.params.ignore)
        data = {"feed": feed.label(), "source": feed.source, "packages": len(state.packages)}
        data["vulnerabilities"] = [m.public() for m in found][:200]
        return [m.item() for m in found], data

    def _composer(self, ctx: Context, platform: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        driver = ComposerDriver(effective_params(ctx, self.params.cms), platform)
        project = driver.project(ctx)
        try:
            manifest = json.loads(ctx.get(f"{project}/composer.json"))
        except (MaintkitError, ValueError) as exc:
            raise CheckFailed(f"vuln.check cannot read {project}/composer.json: {exc}") from None
        sources = advisory_sources(manifest if isinstance(manifest, dict) else {})
        if not sources:
            raise CheckFailed(
                "composer audit has no advisory source: packagist.org is disabled and no repository of "
                "type composer is configured (artifact, path and vcs repositories publish no advisories), "
                "so composer would report nothing without having checked anything"
            )
        versions = {p.name: p.version for p in driver.installed(ctx)}
        res = driver.composer(ctx, ["audit", "--format=json", "--locked", "--no-ansi"])
        advisories = parse_audit(res.stdout)
        if advisories is None:
            raise CheckFailed(
                f"composer audit could not check against {', '.join(sources)} (exit {res.exit_code}): "
                f"{tail(res.stderr or res.stdout, 600)}"
            )
        ignore = {i.lower() for i in self.params.ignore}
        kept = [a for a in advisories if a["id"].lower() not in ignore and str(a["cve"] or "").lower() not in ignore]
        items = [composer_item(a, versions.get(a["package"], "")) for a in kept]
        data = {"source": "composer audit: " + ", ".join(sources), "packages": len(versions), "advisories": kept}
        return items, data


__all__ = ["VulnCheck", "VulnCheckParams", "advisory_sources", "composer_item", "parse_audit"]
