"""Reports built from run folders: updates, rollbacks, backups, certificates, latency, attention."""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest
from click.testing import CliRunner

from maintkit.cli.main import cli
from maintkit.report import build_report, latency_svg, percentile, render_html, render_markdown
from maintkit.report.chart import LatencyPoint

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


class RunWriter:
    """Writes run folders the way the runner does (events.jsonl + summary.json), with chosen times."""

    def __init__(self, state: Path) -> None:
        self.state = state
        self.n = 0

    def run(
        self,
        when: datetime,
        playbook: str,
        sites: dict[str, str],
        steps: list[dict[str, Any]],
        *,
        check: bool = False,
        extra: list[dict[str, Any]] | None = None,
        site_errors: dict[str, str] | None = None,
    ) -> str:
        self.n += 1
        run_id = f"{when:%Y%m%dT%H%M%SZ}-{self.n:04x}"
        run_dir = self.state / "runs" / run_id
        run_dir.mkdir(parents=True)
        events: list[dict[str, Any]] = [{"event": "run.started", "check": check, "sites": list(sites)}]
        for step in steps:
            ev = {"event": "step.verified" if step.get("status") == "changed" else "step.checked", **step}
            if step.get("status") == "failed":
                ev["event"] = "step.failed"
            events.append(ev)
        events += extra or []
        for site, status in sites.items():
            events.append(
                {"event": "site.finished", "site": site, "status": status, "error": (site_errors or {}).get(site)}
            )
        events.append({"event": "run.finished", "status": "ok" if all(s == "ok" for s in sites.values()) else "failed"})
        with (run_dir / "events.jsonl").open("w") as fh:
            for seq, ev in enumerate(events):
                ts = (when + timedelta(seconds=seq)).isoformat()
                fh.write(json.dumps({"ts": ts, "run_id": run_id, "seq": seq, "playbook": playbook, **ev}) + "\n")
        summary = {
            "run_id": run_id,
            "playbook": playbook,
            "check": check,
            "status": "ok" if all(s == "ok" for s in sites.values()) else "failed",
            "started": when.isoformat(),
            "finished": (when + timedelta(minutes=2)).isoformat(),
            "changed": sum(1 for s in steps if s.get("status") == "changed"),
            "sites": [{"site": s, "status": st, "changed": 0, "steps": []} for s, st in sites.items()],
        }
        (run_dir / "summary.json").write_text(json.dumps(summary))
        return run_id


def step(
    site: str, env: str, step_id: str, action: str, status: str, data: dict[str, Any] | None = None, **kw: Any
) -> dict[str, Any]:
    return {"site": site, "env": env, "step": step_id, "action": action, "status": status, "data": data, **kw}


def cert(days_left: float, name: str = "shop-a.example", when: datetime = NOW) -> dict[str, Any]:
    not_after = when + timedelta(days=days_left)
    return {
        "subject": f"CN={name}",
        "issuer": "CN=Demo CA",
        "serial": "1a2b",
        "not_after": not_after.isoformat(timespec="seconds"),
        "days_left": days_left,
        "host": name,
        "port": 443,
        "server_name": name,
        "covers_name": True,
        "chain_ok": True,
    }


def requests(*ms: float, url: str = "https://shop-a.example/") -> list[dict[str, Any]]:
    return [{"url": f"{url}{i}", "status": 200, "latency_ms": v} for i, v in enumerate(ms)]


