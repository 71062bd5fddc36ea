"""The monthly update flushes WordPress's caches in the update's last PHP process (over SSH).

With ``platform`` among the ``cache_targets`` the built-in monthly-update runs cms.update with
``flush_caches``: the process that re-activates the updated plugin (WordPress booted with the
new code, after every change of the step) flushes the object cache and the rewrite rules as its
last act, and cache.clear then starts no PHP for them. The rewrite rules are set to a valid
array with a marker rule first: WordPress keeps an array it finds, only a flush replaces it
(the control run without ``platform`` shows the marker survives an update that does not flush).
compat.check reuses the PHP version the update read with the same PHP binary.
"""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from maintkit.results import StepStatus
from tests.cms_helpers import make_shop_cart_zip
from tests.lab.recording import Recorder
from tests.lab.wp_fixtures import Shop, run, steps, write_inventory

pytestmark = pytest.mark.lab

MARKER_RULES = 'a:1:{s:14:"^maint-marker$";s:9:"index.php";}'
ENVS = ("staging", "production")
#: the helper's flush started by cache.clear: ``... <root> flush '{"url":...'``
HELPER_FLUSH = re.compile(r" flush '\{")


def plant_marker(shop: Shop) -> None:
    for env in ENVS:
        shop.site(env).sql(shop.mariadb, f"UPDATE wp_options SET option_value = '{MARKER_RULES}' WHERE option_name = 'rewrite_rules'")  # fmt: skip


def rules(shop: Shop, env: str) -> str:
    return shop.site(env).sql(shop.mariadb, "SELECT option_value FROM wp_options WHERE option_name = 'rewrite_rules'")


def sent(rec: Recorder) -> list[str]:
    return [text for host in rec.by_host.values() for _, text in host.sent]


def test_the_update_flushes_last_and_cache_clear_starts_no_php(shop: Shop) -> None:
    make_shop_cart_zip(shop.repo, "1.1.0")
    inv = write_inventory(shop)
    plant_marker(shop)
    rec = Recorder()

    result = run(shop, inv, transport_factory=rec)

    assert result.ok, json.dumps(result.to_dict(), indent=1)[-3000:]
    for env in ENVS:
        by_id = steps(result, env)
        update, cache = by_id["update"], by_id["cache"]
        assert update.data["platform_flushed"] == {"root": str(shop.site(env).path), "cache": True, "rewrite": True}
        assert cache.status is StepStatus.CHANGED
        assert cache.data["found"][0] == {"target": "wordpress caches", "needed": False, "flushed_by": "update"}
        pid_file = f"opcache (pid in {shop.web.php_pid_file})"
        assert [c["target"] for c in cache.data["cleared"]] == [pid_file]  # the reload only
        assert cache.reason.startswith("wordpress: caches flushed by step update after its last change; OPcache:")
        now = rules(shop, env)
        assert "^maint-marker$" not in now and 's:11:"^wp-json/?$"' in now  # flushed: rebuilt from the code
    commands = sent(rec)
    assert not [c for c in commands if HELPER_FLUSH.search(c)]  # no PHP run of cache.clear's own
    # compat.check took the PHP version from the update step (same binary): no PHP started for it
    assert not [c for c in commands if "PHP_VERSION" in c]
    version = subprocess.run(["php", "-r", "echo PHP_VERSION;"], capture_output=True, text=True, check=True).stdout
    assert steps(result, "staging")["compat"].data["php_version"] == version


def test_without_the_platform_target_the_update_flushes_nothing(shop: Shop) -> None:
    make_shop_cart_zip(shop.repo, "1.1.0")
    inv = write_inventory(shop, cache_targets=["opcache"], smoke_paths=["/"])  # no rules for /cart/ while marked
    plant_marker(shop)

    result = run(shop, inv)

    assert result.ok, json.dumps(result.to_dict(), indent=1)[-3000:]
    for env in ENVS:
        assert steps(result, env)["update"].status is StepStatus.CHANGED
        assert "platform_flushed" not in steps(result, env)["update"].data
        assert rules(shop, env).strip() == MARKER_RULES  # nothing flushed them


def _edit_between() -> object:
    from maintkit.playbook import playbook_from_text

    return playbook_from_text(
        "name: edit-between\n"
        "stages:\n"
        "  - env: staging\n"
        "    steps:\n"
        "      - {id: update, action: cms.update, with: {flush_caches: true}}\n"
        "      - {id: edit, action: file.content, with: {path: '{{ env.path }}/maint-edit.txt', content: x}}\n"
        "      - {id: cache, action: cache.clear, with: {targets: [platform]}}\n"
    )


def test_a_change_after_the_update_makes_cache_clear_flush_again(shop: Shop) -> None:
    make_shop_cart_zip(shop.repo, "1.1.0")
    inv = write_inventory(shop)
    rec = Recorder()

    result = run(shop, inv, _edit_between(), transport_factory=rec)

    assert result.ok, json.dumps(result.to_dict(), indent=1)[-3000:]
    by_id = steps(result, "staging")
    assert by_id["update"].data["platform_flushed"]["rewrite"] is True
    assert by_id["edit"].status is StepStatus.CHANGED
    cache = by_id["cache"]
    assert cache.data["found"] == [{"target": "wordpress caches", "needed": True}]
    assert [c["commands"] for c in cache.data["cleared"]] == [["php <wordpress flush>"]]
    assert len([c for c in sent(rec) if HELPER_FLUSH.search(c)]) == 1
