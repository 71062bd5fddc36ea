"""The vulnerability feed reader and matcher, composer audit parsing, and ``security:`` candidate selection."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from maintkit.actions.cms.plan import Installed
from maintkit.actions.cms.policy import SecurityFix, Version, VersionPolicy, choose
from maintkit.actions.cms.security import affects, fixed_in, in_range, matches, security_fix, severity
from maintkit.actions.watch.feed import FeedConfig, FeedError, Range, cache_path, parse_feed, read_feed
from maintkit.actions.watch.vuln import advisory_sources, composer_item, parse_audit

NOW = datetime(2026, 12, 3, 17, 0, tzinfo=UTC)


def record(slug: str, ranges: dict[str, dict[str, Any]], patched: list[str], **extra: Any) -> dict[str, Any]:
    """One record in the Wordfence Intelligence feed format."""
    return {
        "id": extra.pop("id", f"id-{slug}"),
        "title": extra.pop("title", f"{slug} - Cross-Site Scripting"),
        "software": [
            {
                "type": extra.pop("type", "plugin"),
                "name": slug.title(),
                "slug": slug,
                "affected_versions": ranges,
                "patched": bool(patched),
                "patched_versions": patched,
                "remediation": "Update",
            }
        ],
        "informational": False,
        "description": "...",
        "references": ["https://example.test/a", "https://example.test/b"],
        "cwe": {"id": 79, "name": "XSS"},
        "cvss": extra.pop("cvss", {"vector": "CVSS:3.1/AV:N", "score": 7.5, "rating": "High"}),
        "cve": extra.pop("cve", "CVE-2026-1111"),
        "published": "2026-11-01 10:00:00",
        **extra,
    }


def upto(version: str, inclusive: bool = True) -> dict[str, dict[str, Any]]:
    return {
        f"* - {version}": {
            "from_version": "*",
            "from_inclusive": True,
            "to_version": version,
            "to_inclusive": inclusive,
        }
    }


SAMPLE = {
    "a1": record("shop-cart", upto("1.0.1"), ["1.1.0"], id="a1", title="Shop Cart <= 1.0.1 - SQL Injection"),
    "a2": record(
        "shop-cart",
        {
            "2.0.0 - 2.0.3": {
                "from_version": "2.0.0",
                "from_inclusive": True,
                "to_version": "2.0.3",
                "to_inclusive": False,
            }
        },
        ["2.0.3"],
        id="a2",
        cvss={"score": 9.8, "rating": "Critical"},
        cve="CVE-2026-2222",
    ),
    "a3": record("wordpress", upto("6.1.9"), ["6.1.10", "6.2.5"], id="a3", type="core", cvss=None, cve=None),
    "a4": record("other-theme", upto("3.0"), [], id="a4", type="theme", cvss={"rating": "Low"}),
}


def pkg(name: str, version: str, kind: str = "plugin") -> Installed:
    return Installed(name, kind, version, f"/srv/shop/wp-content/plugins/{name}")


def test_parse_feed_indexes_by_kind_and_slug_with_every_field() -> None:
    feed = parse_feed(SAMPLE, "feed.json", NOW - timedelta(hours=3))
    assert feed.records == 4
    (a1, a2) = feed.for_package("plugin", "shop-cart")
    assert a1.id == "a1" and a1.title == "Shop Cart <= 1.0.1 - SQL Injection" and a1.cve == "CVE-2026-1111"
    assert a1.ranges == (Range("*", True, "1.0.1", True),)
    assert a1.patched_versions == ("1.1.0",)
    assert (a1.cvss_score, a1.cvss_rating, a1.references) == (
        7.5,
        "high",
        ("https://example.test/a", "https://example.test/b"),
    )
    assert a2.ranges == (Range("2.0.0", True, "2.0.3", False),)
    assert feed.for_package("core", "wordpress")[0].cvss_score is None
    assert feed.for_package("theme", "shop-cart") == []
    assert feed.label(NOW) == "feed of 2026-12-03 14:00 UTC, 3 h old"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], "vulnerability feed f.json: not a JSON object keyed by vulnerability id"),
        ({}, "vulnerability feed f.json: holds no vulnerability records (an empty or broken feed)"),
        ({"x": "nope"}, "vulnerability feed f.json: record 'x' is not an object"),
    ],
)
def test_parse_feed_refuses_what_is_not_a_feed(data: Any, message: str) -> None:
    with pytest.raises(FeedError) as err:
        parse_feed(data, "f.json", NOW)
    assert str(err.value) == message


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        ("0.9", True),
        ("1.0.1", True),
        ("1.0.2", False),
        ("1.1.0", False),
        ("2.0.0", True),
        ("2.0.2", True),
        ("2.0.3", False),
    ],
)
def test_affects_respects_bounds_and_inclusiveness(version: str, expected: bool) -> None:
    feed = parse_feed(SAMPLE, "f", NOW)
    assert any(affects(a, version) for a in feed.for_package("plugin", "shop-cart")) is expected


def test_unreadable_bounds_and_versions_match_nothing() -> None:
    assert not in_range(Version.parse("1.0"), Range("abc", True, "*", True))
    feed = parse_feed(SAMPLE, "f", NOW)
    assert not affects(feed.for_package("plugin", "shop-cart")[0], "dev-main")


def test_fixed_in_is_the_lowest_patched_version_above_the_installed_one() -> None:
    feed = parse_feed(SAMPLE, "f", NOW)
    core = feed.for_package("core", "wordpress")[0]
    assert fixed_in(core, "6.1.1") == "6.1.10"
    assert fixed_in(feed.for_package("theme", "other-theme")[0], "2.0") is None


def test_severity_from_score_then_rating_then_medium() -> None:
    feed = parse_feed(SAMPLE, "f", NOW)
    a1, a2 = feed.for_package("plugin", "shop-cart")
    assert (severity(a1), severity(a2)) == ("high", "critical")
    assert severity(feed.for_package("core", "wordpress")[0]) == "medium"
    assert severity(feed.for_package("theme", "other-theme")[0]) == "low"


def test_matches_gives_exact_items_and_honours_ignore() -> None:
    feed = parse_feed(SAMPLE, "f", NOW)
    installed = [pkg("shop-cart", "1.0.0"), pkg("wordpress", "6.1.9", "core"), pkg("other-theme", "3.0", "theme")]
    found = matches(feed, installed)
    assert [m.item() for m in found] == [
        {
            "severity": "high",
            "title": "Shop Cart <= 1.0.1 - SQL Injection",
            "package": "shop-cart",
            "version": "1.0.0",
            "fixed_in": "1.1.0",
            "advice": "update shop-cart to 1.1.0",
        },
        {
            "severity": "medium",
            "title": "wordpress - Cross-Site Scripting",
            "package": "wordpress",
            "version": "6.1.9",
            "fixed_in": "6.1.10",
            "advice": "update wordpress to 6.1.10",
        },
        {
            "severity": "low",
            "title": "other-theme - Cross-Site Scripting",
            "package": "other-theme",
            "version": "3.0",
            "fixed_in": None,
            "advice": "no fixed release is known: deactivate or replace other-theme",
        },
    ]
    assert [m.advisory.id for m in matches(feed, installed, ignore=["A3", "cve-2026-1111"])] == []


def test_security_fix_takes_the_highest_fix_and_names_every_advisory() -> None:
    feed = parse_feed(SAMPLE, "f", NOW)
    two = record("multi", upto("1.5"), ["1.6"], id="m2", title="Second", cve="CVE-2026-3")
    data = {**SAMPLE, "m1": record("multi", upto("1.2"), ["1.3"], id="m1", title="First", cve=None), "m2": two}
    feed = parse_feed(data, "f", NOW)
    fix = security_fix(matches(feed, [pkg("multi", "1.0")]))
    assert fix == SecurityFix("1.6", "fixes First; Second (CVE-2026-3)")
    assert security_fix(matches(feed, [pkg("other-theme", "1.0", "theme")])) == SecurityFix(
        None, "other-theme - Cross-Site Scripting (CVE-2026-1111)"
    )


# ----------------------------------------------------------------------------- reading and caching


def test_feed_file_too_old_fails_with_its_age(tmp_path: Path) -> None:
    path = tmp_path / "feed.json"
    path.write_text(json.dumps(SAMPLE))
    old = (NOW - timedelta(hours=30)).timestamp()
    os.utime(path, (old, old))
    with pytest.raises(FeedError) as err:
        read_feed(FeedConfig(file=str(path)), tmp_path, NOW)
    assert str(err.value) == (
        f"vulnerability feed file {path} is too old to vouch for anything: "
        "feed of 2026-12-02 11:00 UTC, 30 h old (max_age 24h); update it"
    )
    assert read_feed(FeedConfig(file=str(path), max_age="2d"), tmp_path, NOW).records == 4


def test_missing_and_broken_feed_files_fail_clearly(tmp_path: Path) -> None:
    with pytest.raises(FeedError) as err:
        read_feed(FeedConfig(file=str(tmp_path / "nope.json")), tmp_path, NOW)
    assert str(err.value) == f"vulnerability feed file {tmp_path / 'nope.json'}: No such file or directory"
    (tmp_path / "bad.json").write_text("{truncated")
    with pytest.raises(FeedError) as err:
        read_feed(FeedConfig(file=str(tmp_path / "bad.json")), tmp_path, NOW)
    assert str(err.value).startswith(f"vulnerability feed file {tmp_path / 'bad.json'}: not JSON")


@pytest.fixture()
def feed_server() -> Iterator[tuple[str, list[str], dict[str, Any]]]:
    """A loopback feed URL; the list records the Authorization header of each request."""
    hits: list[str] = []
    state: dict[str, Any] = {"status": 200, "body": json.dumps(SAMPLE).encode()}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            hits.append(self.headers.get("Authorization", ""))
            self.send_response(state["status"])
            self.send_header("Content-Length", str(len(state["body"])))
            self.end_headers()
            self.wfile.write(state["body"])

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/feed.json", hits, state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_url_feed_is_cached_trimmed_and_refetched_when_too_old(
    feed_server: tuple[str, list[str], dict[str, Any]], tmp_path: Path
) -> None:
    url, hits, state = feed_server
    config = FeedConfig(url=url, api_key="k3y")
    first = read_feed(config, tmp_path, NOW)
    assert (
        hits == ["Bearer k3y"] and first.records == 4 and first.label(NOW) == "feed of 2026-12-03 17:00 UTC, 0 min old"
    )
    cached = json.loads(cache_path(tmp_path, url).read_text())
    assert cached["fetched"] == "2026-12-03T17:00:00+00:00" and "description" not in cached["records"]["a1"]
    assert oct(cache_path(tmp_path, url).stat().st_mode & 0o777) == "0o600"

    again = read_feed(config, tmp_path, NOW + timedelta(hours=3))
    assert len(hits) == 1 and again.label(NOW + timedelta(hours=3)) == "feed of 2026-12-03 17:00 UTC, 3 h old"
    assert [a.id for a in again.for_package("plugin", "shop-cart")] == ["a1", "a2"]

    state["status"], state["body"] = 503, b"busy"
    with pytest.raises(FeedError) as err:
        read_feed(config, tmp_path, NOW + timedelta(hours=25))
    assert str(err.value) == f"vulnerability feed {url}: HTTP 503"
    assert len(hits) == 2


def test_unreachable_feed_url_fails(tmp_path: Path) -> None:
    with pytest.raises(FeedError) as err:
        read_feed(FeedConfig(url="http://127.0.0.1:9/feed.json", timeout=5), tmp_path, NOW)
    assert str(err.value).startswith("vulnerability feed http://127.0.0.1:9/feed.json cannot be downloaded: ")


def test_feed_config_needs_exactly_one_source() -> None:
    with pytest.raises(ValueError, match="give exactly one of url and file"):
        FeedConfig()
    with pytest.raises(ValueError, match="invalid duration"):
        FeedConfig(file="f", max_age="soon")


# ----------------------------------------------------------------------------- security: candidate selection

OFFERED = ["1.0.1", "1.1.0", "1.1.4", "2.0.0"]
FIX = {"plugin:shop-cart": SecurityFix("1.1.0", "fixes Shop Cart <= 1.0.1 - SQL Injection (CVE-2026-1111)")}
WHY = "security: fixes Shop Cart <= 1.0.1 - SQL Injection (CVE-2026-1111)"


def policy(**kw: Any) -> VersionPolicy:
    return VersionPolicy.model_validate(kw).model_copy(update={"fixes": FIX})


def test_force_takes_the_lowest_fix_beyond_the_level() -> None:
    d = choose(policy(plugins="patch", security="force"), "shop-cart", "plugin", "1.0.0", OFFERED)
    assert (d.version, d.security, d.held_back) == ("1.1.0", WHY, "2.0.0")
    assert d.reason == f"{WHY}; 2.0.0 is available but policy plugin: patch does not allow it"


def test_force_takes_the_fix_beyond_a_pin() -> None:
    d = choose(policy(security="force", pins={"shop-cart": "1.0.*"}), "shop-cart", "plugin", "1.0.0", OFFERED)
    assert (d.version, d.security) == ("1.1.0", WHY)


def test_force_keeps_a_policy_choice_that_already_fixes() -> None:
    d = choose(policy(plugins="minor", security="force"), "shop-cart", "plugin", "1.0.0", OFFERED)
    assert (d.version, d.security) == ("1.1.4", WHY)


def test_report_and_off_do_not_take_the_fix() -> None:
    d = choose(policy(plugins="patch", security="report"), "shop-cart", "plugin", "1.0.0", OFFERED)
    assert (d.version, d.security, d.held_back) == ("1.0.1", None, "2.0.0")
    assert d.reason == (
        "2.0.0 is available but policy plugin: patch does not allow it; security: 1.1.0 fixes Shop Cart <= 1.0.1 "
        "- SQL Injection (CVE-2026-1111) (security: report does not take it)"
    )
    off = choose(policy(plugins="patch"), "shop-cart", "plugin", "1.0.0", OFFERED)
    assert (off.version, off.security) == ("1.0.1", None) and "security" not in off.reason


def test_exclude_and_level_none_still_win_over_force() -> None:
    d = choose(policy(security="force", exclude=["shop-*"]), "shop-cart", "plugin", "1.0.0", OFFERED)
    assert (d.version, d.reason) == (None, "excluded by policy")
    d = choose(policy(security="force", plugins="none"), "shop-cart", "plugin", "1.0.0", OFFERED)
    assert (d.version, d.reason) == (None, "policy plugin: none")


def test_force_says_when_no_source_offers_the_fix() -> None:
    d = choose(policy(plugins="patch", security="force"), "shop-cart", "plugin", "1.0.0", ["1.0.1"])
    assert d.version == "1.0.1" and d.security is None
    assert (
        d.reason
        == f"allowed by policy plugin: patch; security: 1.1.0 {FIX['plugin:shop-cart'].reason}, no source offers it"
    )


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    v=st.tuples(st.integers(0, 4), st.integers(0, 4)),
    lo=st.one_of(st.none(), st.tuples(st.integers(0, 4), st.integers(0, 4))),
    hi=st.one_of(st.none(), st.tuples(st.integers(0, 4), st.integers(0, 4))),
    lo_inc=st.booleans(),
    hi_inc=st.booleans(),
)
def test_in_range_agrees_with_tuple_comparison(
    v: tuple[int, int], lo: tuple[int, int] | None, hi: tuple[int, int] | None, lo_inc: bool, hi_inc: bool
) -> None:
    text = lambda t: "*" if t is None else f"{t[0]}.{t[1]}"  # noqa: E731
    rng = Range(text(lo), lo_inc, text(hi), hi_inc)
    expected = (lo is None or v > lo or (v == lo and lo_inc)) and (hi is None or v < hi or (v == hi and hi_inc))
    assert in_range(Version.parse(f"{v[0]}.{v[1]}"), rng) is expected


# ----------------------------------------------------------------------------- composer audit

#: what ``composer audit --format=json --locked`` prints for a project with two advisories
AUDIT_SAMPLE = """{
    "advisories": {
        "acme/plugin": [
            {
                "advisoryId": "PKSA-n8hw-tywm-xrh7",
                "packageName": "acme/plugin",
                "affectedVersions": ">=1.0.0,<1.0.1",
                "title": "Remote code execution in the importer",
                "cve": "CVE-2026-4444",
                "link": "https://github.com/acme/plugin/security/advisories/GHSA-xxxx",
                "reportedAt": "2026-11-20T10:00:00+00:00",
                "sources": [{"name": "GitHub", "remoteId": "GHSA-xxxx"}]
            }
        ],
        "acme/lib": {
            "1": {
                "advisoryId": "PKSA-aaaa-bbbb-cccc",
                "packageName": "acme/lib",
                "affectedVersions": "<1.2.0",
                "title": "Open redirect",
                "cve": null,
                "link": "https://example.test/adv",
                "reportedAt": "2026-11-21T10:00:00+00:00",
                "sources": [{"name": "FriendsOfPHP/security-advisories", "remoteId": "acme/lib/2026-1.yaml"}],
                "severity": "medium"
            }
        }
    }
}
"""


def test_parse_audit_reads_both_shapes_and_keeps_severity() -> None:
    advisories = parse_audit(AUDIT_SAMPLE)
    assert advisories == [
        {
            "package": "acme/plugin",
            "id": "PKSA-n8hw-tywm-xrh7",
            "title": "Remote code execution in the importer",
            "cve": "CVE-2026-4444",
            "link": "https://github.com/acme/plugin/security/advisories/GHSA-xxxx",
            "affected": ">=1.0.0,<1.0.1",
            "severity": "high",
        },
        {
            "package": "acme/lib",
            "id": "PKSA-aaaa-bbbb-cccc",
            "title": "Open redirect",
            "cve": None,
            "link": "https://example.test/adv",
            "affected": "<1.2.0",
            "severity": "medium",
        },
    ]
    assert composer_item(advisories[0], "1.0.0") == {
        "severity": "high",
        "title": "Remote code execution in the importer (CVE-2026-4444)",
        "package": "acme/plugin",
        "version": "1.0.0",
        "fixed_in": None,
        "advice": "update acme/plugin to a release outside the affected versions (affected: >=1.0.0,<1.0.1)",
    }


def test_parse_audit_clean_and_garbage() -> None:
    assert parse_audit('{\n    "advisories": []\n}\n') == []
    assert parse_audit("In CurlDownloader.php line 365: curl error 6") is None
    assert parse_audit('{"other": 1}') is None


@pytest.mark.parametrize(
    ("manifest", "sources"),
    [
        ({}, ["packagist.org"]),
        ({"repositories": [{"type": "artifact", "url": "/zips"}, {"packagist.org": False}]}, []),
        ({"repositories": [{"type": "path", "url": "../p"}, {"packagist": False}]}, []),
        (
            {"repositories": [{"type": "composer", "url": "https://repo.example"}, {"packagist.org": False}]},
            ["https://repo.example"],
        ),
        (
            {"repositories": {"private": {"type": "composer", "url": "https://r"}, "packagist.org": False}},
            ["https://r"],
        ),
        ({"repositories": [{"type": "vcs", "url": "git@x:y.git"}]}, ["packagist.org"]),
    ],
)
def test_advisory_sources(manifest: dict[str, Any], sources: list[str]) -> None:
    assert advisory_sources(manifest) == sources
