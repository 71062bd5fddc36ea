"""vuln.check and ``cms_update: {security: force}`` on real WordPress shops over SSH, and composer audit.

The vulnerability feed is a file in the Wordfence Intelligence format that the test writes:
it lists the lab plugin ``shop-cart`` up to 1.0.1 as vulnerable, fixed in 1.1.0 (a minor
release, beyond a ``plugins: patch`` policy).
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from maintkit.inventory import load_inventory
from maintkit.playbook import playbook_from_text
from maintkit.results import StepStatus
from maintkit.state.index import series
from tests import runs
from tests.cms_helpers import make_shop_cart_zip, wp_plugin_version
from tests.lab.test_cms_composer import Project, project  # noqa: F401  (fixture)
from tests.lab.wp_fixtures import Shop, run, steps, write_inventory

pytestmark = pytest.mark.lab

TITLE = "Shop Cart <= 1.0.1 - Authenticated SQL Injection"
CVE = "CVE-2026-0001"
WHY = f"security: fixes {TITLE} ({CVE})"


def write_feed(path: Path) -> Path:
    """A feed: shop-cart <= 1.0.1 (fixed in 1.1.0), plus records that do not match the lab site."""
    records: dict[str, Any] = {
        "0d1f-shop-cart": {
            "id": "0d1f-shop-cart",
            "title": TITLE,
            "software": [
                {
                    "type": "plugin",
                    "name": "Shop Cart",
                    "slug": "shop-cart",
                    "affected_versions": {
                        "* - 1.0.1": {
                            "from_version": "*",
                            "from_inclusive": True,
                            "to_version": "1.0.1",
                            "to_inclusive": True,
                        }
                    },
                    "patched": True,
                    "patched_versions": ["1.1.0"],
                    "remediation": "Update to version 1.1.0, or a newer patched version",
                }
            ],
            "informational": False,
            "description": "The plugin does not escape the cart id.",
            "references": ["https://example.test/shop-cart-sqli"],
            "cwe": {"id": 89, "name": "SQL Injection"},
            "cvss": {"vector": "CVSS:3.1/AV:N/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:N", "score": 8.1, "rating": "High"},
            "cve": CVE,
            "published": "2026-11-30 12:00:00",
            "updated": "2026-11-30 12:00:00",
        },
        "77aa-akismet-old": {
            "id": "77aa-akismet-old",
            "title": "Akismet <= 4.0 - XSS",
            "software": [
                {
                    "type": "plugin",
                    "slug": "akismet",
                    "affected_versions": {
                        "* - 4.0": {
                            "from_version": "*",
                            "from_inclusive": True,
                            "to_version": "4.0",
                            "to_inclusive": True,
                        }
                    },
                    "patched": True,
                    "patched_versions": ["4.0.1"],
                }
            ],
            "cvss": {"score": 6.1, "rating": "Medium"},
            "cve": "CVE-2017-0002",
            "references": [],
        },
        "99cc-core-old": {
            "id": "99cc-core-old",
            "title": "WordPress Core < 6.0.3 - Stored XSS",
            "software": [
                {
                    "type": "core",
                    "slug": "wordpress",
                    "affected_versions": {
                        "* - 6.0.3": {
                            "from_version": "*",
                            "from_inclusive": True,
                            "to_version": "6.0.3",
                            "to_inclusive": False,
                        }
                    },
                    "patched": True,
                    "patched_versions": ["6.0.3"],
                }
            ],
            "cvss": {"score": 5.4, "rating": "Medium"},
            "cve": "CVE-2022-0003",
            "references": [],
        },
    }
    path.write_text(json.dumps(records))
    return path


VULN_ONLY = """\
name: vuln
stages:
  - env: staging
    steps:
      - {id: vuln, action: vuln.check}
