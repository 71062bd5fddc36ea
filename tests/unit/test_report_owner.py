"""Reports a shop owner can read: the verdict, correct figures, issuer names, white-label templates and logos."""

from __future__ import annotations

import base64
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from maintkit.cli.main import cli
from maintkit.report import build_report, render_html, render_markdown
from maintkit.report.branding import LOGO_MAX_BYTES, branding, logo_data_uri
from maintkit.report.families import issuer_name
from maintkit.report.model import ReportError
from tests.unit.test_report import RunWriter, cert, requests, step

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 40


def _backup(site: str, when: datetime, offsite: bool = True) -> list[dict[str, Any]]:
    bid = f"{when:%Y%m%dT%H%M%SZ}-aaaaaa"
    out = [
        step(site, "production", "backup", "backup.create", "changed", {"backup": {"id": bid, "size": 4096}}),
        step(site, "production", "verify", "backup.verify", "changed", {"verified": {"id": bid, "ok": True}}),
    ]
    if offsite:
        out.append(step(site, "production", "copy", "backup.copy", "changed",
                        {"backup": {"id": bid}, "destination": "s3://bk/" + site}))  # fmt: skip
    return out


def _report(state: Path) -> Any:
    return build_report(state, since=date(2026, 11, 1), until=date(2026, 11, 30), now=NOW)


def test_all_good_says_nothing_needs_you(tmp_path: Path) -> None:
    w = RunWriter(tmp_path / "s")
    w.run(NOW - timedelta(hours=5), "monthly-update", {"shop": "ok"}, [
        *_backup("shop", NOW - timedelta(hours=5)),
        step("shop", "production", "update", "cms.update", "changed",
             {"updates": [{"package": "woocommerce", "from": "8.1.0", "to": "8.2.1"}]}),
        step("shop", "production", "smoke", "http.check", "unchanged", {"requests": requests(90, 110)}),
        step("shop", "production", "cert", "ssl.check", "unchanged",
             {"cert": {**cert(80, "shop.example"), "issuer": "CN=R3,O=Let's Encrypt,C=US"}}),
    ])  # fmt: skip
    report = _report(tmp_path / "s")
    (site,) = report.sites
    assert site.attention == []
    assert (site.verdict.level, site.verdict.text) == ("ok", "All updates applied; shop checked; nothing needs you.")
    assert report.verdict == site.verdict
    assert site.certificates[0].issuer == "Let's Encrypt (R3)"
    md = render_markdown(report)
    assert md.splitlines()[2] == "**All updates applied; shop checked; nothing needs you.**"
    assert "| shop.example | 2027-02-16 12:00 UTC | 80 | Let's Encrypt (R3) |" in md
    assert "CN=R3" not in md


def _staging_breaks_cart(w: RunWriter, when: datetime) -> None:
    """The update broke the cart on staging: the check failed, the update was rolled back, production not run."""
    failure = {"url": "https://staging.shop/cart/", "method": "GET", "status": 500, "latency_ms": 35.0, "ok": False,
               "reason": "status 500 (expected 200)", "flow_step": "cart"}  # fmt: skip
    w.run(when, "monthly-update", {"shop": "rolled-back"}, [
        step("shop", "staging", "update", "cms.update", "changed",
             {"updates": [{"package": "woocommerce", "from": "8.1.0", "to": "8.3.0"}]}),
        step("shop", "staging", "smoke", "http.check", "failed",
             {"requests": [failure], "failures": [failure]}, error="check: 1 of 3 checks failed: cart: status 500"),
    ], extra=[{"event": "step.rolled_back", "site": "shop", "env": "staging", "step": "update",
               "action": "cms.update", "status": "rolled-back"}])  # fmt: skip


def test_an_update_that_broke_the_cart_on_staging(tmp_path: Path) -> None:
    w = RunWriter(tmp_path / "s")
    _staging_breaks_cart(w, NOW - timedelta(hours=3))
    w.run(NOW - timedelta(hours=2), "daily-backup", {"shop": "ok"}, _backup("shop", NOW - timedelta(hours=2)))
    (site,) = _report(tmp_path / "s").sites
    (rb,) = site.rollbacks
    assert (rb.env, rb.steps, rb.cause, rb.broke, rb.production_changed, rb.updates) == (
        "staging",
        ["update"],
        "the cart answered HTTP 500",
        "the cart",
        False,
        ["woocommerce 8.1.0 -> 8.3.0"],
    )
    assert site.verdict.level == "warn"
    assert site.verdict.text == (
        "Update rolled back on staging: the cart answered HTTP 500; production untouched; "
        "one update held back because it broke the cart; "
        "one thing needs your attention (below)."
    )
    md = render_markdown(_report(tmp_path / "s"))
    assert ("undid update (woocommerce 8.1.0 -> 8.3.0). **The cart answered HTTP 500**; production untouched. "
            "Why: step smoke (http.check) failed") in md  # fmt: skip


