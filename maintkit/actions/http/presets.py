"""Commerce flows as data: ``flow: woocommerce`` and ``flow: magento2`` buy one product.

A preset is a list of *variants*, each a list of ordinary flow requests (the same
:class:`~maintkit.actions.http.params.FlowRequest` a playbook writes, with ``capture`` and
``capture_headers``). A variant has two parts:

- ``find``: requests that find a product (its id and name). When one of them fails, this
  way of finding a product is not available on the shop (no Store API, no shop page) and
  the next variant is tried; every request is still in the audit log.
- ``buy``: add it to the cart, the cart shows it, the checkout page renders it. A failure
  here fails the check: the next variant is never tried, so a broken cart cannot hide
  behind another way of buying.

The store's pages are placeholders (``{shop}``, ``{cart}``, ``{checkout}``, ``{product}``)
filled from ``store:`` or the preset's defaults before the first request; a variant that
needs ``{product}`` is only tried when ``store.product`` is set.

WooCommerce, in order: the Store API (``/wp-json/wc/store/v1/products``, then
``cart/add-item`` with the ``Nonce`` header of ``/wp-json/wc/store/v1/cart``, the cart
kept by the session's cookies), the shop page's ``?add-to-cart=ID`` links, the add-to-cart
form of ``store.product``. Magento 2: the product page's ``form_key`` and form, a POST to
``checkout/cart/add``, the cart, and the checkout page's ``checkoutConfig``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from maintkit.actions.http.client import Sender, make_session
from maintkit.actions.http.flow import run_requests
from maintkit.actions.http.outcome import Outcome
from maintkit.actions.http.params import FlowRequest, HttpCheckParams


@dataclass(frozen=True)
class Variant:
    """One way of buying on a platform: find a product, then buy it."""

    name: str
    find: tuple[FlowRequest, ...]
    buy: tuple[FlowRequest, ...]
    #: placeholders the variant needs from ``store:`` (it is skipped without them)
    needs: tuple[str, ...] = ()


def _requests(raw: list[dict[str, Any]]) -> tuple[FlowRequest, ...]:
    return tuple(FlowRequest.model_validate(r) for r in raw)


_WC_CART_AND_CHECKOUT: list[dict[str, Any]] = [
    {"name": "the cart shows it", "path": "{cart}", "must_contain": "{product_name}"},
    {"name": "the checkout renders it", "path": "{checkout}", "must_contain": "{product_name}"},
]

WOOCOMMERCE: tuple[Variant, ...] = (
    Variant(
        "store-api",
        find=_requests(
            [
                {
                    "name": "find a product (Store API)",
                    "path": "/wp-json/wc/store/v1/products?per_page=1&type=simple",
                    "capture": {
                        "product_id": r'^\s*\[\s*\{\s*"id"\s*:\s*(\d+)',
                        "product_name": r'^\s*\[\s*\{\s*"id"\s*:\s*\d+\s*,\s*"name"\s*:\s*"([^"\\&<]+)"',
                    },
                }
            ]
        ),
        buy=_requests(
            [
                {"name": "cart nonce", "path": "/wp-json/wc/store/v1/cart", "capture_headers": {"nonce": "Nonce"}},
                {
                    "name": "add to cart (Store API)",
                    "path": "/wp-json/wc/store/v1/cart/add-item",
                    "method": "POST",
                    "data": {"id": "{product_id}", "quantity": "1"},
                    "headers": {"Nonce": "{nonce}"},
                    "status": [200, 201],
                },
                *_WC_CART_AND_CHECKOUT,
            ]
        ),
    ),
    Variant(
        "shop page",
        find=_requests(
            [
                {
                    "name": "find a product (shop page)",
                    "path": "{shop}",
                    "capture": {
                        "product_id": r"[?&](?:amp;)?add-to-cart=(\d+)",
                        "product_name": r'class="woocommerce-loop-product__title">\s*([^<]+?)\s*<',
                    },
                }
            ]
        ),
        buy=_requests(
            [{"name": "add to cart (?add-to-cart)", "path": "{cart}?add-to-cart={product_id}"}, *_WC_CART_AND_CHECKOUT]
        ),
    ),
    Variant(
        "product page",
        needs=("product",),
        find=_requests(
            [
                {
                    "name": "the product page",
                    "path": "{product}",
                    "capture": {
                        "product_id": r'name="add-to-cart"\s+value="(\d+)"',
                        "product_name": r'class="product_title[^"]*">\s*([^<]+?)\s*<',
                    },
                }
            ]
        ),
        buy=_requests(
            [
                {
                    "name": "add to cart (form)",
                    "path": "{product}",
                    "method": "POST",
                    "data": {"add-to-cart": "{product_id}", "quantity": "1"},
                },
                *_WC_CART_AND_CHECKOUT,
            ]
        ),
    ),
)

MAGENTO2: tuple[Variant, ...] = (
    Variant(
        "product page",
        needs=("product",),
        find=_requests(
            [
                {
                    "name": "the product page (form_key)",
                    "path": "{product}",
                    "capture": {
                        "form_key": r'name="form_key"[^>]*?value="([^"]+)"',
                        "product_id": r'name="product"\s+value="(\d+)"',
                        "add_url": r'action="([^"]*/checkout/cart/add/[^"]*)"',
                        "product_name": r'data-ui-id="page-title-wrapper"[^>]*>\s*([^<]+?)\s*<',
                    },
                }
            ]
        ),
        buy=_requests(
            [
                {
                    "name": "add to cart",
                    "path": "{add_url}",
                    "method": "POST",
                    "data": {"product": "{product_id}", "form_key": "{form_key}", "qty": "1"},
                },
                {"name": "the cart shows it", "path": "{cart}", "must_contain": "{product_name}"},
                {
                    "name": "the checkout renders it",
                    "path": "{checkout}",
                    "must_contain": ['"product_id":"{product_id}"'],
                    "must_match": "checkoutConfig",
                },
            ]
        ),
    ),
)

PRESETS: dict[str, tuple[Variant, ...]] = {"woocommerce": WOOCOMMERCE, "magento2": MAGENTO2}

#: the store pages of each preset when ``store:`` does not say
DEFAULT_PAGES: dict[str, dict[str, str]] = {
    "woocommerce": {"shop": "/shop/", "cart": "/cart/", "checkout": "/checkout/"},
    "magento2": {"cart": "/checkout/cart/", "checkout": "/checkout/"},
}


def store_pages(p: HttpCheckParams) -> dict[str, str]:
    """The placeholders a preset starts with: the store's pages (``store:`` over the defaults)."""
    preset = p.preset or ""
    pages = dict(DEFAULT_PAGES.get(preset, {}))
    for key, value in p.store.model_dump().items():
        if value is not None:
            pages[key] = value
    return pages


