"""Zero-downtime promotion on real WordPress sites over SSH.

A plugin is unpacked next to the live folder (``.maint-new-<slug>``) and switched in by
renames, and production's maintenance window opens only when staging saw the update change
the database schema (the version lock says ``schema_changed``). A poller thread asks
production's /cart/ every 50 ms during the whole run and records, for every answer, the
status, whether the cart rendered completely, and whether a maintenance flag existed.
"""

from __future__ import annotations

import json
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from maintkit.actions.cms.drivers.wordpress_switch import sibling, switch_script
from maintkit.actions.cms.lock import VersionLock, merge_schema
from maintkit.results import RunResult, StepStatus
from tests.cms_helpers import WpSite, make_shop_cart_zip, wp_plugin_version
from tests.lab.wp_fixtures import PHP_ARGS_SH, Shop, events, run, steps, write_inventory

#: the OPcache reset by a php-fpm reload would drop requests (a separate concern): platform caches only
NO_RELOAD = {"cache_targets": ["platform"]}
#: requests that must hit production while its cms.update step installs
MIN_DURING_APPLY = 5


@dataclass
class Answer:
    phase: str  # the production update step's phase when the request started
    status: int
    cart: str  # "1.0.0", "1.1.0" or "" when the cart did not render
    flagged: bool  # a maintenance flag existed on production


@dataclass
class Poller:
    """GET the site's /cart/ every 50 ms until stopped; ``phase`` follows the run's events."""

    site: WpSite
    phase: str = "before"
    answers: list[Answer] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    first: threading.Event = field(default_factory=threading.Event)
    #: created once MIN_DURING_APPLY answers came during the update (see ``gated_php``)
    gate: Path | None = None

    def on_event(self, event: dict[str, Any]) -> None:
        if event.get("env") == "production" and event.get("step") == "update":
            if event["event"] == "step.checked":
                self.phase = "apply"
            elif event["event"] in ("step.applied", "step.failed"):
                self.phase = "after"

    def flags(self) -> bool:
        path = self.site.path
        return (path / ".maintenance").exists() or (path / ".maint" / "maintenance.flag").exists()

    def loop(self) -> None:
        with requests.Session() as http:
            while not self.stop.is_set():
                phase, flagged = self.phase, self.flags()
                try:
                    res = http.get(f"{self.site.url}/cart/", timeout=10)
                except requests.RequestException as exc:
                    self.errors.append(f"{phase}: {exc}")
                else:
                    versions = [v for v in ("1.0.0", "1.1.0") if f"(shop-cart {v})</div>" in res.text]
                    self.answers.append(Answer(phase, res.status_code, "".join(versions), flagged or self.flags()))
                    if self.gate and sum(a.phase == "apply" for a in self.answers) >= MIN_DURING_APPLY:
                        self.gate.touch()
                self.first.set()
                self.stop.wait(0.05)

    def run(self, shop: Shop, inv: Any) -> RunResult:
        thread = threading.Thread(target=self.loop, daemon=True)
        thread.start()
        try:
            assert self.first.wait(30), "the poller got no first answer"
            return run(shop, inv, on_event=self.on_event)
        finally:
            self.stop.set()
            thread.join(30)


def gated_php(shop: Shop, gate: Path) -> str:
    """A ``php`` for cms.update whose ``activate`` on production (the helper run right after the
    switch) waits for ``gate``: the poller's answers during the update, around the switch, then
    do not depend on how long the update takes. The wait is for the gate file (checked every
    50 ms), not for a time: its bound (5 minutes, far beyond the poller's five answers on any
    load) only keeps a missing gate from hanging the run; the count then fails."""
    shim = shop.host_dir / "php-gated"
    shim.write_text(
        f'#!/bin/sh\n{PHP_ARGS_SH}php_args "$@"\n'
        f'if [ "$root" = \'{shop.production.path}\' ] && [ "$cmd" = activate ]; then\n'
        f"  i=0; while [ ! -e '{gate}' ] && [ $i -lt 6000 ]; do sleep 0.05; i=$((i+1)); done\nfi\n"
        'exec php "$@"\n'
    )
    shim.chmod(0o755)
    return str(shim)


def lock_of(result: RunResult) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((Path(str(result.run_dir)) / "locks" / "shop.json").read_text())
    return data


def leftovers(site: WpSite) -> list[str]:
    return sorted(p.name for p in (site.path / "wp-content" / "plugins").iterdir() if p.name.startswith(".maint-"))


lab = pytest.mark.lab