def test_a_rolled_back_run_with_nothing_to_undo_is_listed(tmp_path: Path) -> None:
    w = RunWriter(tmp_path / "s")
    w.run(NOW - timedelta(days=1), "monthly-update", {"shop": "rolled-back"}, [
        step("shop", "production", "preflight", "compat.check", "failed", None, error="PHP 7.4 is too old"),
    ])  # fmt: skip
    (site,) = _report(tmp_path / "s").sites
    (rb,) = site.rollbacks
    assert (rb.env, rb.steps, rb.cause) == (
        "production",
        ["nothing had been changed yet"],
        "the preflight (compat.check) step failed: PHP 7.4 is too old",
    )
    assert "Rollbacks\n\nNone." not in render_markdown(_report(tmp_path / "s"))


def test_refused_requests_have_no_median(tmp_path: Path) -> None:
    refused = [{"url": f"http://127.0.0.1:9/{p}", "method": "GET", "status": None, "latency_ms": 2.1, "ok": False,
                "reason": "connection failed: Connection refused"} for p in ("", "cart/")]  # fmt: skip
    w = RunWriter(tmp_path / "s")
    w.run(NOW - timedelta(hours=1), "smoke", {"shop": "failed"}, [
        step("shop", "production", "smoke", "http.check", "failed", {"requests": refused, "failures": refused},
             error="check: 2 of 2 checks failed"),
    ])  # fmt: skip
    report = _report(tmp_path / "s")
    lat = report.sites[0].latency
    assert (lat.samples, lat.median_ms, lat.p95_ms, lat.errors) == (0, None, None, 2)
    md = render_markdown(report)
    assert "No answer: none of the smoke check requests got a response (2 failed), so there is no response time." in md
    assert "median" not in md and "2 ms" not in md
    html = render_html(report)
    assert "<b>no answer</b>median response" in html and "2 ms" not in html


def test_the_first_deploy_is_not_an_update(tmp_path: Path) -> None:
    w = RunWriter(tmp_path / "s")
    w.run(NOW - timedelta(hours=4), "demo", {"shop": "ok"}, [
        step("shop", "production", "deploy", "deploy.release", "changed", {"ref": "v1"},
             changes=[{"summary": "deployed", "before": None, "after": {"release": "r1", "commit": "a" * 40}}]),
        *_backup("shop", NOW - timedelta(hours=4)),
    ])  # fmt: skip
    (site,) = _report(tmp_path / "s").sites
    (u,) = site.updates
    assert (u.initial, u.kind, u.from_version) == (True, "initial deploy", "none")
    assert site.verdict.text == "First release put online (initial deploy, not an update); nothing needs you."
    assert "| production | code (release) | none | v1 (aaaaaaa) | 2026-11-28 08:00 UTC | initial deploy (not an update) |" in (
        render_markdown(_report(tmp_path / "s")))  # fmt: skip


@pytest.mark.parametrize(
    ("dn", "name"),
    [
        ("CN=R3,O=Let's Encrypt,C=US", "Let's Encrypt (R3)"),
        ("CN=maint demo CA", "maint demo CA"),
        (r"CN=Sectigo RSA DV,O=Sectigo Limited,L=Salford,C=GB", "Sectigo Limited (Sectigo RSA DV)"),
        (r"O=Example\, Inc.,CN=Example CA", "Example, Inc. (Example CA)"),
        ("O=DigiCert Inc,CN=DigiCert Inc", "DigiCert Inc"),
        ("OU=Only Unit", "Only Unit"),
        ("not a dn", "not a dn"),
    ],
)
def test_issuer_names(dn: str, name: str) -> None:
    assert issuer_name(dn) == name


def test_a_template_override_extends_the_builtin_one(tmp_path: Path) -> None:
    w = RunWriter(tmp_path / "s")
    w.run(NOW - timedelta(hours=5), "daily-backup", {"shop": "ok"}, _backup("shop", NOW - timedelta(hours=5)))
    tpl = tmp_path / "tpl"
    tpl.mkdir()
    (tpl / "report.html.j2").write_text(
        '{% extends "builtin/report.html.j2" %}{% block footer %}<footer id="f">Call {{ agency }}: 555-0100'
        "</footer>{% endblock %}"
    )
    logo = tmp_path / "logo.png"
    logo.write_bytes(PNG)
    out = tmp_path / "r.html"
    res = CliRunner().invoke(cli, ["report", "--state-dir", str(tmp_path / "s"), "--template", str(tpl), "--agency",
                                   "Acme <Web>", "--logo", str(logo), "-o", str(out)])  # fmt: skip
    assert res.exit_code == 0, res.output
    html = out.read_text()
    assert '<footer id="f">Call Acme &lt;Web&gt;: 555-0100</footer>' in html
    assert (
        f'<img class="logo" src="data:image/png;base64,{base64.b64encode(PNG).decode()}" alt="Acme &lt;Web&gt;">'
        in html
    )
    assert 'Maintenance report <span class="muted">by Acme &lt;Web&gt;</span>' in html
    # markdown falls back to the built-in template and names the agency
    res = CliRunner().invoke(cli, ["report", "--state-dir", str(tmp_path / "s"), "--template", str(tpl), "--agency",
                                   "Acme"])  # fmt: skip
    assert res.exit_code == 0 and "\nPrepared by Acme.\n" in res.output


