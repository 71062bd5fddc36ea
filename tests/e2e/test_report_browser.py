"""The HTML report as a person sees it in headless Chromium, and `maint report --pdf`."""

from __future__ import annotations

import re
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from maintkit._browser import CHROMIUM_ARGS
from maintkit.cli.main import cli
from tests.unit.test_report import RunWriter, requests, step

CHROMIUM = shutil.which("chromium")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")
NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture
def state(tmp_path: Path) -> Path:
    """One healthy shop and one whose staging update broke the cart."""
    w = RunWriter(tmp_path / "s")
    failure = {"url": "https://staging.b/cart/", "method": "GET", "status": 500, "latency_ms": 30.0, "ok": False,
               "reason": "status 500 (expected 200)", "flow_step": "cart"}  # fmt: skip
    bid = f"{NOW:%Y%m%dT%H%M%SZ}-aaaaaa"
    w.run(NOW - timedelta(hours=2), "monthly-update", {"shop-a": "ok", "shop-b": "rolled-back"}, [
        step("shop-a", "production", "backup", "backup.create", "changed", {"backup": {"id": bid, "size": 4096}}),
        step("shop-a", "production", "verify", "backup.verify", "changed", {"verified": {"id": bid, "ok": True}}),
        step("shop-a", "production", "copy", "backup.copy", "changed", {"backup": {"id": bid}, "destination": "s3://x"}),
        step("shop-a", "production", "update", "cms.update", "changed",
             {"updates": [{"package": "woocommerce", "from": "8.1.0", "to": "8.2.1"}]}),
        step("shop-a", "production", "smoke", "http.check", "unchanged", {"requests": requests(90, 110)}),
        step("shop-b", "staging", "update", "cms.update", "changed",
             {"updates": [{"package": "woocommerce", "from": "8.1.0", "to": "8.3.0"}]}),
        step("shop-b", "staging", "smoke", "http.check", "failed", {"requests": [failure], "failures": [failure]},
             error="check: cart: status 500"),
    ], extra=[{"event": "step.rolled_back", "site": "shop-b", "env": "staging", "step": "update",
               "action": "cms.update", "status": "rolled-back"}])  # fmt: skip
    w.run(NOW - timedelta(hours=1), "daily-backup", {"shop-b": "ok"}, [
        step("shop-b", "production", "backup", "backup.create", "changed", {"backup": {"id": "b1", "size": 4096}}),
        step("shop-b", "production", "verify", "backup.verify", "changed", {"verified": {"id": "b1", "ok": True}}),
        step("shop-b", "production", "copy", "backup.copy", "changed", {"backup": {"id": "b1"}, "destination": "s3://y"}),
    ])  # fmt: skip
    return tmp_path / "s"


def test_what_a_person_reads_in_chromium_and_the_pdf(state: Path, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    html_path, pdf_path = tmp_path / "r.html", tmp_path / "r.pdf"
    res = CliRunner().invoke(cli, ["report", "--state-dir", str(state), "--agency", "Acme Web", "-o", str(html_path),
                                   "--pdf", str(pdf_path)])  # fmt: skip
    assert res.exit_code == 0, res.output
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(html_path.as_uri())
            verdict = page.inner_text("#verdict")
            rows = page.eval_on_selector_all("#site-verdicts tbody tr", "rs => rs.map(r => r.innerText)")
            b_updates = page.inner_text("section.site:nth-of-type(2) table")
            title = page.title()
        finally:
            browser.close()
    assert verdict == "2 sites: 1 fine; shop-b: an update held back or rolled back, or something to plan."
    assert rows == [
        "shop-a\tAll updates applied; shop checked; nothing needs you.",
        "shop-b\tUpdate rolled back on staging: the cart answered HTTP 500; production untouched; one update held "
        "back because it broke the cart; one thing needs your attention (below).",
    ]
    assert "staging\twoocommerce\t8.1.0\t8.3.0" in b_updates and "rolled back" in b_updates
    assert title.startswith("Acme Web: Maintenance report")
    data = pdf_path.read_bytes()
    assert data.startswith(b"%PDF-") and data.rstrip().endswith(b"%%EOF")
    pages = re.findall(rb"/Type\s*/Page\b", data)
    assert len(pages) >= 2  # each site starts a new page when printed
    box = re.search(rb"/MediaBox\s*\[\s*0 0 ([\d.]+) ([\d.]+)\s*\]", data)
    assert box is not None and (int(float(box.group(1))), int(float(box.group(2)))) == (595, 842)  # A4 in points
    assert res.output.splitlines()[-1] == f"wrote {pdf_path}: PDF, {len(data)} bytes"


def test_pdf_names_what_is_missing(state: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAINT_CHROMIUM", str(tmp_path / "no-chromium"))
    res = CliRunner().invoke(cli, ["report", "--state-dir", str(state), "--pdf", str(tmp_path / "r.pdf")])
    assert res.exit_code == 2
    assert f"error: MAINT_CHROMIUM={tmp_path / 'no-chromium'} is not an executable file" in res.output
    monkeypatch.delenv("MAINT_CHROMIUM")
    monkeypatch.setattr("maintkit.report.pdf._CANDIDATES", (str(tmp_path / "none"), "no-such-chromium"))
    res = CliRunner().invoke(cli, ["report", "--state-dir", str(state), "--pdf", str(tmp_path / "r.pdf")])
    assert res.exit_code == 2 and "--pdf needs Chromium: install it (Debian: apt-get install chromium)" in res.output
    import sys

    monkeypatch.setitem(sys.modules, "playwright.sync_api", None)
    res = CliRunner().invoke(cli, ["report", "--state-dir", str(state), "--pdf", str(tmp_path / "r.pdf")])
    assert res.exit_code == 2 and "--pdf needs the browser extra: pip install 'maintkit[browser]'" in res.output
    assert not (tmp_path / "r.pdf").exists()
