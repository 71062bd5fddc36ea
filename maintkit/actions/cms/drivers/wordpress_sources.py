"""Where WordPress packages come from, and whether the host can run them.

Per package, in order of precedence: ``sources.<slug>`` (a URL or zip path, for
premium/private plugins), ``repository`` (a directory of ``<slug>-<version>.zip``, on the
controller or the host), then the WordPress.org API at ``api_url`` (plugins and themes whose
``Update URI`` is empty or wordpress.org, and core). Candidate zips are read on the
controller (:meth:`WpSources.materialize`): their header gives the exact version and
``Requires PHP`` / ``Requires at least``; their sha256 and tree hash go into the lock.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import quote as urlquote
from urllib.parse import urlparse

from maintkit._text import tail
from maintkit.action import Context
from maintkit.actions.cms.drivers.wordpress_state import WpState, newer, read_zip_package, same_version
from maintkit.actions.cms.params import CmsUpdateParams, PackageSource
from maintkit.actions.cms.plan import Installed, Offer
from maintkit.actions.cms.policy import Version
from maintkit.actions.cms.snapshots import sha256_hex, zip_tree_hash
from maintkit.errors import CheckFailed, MaintkitError

_WPORG_HOSTS = ("wordpress.org", "w.org", "downloads.wordpress.org", "api.wordpress.org")


class WpSources:
    """The configured package sources of one cms.update step (WordPress)."""

    def __init__(self, params: CmsUpdateParams) -> None:
        self.p = params

    def repo_listing(self, ctx: Context) -> list[str]:
        repo = self.p.repository
        if repo is None:
            return []
        if repo.on == "controller":
            try:
                return sorted(n for n in os.listdir(repo.path) if n.endswith(".zip"))
            except OSError as exc:
                raise CheckFailed(f"repository {repo.path} on the controller: {exc}") from None
        res = ctx.run(["find", repo.path, "-maxdepth", "1", "-type", "f", "-name", "*.zip"], check=False)
        if not res.ok:
            raise CheckFailed(f"repository {repo.path} on the host: {tail(res.stderr)}")
        return sorted(line.rsplit("/", 1)[-1] for line in res.stdout.splitlines() if line)

    def _repo_offers(self, pkg: Installed, listing: list[str]) -> list[Offer]:
        repo = self.p.repository
        if repo is None:
            return []
        out = []
        for fname in listing:
            if not fname.startswith(pkg.name + "-"):
                continue
            version = fname[len(pkg.name) + 1 : -4]
            if Version.try_parse(version) is None:
                continue
            out.append(Offer(version, f"repository:{repo.path}", repo.on, f"{repo.path.rstrip('/')}/{fname}"))
        return out

    def _source_offer(self, ctx: Context, pkg: Installed, src: PackageSource) -> Offer:
        if src.url is not None:
            offer = Offer("", f"url:{src.url}", "url", src.url)
        else:
            offer = Offer("", f"path:{src.path}", src.on, str(src.path))
        self.materialize(ctx, pkg, offer)
        offer.version = offer.header_version or ""
        if src.sha256 and offer.sha256 != src.sha256.lower():
            raise CheckFailed(
                f"{pkg.kind} {pkg.name}: the package at {offer.ref} has sha256 {offer.sha256}, "
                f"the source says {src.sha256}"
            )
        return offer

    def _wporg_eligible(self, pkg: Installed) -> bool:
        if not self.p.api_url:
            return False
        if pkg.kind == "core" or not pkg.update_uri:
            return True
        host = urlparse(pkg.update_uri if "//" in pkg.update_uri else "https://" + pkg.update_uri).hostname or ""
        return host in _WPORG_HOSTS

    def _get_json(self, ctx: Context, url: str, what: str) -> dict[str, Any] | None:
        import requests

        try:
            resp = ctx.options.http_cache.get(url, timeout=self.p.api_timeout)
        except requests.RequestException as exc:
            raise CheckFailed(f"{what}: the update API at {self.p.api_url} is unreachable: {exc}") from None
        if resp.status == 404:
            return None
        if resp.status >= 400:
            raise CheckFailed(f"{what}: the update API answered HTTP {resp.status}")
        try:
            data = json.loads(resp.content)
        except ValueError:
            raise CheckFailed(f"{what}: the update API did not answer JSON") from None
        return data if isinstance(data, dict) else None

    def _api_offers(self, ctx: Context, pkg: Installed, php_version: str) -> list[Offer]:
        base = str(self.p.api_url).rstrip("/")
        if pkg.kind == "core":
            url = f"{base}/core/version-check/1.7/?version={urlquote(pkg.version)}&php={urlquote(php_version)}"
            data = self._get_json(ctx, url, "WordPress core")
            out: list[Offer] = []
            for item in (data or {}).get("offers", []):
                pkgs = item.get("packages") or {}
                link = pkgs.get("full") or item.get("download")
                version = str(item.get("version") or item.get("current") or "")
                if link and version and not any(same_version(o.version, version) for o in out):
                    out.append(
                        Offer(version, "wordpress.org", "url", link, requires_php=str(item.get("php_version") or ""))
                    )
            return out
        section = "plugins" if pkg.kind == "plugin" else "themes"
        action = "plugin_information" if pkg.kind == "plugin" else "theme_information"
        url = (
            f"{base}/{section}/info/1.2/?action={action}&request[slug]={urlquote(pkg.name)}&request[fields][versions]=1"
        )
        data = self._get_json(ctx, url, f"{pkg.kind} {pkg.name}")
        if not data or "error" in data:
            return []
        latest = str(data.get("version") or "")
        offers = []
        versions = data.get("versions") or {}
        if isinstance(versions, dict):
            for version, link in versions.items():
                if version == "trunk" or not link:
                    continue
                offers.append(Offer(str(version), "wordpress.org", "url", str(link)))
        if latest and data.get("download_link") and not any(same_version(o.version, latest) for o in offers):
            offers.append(Offer(latest, "wordpress.org", "url", str(data["download_link"])))
        for offer in offers:
            if same_version(offer.version, latest):
                offer.requires_php = str(data.get("requires_php") or "")
                offer.requires_wp = str(data.get("requires") or "")
        return offers

    def offers(self, ctx: Context, pkg: Installed, listing: list[str], php_version: str) -> list[Offer]:
        """Every version the configured sources offer for ``pkg`` (per-package source wins)."""
        src = self.p.sources.get(pkg.name)
        if src is not None:
            return [self._source_offer(ctx, pkg, src)]
        found = self._repo_offers(pkg, listing)
        if found:
            return found
        if self._wporg_eligible(pkg):
            return self._api_offers(ctx, pkg, php_version)
        return []

    def fetch(self, ctx: Context, offer: Offer) -> bytes:
        """The bytes of the offer's zip: from the controller, the host or its URL."""
        if offer.location == "controller":
            try:
                return Path(offer.ref).read_bytes()
            except OSError as exc:
                raise CheckFailed(f"package {offer.ref}: {exc}") from None
        if offer.location == "host":
            try:
                return ctx.get(offer.ref)
            except MaintkitError as exc:
                raise CheckFailed(f"package {offer.ref} on the host: {exc}") from None
        import requests

        try:
            resp = ctx.options.http_cache.get(offer.ref, timeout=self.p.api_timeout)
        except requests.RequestException as exc:
            raise CheckFailed(f"download of {offer.ref} failed: {exc}") from None
        if resp.status >= 400:
            raise CheckFailed(f"download of {offer.ref} failed: HTTP {resp.status}")
        return resp.content

    def materialize(self, ctx: Context, pkg: Installed, offer: Offer) -> None:
        """Read the offer's zip on the controller: exact version, requirements, sha256, tree hash."""
        if offer.data is not None or offer.sha256 is not None:
            return
        data = self.fetch(ctx, offer)
        info = read_zip_package(data, pkg.kind, pkg.name)
        offer.sha256 = sha256_hex(data)
        if offer.location != "host":
            offer.data = data
        if info["error"]:
            offer.problem = f"package {offer.ref}: {info['error']}"
            return
        offer.header_version = info["version"]
        offer.requires_php = info["requires_php"] or offer.requires_php
        offer.requires_wp = info["requires_wp"] or offer.requires_wp
        offer.tree = zip_tree_hash(data, info["top"]) if pkg.kind != "core" else None

    def problem(self, pkg: Installed, offer: Offer, state: WpState, core_target: str) -> str | None:
        """Why the host cannot take ``offer`` (bad package, wrong version, PHP or WordPress too old), or None."""
        if offer.problem:
            return offer.problem
        if offer.header_version is not None and offer.version and not same_version(offer.header_version, offer.version):
            return f"the package says version {offer.header_version or '(none)'}, expected {offer.version}"
        if offer.requires_php and newer(offer.requires_php, state.php_version):
            return f"requires PHP {offer.requires_php}, the host runs PHP {state.php_version}"
        if pkg.kind != "core" and offer.requires_wp and newer(offer.requires_wp, core_target):
            return f"requires WordPress {offer.requires_wp}, the site runs {core_target}"
        return None


__all__ = ["WpSources"]
