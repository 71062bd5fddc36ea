"""staging.refresh's WordPress steps in ONE PHP process (the helper's ``refresh``), against
the real helper and PHP with a stand-in WordPress: the steps run in order, the first failure
stops the rest and is named, a PHP fatal error names the step that was running, and the
command the refresh sends asks for every step at once with the sum of their timeouts."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

import pytest

from maintkit.actions.staging.params import StagingRefreshParams
from maintkit.actions.staging.sides import Side
from maintkit.actions.staging.wp import WpSteps
from maintkit.errors import ApplyFailed
from maintkit.inventory import Environment
from maintkit.testing import TIMEOUT, FakeTransport
from maintkit.transport.local import LocalTransport

#: a stand-in WordPress: options in memory, each cache flush counted in blog_public (so a
#: step's answer shows how many flushes came before it), and no update_option (a step that
#: writes an option dies)
WP_LOAD = """<?php
define('ABSPATH', __DIR__ . '/');
$GLOBALS['mk_options'] = array('blog_public' => '0');
function add_filter() { return true; }
function wp_cache_flush() {
    $GLOBALS['mk_options']['blog_public'] = (string) ((int) $GLOBALS['mk_options']['blog_public'] + 1);
    return true;
}
function get_option($name, $default = false) {
    return isset($GLOBALS['mk_options'][$name]) ? $GLOBALS['mk_options'][$name] : $default;
}
"""


def _env() -> Environment:
    return Environment.model_validate(
        {"name": "staging", "host": "web1", "path": "/srv/shop-staging", "url": "https://staging.shop.example"}
    )


@pytest.fixture
def steps(tmp_path: Path) -> WpSteps:
    root = tmp_path / "wp"
    (root / "wp-admin" / "includes").mkdir(parents=True)
    (root / "wp-load.php").write_text(WP_LOAD)
    for name in ("plugin", "theme", "file", "misc"):
        (root / "wp-admin" / "includes" / f"{name}.php").write_text("<?php\n")
    target = Side(_env().model_copy(update={"path": str(root)}), LocalTransport(), None)
    wp = WpSteps(target, str(tmp_path), "php", 30)
    wp.upload()
    return wp


GUARDS_READ: tuple[str, dict[str, Any]] = ("staging_guards", {"noindex": False, "payments": False})
GUARDS_WRITE: tuple[str, dict[str, Any]] = ("staging_guards", {"noindex": True, "payments": False})


def test_the_steps_run_in_one_process_and_answer_by_name(steps: WpSteps) -> None:
    done = steps.call([("anonymize", {"rules": [], "keep_roles": []}), GUARDS_READ])
    # the guards read after the anonymisation's own flush and the one after its step: two
    assert done == {
        "anonymize": {"ok": True, "error": None, "rules": [], "kept_users": []},
        "staging_guards": {"ok": True, "blog_public": "2", "test_mode": [], "not_handled": []},
    }
    alone = steps.call([GUARDS_READ])
    assert alone["staging_guards"]["blog_public"] == "0"


def test_a_php_fatal_error_names_the_step_that_was_running(steps: WpSteps) -> None:
    with pytest.raises(ApplyFailed) as err:
        steps.call([("anonymize", {"rules": [], "keep_roles": []}), GUARDS_WRITE, GUARDS_READ])
    assert str(err.value).startswith(
        "WordPress staging_guards on staging failed: PHP fatal error: Uncaught Error: "
        "Call to undefined function update_option()"
    ), err.value


def test_an_unknown_step_stops_the_steps_after_it(steps: WpSteps) -> None:
    with pytest.raises(ApplyFailed) as err:
        steps.call([("bogus", {}), GUARDS_WRITE])
    assert str(err.value) == "WordPress bogus on staging failed: unknown refresh step bogus"


def _fake_steps(answer: Any) -> tuple[WpSteps, FakeTransport]:
    fake = FakeTransport(handler=lambda line: answer)
    return WpSteps(Side(_env(), fake, None), "/srv/shop-staging/.maint/staging-refresh/r1", "php8.2", 40), fake


def test_the_refresh_sends_every_step_in_one_command() -> None:
    results = {
        "replace": {"ok": True, "rows": {"wp_options": 2}, "no_primary_key": [], "objects_skipped": 0},
        "anonymize": {"ok": True, "rules": [{"table": "wp_users", "rows": 3}, {"table": "wp_x", "missing": True}]},
        "staging_guards": {"ok": True, "blog_public": "0", "test_mode": ["stripe"], "not_handled": []},
    }
    answer = (0, "notice\n@@MAINTKIT-JSON@@" + json.dumps({"ok": True, "results": results}) + "\n", "")
    wp, fake = _fake_steps(answer)
    params = StagingRefreshParams.model_validate({"guards": {"mail": False, "noindex": True}})
    out = wp.run_all(params, "https://shop.example")
    [line] = [c for c in fake.commands if "/wp_helper.php " in c]
    assert fake.commands[-1] == "<put /srv/shop-staging/wp-content/mu-plugins/maint-staging-guard.php>"
    argv = shlex.split(line)
    helper = "/srv/shop-staging/.maint/staging-refresh/r1/wp_helper.php"
    assert argv[:4] == ["php8.2", helper, "/srv/shop-staging", "refresh"]
    assert [s["command"] for s in json.loads(argv[4])["steps"]] == ["replace", "anonymize", "staging_guards"]
    assert out == {
        "replace": {"rows": {"wp_options": 2}, "no_primary_key": [], "objects_skipped": 0},
        "anonymize": {"rows": 3, "missing_tables": ["wp_x"]},
        "guards": {
            "blog_public": "0",
            "test_mode": ["stripe"],
            "not_handled": [],
            "mu_plugin": "wp-content/mu-plugins/maint-staging-guard.php",
        },
    }


def test_no_answer_names_every_step_and_how_the_process_ended() -> None:
    wp, _ = _fake_steps(TIMEOUT)
    with pytest.raises(ApplyFailed) as err:
        wp.call([("replace", {}), ("anonymize", {}), GUARDS_READ])
    # three steps: three times the step's timeout
    assert str(err.value).startswith(
        "WordPress replace/anonymize/staging_guards on staging failed: no answer (timed out after 120.0 s)"
    ), err.value
    answer = '@@MAINTKIT-JSON@@{"ok":true,"results":{"replace":{"ok":true}}}\n'
    wp, _ = _fake_steps((0, answer, ""))
    with pytest.raises(ApplyFailed) as err:
        wp.call([("replace", {}), GUARDS_READ])
    assert str(err.value) == "WordPress staging_guards on staging failed: no result"
    wp, _ = _fake_steps((255, "", "Segmentation fault\n"))
    with pytest.raises(ApplyFailed) as err:
        wp.call([GUARDS_READ])
    assert str(err.value) == "WordPress staging_guards on staging failed: no answer (exit 255): Segmentation fault"
