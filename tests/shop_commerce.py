"""The commerce side of the lab's ``shop-cart`` plugin (WooCommerce-shaped, for the presets).

``shop_cart_files(..., commerce=True)`` adds it: one product ("Blue Mug", id 42) with a
product page ``/product/blue-mug/`` holding WooCommerce's add-to-cart form, the shop page's
product loop with its ``?add-to-cart=42`` link, a session cart kept in a signed cookie
(``add-to-cart`` handled on ``wp_loaded`` like WooCommerce), the ``[shop_cart]`` cart page
listing the items, and ``/checkout/`` rendering them (an empty cart redirects to the cart).
``store_api=True`` adds the Store API routes ``/wp-json/wc/store/v1/products``, ``/cart``
(with its ``Nonce`` header) and ``/cart/add-item`` (which refuses a missing or wrong nonce).
``broken_cart_item=True`` breaks only the cart page with an item in it (a PHP fatal error in
the item row); the empty cart, the product and the checkout pages still answer 200.
"""

from __future__ import annotations

PRODUCT_ID = 42
PRODUCT_NAME = "Blue Mug"
PRODUCT_PATH = "/product/blue-mug/"

COMMERCE = r"""<?php
// The WooCommerce-shaped shop of the lab: one product, a cookie cart, a checkout page.
define('SHOP_CART_PRODUCT_ID', 42);
define('SHOP_CART_PRODUCT_NAME', 'Blue Mug');
define('SHOP_CART_PRODUCT_PATH', '/product/blue-mug/');

function shop_cart_items() {
    $raw = isset($_COOKIE['shop_cart']) ? wp_unslash($_COOKIE['shop_cart']) : '';
    $parts = explode('|', $raw);
    if (count($parts) !== 2 || !hash_equals(wp_hash($parts[0]), $parts[1])) {
        return array();
    }
    $items = array();
    foreach (array_filter(explode(',', $parts[0])) as $pair) {
        $fields = array_map('intval', explode(':', $pair . ':0'));
        if ($fields[0] === SHOP_CART_PRODUCT_ID && $fields[1] > 0) {
            $items[$fields[0]] = $fields[1];
        }
    }
    return $items;
}

function shop_cart_save($items) {
    $pairs = array();
    foreach ($items as $id => $qty) {
        $pairs[] = $id . ':' . $qty;
    }
    $value = implode(',', $pairs);
    $cookie = $value . '|' . wp_hash($value);
    setcookie('shop_cart', $cookie, 0, '/', '', false, true);
    $_COOKIE['shop_cart'] = $cookie;
}

function shop_cart_add($id, $qty) {
    if ((int) $id !== SHOP_CART_PRODUCT_ID || $qty < 1) {
        return false;
    }
    $items = shop_cart_items();
    $items[SHOP_CART_PRODUCT_ID] = (isset($items[SHOP_CART_PRODUCT_ID]) ? $items[SHOP_CART_PRODUCT_ID] : 0) + $qty;
    shop_cart_save($items);
    return true;
}

add_action('wp_loaded', function () {
    if (isset($_REQUEST['add-to-cart'])) {
        $qty = isset($_REQUEST['quantity']) ? max(1, (int) $_REQUEST['quantity']) : 1;
        $GLOBALS['shop_cart_added'] = shop_cart_add((int) $_REQUEST['add-to-cart'], $qty);
    }
});

function shop_cart_request_path() {
    $path = (string) parse_url($_SERVER['REQUEST_URI'], PHP_URL_PATH);
    return '/' . trim($path, '/') . '/';
}

function shop_cart_page($title, $body) {
    status_header(200);
    header('Content-Type: text/html; charset=utf-8');
    echo '<!DOCTYPE html><html><head><meta charset="utf-8"><title>' . esc_html($title) . '</title>';
    wp_head();
    echo '</head><body class="woocommerce">' . $body;
    wp_footer();
    echo '</body></html>';
    exit;
}

function shop_cart_product_html() {
    $added = empty($GLOBALS['shop_cart_added']) ? '' :
        '<div class="woocommerce-message">&ldquo;Blue Mug&rdquo; has been added to your cart.</div>';
    return $added . '<div class="product"><h1 class="product_title entry-title">Blue Mug</h1>'
        . '<p class="price">12.00 EUR</p>'
        . '<form class="cart" action="' . esc_url(home_url(SHOP_CART_PRODUCT_PATH)) . '" method="post" '
        . 'enctype="multipart/form-data"><input type="number" name="quantity" value="1" min="1">'
        . '<button type="submit" name="add-to-cart" value="42" class="single_add_to_cart_button button alt">'
        . 'Add to cart</button></form></div>';
}

function shop_cart_checkout_html() {
    $rows = '';
    foreach (shop_cart_items() as $id => $qty) {
        $rows .= '<tr class="cart_item"><td class="product-name">Blue Mug&nbsp;<strong class="product-quantity">'
            . '&times;&nbsp;' . (int) $qty . '</strong></td></tr>';
    }
    return '<form class="checkout woocommerce-checkout"><h3 id="order_review_heading">Your order</h3>'
        . '<table class="shop_table woocommerce-checkout-review-order-table"><tbody>' . $rows
        . '</tbody></table></form>';
}

add_action('template_redirect', function () {
    $path = shop_cart_request_path();
    if ($path === SHOP_CART_PRODUCT_PATH) {
        shop_cart_page('Blue Mug', shop_cart_product_html());
    }
    if ($path === '/checkout/') {
        if (!shop_cart_items()) {
            wp_safe_redirect(home_url('/cart/'));
            exit;
        }
        shop_cart_page('Checkout', shop_cart_checkout_html());
    }
}, 1);

add_filter('the_content', function ($content) {
    if (!is_page('shop')) {
        return $content;
    }
    return $content . '<ul class="products"><li class="product"><a href="' . esc_url(home_url(SHOP_CART_PRODUCT_PATH))
        . '" class="woocommerce-LoopProduct-link woocommerce-loop-product__link">'
        . '<h2 class="woocommerce-loop-product__title">Blue Mug</h2></a>'
        . '<a href="?add-to-cart=42" data-quantity="1" class="button add_to_cart_button" data-product_id="42">'
        . 'Add to cart</a></li></ul>';
});
"""

