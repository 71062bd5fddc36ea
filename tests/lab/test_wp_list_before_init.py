"""The helper's read-only ``list`` (the plan's read of a WordPress site) answers when ``init``
starts: every plugin, the theme and their setup hooks are loaded and have run, no ``init``
callback has. Against the real WordPress of the lab: a must-use plugin records which of its
hooks ran; a plugin that filters the theme (as theme switchers do, while loading) is honoured;
the answer is the full boot's, field for field.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from maintkit.actions.cms.drivers.php_cache import php_command
from maintkit.actions.cms.drivers.wordpress_state import parse_marked_json, wp_helper_source
from tests.cms_helpers import WpSite, WpTemplate

pytestmark = pytest.mark.lab

HOOKS_PLUGIN = """<?php
foreach (array('plugins_loaded', 'after_setup_theme', 'init', 'wp_loaded') as $hook) {
    add_action($hook, function () use ($hook) {
        file_put_contents(__DIR__ . '/hooks.log', $hook . "\\n", FILE_APPEND);
    });
}
add_filter('stylesheet', function () { return 'maint-other'; });
add_filter('template', function () { return 'maint-other'; });
"""


@pytest.fixture()
def site(wp_template: WpTemplate) -> WpSite:
    made = wp_template.make_site(owner="root")
    mu = made.path / "wp-content" / "mu-plugins"
    mu.mkdir(exist_ok=True)
    (mu / "hooks.php").write_text(HOOKS_PLUGIN)
    other = made.path / "wp-content" / "themes" / "maint-other"
    other.mkdir()
    (other / "style.css").write_text("/*\nTheme Name: Maint Other\nVersion: 2.0.0\n*/\n")
    (other / "index.php").write_text("<?php\n")
    return made


def listing(site: WpSite, args: dict[str, object]) -> dict[str, object]:
    rest = ["--", str(site.path), "list", json.dumps(args)]
    res = subprocess.run(php_command("php", rest, None), input=wp_helper_source(), capture_output=True, check=True)
    data = parse_marked_json(res.stdout.decode())
    assert data is not None and data["ok"], res.stdout[-2000:]
    return data


def hooks_ran(site: WpSite) -> list[str]:
    log = site.path / "wp-content" / "mu-plugins" / "hooks.log"
    ran = log.read_text().splitlines() if log.exists() else []
    log.unlink(missing_ok=True)
    return ran


def test_the_read_only_list_answers_before_any_init_callback(site: WpSite) -> None:
    read_only = listing(site, {"readonly": True})
    assert hooks_ran(site) == ["plugins_loaded", "after_setup_theme"]

    full = listing(site, {})
    assert hooks_ran(site) == ["plugins_loaded", "after_setup_theme", "init", "wp_loaded"]

    assert read_only == full
    themes = read_only["themes"]
    assert isinstance(themes, list)
    # the plugin's filters (added while loading, as a theme switcher's) decide the active theme
    assert {t["slug"]: t["active"] for t in themes} == {"maint-other": True, "twentytwentythree": False}
    assert [t["version"] for t in themes if t["slug"] == "maint-other"] == ["2.0.0"]
