"""CDN: a Cloudflare cache purge (everything, or the listed URLs) through its API, from the controller."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote as url_quote
from urllib.parse import urlsplit

from maintkit.action import Context
from maintkit.actions.cache.base import CacheTarget, Cleared, Item, TargetFailed, plural
from maintkit.actions.cache.params import CacheClearParams, CdnTarget

CLOUDFLARE_MAX_FILES = 30


def _cdn_urls(ctx: Context, cdn: CdnTarget) -> list[str]:
    base = (ctx.env.url or "").rstrip("/")
    out = []
    for url in cdn.urls:
        if urlsplit(url).scheme:
            out.append(url)
        elif base:
            out.append(base + ("" if url.startswith("/") else "/") + url)
        else:
            raise TargetFailed(f"relative CDN URL {url!r} but the environment has no url")
    return out


def _cdn_purge(ctx: Context, cdn: CdnTarget) -> int:
    """Purge through the Cloudflare API; return the number of API calls. Messages never carry secrets."""
    import requests

    from maintkit import _http

    assert cdn.zone_id is not None and cdn.token is not None
    endpoint = f"{cdn.api_base.rstrip('/')}/zones/{url_quote(cdn.zone_id.get_secret_value(), safe='')}/purge_cache"
    headers = {"Authorization": f"Bearer {cdn.token.get_secret_value()}", "Content-Type": "application/json"}
    urls = _cdn_urls(ctx, cdn)
    bodies: list[dict[str, Any]] = (
        [{"files": urls[i : i + CLOUDFLARE_MAX_FILES]} for i in range(0, len(urls), CLOUDFLARE_MAX_FILES)]
        if urls
        else [{"purge_everything": True}]
    )
    api_host = urlsplit(cdn.api_base).netloc
    for body in bodies:
        try:
            resp = _http.post(endpoint, json=body, headers=headers, timeout=cdn.timeout, verify=cdn.verify)
        except requests.RequestException as exc:
            raise TargetFailed(f"CDN API {api_host} unreachable ({type(exc).__name__})") from None
        try:
            answer = resp.json()
        except ValueError:
            answer = {}
        if resp.status_code != 200 or not isinstance(answer, dict) or answer.get("success") is not True:
            errors = answer.get("errors") if isinstance(answer, dict) else None
            detail = "; ".join(f"{e.get('code')}: {e.get('message')}" for e in (errors or []) if isinstance(e, dict))[
                :300
            ]
            raise TargetFailed(
                f"CDN purge refused by {api_host} (HTTP {resp.status_code}){': ' + detail if detail else ''}"
            )
    return len(bodies)


class CdnCache(CacheTarget[None]):
    """A CDN zone: check says what would be purged, clear calls the purge API."""

    kind = "cdn"

    def __init__(self, block: CdnTarget) -> None:
        self.block = block

    @classmethod
    def configured(cls, params: CacheClearParams, ctx: Context) -> list[CacheTarget[Any]]:
        """The one CDN block."""
        assert params.cdn is not None
        return [cls(params.cdn)]

    def check(self, ctx: Context) -> Item[None]:
        """Always needed: a CDN's cache cannot be inspected."""
        cdn = self.block
        scope = plural(len(cdn.urls), "URL") if cdn.urls else "everything"
        return Item(self, f"cdn {cdn.provider}", True, f"CDN: will purge {scope}", None, {"urls": len(cdn.urls)})

    def clear(self, ctx: Context, item: Item[None]) -> Cleared:
        """Purge through the API."""
        calls = _cdn_purge(ctx, self.block)
        return f"purged ({plural(calls, 'API call')})", {"api_calls": calls}


__all__ = ["CLOUDFLARE_MAX_FILES", "CdnCache"]