STORE_API = r"""
function shop_cart_store_cart() {
    $items = array();
    foreach (shop_cart_items() as $id => $qty) {
        $items[] = array('id' => $id, 'name' => SHOP_CART_PRODUCT_NAME, 'quantity' => $qty);
    }
    return array('items' => $items, 'items_count' => array_sum(wp_list_pluck($items, 'quantity')));
}

function shop_cart_store_response($data, $status = 200) {
    $response = rest_ensure_response($data);
    $response->set_status($status);
    $response->header('Nonce', wp_create_nonce('wc_store_api'));
    return $response;
}

add_action('rest_api_init', function () {
    register_rest_route('wc/store/v1', '/products', array(
        'methods' => 'GET',
        'permission_callback' => '__return_true',
        'callback' => function () {
            return array(array('id' => SHOP_CART_PRODUCT_ID, 'name' => SHOP_CART_PRODUCT_NAME, 'slug' => 'blue-mug',
                'permalink' => home_url(SHOP_CART_PRODUCT_PATH), 'is_purchasable' => true));
        },
    ));
    register_rest_route('wc/store/v1', '/cart', array(
        'methods' => 'GET',
        'permission_callback' => '__return_true',
        'callback' => function () {
            return shop_cart_store_response(shop_cart_store_cart());
        },
    ));
    register_rest_route('wc/store/v1', '/cart/add-item', array(
        'methods' => 'POST',
        'permission_callback' => '__return_true',
        'callback' => function ($request) {
            $nonce = $request->get_header('Nonce');
            if (!$nonce) {
                return new WP_Error('woocommerce_rest_missing_nonce', 'Missing the Nonce header.', array('status' => 401));
            }
            if (!wp_verify_nonce($nonce, 'wc_store_api')) {
                return new WP_Error('woocommerce_rest_invalid_nonce', 'Nonce is invalid.', array('status' => 403));
            }
            $qty = $request['quantity'] ? max(1, (int) $request['quantity']) : 1;
            if (!shop_cart_add((int) $request['id'], $qty)) {
                return new WP_Error('woocommerce_rest_product_invalid_id', 'No product.', array('status' => 400));
            }
            return shop_cart_store_response(shop_cart_store_cart(), 201);
        },
    ));
});
"""

CART = r"""<?php
function shop_cart_render() {
    $items = shop_cart_items();
    if (!$items) {
        return '<div class="shop-cart">Your cart is empty (shop-cart {version})</div>';
    }
    $rows = '';
    foreach ($items as $id => $qty) {
        $rows .= shop_cart_row($id, $qty);
    }
    return '<div class="shop-cart woocommerce"><table class="shop_table cart"><tbody>' . $rows
        . '</tbody></table><p>shop-cart {version}</p></div>';
}
"""

ROW_GOOD = r"""
function shop_cart_row($id, $qty) {
    return '<tr class="woocommerce-cart-form__cart-item cart_item"><td class="product-remove">'
        . '<a href="#" class="remove" data-product_id="' . (int) $id . '">&times;</a></td>'
        . '<td class="product-name"><a href="' . esc_url(home_url(SHOP_CART_PRODUCT_PATH)) . '">Blue Mug</a></td>'
        . '<td class="product-quantity">' . (int) $qty . '</td></tr>';
}
"""

ROW_BROKEN = r"""
function shop_cart_row($id, $qty) {
    // regression: the line total helper went away; only a cart with an item renders a row
    return shop_cart_line_total_missing($id, $qty);
}
"""


def commerce_files(version: str, *, store_api: bool = False, broken_cart_item: bool = False) -> dict[str, str]:
    """The files the commerce side adds or replaces (``includes/cart.php``), and the main file's extra line."""
    cart = CART.replace("{version}", version) + (ROW_BROKEN if broken_cart_item else ROW_GOOD)
    return {
        "includes/commerce.php": COMMERCE + (STORE_API if store_api else ""),
        "includes/cart.php": cart,
    }


MAIN_REQUIRE = "require_once __DIR__ . '/includes/commerce.php';\n"