@pytest.fixture
def state(tmp_path: Path) -> Path:
    """A month of runs for shop-a (healthy) and shop-b (rolled back, certificate due, stale backup)."""
    w = RunWriter(tmp_path / "state")
    # October: outside the period used below
    w.run(datetime(2026, 10, 15, 5, tzinfo=UTC), "monthly-update", {"shop-a": "ok"}, [
        step("shop-a", "production", "update", "cms.update", "changed",
             {"updates": [{"package": "old-plugin", "from": "0.9", "to": "1.0"}]}),
    ])  # fmt: skip
    # the monthly update: shop-a updated; shop-b failed its smoke check and was rolled back
    w.run(datetime(2026, 11, 2, 5, tzinfo=UTC), "monthly-update", {"shop-a": "ok", "shop-b": "rolled-back"}, [
        step("shop-a", "production", "backup.create", "backup.create", "changed",
             {"backup": {"id": "20261102T050000Z-aaaaaa", "created": "2026-11-02T05:00:00+00:00",
                         "size": 5 * 1024 * 1024,
                         "items": [{"type": "database", "name": "shop"}, {"type": "files", "file": "files.tar.gz"}]}}),
        step("shop-a", "production", "deploy.release", "deploy.release", "changed",
             {"ref": "v2", "commit": "d" * 40, "release": "r2"},
             changes=[{"target": "/srv/a/current", "summary": "deployed r2",
                       "before": {"release": "r1", "commit": "c" * 40},
                       "after": {"release": "r2", "commit": "d" * 40}}]),
        step("shop-a", "production", "update", "cms.update", "changed",
             {"updates": [{"package": "woocommerce", "from": "8.1.0", "to": "8.2.1"},
                          {"package": "wordpress", "from": "6.4.1", "to": "6.4.2", "kind": "core"}]}),
        step("shop-a", "production", "http.check", "http.check", "unchanged",
             {"requests": requests(100, 120, 140, 900)}),
        step("shop-b", "staging", "update", "cms.update", "changed",
             {"updates": [{"package": "akismet", "from": "5.0.2", "to": "5.3"}]}),
        step("shop-b", "staging", "http.check", "http.check", "failed", {"requests": requests(80, url="https://b/")},
             error="verify: GET https://b/cart/ returned 500"),
    ], extra=[
        {"event": "step.rolled_back", "site": "shop-b", "env": "staging", "step": "update", "action": "cms.update",
         "status": "rolled-back"},
    ])  # fmt: skip
    # daily backups + verify for shop-a (recent), one old verified backup for shop-b
    w.run(datetime(2026, 11, 5, 2, tzinfo=UTC), "daily-backup", {"shop-b": "ok"}, [
        step("shop-b", "production", "backup.create", "backup.create", "changed",
             {"backup": {"id": "20261105T020000Z-bbbbbb", "size": 2048, "items": [{"type": "files"}]}}),
        step("shop-b", "production", "backup.verify", "backup.verify", "changed",
             {"verified": {"id": "20261105T020000Z-bbbbbb", "verified_at": "2026-11-05T02:01:00+00:00"}}),
    ])  # fmt: skip
    w.run(datetime(2026, 11, 27, 22, tzinfo=UTC), "daily-backup", {"shop-a": "ok"}, [
        step("shop-a", "production", "backup.create", "backup.create", "changed",
             {"backup": {"id": "20261127T220000Z-cccccc", "size": 6 * 1024 * 1024,
                         "items": [{"type": "database", "name": "shop"}]}}),
        step("shop-a", "production", "backup.verify", "backup.verify", "changed",
             {"verified": {"id": "20261127T220000Z-cccccc", "ok": True, "checksums": "ok"}}),
        step("shop-a", "production", "backup.copy", "backup.copy", "changed",
             {"backup": {"id": "20261127T220000Z-cccccc"}, "destination": "s3://backups/shop-a"}),
    ])  # fmt: skip
    # weekly certificate checks and more smoke checks
    w.run(datetime(2026, 11, 20, 6, tzinfo=UTC), "cert-check", {"shop-a": "ok", "shop-b": "ok"}, [
        step("shop-a", "production", "ssl.check", "ssl.check", "unchanged", {"cert": cert(80, "shop-a.example")}),
        step("shop-b", "production", "ssl.check", "ssl.check", "unchanged", {"cert": cert(12, "shop-b.example")}),
        step("shop-a", "production", "http.check", "http.check", "unchanged", {"requests": requests(110, 130)}),
    ])  # fmt: skip
    return tmp_path / "state"


def test_percentile_and_chart() -> None:
    assert percentile([], 95) == 0.0
    assert percentile([5], 95) == 5
    assert percentile([1, 2, 3, 4, 5], 50) == 3
    assert percentile(list(range(1, 101)), 95) == pytest.approx(95.05)
    svg = latency_svg([LatencyPoint(NOW, 100, 200), LatencyPoint(NOW + timedelta(days=1), 150, 400)], title="a <b>")
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert "a &lt;b&gt;" in svg and "<b>" not in svg
    assert "<script" not in svg and "href" not in svg
    assert latency_svg([]) == ""
    root = ElementTree.fromstring(svg)  # well-formed XML
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert len(root.findall("{http://www.w3.org/2000/svg}polyline")) == 2


