"""What ``staging.refresh`` refuses, and the guards it leaves on the refreshed staging.

Refusals come first, in check (plan mode too), before anything is written: a target named
``production``, a target the inventory marks ``protected: true``, or a target whose URL,
host and path, or database is the source's. Guards: search engines blocked, outgoing mail
stopped, payment gateways in test mode where the platform says how (see docs/actions-cms.md).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from maintkit.actions.staging.params import Guards
from maintkit.actions.staging.sides import Side, Sides, same_connection
from maintkit.errors import CheckFailed
from maintkit.transport.base import quote

GUARD_PLUGIN = "wp-content/mu-plugins/maint-staging-guard.php"
ROBOTS_DISALLOW = "User-agent: *\nDisallow: /\n"

_GUARD_HEAD = """<?php
/**
 * Plugin Name: maintkit staging guard
 * Description: Written by staging.refresh: this copy of production must not be indexed or send mail.
 */
if (!defined('ABSPATH')) {
    exit;
}
"""
_GUARD_NOINDEX = """add_filter('pre_option_blog_public', function () {
    return '0';
});
add_action('send_headers', function () {
    header('X-Robots-Tag: noindex, nofollow', true);
});
add_filter('robots_txt', function () {
    return "User-agent: *\\nDisallow: /\\n";
}, PHP_INT_MAX);
"""
_GUARD_MAIL = """add_filter('pre_wp_mail', function () {
    return false;
}, PHP_INT_MAX);
add_action('phpmailer_init', function ($mailer) {
    $mailer->clearAllRecipients();
}, PHP_INT_MAX);
"""


def _norm_url(url: str | None) -> str:
    if not url:
        return ""
    parts = urlsplit(url.strip())
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}{parts.path.rstrip('/')}"


def refusal(site: str, sides: Sides, same_db: bool) -> str | None:
    """Why the refresh must not write to its target (None: it may)."""
    src, dst = sides.source.env, sides.target.env
    head = f"staging.refresh refuses to write to {site}/{dst.name}"
    if dst.name == "production":
        return f"{head}: an environment named production is never a refresh target"
    if dst.protected:
        return f"{head}: the inventory marks it protected: true"
    if dst.name == src.name:
        return f"{head}: it is the source environment"
    if _norm_url(dst.url) and _norm_url(dst.url) == _norm_url(src.url):
        return f"{head}: its URL {dst.url} is the URL of {src.name}"
    if (same_connection(src, dst) or src.host == dst.host) and sides.target.path == sides.source.path:
        return f"{head}: its path {dst.display_host}:{dst.path} is the path of {src.name}"
    if same_db and sides.target.db is not None:
        return f"{head}: its database {sides.target.db.name} is the database of {src.name}"
    return None


def check_refusal(site: str, sides: Sides, same_db: bool) -> None:
    """Raise CheckFailed with the refusal's message, if any."""
    reason = refusal(site, sides, same_db)
    if reason:
        raise CheckFailed(reason)


def guard_plugin(g: Guards) -> bytes | None:
    """The WordPress mu-plugin the guards need (None: no noindex nor mail guard)."""
    body = (_GUARD_NOINDEX if g.noindex else "") + (_GUARD_MAIL if g.mail else "")
    return (_GUARD_HEAD + body).encode() if body else None


def write_generic_guards(target: Side, g: Guards, timeout: float) -> list[str]:
    """Non-WordPress targets: a robots.txt that disallows everything, when configured."""
    if not (g.noindex and g.robots_txt):
        return []
    dest = f"{target.path}/{g.robots_txt.lstrip('/')}"
    target.shell(f"mkdir -p -- {quote(dest.rsplit('/', 1)[0])}", timeout)
    target.transport.put(ROBOTS_DISALLOW.encode(), dest, mode=0o644)
    return [dest]


__all__ = ["GUARD_PLUGIN", "ROBOTS_DISALLOW", "check_refusal", "guard_plugin", "refusal", "write_generic_guards"]
