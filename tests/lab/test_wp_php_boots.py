"""How many times the WordPress driver starts PHP per site and stage (the monthly-update, over SSH).

Every start of the site's PHP CLI by ``cms.update`` (and by ``compat.check``, which plans with the
same driver) goes through a shim on the lab host that appends ``<wordpress root> <helper command>``
to a log and then runs the real ``php``. A WordPress boot is the driver's most expensive
operation, so the counts are exact: the read-only state is read once per stage (``precheck``
and ``update`` share it until something changes on the host), and the process that re-activates
an updated plugin also reports the installed state that ``verify`` checks.
"""

from __future__ import annotations

import json
import stat
from collections import Counter
from pathlib import Path

import pytest

from maintkit.results import StepStatus
from tests.cms_helpers import chown_tree, make_shop_cart_zip, wp_plugin_version
from tests.lab.wp_fixtures import PHP_ARGS_SH, Shop, cart, run, steps, write_inventory

pytestmark = pytest.mark.lab


def php_shim(directory: Path) -> tuple[Path, Path]:
    """A ``php`` wrapper that logs ``<root>\\t<command>`` of each start (both call forms put the
    root second and the helper command third, after any ``-d`` settings), and the log it writes."""
    log = directory / "php-starts.log"
    shim = directory / "php-counting"
    shim.write_text(
        f'#!/bin/sh\n{PHP_ARGS_SH}php_args "$@"\nprintf \'%s\\t%s\\n\' "$root" "$cmd" >> \'{log}\'\nexec php "$@"\n'
    )
    shim.chmod(0o755)
    log.touch()
    chown_tree(log, "deploy")
    return shim, log


def starts(log: Path, shop: Shop) -> dict[str, Counter[str]]:
    """The helper commands started per environment, then the log is emptied."""
    roots = {str(shop.staging.path): "staging", str(shop.production.path): "production"}
    out: dict[str, Counter[str]] = {"staging": Counter(), "production": Counter()}
    for line in log.read_text().splitlines():
        root, _, command = line.partition("\t")
        out[roots[root.rstrip("/")]][command] += 1
    log.write_text("")
    return out


def test_php_starts_per_stage_first_run_and_no_op(shop: Shop) -> None:
    make_shop_cart_zip(shop.repo, "1.1.0")
    shim, log = php_shim(shop.host_dir)
    assert stat.S_IMODE(shim.stat().st_mode) == 0o755
    inv = write_inventory(shop, {"php": str(shim)})

    first = run(shop, inv)

    assert first.ok, json.dumps(first.to_dict(), indent=1)[-3000:]
    for env in ("staging", "production"):
        assert steps(first, env)["update"].status is StepStatus.CHANGED
        assert wp_plugin_version(shop.site(env).path, "shop-cart") == "1.1.0"
        page = cart(shop.site(env))
        assert page.status_code == 200 and "shop-cart 1.1.0" in page.text
    # one read of the state before the change (precheck and update share it), the unpacking
    # (that process also writes the database credentials' file), the re-activation that also
    # reports what verify checks
    expected = Counter({"list": 1, "install": 1, "activate": 1})
    assert starts(log, shop) == {"staging": expected, "production": expected}
    for env in ("staging", "production"):  # the step says so in the audit log too
        data = steps(first, env)["update"].data
        assert (data["read_back"], data["php_boots"]) == ("activation", 2)

    again = run(shop, inv)

    assert again.ok and again.changed == 0, [(s.env, s.step, s.status.value) for s in again.sites[0].steps]
    assert starts(log, shop) == {"staging": Counter({"list": 1}), "production": Counter({"list": 1})}


def test_a_change_on_the_host_between_the_reads_makes_the_next_read_fresh(shop: Shop) -> None:
    """The shared read is dropped with every change: a step that changes the host between the
    precheck and the update makes the update read the state again."""
    make_shop_cart_zip(shop.repo, "1.1.0")
    shim, log = php_shim(shop.host_dir)
    inv = write_inventory(shop, {"php": str(shim)}, envs=("production",))
    playbook = _between_playbook(shop.staging.path)

    result = run(shop, inv, playbook)

    assert result.ok, json.dumps(result.to_dict(), indent=1)[-3000:]
    assert steps(result, "production")["touch"].status is StepStatus.CHANGED
    assert starts(log, shop)["production"] == Counter({"list": 2, "install": 1, "activate": 1})


def _between_playbook(root: Path) -> object:
    from maintkit.playbook import playbook_from_text

    return playbook_from_text(
        "name: between\n"
        "stages:\n"
        "  - env: production\n"
        "    steps:\n"
        "      - {id: precheck, action: compat.check}\n"
        f"      - {{id: touch, action: file.content, with: {{path: '{root}/.between-marker', content: x}}}}\n"
        "      - {id: update, action: cms.update}\n"
    )