def test_updates_rollbacks_backups_certs_latency(state: Path) -> None:
    report = build_report(state, since=date(2026, 11, 1), until=date(2026, 11, 30), now=NOW)
    assert [s.name for s in report.sites] == ["shop-a", "shop-b"]
    a, b = report.sites
    # updates: only the period's, with from -> to
    assert [(u.package, u.from_version, u.to_version) for u in a.updates] == [
        ("code (release)", "ccccccc", "v2 (ddddddd)"),
        ("woocommerce", "8.1.0", "8.2.1"),
        ("wordpress", "6.4.1", "6.4.2"),
    ]
    assert [(u.package, u.rolled_back) for u in b.updates] == [("akismet", True)]
    # rollback and why
    assert len(b.rollbacks) == 1
    assert b.rollbacks[0].steps == ["update"]
    assert b.rollbacks[0].why == "step http.check failed: verify: GET https://b/cart/ returned 500"
    # backups: size, verified, offsite
    latest = a.backups[-1]
    assert latest.id == "20261127T220000Z-cccccc"
    assert latest.size_bytes == 6 * 1024 * 1024
    assert latest.verified is True
    assert latest.offsite == "s3://backups/shop-a"
    assert latest.parts == ["database"]
    assert a.backups[0].verified is None and a.backups[0].parts == ["database", "files"]
    # certificates
    assert [c.name for c in a.certificates] == ["shop-a.example"]
    assert b.certificates[0].days_left == pytest.approx(12, abs=0.01)
    # latency over the period's smoke checks of shop-a: 100, 120, 140, 900, 110, 130
    assert a.latency is not None
    assert a.latency.samples == 6
    assert a.latency.median_ms == pytest.approx(125)
    assert a.latency.slowest_ms == 900
    assert len(a.latency.points) == 2
    # incidents
    assert [(i.env, i.step, i.status, i.error) for i in b.incidents] == [
        ("staging", "http.check", "failed", "verify: GET https://b/cart/ returned 500")
    ]
    assert report.runs == 4 and report.failed_runs == 1
    assert a.changed_steps == 6


def test_attention(state: Path) -> None:
    report = build_report(state, since=date(2026, 11, 1), until=date(2026, 11, 30), now=NOW)
    a, b = report.sites
    assert a.attention == []
    # shop-b's last run (the certificate check) was ok: no "the last run ended ..." item
    assert [(x.level, x.message) for x in b.attention] == [
        ("urgent", "certificate shop-b.example expires in 12 days on 2026-12-10: renew it"),
        ("urgent", "no verified backup in the last 48 hours (last verified backup 2026-11-05 02:00 UTC)"),
        ("soon", "the update of akismet 5.0.2 -> 5.3 on staging was rolled back: investigate before retrying"),
        (
            "soon",
            "the latest backup of production (20261105T020000Z-bbbbbb) has no off-site copy: a lost or hacked "
            "host would take it with the shop; copy it off-site (backup.copy)",
        ),
    ]


def test_period_and_site_filter(state: Path) -> None:
    october = build_report(state, since=date(2026, 10, 1), until=date(2026, 10, 31), now=NOW)
    assert [s.name for s in october.sites] == ["shop-a"]
    assert [u.package for u in october.sites[0].updates] == ["old-plugin"]
    only_b = build_report(state, since=date(2026, 11, 1), until=date(2026, 11, 30), sites=["shop-b"], now=NOW)
    assert [s.name for s in only_b.sites] == ["shop-b"]
    empty = build_report(state, since=date(2025, 1, 1), until=date(2025, 1, 31), now=NOW)
    assert empty.sites == [] and "No runs were recorded" in render_markdown(empty)


def test_markdown(state: Path) -> None:
    text = render_markdown(build_report(state, since=date(2026, 11, 1), until=date(2026, 11, 30), now=NOW))
    assert text.startswith("# Maintenance report: 2026-11-01 to 2026-11-30")
    assert "| production | woocommerce | 8.1.0 | 8.2.1 |" in text
    assert "## Needs attention" in text
    assert "6.0 MB" in text and "s3://backups/shop-a" in text
    assert "median **125 ms**" in text
    assert "\n\n\n" not in text


def test_html_is_self_contained_escaped_and_printable(state: Path, tmp_path: Path) -> None:
    w = RunWriter(state)
    w.run(datetime(2026, 11, 10, 5, tzinfo=UTC), "monthly-update", {"shop-a": "ok"}, [
        step("shop-a", "production", "update", "cms.update", "changed",
             {"updates": [{"package": "<script>alert(1)</script>", "from": "1", "to": "2"}]}),
    ])  # fmt: skip
    html = render_html(build_report(state, since=date(2026, 11, 1), until=date(2026, 11, 30), now=NOW))
    assert html.startswith("<!doctype html>")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "<script>" not in html
    assert "<svg" in html and "@media print" in html
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html), "no external resources"
    assert "<link" not in html


