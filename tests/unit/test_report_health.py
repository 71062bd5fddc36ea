"""Thirty simulated days of health runs in a store's index: uptime, the latency chart, rates, disks, findings, incidents."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from xml.etree import ElementTree

import pytest
from click.testing import CliRunner

from maintkit.cli.main import cli
from maintkit.report import build_report, render_html, render_markdown
from maintkit.report.watch import uptime
from maintkit.state.index import append_series

START = datetime(2026, 11, 1, tzinfo=UTC)
NOW = datetime(2026, 12, 5, 9, tzinfo=UTC)
OUTAGE = [START + timedelta(days=9, hours=h) for h in (10, 11, 12)]  # 2026-11-10 10:00, 11:00, 12:00
VULN_ONLY = START + timedelta(days=14, hours=6)  # http passed, vuln.check failed
GAP_DAY = 19  # 2026-11-20: no health run at all
VULN_ITEM = {
    "severity": "high",
    "title": "WooCommerce < 8.2.2: SQL injection",
    "package": "woocommerce",
    "version": "8.1.0",
    "fixed_in": "8.2.2",
    "advice": "update woocommerce to 8.2.2",
}


def _iso(when: datetime) -> str:
    return when.isoformat(timespec="seconds")


def _write_month(root: Path, site: str = "shop", env: str = "production") -> None:
    """Hourly health runs for November 2026 (none on the 20th), three failing hours, daily logs/host points."""
    n = 0
    for day in range(30):
        if day == GAP_DAY:
            continue
        for hour in range(24):
            when = START + timedelta(days=day, hours=hour)
            n += 1
            run_id = f"{when:%Y%m%dT%H%M%SZ}-{n:06x}"
            down = when in OUTAGE
            checks = {"http": "failed" if down else "unchanged", "vuln": "failed" if when == VULN_ONLY else "unchanged"}
            failed = [k for k, v in checks.items() if v == "failed"]
            append_series(root, site, env, "health", {"run_id": run_id, "ts": _iso(when), "ok": not failed,
                                                      "failed": failed, "checks": checks})  # fmt: skip
            latency = (None, None, None) if down else (100.0 + day, 200.0 + day, 300.0 + day)
            append_series(root, site, env, "http", {"run_id": run_id, "ts": _iso(when), "playbook": "health",
                                                    "ok": not down, "count": 5, "failed": 1 if down else 0,
                                                    "median_ms": latency[0], "p95_ms": latency[1],
                                                    "max_ms": latency[2]})  # fmt: skip
        noon = START + timedelta(days=day, hours=12, minutes=1)
        append_series(root, site, env, "logs", {"run_id": "r", "ts": _iso(noon), "requests": 1000, "status_4xx": 20,
                                                "status_5xx": 1, "slow": 0, "rate_4xx": 0.02, "rate_5xx": 0.001,
                                                "top_failing": [["/wp-login.php", 15], ["/cart/", 1]],
                                                "php_fatals": 0})  # fmt: skip
        append_series(root, site, env, "host", {"run_id": "r", "ts": _iso(noon), "status": "ok", "load1": 0.3,
                                                "cpus": 2, "mem_used_pct": 40.0, "fpm": None, "db_ok": True,
                                                "disk": [{"path": "/srv/shop", "mount": "/", "used_pct": 50 + day // 3,
                                                          "inodes_pct": 10, "free_bytes": 10**9}]})  # fmt: skip
    # findings: vuln found late in the month; malware found once, then clean; integrity clean
    t1, t2 = START + timedelta(days=27), START + timedelta(days=28)
    append_series(root, site, env, "findings", {"run_id": "f1", "ts": _iso(t1), "check": "malware", "count": 1,
                                                "items": [{"severity": "critical", "title": "Eicar-Signature",
                                                           "path": "wp-content/uploads/x.php", "advice": "remove"}]})  # fmt: skip
    append_series(root, site, env, "findings", {"run_id": "f2", "ts": _iso(t2), "check": "malware", "count": 0,
                                                "items": []})  # fmt: skip
    append_series(root, site, env, "findings", {"run_id": "f2", "ts": _iso(t2), "check": "integrity", "count": 0,
                                                "items": []})  # fmt: skip
    append_series(root, site, env, "findings", {"run_id": "f2", "ts": _iso(t2), "check": "vuln", "count": 2,
                                                "items": [VULN_ITEM, {**VULN_ITEM, "severity": "medium",
                                                                      "title": "Akismet < 5.3.1: XSS"}]})  # fmt: skip
    # the outage's incident (opened at the first failing run, closed at the first good one: 3 hours)
    opened, closed = _iso(OUTAGE[0]), _iso(OUTAGE[-1] + timedelta(hours=1))
    base = {"check": "http", "site": site, "env": env, "opened": opened, "reason": "cart: status 500"}
    append_series(root, site, env, "incidents", {**base, "ts": _iso(OUTAGE[1]), "state": "open", "closed": None,
                                                 "failures": 2, "duration_s": None})  # fmt: skip
    append_series(root, site, env, "incidents", {**base, "ts": _iso(OUTAGE[2]), "state": "open", "closed": None,
                                                 "failures": 3, "duration_s": None})  # fmt: skip
    append_series(root, site, env, "incidents", {**base, "ts": closed, "state": "closed", "closed": closed,
                                                 "failures": 3, "duration_s": 10800.0})  # fmt: skip


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("store")
    _write_month(root)
    return root


def _build(store: Path, **kw: object) -> object:
    return build_report(store, since=date(2026, 11, 1), until=date(2026, 11, 30), now=NOW,
                        health_interval=timedelta(hours=1), **kw)  # type: ignore[arg-type]  # fmt: skip


def test_uptime_is_exact(store: Path) -> None:
    report = _build(store)
    (site,) = report.sites  # type: ignore[attr-defined]
    (h,) = site.health
    # measured: Nov 1 00:00 .. Nov 30 23:00 = 719 h, minus the 24 h without any run (Nov 19 23:00 .. Nov 20 23:00)
    assert h.up_s + h.down_s == 695 * 3600
    assert h.down_s == 3 * 3600  # the three failing hourly runs; the vuln-only failure is not downtime
    assert h.unmeasured_s == 25 * 3600  # the gap, and Nov 30 23:00 .. Dec 1 00:00 after the last run
    assert h.uptime_pct == pytest.approx(100 * 692 / 695)
    assert h.runs == 696 and h.failed_runs == 4
    # any failed check counts as down when asked for
    strict = _build(store, uptime_checks=None).sites[0].health[0]  # type: ignore[attr-defined]
    assert strict.down_s == 4 * 3600


def test_uptime_caps_each_point_at_the_interval() -> None:
    t0 = datetime(2026, 11, 1, tzinfo=UTC)
    pts = [{"_when": t0 + timedelta(minutes=m), "checks": {"http": s}} for m, s in
           [(10, "unchanged"), (25, "failed"), (100, "unchanged"), (110, "skipped")]]  # fmt: skip
    up, down, unmeasured = uptime(pts, t0, t0 + timedelta(hours=2), interval_s=900)
    # 10: covers 0..10 (clipped at start); 25: 10..25 down; 100: 85..100 up (15 min cap); 110: not measured
    assert (up, down, unmeasured) == (25 * 60, 15 * 60, 80 * 60)


def test_latency_chart_rates_disks(store: Path) -> None:
    (h,) = _build(store).sites[0].health  # type: ignore[attr-defined]
    assert len(h.http_points) == 29  # one per day with an answered check (none on the 20th)
    assert h.http_points[0].median_ms == 100 and h.http_points[0].p95_ms == pytest.approx(200)
    assert h.http_points[-1].median_ms == 129
    assert h.http_runs == 696 and h.unanswered_runs == 3
    svg = ElementTree.fromstring(h.chart_svg)
    assert len(svg.findall("{http://www.w3.org/2000/svg}circle")) == 29
    assert h.requests == 29_000 and h.status_4xx == 580 and h.status_5xx == 29
    assert h.rate_4xx == pytest.approx(0.02) and h.rate_5xx == pytest.approx(0.001)
    assert h.top_failing == [("/wp-login.php", 435), ("/cart/", 29)]
    (disk,) = h.disks
    assert (disk.mount, disk.first, disk.last, disk.peak, len(disk.days)) == ("/", 50, 59, 59, 29)


def test_findings_and_incident(store: Path) -> None:
    site = _build(store).sites[0]  # type: ignore[attr-defined]
    (h,) = site.health
    assert [(f.check, f.count, f.worst) for f in h.findings] == [("integrity", 0, ""), ("malware", 0, ""),
                                                               ("vuln", 2, "high")]  # fmt: skip
    (inc,) = h.incidents
    assert (inc.check, inc.opened, inc.closed, inc.duration_s, inc.failures) == (
        "http",
        OUTAGE[0],
        OUTAGE[-1] + timedelta(hours=1),
        10800.0,
        3,
    )
    assert [(a.level, a.message) for a in site.attention] == [
        ("urgent", "no verified backup in the last 48 hours (none in this period)"),
        ("urgent", "vuln on production: 2 findings; worst: WooCommerce < 8.2.2: SQL injection (woocommerce 8.1.0) "
                   "(checked 2026-11-29 00:00 UTC): update to the fixed versions (cms_update: {security: force} "
                   "makes the next monthly update take them). update woocommerce to 8.2.2"),
    ]  # fmt: skip
    assert site.verdict.level == "bad"
    assert site.verdict.text == (
        "No updates were needed; production up 99.57% of the measured time; two things need your attention (below)."
    )


def test_markdown_and_html(store: Path) -> None:
    report = _build(store)
    md = render_markdown(report)  # type: ignore[arg-type]
    assert "| production | 99.57% | 3 h | 96.5% of the period | 696 | 4 |" in md
    assert "p50 **114 ms**, p95 **228 ms** (696 checks, 3 without any answer)" in md
    assert "4xx 2.00% (580), 5xx 0.10% (29)" in md
    assert "| / | 50% | 59% | 59% |" in md
    assert "| vuln | 2026-11-29 00:00 UTC | 2 | high: WooCommerce \\< 8.2.2: SQL injection |" in md
    assert "| production | http | 2026-11-10 10:00 UTC | 2026-11-10 13:00 UTC | 3 h | 3 | cart: status 500 |" in md
    html = render_html(report)  # type: ignore[arg-type]
    assert html.count("<svg") == 1 and len(re.findall(r"<circle ", html)) == 29
    assert "99.57%" in html and "still open" not in html
    assert '<p class="verdict bad" id="verdict">No updates were needed; production up 99.57%' in html


def test_cli_reads_a_store_with_only_series(store: Path) -> None:
    res = CliRunner().invoke(cli, ["report", "--state-dir", str(store), "--since", "2026-11-01", "--until",
                                   "2026-11-30", "--health-interval", "60"])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "| production | 99.57% | 3 h | 96.5% of the period | 696 | 4 |" in res.output
    res = CliRunner().invoke(cli, ["report", "--state-dir", str(store), "--since", "2026-11-01", "--until",
                                   "2026-11-30"])  # fmt: skip
    assert res.exit_code == 0, res.output
    # with the default 15-minute interval an hourly run counts for 15 minutes only: 45 min of each hour unmeasured
    assert "| production | 99.57% | 45 min | 24.1% of the period | 696 | 4 |" in res.output