@lab
def test_promotion_without_schema_change_serves_every_request_and_opens_no_window(shop: Shop) -> None:
    make_shop_cart_zip(shop.repo, "1.1.0")
    gate = shop.host_dir / "answered-during-the-update"  # where deploy can see it
    gate.unlink(missing_ok=True)
    inv = write_inventory(shop, {"php": gated_php(shop, gate)}, **NO_RELOAD)
    poller = Poller(shop.production, gate=gate)

    result = poller.run(shop, inv)

    assert result.ok, json.dumps(result.to_dict(), indent=1)[-3000:]
    assert poller.errors == []
    during = [a for a in poller.answers if a.phase == "apply"]
    assert len(during) >= MIN_DURING_APPLY, [a.phase for a in poller.answers]
    bad = [a for a in poller.answers if a.status != 200 or a.cart not in ("1.0.0", "1.1.0") or a.flagged]
    assert bad == [], bad
    # staging compared the schema: unchanged; the lock says so, production opened no window
    assert steps(result, "staging")["update"].data["schema_changed"] is False
    lock = lock_of(result)
    assert (lock["schema_changed"], lock["schema_changes"]) == (False, [])
    prod = steps(result, "production")
    assert prod["update"].status is StepStatus.CHANGED
    assert prod["update"].data["switched"] == [str(shop.production.plugin_dir)]
    assert prod["update"].data["switched_by_renames"] == []  # one atomic exchange: never missing
    assert (prod["maintenance-on"].status, prod["maintenance-off"].status) == (StepStatus.SKIPPED, StepStatus.SKIPPED)
    log = events(result)
    assert [e["event"] for e in log if e.get("step") == "maintenance-on" and e.get("env") == "production"] == [
        "step.skipped"
    ]
    assert wp_plugin_version(shop.production.path, "shop-cart") == "1.1.0"
    assert leftovers(shop.production) == [] and leftovers(shop.staging) == []

    again = run(shop, inv)
    assert again.ok and again.changed == 0, [(s.env, s.step, s.status.value) for x in again.sites for s in x.steps]


@lab
def test_promotion_with_a_schema_change_opens_the_maintenance_window(shop: Shop) -> None:
    make_shop_cart_zip(shop.repo, "1.1.0", schema="2")
    inv = write_inventory(shop, **NO_RELOAD)
    # before staging ran, nobody knows whether the schema changes: the plan says so
    plan = steps(run(shop, inv, check=True), "production")
    assert (plan["update"].status, plan["maintenance-on"].status) == (StepStatus.WOULD_CHANGE, StepStatus.UNKNOWN)

    result = run(shop, inv)

    assert result.ok, json.dumps(result.to_dict(), indent=1)[-3000:]
    lock = lock_of(result)
    assert (lock["schema_changed"], lock["schema_changes"]) == (True, ["wp_shop_cart_items_2", "shop_cart_db_version"])
    prod = steps(result, "production")
    assert (prod["maintenance-on"].status, prod["maintenance-off"].status) == (StepStatus.CHANGED, StepStatus.CHANGED)
    applied = [e["step"] for e in events(result) if e["event"] == "step.applied" and e.get("env") == "production"]
    assert applied.index("maintenance-on") < applied.index("update") < applied.index("maintenance-off")
    # production migrated too, and the window is closed again
    tables = shop.production.sql(shop.mariadb, "SHOW TABLES LIKE 'wp_shop_cart_items_%'").split()
    assert sorted(tables) == ["wp_shop_cart_items_1", "wp_shop_cart_items_2"]
    assert not (shop.production.path / ".maintenance").exists()
    assert wp_plugin_version(shop.production.path, "shop-cart") == "1.1.0"
    assert requests.get(f"{shop.production.url}/cart/", timeout=20).status_code == 200


# ---------------------------------------------------------------------------- the switch itself


def _tree(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)


def test_switch_script_swaps_by_renames_and_keeps_the_live_folder_when_the_package_is_missing(
    tmp_path: Path,
) -> None:
    plugins = tmp_path / "plugins"
    side = sibling(str(plugins / "shop-cart"))
    assert (side.new, side.old) == (str(plugins / ".maint-new-shop-cart"), str(plugins / ".maint-old-shop-cart"))
    _tree(plugins / "shop-cart", {"shop-cart.php": "old", "includes/old.php": "gone after"})
    missing = subprocess.run(["sh", "-c", switch_script(side)], capture_output=True, text=True, check=False)
    assert (missing.returncode, missing.stderr.strip()) == (3, f"staged package missing: {side.new}")
    assert (plugins / "shop-cart" / "includes" / "old.php").read_text() == "gone after"

    _tree(Path(side.new), {"shop-cart.php": "new"})
    done = subprocess.run(["sh", "-c", switch_script(side)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in plugins.iterdir()) == ["shop-cart"]
    assert sorted(str(p.relative_to(plugins)) for p in plugins.rglob("*")) == ["shop-cart", "shop-cart/shop-cart.php"]
    assert (plugins / "shop-cart" / "shop-cart.php").read_text() == "new"


def test_a_very_long_slug_gets_short_sibling_names() -> None:
    side = sibling("/srv/wp-content/plugins/" + "p" * 250)
    assert all(len(p.rsplit("/", 1)[1]) <= 255 for p in (side.new, side.old))
    assert side.new.rsplit("/", 1)[1].startswith(".maint-new-") and side.old.rsplit("/", 1)[1].startswith(".maint-old-")


@pytest.mark.parametrize(
    ("first", "second", "merged"),
    [(False, False, False), (False, True, True), (None, False, None), (None, True, True)],
)
def test_two_locks_of_one_stage_merge_their_schema_verdicts(
    first: bool | None, second: bool | None, merged: bool | None
) -> None:
    def lock(flag: bool | None, names: list[str]) -> VersionLock:
        return VersionLock(
            site="s", env="staging", run_id="r", platform="wordpress", driver="wordpress",
            schema_changed=flag, schema_changes=names,
        )  # fmt: skip

    out = merge_schema(lock(first, ["b"] if first else []), lock(second, ["a"] if second else []))
    assert out["schema_changed"] is merged
    assert out["schema_changes"] == sorted((["b"] if first else []) + (["a"] if second else []))