def test_secrets_never_appear(state: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHOP_DB_PASSWORD", "hunter2-very-secret")
    w = RunWriter(state)
    w.run(datetime(2026, 11, 12, 5, tzinfo=UTC), "monthly-update", {"shop-a": "failed"}, [
        step("shop-a", "production", "command", "command", "failed", None,
             error="apply: mysql -u shop --password=hunter2-very-secret failed; token=abcdef123456"),
    ])  # fmt: skip
    report = build_report(state, since=date(2026, 11, 1), until=date(2026, 11, 30), now=NOW)
    for text in (render_markdown(report), render_html(report)):
        assert "hunter2-very-secret" not in text
        assert "abcdef123456" not in text
        assert "mysql -u shop" in text


def test_cli_report(state: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "report.html"
    res = runner.invoke(
        cli, ["report", "--state-dir", str(state), "--since", "2026-11-01", "--until", "2026-11-30", "-o", str(out)]
    )
    assert res.exit_code == 0, res.output
    assert "wrote" in res.output and out.read_text().startswith("<!doctype html>")
    res = runner.invoke(
        cli, ["report", "--state-dir", str(state), "--since", "2026-11-01", "--until", "2026-11-30", "--site", "shop-a"]
    )
    assert res.exit_code == 0 and "## shop-a" in res.output and "## shop-b" not in res.output
    inv = tmp_path / "inventory.yml"
    inv.write_text(
        "sites:\n"
        "  shop-a: {environments: {production: {host: a, path: /srv/a}}}\n"
        "  shop-b: {environments: {production: {host: b, path: /srv/b}}}\n"
        "groups: {clients-b: [shop-b]}\n"
    )
    res = runner.invoke(cli, ["report", "--state-dir", str(state), "--since", "2026-11-01", "--until", "2026-11-30",
                              "--group", "clients-b", "-i", str(inv), "--format", "md"])  # fmt: skip
    assert res.exit_code == 0 and "## shop-b" in res.output and "## shop-a" not in res.output
    res = runner.invoke(cli, ["report", "--state-dir", str(state), "--group", "clients-b"])
    assert res.exit_code == 2 and "needs the inventory" in res.output
    res = runner.invoke(cli, ["report", "--state-dir", str(state), "--since", "yesterday"])
    assert res.exit_code == 2
    res = runner.invoke(cli, ["report", "--state-dir", str(tmp_path / "nothing")])
    assert res.exit_code == 2 and "no run folders" in res.output


def test_manual_rollback_is_listed(state: Path) -> None:
    w = RunWriter(state)
    w.run(datetime(2026, 11, 15, 9, tzinfo=UTC), "rollback", {"shop-a": "ok"}, [
        step("shop-a", "production", "deploy.rollback", "deploy.rollback", "changed",
             {"release": "r1", "commit": "c" * 40, "rolled_back_from": "r2"}),
    ])  # fmt: skip
    a = build_report(state, since=date(2026, 11, 1), until=date(2026, 11, 30), now=NOW).sites[0]
    (rb,) = a.rollbacks
    assert (rb.env, rb.steps, rb.why, rb.ok) == (
        "production",
        ["release r2 -> r1"],
        "rolled back by hand (maint rollback)",
        True,
    )
    assert "undid release r2 -> r1" in render_markdown(build_report(state, since=date(2026, 11, 1), now=NOW))


def test_a_takeover_with_changes_not_undone_needs_attention(tmp_path: Path) -> None:
    w = RunWriter(tmp_path / "state")
    taken = {
        "event": "lock.taken_over",
        "site": "shop-a",
        "env": "production",
        "dead_run": "20261120T010000Z-dead01",
        "rolled_back": ["config"],
        "maintenance_off": ["/srv/shop/.maintenance"],
        "incomplete": ["work", "index"],
    }
    clean = {**taken, "site": "shop-b", "dead_run": "20261120T010000Z-dead02", "incomplete": []}
    w.run(NOW - timedelta(days=1), "monthly-update", {"shop-a": "ok", "shop-b": "ok"}, [], extra=[taken, clean])
    rep = build_report(tmp_path / "state", now=NOW)
    a, b = rep.sites
    assert [(t.env, t.dead_run, t.rolled_back, t.maintenance_off, t.incomplete) for t in a.takeovers] == [
        ("production", "20261120T010000Z-dead01", ["config"], True, ["work", "index"])
    ]
    assert [(x.level, x.message) for x in a.attention if "died" in x.message] == [
        (
            "urgent",
            "run 20261120T010000Z-dead01 died on production; when its lock was taken over, work, index "
            "could not be undone: check the site by hand",
        )
    ]
    assert [x.message for x in b.attention if "died" in x.message] == []
    assert len(b.takeovers) == 1


def test_the_plain_output_names_a_takeover_and_what_it_left() -> None:
    from maintkit.cli.reporters.plain import takeover_line

    line = takeover_line(
        {
            "site": "shop",
            "env": "production",
            "dead_run": "R1",
            "rolled_back": ["config"],
            "maintenance_off": ["/srv/shop/.maintenance"],
            "incomplete": ["index"],
        }
    )
    assert line == (
        "shop/production: took over the expired lock of run R1 "
        "(rolled back: config; maintenance off; NOT undone, check by hand: index)"
    )
    bare = takeover_line({"site": "shop", "env": "staging", "dead_run": "R2"})
    assert bare == "shop/staging: took over the expired lock of run R2"