def test_a_template_cannot_reach_python_internals(tmp_path: Path) -> None:
    w = RunWriter(tmp_path / "s")
    w.run(NOW - timedelta(hours=5), "daily-backup", {"shop": "ok"}, _backup("shop", NOW - timedelta(hours=5)))
    tpl = tmp_path / "tpl"
    tpl.mkdir()
    (tpl / "report.md.j2").write_text("{{ report.__class__.__init__.__globals__['os'].system('id') }}")
    res = CliRunner().invoke(cli, ["report", "--state-dir", str(tmp_path / "s"), "--template", str(tpl)])
    assert res.exit_code == 2
    assert "error: report template report.md.j2 in" in res.output and "SecurityError" in res.output


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>', "SVG refused: it has a <script>"),
        (b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>', "event handler attribute (onload)"),
        (b'<svg xmlns="http://www.w3.org/2000/svg"><a href="javascript:alert(1)"><rect/></a></svg>', "javascript:"),
        (
            b'<svg xmlns="http://www.w3.org/2000/svg" xmlns:x="http://www.w3.org/1999/xlink"><image x:href="https://e.x/t.png"/></svg>',
            "it links to 'https://e.x/t.png' (href)",
        ),
        (b'<?xml version="1.0"?><!DOCTYPE svg [<!ENTITY a "aa">]><svg>&a;</svg>', "DOCTYPE"),
        (b'<svg xmlns="http://www.w3.org/2000/svg"><foreignObject><p>x</p></foreignObject></svg>', "foreignobject"),
        (b'<svg xmlns="http://www.w3.org/2000/svg"><style>@import url(https://e.x/a.css);</style></svg>', "style"),
        (b"GIF89a....", "not a PNG, JPEG or SVG image"),
        (b"<html><svg></svg></html>", "not a PNG, JPEG or SVG image"),
    ],
)
def test_unsafe_or_unknown_logos_are_refused(tmp_path: Path, content: bytes, problem: str) -> None:
    logo = tmp_path / "logo.svg"
    logo.write_bytes(content)
    with pytest.raises(ReportError) as exc:
        logo_data_uri(logo)
    assert problem in str(exc.value) and str(logo) in str(exc.value)


def test_good_logos_and_the_size_limit(tmp_path: Path) -> None:
    svg = b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10" height="10" fill="#c00"/></svg>'
    (tmp_path / "a.svg").write_bytes(svg)
    assert logo_data_uri(tmp_path / "a.svg") == "data:image/svg+xml;base64," + base64.b64encode(svg).decode()
    (tmp_path / "b.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 10)
    assert logo_data_uri(tmp_path / "b.jpg").startswith("data:image/jpeg;base64,/9j/")
    (tmp_path / "big.png").write_bytes(PNG + b"\x00" * LOGO_MAX_BYTES)
    with pytest.raises(ReportError, match="larger than 512 KiB"):
        logo_data_uri(tmp_path / "big.png")
    assert branding("  Acme   Web  ", None).agency == "Acme Web"
    with pytest.raises(ReportError, match="at most 120"):
        branding("x" * 121)


def test_cli_refuses_a_bad_logo_with_exit_2(tmp_path: Path) -> None:
    w = RunWriter(tmp_path / "s")
    w.run(NOW - timedelta(hours=5), "daily-backup", {"shop": "ok"}, _backup("shop", NOW - timedelta(hours=5)))
    bad = tmp_path / "x.svg"
    bad.write_bytes(b'<svg xmlns="http://www.w3.org/2000/svg"><script>1</script></svg>')
    res = CliRunner().invoke(cli, ["report", "--state-dir", str(tmp_path / "s"), "--logo", str(bad), "-o",
                                   str(tmp_path / "r.html")])  # fmt: skip
    assert res.exit_code == 2 and "SVG refused: it has a <script> element" in res.output
    assert not (tmp_path / "r.html").exists()


def test_a_later_good_update_supersedes_the_rolled_back_one(tmp_path: Path) -> None:
    w = RunWriter(tmp_path / "s")
    _staging_breaks_cart(w, NOW - timedelta(hours=6))
    w.run(NOW - timedelta(hours=3), "monthly-update", {"shop": "ok"}, [
        *_backup("shop", NOW - timedelta(hours=3)),
        step("shop", "staging", "update", "cms.update", "changed",
             {"updates": [{"package": "woocommerce", "from": "8.1.0", "to": "8.3.1"}]}),
        step("shop", "production", "update", "cms.update", "changed",
             {"updates": [{"package": "woocommerce", "from": "8.1.0", "to": "8.3.1"}]}),
        step("shop", "production", "smoke", "http.check", "unchanged", {"requests": requests(80)}),
    ])  # fmt: skip
    (site,) = _report(tmp_path / "s").sites
    assert site.attention == []
    assert site.verdict.text == (
        "Update rolled back on staging: the cart answered HTTP 500; production untouched; all updates applied; "
        "shop checked; nothing needs you."
    )
