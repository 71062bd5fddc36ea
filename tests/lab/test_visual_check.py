"""visual.check on a real WordPress shop over SSH, with the system's Chromium.

A shop-cart release that only changes CSS (it hides the cart's content; every page still
answers 200, so the smoke checks pass) is caught by the screenshots taken before and after the
update on staging, and the update is rolled back. A page whose dynamic part is masked passes
(twice: nothing changes); the same page unmasked fails, naming page, size and ratio. Plan mode
captures nothing, and a missing browser is named.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from maintkit.actions.visual.check import percent
from maintkit.results import RunResult, StepStatus
from tests import runs
from tests.cms_helpers import make_shop_cart_zip, wp_plugin_version
from tests.lab.web import WebStack
from tests.lab.wp_fixtures import Shop, cart, run, steps, write_inventory

pytestmark = pytest.mark.lab

CHROMIUM = Path("/usr/bin/chromium")
needs_chromium = pytest.mark.skipif(not CHROMIUM.is_file(), reason="needs /usr/bin/chromium (apt-get install chromium)")

HIDE_CART = ".shop-cart { display: none; }\n"

LAB_PAGE = """<?php header('Content-Type: text/html; charset=utf-8'); ?>
<!doctype html>
<html><head><title>Prices</title>
<style>body { font: 20px sans-serif; margin: 40px; } .clock { font-size: 56px; }</style></head>
<body><h1>Price list</h1><p>Blue shirt, 20 EUR</p>
<div class="clock"><?php echo date('H:i:s'), ' ', random_int(100000000, 999999999); ?></div>
<p>Prices include VAT.</p></body></html>
"""


def _visual_playbook(mask: list[str], raw: bool = False) -> str:
    """before and after steps on the prices page (masked by ``mask``); ``raw`` adds it unmasked as ``raw``."""
    pages = [{"name": "prices", "path": "/visual-lab.php", "mask": mask}]
    if raw:
        pages.append({"name": "raw", "path": "/visual-lab.php"})
    return (
        "name: visual-lab\nstages:\n  - env: staging\n    steps:\n"
        f"      - {{id: before, action: visual.check, with: {json.dumps({'phase': 'before', 'pages': pages})}}}\n"
        f"      - {{id: after, action: visual.check, with: {json.dumps({'phase': 'after', 'pages': pages})}}}\n"
    )


def _red_pixels(path: Path) -> int:
    with Image.open(path) as img:
        return sum(count for count, colour in img.convert("RGB").getcolors(1 << 24) or [] if colour == (255, 0, 0))


def _message(shots: list[dict[str, Any]]) -> str:
    bad = [s for s in shots if not s["ok"]]
    parts = [
        f"{s['page']} at {s['size']} {s['viewport']}: {percent(s['ratio'])} of pixels differ "
        f"(threshold {percent(s['threshold'])})"
        for s in bad
    ]
    return f"check: {len(bad)} of {len(shots)} screenshots differ from before: " + " | ".join(parts)


@needs_chromium
def test_css_only_release_is_caught_on_staging_and_rolled_back(shop: Shop) -> None:
    make_shop_cart_zip(shop.repo, "1.1.0", css=HIDE_CART)
    pages = [{"name": "cart", "path": "/cart/"}, {"name": "shop", "path": "/shop/"}]
    inv = write_inventory(shop, visual=True, visual_pages=pages)

    result = run(shop, inv)

    assert result.exit_code == 1, json.dumps(result.to_dict(), indent=1)[-3000:]
    st = steps(result, "staging")
    assert list(st) == ["backup", "precheck", "visual-before", "update", "cache", "compat", "smoke", "visual-after"], [
        (s.step, s.status.value, s.error) for s in st.values()
    ]
    # every page answered 200: the smoke checks passed, only the screenshots saw the change
    assert st["smoke"].status is StepStatus.UNCHANGED
    assert st["compat"].status is StepStatus.UNCHANGED
    assert st["visual-before"].status is StepStatus.UNCHANGED
    after = st["visual-after"]
    assert after.status is StepStatus.FAILED
    shots = after.data["visual"]["shots"]
    assert [(s["page"], s["size"], s["ok"]) for s in shots] == [
        ("cart", "desktop", False),
        ("shop", "desktop", True),
        ("cart", "mobile", False),
        ("shop", "mobile", True),
    ]
    assert after.error == _message(shots)
    assert all(s["ratio"] > 0.001 for s in shots if not s["ok"])
    # rolled back: the old plugin, without the stylesheet, and the cart shows again
    assert st["update"].status is StepStatus.ROLLED_BACK
    assert wp_plugin_version(shop.staging.path, "shop-cart") == "1.0.0"
    assert not (shop.staging.plugin_dir / "assets").exists()
    assert "production" not in {s.env for site in result.sites for s in site.steps}
    shop.web.reload_php()
    page = cart(shop.staging)
    assert page.status_code == 200 and "shop-cart 1.0.0" in page.text and "shop-cart-css" not in page.text
    # the images are in the run folder; the diff paints exactly the differing pixels red
    run_dir = Path(str(result.run_dir))
    for shot in shots:
        for kind in ("before", "after", "diff"):
            assert (run_dir / shot[kind]).is_file(), shot[kind]
        assert shot["after"] == f"visual/shop/staging/after/{shot['page']}-{shot['size']}.png"
        assert _red_pixels(run_dir / shot["diff"]) == shot["differing"]
    assert json.loads((run_dir / "visual/shop/staging/before.json").read_text())["step"] == "visual-before"
    # the client report shows the two failed comparisons with their images embedded
    from maintkit.report import build_report, render_html, render_markdown

    assert run_dir.parent.parent == shop.tmp / "state"
    report = build_report(shop.tmp / "state")
    (site,) = report.sites
    assert [(v.env, v.page, v.size, v.ratio) for v in site.visual] == [
        ("staging", s["page"], f"{s['size']} {s['viewport']}", s["ratio"]) for s in shots if not s["ok"]
    ]
    html = render_html(report)
    assert "<h3>Visual changes</h3>" in html
    for v in site.visual:
        for kind in ("before", "after", "diff"):
            data = (run_dir.parent.parent / v.paths[kind]).read_bytes()
            assert v.images[kind] == "data:image/png;base64," + base64.b64encode(data).decode()
            assert f'src="{v.images[kind]}"' in html
    assert f"**cart** at desktop 1366x900: {shots[0]['ratio'] * 100:.2f}% of pixels differ" in render_markdown(report)


@dataclass
class PricesSite:
    """A plain PHP page with a dynamic part (the time and a random number), on this machine."""

    path: Path
    url: str


@pytest.fixture(scope="module")
def prices_site(web_stack: WebStack) -> Iterator[PricesSite]:
    name = f"visual{uuid.uuid4().hex[:8]}"
    root = web_stack.make_site_dir(name)
    (root / "visual-lab.php").write_text(LAB_PAGE)
    handle = web_stack.add_site(name, str(root))
    try:
        yield PricesSite(root, handle.url)
    finally:
        web_stack.remove_site(name)


def _run_local(site: PricesSite, tmp: Path, mask: list[str], *, raw: bool = False, **kwargs: Any) -> RunResult:
    env = runs.local_env(site.path, url=site.url)
    inv = runs.write_inventory(tmp, runs.one_site(env, env_name="staging"), unique=True)
    return runs.run(_visual_playbook(mask, raw), inv, tmp / "state", **kwargs)


@needs_chromium
def test_masked_dynamic_page_passes_twice_and_fails_unmasked(prices_site: PricesSite, tmp_path: Path) -> None:
    first = _run_local(prices_site, tmp_path, [".clock"])

    assert first.ok, json.dumps(first.to_dict(), indent=1)[-2000:]
    assert first.changed == 0
    after = steps(first, "staging")["after"]
    assert after.status is StepStatus.UNCHANGED
    assert after.reason == "2 screenshots match the before screenshots"
    assert [(s["page"], s["size"], s["ratio"]) for s in after.data["visual"]["shots"]] == [
        ("prices", "desktop", 0.0),
        ("prices", "mobile", 0.0),
    ]

    # again, with the same page unmasked next to it: the masked one passes again, the raw one fails
    again = _run_local(prices_site, tmp_path, [".clock"], raw=True)

    assert again.exit_code == 1 and again.changed == 0
    after = steps(again, "staging")["after"]
    assert after.status is StepStatus.FAILED
    shots = after.data["visual"]["shots"]
    assert [(s["page"], s["size"], s["ok"]) for s in shots] == [
        ("prices", "desktop", True),
        ("raw", "desktop", False),
        ("prices", "mobile", True),
        ("raw", "mobile", False),
    ]
    assert [s["ratio"] for s in shots if s["page"] == "prices"] == [0.0, 0.0]
    assert after.error == _message(shots)
    assert after.error.startswith("check: 2 of 4 screenshots differ from before: raw at desktop 1366x900: ")


def test_plan_mode_captures_nothing_and_a_missing_browser_is_named(
    prices_site: PricesSite, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = _run_local(prices_site, tmp_path, [".clock"], check=True)

    st = steps(result, "staging")
    assert st["before"].status is StepStatus.UNKNOWN
    assert st["before"].reason == (
        "would capture 1 page (prices) at desktop 1366x900, mobile 390x844 as the baseline; "
        "nothing is captured in plan mode"
    )
    assert st["after"].status is StepStatus.UNKNOWN and st["after"].reason == "unknown: depends on step before"
    assert not (Path(str(result.run_dir)) / "visual").exists()

    monkeypatch.setenv("MAINT_CHROMIUM", "/nonexistent/chromium")
    for check in (True, False):
        failed = _run_local(prices_site, tmp_path, [], check=check)
        before = steps(failed, "staging")["before"]
        assert before.status is StepStatus.FAILED
        assert before.error == "check: visual.check: MAINT_CHROMIUM=/nonexistent/chromium is not an executable file"
        assert not (Path(str(failed.run_dir)) / "visual").exists()
    assert failed.exit_code == 1
    not_run = [e["step"] for e in runs.events(failed.run_dir) if e["event"] == "step.not_run"]
    assert not_run == ["after"]
