"""``http.check`` commerce presets on the real WordPress lab (and a Magento-shaped server).

The lab's ``shop-cart`` plugin with ``commerce=True`` is WooCommerce-shaped (a product page with
the add-to-cart form, the shop page's ``?add-to-cart`` link, a cookie cart, a checkout page;
``store_api=True`` adds the Store API): ``flow: woocommerce`` must find the product, put it in
the cart and see it on the cart and checkout pages, in one cookie session, with no flow written.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
import requests

from maintkit.errors import PlaybookError
from maintkit.inventory import load_inventory
from maintkit.playbook import playbook_from_text
from maintkit.results import StepStatus
from tests import runs
from tests.cms_helpers import WpSite, chown_tree, make_shop_cart_zip, shop_cart_files, tree_digest, wp_plugin_version
from tests.lab.wp_fixtures import Shop, events, run, steps, write_inventory
from tests.shop_commerce import PRODUCT_PATH

pytestmark = pytest.mark.lab

CHECK = """\
name: buy
stages:
  - env: staging
    steps:
      - id: smoke
        action: http.check
        with: {flow: woocommerce, retries: 0, must_not_match: "Fatal error"{extra}}
"""


def install_shop_cart(shop: Shop, site: WpSite, version: str = "1.0.0", **kwargs: Any) -> None:
    """Put a shop-cart release straight into a site's tree (the shop's state before a run)."""
    for rel, text in shop_cart_files(version, **kwargs).items():
        path = site.plugin_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    chown_tree(site.plugin_dir, "deploy")
    shop.web.reload_php()  # OPcache would serve the old files for up to 2 s


def flow_steps(data: dict[str, Any]) -> list[tuple[str, str, int | None, bool]]:
    """(flow step label, method, status, ok) of every request a check made."""
    return [(r["flow_step"], r["method"], r["status"], r["ok"]) for r in data["requests"]]


def check_staging(shop: Shop, extra: str = "") -> Any:
    inv = write_inventory(shop)
    return run(shop, inv, playbook_from_text(CHECK.replace("{extra}", extra)), env="staging")


def test_woocommerce_preset_buys_through_the_shop_page_link(shop: Shop) -> None:
    install_shop_cart(shop, shop.staging, commerce=True)

    result = check_staging(shop)

    assert result.ok, json.dumps(result.to_dict(), indent=1)[-2000:]
    smoke = steps(result, "staging")["smoke"]
    assert smoke.status is StepStatus.UNCHANGED
    base = shop.staging.url
    assert flow_steps(smoke.data) == [
        ("woocommerce store-api 1: find a product (Store API)", "GET", 404, False),
        ("woocommerce shop page 1: find a product (shop page)", "GET", 200, True),
        ("woocommerce shop page 1: add to cart (?add-to-cart)", "GET", 200, True),
        ("woocommerce shop page 2: the cart shows it", "GET", 200, True),
        ("woocommerce shop page 3: the checkout renders it", "GET", 200, True),
    ]
    assert [r["url"] for r in smoke.data["requests"]][1:] == [
        f"{base}/shop/",
        f"{base}/cart/?add-to-cart=42",
        f"{base}/cart/",
        f"{base}/checkout/",
    ]
    # the shop really keeps the cart in the session: a fresh visitor's checkout is sent to the empty cart
    fresh = requests.get(f"{base}/checkout/", timeout=20)
    assert fresh.url == f"{base}/cart/" and "Your cart is empty (shop-cart 1.0.0)" in fresh.text


def test_woocommerce_preset_prefers_the_store_api_with_its_nonce(shop: Shop) -> None:
    install_shop_cart(shop, shop.staging, store_api=True)
    base = shop.staging.url
    refused = requests.post(f"{base}/wp-json/wc/store/v1/cart/add-item", data={"id": "42"}, timeout=20)
    assert refused.status_code == 401 and refused.json()["code"] == "woocommerce_rest_missing_nonce"

    result = check_staging(shop)

    assert result.ok, json.dumps(result.to_dict(), indent=1)[-2000:]
    smoke = steps(result, "staging")["smoke"]
    assert flow_steps(smoke.data) == [
        ("woocommerce store-api 1: find a product (Store API)", "GET", 200, True),
        ("woocommerce store-api 1: cart nonce", "GET", 200, True),
        ("woocommerce store-api 2: add to cart (Store API)", "POST", 201, True),
        ("woocommerce store-api 3: the cart shows it", "GET", 200, True),
        ("woocommerce store-api 4: the checkout renders it", "GET", 200, True),
    ]
    # the audit log has every request, never the captured nonce (a guest's nonce is the same in this tick)
    nonce = requests.get(f"{base}/wp-json/wc/store/v1/cart", timeout=20).headers["Nonce"]
    log = events(result)
    assert len([e for e in log if e["event"] == "http.request"]) == 5
    assert nonce not in (Path(str(result.run_dir)) / "events.jsonl").read_text()


def test_woocommerce_preset_uses_the_configured_product_page_when_nothing_lists_products(shop: Shop) -> None:
    install_shop_cart(shop, shop.staging, commerce=True)
    extra = ", store: {shop: /no-such-list/, product: " + PRODUCT_PATH + "}"

    result = check_staging(shop, extra)

    assert result.ok, json.dumps(result.to_dict(), indent=1)[-2000:]
    smoke = steps(result, "staging")["smoke"]
    assert [(s, m, st) for s, m, st, _ in flow_steps(smoke.data)] == [
        ("woocommerce store-api 1: find a product (Store API)", "GET", 404),
        ("woocommerce shop page 1: find a product (shop page)", "GET", 404),
        ("woocommerce product page 1: the product page", "GET", 200),
        ("woocommerce product page 1: add to cart (form)", "POST", 200),
        ("woocommerce product page 2: the cart shows it", "GET", 200),
        ("woocommerce product page 3: the checkout renders it", "GET", 200),
    ]


def test_a_shop_without_products_fails_with_what_was_tried(shop: Shop) -> None:
    # the template's shop-cart 1.0.0: a cart page, but no product anywhere
    result = check_staging(shop)

    assert result.exit_code == 1
    smoke = steps(result, "staging")["smoke"]
    assert smoke.status is StepStatus.FAILED
    assert str(smoke.error) == (
        f"check: 1 of 1 checks failed: flow step woocommerce: find a product: GET {shop.staging.url}: no product found "
        "(store-api: status 404 (expected 200) | shop page: capture of 'product_id' failed: "
        "'[?&](?:amp;)?add-to-cart=(\\\\d+)' not found in the body) "
        "(set store.product to the path of a product page)"
    )


def test_monthly_update_buys_by_default_and_catches_a_cart_broken_only_with_an_item(shop: Shop) -> None:
    for site in (shop.staging, shop.production):
        install_shop_cart(shop, site, commerce=True)
    make_shop_cart_zip(shop.repo, "1.1.0", commerce=True, broken_cart_item=True)
    inv = write_inventory(shop, shop="woocommerce")
    production_before = tree_digest(shop.production.path)

    result = run(shop, inv)

    assert result.exit_code == 1
    st = steps(result, "staging")
    # the pages without an item in the cart are fine: compat's smoke pages pass ...
    assert st["compat"].status is StepStatus.UNCHANGED and st["compat"].error is None
    # ... the preset flow, with no flow written, finds the broken cart
    assert st["smoke"].status is StepStatus.FAILED
    url = shop.staging.url
    assert str(st["smoke"].error) == (
        "check: 1 of 3 checks failed: flow step woocommerce shop page 1: add to cart (?add-to-cart): "
        f"GET {url}/cart/?add-to-cart=42: status 500 (expected 200)"
    )
    assert st["update"].status is StepStatus.ROLLED_BACK
    assert wp_plugin_version(shop.staging.path, "shop-cart") == "1.0.0"
    assert "production" not in {s.env for site in result.sites for s in site.steps}
    assert tree_digest(shop.production.path) == production_before


class MagentoShop(BaseHTTPRequestHandler):
    """A Magento-2-shaped shop: a product page with a per-session form_key, checkout/cart/add
    (refusing a wrong form_key like Magento: back to the product page, nothing added), the cart,
    and a checkout page whose checkoutConfig lists the quote's items."""

    sessions: dict[str, dict[str, Any]] = {}
    seen: list[str] = []
    lose_cart = False

    def log_message(self, *args: Any) -> None:
        pass

    def _session(self) -> tuple[str, dict[str, Any]]:
        cookie = self.headers.get("Cookie", "")
        sid = cookie.split("PHPSESSID=", 1)[1].split(";", 1)[0] if "PHPSESSID=" in cookie else ""
        if sid not in self.sessions:
            sid = f"s{len(self.sessions) + 1}"
            self.sessions[sid] = {"form_key": f"fk{len(self.sessions) + 1}x", "items": []}
        return sid, self.sessions[sid]

    def _send(self, status: int, body: str = "", sid: str = "", location: str = "") -> None:
        self.send_response(status)
        if sid:
            self.send_header("Set-Cookie", f"PHPSESSID={sid}; Path=/")
        if location:
            self.send_header("Location", location)
        data = body.encode()
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self.seen.append(f"GET {self.path}")
        sid, sess = self._session()
        base = f"http://127.0.0.1:{self.server.server_address[1]}"
        items = [] if self.lose_cart else sess["items"]
        if self.path == "/blue-mug.html":
            self._send(
                200,
                '<h1 class="page-title"><span class="base" data-ui-id="page-title-wrapper" itemprop="name">'
                f'Blue Mug</span></h1><form action="{base}/checkout/cart/add/uenc/aHR0cA,,/product/7/" '
                'method="post" id="product_addtocart_form"><input type="hidden" name="product" value="7">'
                f'<input name="form_key" type="hidden" value="{sess["form_key"]}"></form>',
                sid,
            )
        elif self.path == "/checkout/cart/":
            rows = "".join('<strong class="product-item-name"><a>Blue Mug</a></strong>' for _ in items)
            self._send(200, rows or "You have no items in your shopping cart.", sid)
        elif self.path == "/checkout/":
            if not items:
                self._send(302, "", sid, f"{base}/checkout/cart/")
                return
            items_data = [{"product_id": "7", "name": "Blue Mug"} for _ in items]
            quote = json.dumps({"quoteItemData": items_data}, separators=(",", ":"))  # as PHP's json_encode
            self._send(200, f"<script>window.checkoutConfig = {quote};</script>", sid)
        else:
            self._send(404, "not found", sid)

    def do_POST(self) -> None:
        self.seen.append(f"POST {self.path}")
        sid, sess = self._session()
        length = int(self.headers.get("Content-Length", "0"))
        form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
        base = f"http://127.0.0.1:{self.server.server_address[1]}"
        if self.path.startswith("/checkout/cart/add/") and form.get("form_key") == sess["form_key"]:
            sess["items"].append(form["product"])
            self._send(302, "", sid, f"{base}/checkout/cart/")
        else:
            self._send(302, "", sid, f"{base}/blue-mug.html")


