"""Anonymisation rules of ``staging.refresh``: the WordPress and WooCommerce defaults.

A rule overwrites one column (``table`` without the table prefix) with a value of its
``kind``: ``email`` -> ``user<id>@example.invalid`` (a reserved domain: never delivered),
``login`` -> ``user<id>``, ``name`` -> ``Customer <id>``, ``phone`` -> ``+00 000 <id>``,
``address`` -> ``<id> Example Street``, ``text`` -> ``redacted``, ``empty`` -> ``''``. Users
holding one of ``keep_roles`` (administrators) keep their data; tables that do not exist are
reported and skipped. The WordPress PHP helper applies them (``anonymize``).
"""

from __future__ import annotations

from maintkit.actions.staging.params import AnonKind, AnonRule

_USER_META: dict[AnonKind, list[str]] = {
    "name": [
        "first_name", "last_name", "nickname", "billing_first_name", "billing_last_name",
        "shipping_first_name", "shipping_last_name", "billing_company", "shipping_company",
    ],
    "email": ["billing_email"],
    "phone": ["billing_phone", "shipping_phone"],
    "address": [
        "billing_address_1", "billing_address_2", "billing_city", "billing_postcode",
        "shipping_address_1", "shipping_address_2", "shipping_city", "shipping_postcode",
    ],
}  # fmt: skip

_ORDER_META: dict[AnonKind, list[str]] = {
    "name": [
        "_billing_first_name", "_billing_last_name", "_shipping_first_name", "_shipping_last_name",
        "_billing_company", "_shipping_company",
    ],
    "email": ["_billing_email"],
    "phone": ["_billing_phone", "_shipping_phone"],
    "address": [
        "_billing_address_1", "_billing_address_2", "_billing_city", "_billing_postcode",
        "_shipping_address_1", "_shipping_address_2", "_shipping_city", "_shipping_postcode",
        "_billing_address_index", "_shipping_address_index", "_customer_ip_address",
    ],
}  # fmt: skip


def _users() -> list[AnonRule]:
    rules = [
        AnonRule(table="users", column="user_email", kind="email", user_column="ID"),
        AnonRule(table="users", column="display_name", kind="name", user_column="ID"),
    ]
    for kind, keys in _USER_META.items():
        rules.append(
            AnonRule(
                table="usermeta", column="meta_value", kind=kind, keys=keys, user_column="user_id", id_column="user_id"
            )
        )
    return rules


def _orders() -> list[AnonRule]:
    rules = [
        AnonRule(table="postmeta", column="meta_value", kind=kind, keys=keys, id_column="post_id")
        for kind, keys in _ORDER_META.items()
    ]
    # WooCommerce's own tables (HPOS orders, addresses, customer lookup), when they exist
    rules += [
        AnonRule(table="wc_orders", column="billing_email", kind="email", user_column="customer_id"),
        AnonRule(table="wc_orders", column="ip_address", kind="empty", user_column="customer_id"),
        AnonRule(table="wc_order_addresses", column="email", kind="email"),
        AnonRule(table="wc_order_addresses", column="first_name", kind="name"),
        AnonRule(table="wc_order_addresses", column="last_name", kind="name"),
        AnonRule(table="wc_order_addresses", column="company", kind="empty"),
        AnonRule(table="wc_order_addresses", column="phone", kind="phone"),
        AnonRule(table="wc_order_addresses", column="address_1", kind="address"),
        AnonRule(table="wc_order_addresses", column="address_2", kind="empty"),
        AnonRule(table="wc_customer_lookup", column="email", kind="email", user_column="user_id"),
        AnonRule(table="wc_customer_lookup", column="first_name", kind="name", user_column="user_id"),
        AnonRule(table="wc_customer_lookup", column="last_name", kind="name", user_column="user_id"),
        AnonRule(table="comments", column="comment_author_email", kind="email", user_column="user_id"),
        AnonRule(table="comments", column="comment_author_IP", kind="empty", user_column="user_id"),
    ]
    return rules


def default_rules() -> list[AnonRule]:
    """The default rules: WordPress users and their meta, WooCommerce orders (both storages), comments."""
    return [*_users(), *_orders()]


__all__ = ["default_rules"]