def variants(p: HttpCheckParams) -> list[Variant]:
    """The variants of the step's preset that its ``store:`` allows, in order."""
    pages = store_pages(p)
    return [v for v in PRESETS.get(p.preset or "", ()) if all(n in pages for n in v.needs)]


def writes_of(p: HttpCheckParams) -> list[str]:
    """The non-GET/HEAD methods a preset would send (for plan mode)."""
    return sorted({r.method for v in variants(p) for r in (*v.find, *v.buy) if r.method not in ("GET", "HEAD")})


def run_preset_once(sender: Sender, base: str | None, attempt: int) -> Outcome | None:
    """Run the step's preset once: the first variant that finds a product buys it.

    Returns the failing outcome (of ``buy``, or a summary when no variant found a product), or None."""
    p = sender.params
    preset = p.preset or ""
    unavailable: list[str] = []
    for variant in variants(p):
        values = store_pages(p)
        session = make_session(p, base)
        with session:
            prefix = f"{preset} {variant.name} "
            missed = run_requests(sender, session, base, attempt, variant.find, values, prefix)
            if missed is not None:
                unavailable.append(f"{variant.name}: {'; '.join(missed.reasons)}")
                continue
            return run_requests(sender, session, base, attempt, variant.buy, values, prefix)
    return _nothing_found(preset, unavailable, attempt, base or "", store_pages(p))


def _nothing_found(preset: str, unavailable: list[str], attempt: int, base: str, pages: Mapping[str, str]) -> Outcome:
    """The outcome when no variant found a product (``base``: the shop's URL, for the message)."""
    hint = "" if "product" in pages else " (set store.product to the path of a product page)"
    tried = " | ".join(unavailable) or "no variant applies"
    reason = f"no product found ({tried}){hint}"
    return Outcome(base, "GET", None, 0.0, [reason], attempt=attempt, flow_step=f"{preset}: find a product")


__all__ = [
    "DEFAULT_PAGES",
    "MAGENTO2",
    "PRESETS",
    "WOOCOMMERCE",
    "Variant",
    "run_preset_once",
    "store_pages",
    "writes_of",
]
