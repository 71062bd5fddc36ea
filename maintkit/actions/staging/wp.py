"""WordPress steps of ``staging.refresh``, run inside WordPress through the PHP helper.

The helper (``maintkit/php/wp_helper.php``) is uploaded into the refresh's work folder on
the target (0600) and removed with it: ``replace`` rewrites URLs the way ``wp search-replace``
does (PHP-serialized values unserialized, replaced recursively, serialized again, so string
lengths stay right), ``anonymize`` applies the rules, ``staging_guards`` sets
``blog_public=0`` and switches known payment gateways to test mode.
"""

from __future__ import annotations

import json
from typing import Any

from maintkit._text import tail
from maintkit.actions.cms.drivers.wordpress_state import parse_marked_json, wp_helper_source
from maintkit.actions.staging.anonymize import default_rules
from maintkit.actions.staging.guards import GUARD_PLUGIN, guard_plugin
from maintkit.actions.staging.params import StagingRefreshParams
from maintkit.actions.staging.sides import Side
from maintkit.errors import ApplyFailed
from maintkit.transport.base import quote


def url_pairs(source_url: str | None, target_url: str | None, extra: dict[str, str]) -> list[list[str]]:
    """Search/replace pairs: the source URL (also JSON-escaped) to the target's, then ``extra``."""
    pairs: list[list[str]] = []
    if source_url and target_url and source_url.rstrip("/") != target_url.rstrip("/"):
        src, dst = source_url.rstrip("/"), target_url.rstrip("/")
        pairs += [[src, dst], [src.replace("/", "\\/"), dst.replace("/", "\\/")]]
    pairs += [[k, v] for k, v in extra.items() if k]
    return pairs


class WpSteps:
    """The helper on the target, called for each WordPress step."""

    def __init__(self, target: Side, work: str, php: str, timeout: float) -> None:
        self.target, self.helper, self.php, self.timeout = target, f"{work}/wp_helper.php", php, timeout

    def upload(self) -> None:
        """Put the helper into the work folder (0600)."""
        self.target.transport.put(wp_helper_source(), self.helper, mode=0o600)

    def call(self, command: str, args: dict[str, Any]) -> dict[str, Any]:
        """One helper command; ApplyFailed when it fails or gives no answer."""
        payload = json.dumps(args, separators=(",", ":"))
        argv = [self.php, self.helper, self.target.path, command, payload]
        res = self.target.run(argv, self.timeout, check=False)
        data = parse_marked_json(res.stdout)
        if data is None or not data.get("ok"):
            why = data.get("error") if data else f"no answer (exit {res.exit_code}): {tail(res.stderr or res.stdout)}"
            raise ApplyFailed(f"WordPress {command} on {self.target.env.name} failed: {why}")
        return data

    def run_all(self, p: StagingRefreshParams, source_url: str | None) -> dict[str, Any]:
        """URL rewrite, anonymisation and guards; what each did."""
        out: dict[str, Any] = {}
        pairs = url_pairs(source_url if p.url_rewrite else None, self.target.env.url, p.replace)
        if pairs:
            res = self.call("replace", {"pairs": pairs, "skip_columns": p.skip_columns})
            out["replace"] = {k: res.get(k) for k in ("rows", "no_primary_key", "objects_skipped")}
        if p.anonymize:
            rules = p.rules if p.rules is not None else default_rules()
            res = self.call("anonymize", {"rules": [r.model_dump() for r in rules], "keep_roles": p.keep_roles})
            out["anonymize"] = {
                "rows": sum(int(r.get("rows") or 0) for r in res.get("rules", [])),
                "missing_tables": sorted({r["table"] for r in res.get("rules", []) if r.get("missing")}),
            }
        g = p.guards
        res = self.call("staging_guards", {"noindex": g.noindex, "payments": g.payments, "gateways": g.gateways})
        out["guards"] = {k: res.get(k) for k in ("blog_public", "test_mode", "not_handled")}
        plugin = guard_plugin(g)
        if plugin is not None:
            dest = f"{self.target.path}/{GUARD_PLUGIN}"
            self.target.shell(f"mkdir -p -- {quote(dest.rsplit('/', 1)[0])}", self.timeout)
            self.target.transport.put(plugin, dest, mode=0o644)
            out["guards"]["mu_plugin"] = GUARD_PLUGIN
        return out


__all__ = ["WpSteps", "url_pairs"]
