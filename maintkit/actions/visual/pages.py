"""The pages ``visual.check`` captures when none are configured: a shop's home, a category, a product,
the cart with an item and the checkout, found by following the platform's own links and buttons."""

from __future__ import annotations

from maintkit.actions.visual.params import Page, PageStep

_WOO_PRODUCT = "a.woocommerce-LoopProduct-link, ul.products a[href*='/product/'], a[href*='/product/']"
_WOO_CATEGORY = "a[href*='/product-category/']"
_WOO_ADD = "button[name='add-to-cart'], button.single_add_to_cart_button"
_M2_CATEGORY = "nav a.level-top"
_M2_PRODUCT = "a.product-item-link"
_M2_ADD = "#product-addtocart-button"


def _woocommerce() -> list[Page]:
    shop = PageStep(goto="/shop/")
    return [
        Page(name="home", path="/"),
        Page(name="category", steps=[shop, PageStep(click=_WOO_CATEGORY)]),
        Page(name="product", steps=[shop, PageStep(click=_WOO_PRODUCT)]),
        Page(name="cart", path="/cart/", steps=[shop, PageStep(click=_WOO_PRODUCT), PageStep(click=_WOO_ADD)]),
        Page(name="checkout", path="/checkout/"),
    ]


def _magento() -> list[Page]:
    home = PageStep(goto="/")
    added = PageStep(wait_for=".message-success")
    return [
        Page(name="home", path="/", mask=[".page.messages"]),
        Page(name="category", steps=[home, PageStep(click=_M2_CATEGORY)]),
        Page(name="product", steps=[home, PageStep(click=_M2_CATEGORY), PageStep(click=_M2_PRODUCT)]),
        Page(name="cart", path="/checkout/cart/", steps=[PageStep(click=_M2_ADD), added]),
        Page(name="checkout", path="/checkout/"),
    ]


def default_pages(platform: str) -> list[Page]:
    """The pages for ``platform`` (``wordpress``: WooCommerce's; ``magento``; else the home page only)."""
    if platform == "wordpress":
        return _woocommerce()
    if platform == "magento":
        return _magento()
    return [Page(name="home", path="/")]


__all__ = ["default_pages"]
