"""WordPress steps of ``staging.refresh``, run inside WordPress through the PHP helper, in one process.

The helper (``maintkit/php/wp_helper.php``) is uploaded into the refresh's work folder on
the target (0600) and removed with it: ``replace`` rewrites URLs the way ``wp search-replace``
does (PHP-serialized values unserialized, replaced recursively, serialized again, so string
lengths stay right), ``anonymize`` applies the rules, ``staging_guards`` sets
``blog_public=0`` and switches known payment gateways to test mode. The three run in ONE PHP
process (the helper's ``refresh``): WordPress boots once per refresh, not once per step.
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
    """The helper on the target, which runs the WordPress steps in one process."""

    def __init__(self, target: Side, work: str, php: str, timeout: float) -> None:
        self.target, self.helper, self.php, self.timeout = target, f"{work}/wp_helper.php", php, timeout

    def upload(self) -> None:
        """Put the helper into the work folder (0600)."""
        self.target.transport.put(wp_helper_source(), self.helper, mode=0o600)

    def call(self, steps: list[tuple[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
        """The helper's ``refresh``: ``steps`` (command, arguments) in order in ONE PHP process,
        so WordPress boots once; each command's answer by name. ApplyFailed naming the command
        that failed (or was running when PHP died), or when there is no answer at all.

        The process may take the sum of the steps' timeouts (each had its own before)."""
        payload = json.dumps({"steps": [{"command": c, "args": a} for c, a in steps]}, separators=(",", ":"))
        argv = [self.php, self.helper, self.target.path, "refresh", payload]
        res = self.target.run(argv, self.timeout * len(steps), check=False)
        data = parse_marked_json(res.stdout)
        names = "/".join(c for c, _ in steps)
        if data is None:
            raise ApplyFailed(
                f"WordPress {names} on {self.target.env.name} failed: "
                f"no answer ({res.why}): {tail(res.stderr or res.stdout)}"
            )
        results = data.get("results")
        if not isinstance(results, dict):
            results = {}
        missing = [c for c, _ in steps if not isinstance(results.get(c), dict)]
        if not data.get("ok") or missing:
            failed = data.get("failed") or ("/".join(missing) if missing else names)
            why = data.get("error") or "no result"
            raise ApplyFailed(f"WordPress {failed} on {self.target.env.name} failed: {why}")
        return {name: dict(results[name]) for name, _ in steps}

    def run_all(self, p: StagingRefreshParams, source_url: str | None) -> dict[str, Any]:
        """URL rewrite, anonymisation and guards (one PHP process); what each did."""
        g = p.guards
        steps: list[tuple[str, dict[str, Any]]] = []
        pairs = url_pairs(source_url if p.url_rewrite else None, self.target.env.url, p.replace)
        if pairs:
            steps.append(("replace", {"pairs": pairs, "skip_columns": p.skip_columns}))
        if p.anonymize:
            rules = p.rules if p.rules is not None else default_rules()
            steps.append(("anonymize", {"rules": [r.model_dump() for r in rules], "keep_roles": p.keep_roles}))
        steps.append(("staging_guards", {"noindex": g.noindex, "payments": g.payments, "gateways": g.gateways}))
        done = self.call(steps)
        out: dict[str, Any] = {}
        if "replace" in done:
            out["replace"] = {k: done["replace"].get(k) for k in ("rows", "no_primary_key", "objects_skipped")}
        if "anonymize" in done:
            rows = done["anonymize"].get("rules", [])
            out["anonymize"] = {
                "rows": sum(int(r.get("rows") or 0) for r in rows),
                "missing_tables": sorted({r["table"] for r in rows if r.get("missing")}),
            }
        out["guards"] = {k: done["staging_guards"].get(k) for k in ("blog_public", "test_mode", "not_handled")}
        plugin = guard_plugin(g)
        if plugin is not None:
            dest = f"{self.target.path}/{GUARD_PLUGIN}"
            self.target.shell(f"mkdir -p -- {quote(dest.rsplit('/', 1)[0])}", self.timeout)
            self.target.transport.put(plugin, dest, mode=0o644)
            out["guards"]["mu_plugin"] = GUARD_PLUGIN
        return out


__all__ = ["WpSteps", "url_pairs"]