@pytest.fixture()
def magento(tmp_path: Path) -> Iterator[tuple[str, type[MagentoShop]]]:
    handler = type("Handler", (MagentoShop,), {"sessions": {}, "seen": [], "lose_cart": False})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


MAGENTO_CHECK = """\
name: buy
stages:
  - env: production
    steps:
      - id: smoke
        action: http.check
        with: {flow: magento2, retries: 0, store: {product: /blue-mug.html}}
"""


def magento_inventory(tmp_path: Path, url: str) -> Path:
    site = runs.one_site(runs.local_env(tmp_path, url=url), platform="composer")
    return runs.write_inventory(tmp_path, site, unique=True)


def test_magento2_preset_posts_the_form_key_and_sees_the_item_in_cart_and_checkout(
    magento: tuple[str, type[MagentoShop]], tmp_path: Path
) -> None:
    url, handler = magento
    inv = load_inventory(magento_inventory(tmp_path, url))

    planned = runs.run(MAGENTO_CHECK, inv, tmp_path / "state", check=True)
    assert planned.sites[0].steps[0].status is StepStatus.UNKNOWN
    assert planned.sites[0].steps[0].reason == (
        "unknown: would run the magento2 flow (it sends POST: adds to the cart); "
        "not run in plan mode because it is not read-only"
    )
    assert handler.seen == []

    result = runs.run(MAGENTO_CHECK, inv, tmp_path / "state")

    assert result.ok, json.dumps(result.to_dict(), indent=1)[-2000:]
    assert handler.seen == [
        "GET /blue-mug.html",
        "POST /checkout/cart/add/uenc/aHR0cA,,/product/7/",
        "GET /checkout/cart/",
        "GET /checkout/cart/",
        "GET /checkout/",
    ]
    assert [s["items"] for s in handler.sessions.values()] == [["7"]]

    handler.lose_cart = True  # a shop whose cart forgets the item fails the check
    lost = runs.run(MAGENTO_CHECK, inv, tmp_path / "state")
    assert lost.exit_code == 1
    assert str(lost.sites[0].steps[0].error) == (
        "check: 1 of 1 checks failed: flow step magento2 product page 2: the cart shows it: "
        f"GET {url}/checkout/cart/: body does not contain 'Blue Mug'"
    )


def test_magento2_preset_needs_a_product_page() -> None:
    with pytest.raises(PlaybookError) as err:
        playbook_from_text(MAGENTO_CHECK.replace(", store: {product: /blue-mug.html}", ""))
    assert "flow magento2 needs store.product (the path of a product page)" in str(err.value)