"""

EXPECTED_ITEM = {
    "severity": "high",
    "title": TITLE,
    "package": "shop-cart",
    "version": "1.0.0",
    "fixed_in": "1.1.0",
    "advice": "update shop-cart to 1.1.0",
}


def test_vuln_check_reports_the_vulnerable_plugin_with_exact_fields(shop: Shop) -> None:  # noqa: F811
    feed = write_feed(shop.tmp / "feed.json")
    stamp = datetime(2026, 12, 3, 14, 0, tzinfo=UTC).timestamp()
    os.utime(feed, (stamp, stamp))
    inv = write_inventory(shop, vuln_feed={"file": str(feed), "max_age": "100000d"})
    state = shop.tmp / "state"

    result = run(shop, inv, playbook_from_text(VULN_ONLY), env="staging")

    assert result.exit_code == 1
    step = steps(result, "staging")["vuln"]
    assert step.status is StepStatus.FAILED
    label = step.data["feed"]
    assert label.startswith("feed of 2026-12-03 14:00 UTC, ") and label.endswith(" old")
    assert step.error == (
        f"check: 1 known vulnerability (1 high): shop-cart 1.0.0: {TITLE} (update shop-cart to 1.1.0) ({label})"
    )
    assert step.data["source"] == str(feed) and step.data["count"] == 1
    assert step.data["packages"] == 4  # core, shop-cart, akismet, twentytwentythree
    assert step.data["vulnerabilities"] == [
        {
            **EXPECTED_ITEM,
            "id": "0d1f-shop-cart",
            "type": "plugin",
            "cve": CVE,
            "cvss": 8.1,
            "references": ["https://example.test/shop-cart-sqli"],
        }
    ]
    (point,) = series(state, "shop", "staging", "findings")
    assert point["run_id"] == result.run_id
    assert (point["check"], point["count"], point["items"]) == ("vuln", 1, [EXPECTED_ITEM])

    # acknowledged by id: clean, and the clean run is recorded too
    inv = write_inventory(shop, vuln_feed={"file": str(feed), "max_age": "100000d"})
    acknowledged = playbook_from_text(
        VULN_ONLY.replace("action: vuln.check}", "action: vuln.check, with: {ignore: [CVE-2026-0001]}}")
    )
    clean = run(shop, inv, acknowledged, env="staging")
    assert clean.ok and clean.changed == 0
    assert (
        steps(clean, "staging")["vuln"].reason
        == f"no known vulnerability in 4 package(s) ({steps(clean, 'staging')['vuln'].data['feed']})"
    )
    assert [(p["count"], p["items"]) for p in series(state, "shop", "staging", "findings")] == [
        (1, [EXPECTED_ITEM]),
        (0, []),
    ]
    assert not (shop.staging.path / ".maint" / "php-cache").exists()  # read-only: no compiled-code cache


def test_a_feed_that_cannot_be_read_fails_and_records_nothing(shop: Shop) -> None:  # noqa: F811
    state = shop.tmp / "state"
    missing = shop.tmp / "no-feed.json"
    inv = write_inventory(shop, vuln_feed={"file": str(missing)})

    result = run(shop, inv, playbook_from_text(VULN_ONLY), env="staging")

    assert (
        steps(result, "staging")["vuln"].error == f"check: vulnerability feed file {missing}: No such file or directory"
    )
    unset = run(shop, write_inventory(shop), playbook_from_text(VULN_ONLY), env="staging")
    assert steps(unset, "staging")["vuln"].error == (
        "check: vuln.check: no vulnerability feed configured (set the vuln_feed variable: url or file)"
    )
    stale = shop.tmp / "stale.json"
    write_feed(stale)
    os.utime(stale, (1_000_000_000, 1_000_000_000))
    old = run(shop, write_inventory(shop, vuln_feed={"file": str(stale)}), playbook_from_text(VULN_ONLY), env="staging")
    error = str(steps(old, "staging")["vuln"].error)
    assert error.startswith(
        f"check: vulnerability feed file {stale} is too old to vouch for anything: feed of 2001-09-09 01:46 UTC, "
    )
    assert error.endswith(" d old (max_age 24h); update it")
    assert series(state, "shop", "staging", "findings") == []


def test_security_force_takes_the_fix_beyond_the_patch_level_through_staging_then_production(shop: Shop) -> None:  # noqa: F811
    make_shop_cart_zip(shop.repo, "1.0.1")  # what plugins: patch would take: still vulnerable
    make_shop_cart_zip(shop.repo, "1.1.0")  # the fix, a minor release
    feed = write_feed(shop.tmp / "feed.json")
    policy = {"plugins": "patch", "core": "none", "themes": "none"}
    vuln_feed = {"file": str(feed)}

    plain = run(shop, write_inventory(shop, policy, vuln_feed=vuln_feed), env="staging", check=True)
    assert [(u["name"], u["to"]) for u in steps(plain, "staging")["update"].data["updates"]] == [("shop-cart", "1.0.1")]

    inv = write_inventory(shop, {**policy, "security": "force"}, vuln_feed=vuln_feed)
    monday = run(shop, inv, env="staging")

    assert monday.ok, json.dumps(monday.to_dict(), indent=1)[-3000:]
    update = steps(monday, "staging")["update"]
    assert [(u["name"], u["from"], u["to"], u["reason"]) for u in update.data["updates"]] == [
        ("shop-cart", "1.0.0", "1.1.0", WHY)
    ]
    assert update.diff is not None and f"plugin shop-cart: 1.0.0 -> 1.1.0 ({WHY})" in update.diff
    assert update.data["security"]["mode"] == "force" and update.data["security"]["source"] == str(feed)
    assert [v["fixed_in"] for v in update.data["security"]["vulnerable"]] == ["1.1.0"]
    assert wp_plugin_version(shop.staging.path, "shop-cart") == "1.1.0"
    assert wp_plugin_version(shop.production.path, "shop-cart") == "1.0.0"
    logged = [e for e in runs.events(monday.run_dir) if e.get("event") == "step.verified" and e.get("step") == "update"]
    assert logged and logged[0]["data"]["updates"][0]["reason"] == WHY

    wednesday = run(shop, inv, env="production", promote_from=monday.run_id)

    assert wednesday.ok, json.dumps(wednesday.to_dict(), indent=1)[-3000:]
    assert wp_plugin_version(shop.production.path, "shop-cart") == "1.1.0"
    promoted = steps(wednesday, "production")["update"]
    assert promoted.data["promoted"]["from_env"] == "staging"
    assert [(u["name"], u["to"]) for u in promoted.data["updates"]] == [("shop-cart", "1.1.0")]

    again = run(shop, inv, env="staging")
    assert again.ok and steps(again, "staging")["update"].status is StepStatus.UNCHANGED
    assert steps(again, "staging")["update"].data["security"]["vulnerable"] == []


def _composer_inventory(proj: Project, vars_: dict[str, Any] | None = None) -> Any:
    envs = {"staging": proj.staging_host.env(proj.staging)}
    settings = {"composer_env": {"COMPOSER_HOME": str(proj.home), "COMPOSER_DISABLE_NETWORK": "1"}}
    sites = {"shop": {"platform": "composer", "vars": {"cms_update": settings, **(vars_ or {})}, "environments": envs}}
    return load_inventory(runs.write_inventory(proj.tmp, sites, unique=True))


def test_composer_audit_without_an_advisory_source_says_so(project: Project) -> None:  # noqa: F811
    result = runs.run(VULN_ONLY, _composer_inventory(project), project.tmp / "state")

    step = [s for site in result.sites for s in site.steps][0]
    assert step.error == (
        "check: composer audit has no advisory source: packagist.org is disabled and no repository of type "
        "composer is configured (artifact, path and vcs repositories publish no advisories), so composer would "
        "report nothing without having checked anything"
    )
    assert series(project.tmp / "state", "shop", "staging", "findings") == []


def test_composer_audit_that_cannot_reach_packagist_fails_clearly(project: Project) -> None:  # noqa: F811
    manifest = json.loads((project.staging / "composer.json").read_text())
    manifest["repositories"] = [r for r in manifest["repositories"] if r != {"packagist.org": False}]
    (project.staging / "composer.json").write_text(json.dumps(manifest, indent=4))

    result = runs.run(VULN_ONLY, _composer_inventory(project), project.tmp / "state")

    step = [s for site in result.sites for s in site.steps][0]
    assert step.status is StepStatus.FAILED
    assert str(step.error).startswith("check: composer audit could not check against packagist.org (exit 255): ")
    assert "Network disabled, request canceled: https://repo.packagist.org/packages.js" in str(step.error)
