"""Version policy, version locks and the pure helpers of the cms package."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import zipfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from maintkit.actions.cms.drivers.composer_plan import parse_operations
from maintkit.actions.cms.drivers.wordpress_state import parse_marked_json, read_zip_package
from maintkit.actions.cms.lock import VersionLock, lock_path, promotion_lock, read_lock, write_lock
from maintkit.actions.cms.params import CmsUpdateParams, effective_params
from maintkit.actions.cms.policy import Version, VersionPolicy, choose, matches_pin, within_level
from maintkit.actions.cms.snapshots import tree_hash_script, zip_tree_hash
from maintkit.errors import CheckFailed
from maintkit.testing import FakeTransport, make_context

# -- versions ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("low", "high"),
    [
        ("1.0.0", "1.0.1"),
        ("1.0", "1.0.1"),
        ("1.9.9", "1.10.0"),
        ("8.4.0-beta1", "8.4.0-rc.1"),
        ("8.4.0-rc.1", "8.4.0"),
        ("6.1", "6.1.1"),
        ("v2.0.0", "2.0.1"),
        ("1.0.0.9", "1.0.1"),
    ],
)
def test_version_order(low: str, high: str) -> None:
    assert Version.parse(low) < Version.parse(high)


def test_version_equality_ignores_padding() -> None:
    assert Version.parse("1.1") == Version.parse("1.1.0")
    assert Version.try_parse("dev-main") is None
    assert Version.parse("8.4.0-RC1").is_prerelease


@pytest.mark.parametrize(
    ("current", "candidate", "level", "allowed"),
    [
        ("1.4.2", "1.4.5", "patch", True),
        ("1.4.2", "1.5.0", "patch", False),
        ("1.4.2", "1.5.0", "minor", True),
        ("1.4.2", "2.0.0", "minor", False),
        ("1.4.2", "2.0.0", "major", True),
        ("1.4.2", "1.4.2", "major", False),
        ("1.4.2", "1.4.1", "major", False),
        ("1.4.2", "1.4.3", "none", False),
        ("6.1", "6.1.1", "patch", True),
    ],
)
def test_within_level(current: str, candidate: str, level: str, allowed: bool) -> None:
    assert within_level(Version.parse(current), Version.parse(candidate), level) is allowed  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("version", "pin", "ok"),
    [
        ("8.4.2", "8.4.*", True),
        ("8.5.0", "8.4.*", False),
        ("8.4", "8.4.*", True),
        ("8.4.2", "8.4.2", True),
        ("8.4.3", "8.4.2", False),
        ("8.5.1", ">=8.4,<8.6", True),
        ("8.6.0", ">=8.4,<8.6", False),
        ("8.9.0", "^8.4", True),
        ("9.0.0", "^8.4", False),
        ("8.4.9", "~8.4.1", True),
        ("8.5.0", "~8.4.1", False),
        ("8.4.7", "8.4.x", True),
    ],
)
def test_pins(version: str, pin: str, ok: bool) -> None:
    assert matches_pin(Version.parse(version), pin) is ok


def test_choose_picks_highest_allowed_and_explains() -> None:
    policy = VersionPolicy(plugins="minor")
    offered = ["1.0.1", "1.1.0", "1.2.0-beta1", "2.0.0"]
    assert choose(policy, "shop-cart", "plugin", "1.0.0", offered).version == "1.1.0"
    assert choose(VersionPolicy(plugins="patch"), "shop-cart", "plugin", "1.0.0", offered).version == "1.0.1"
    assert choose(VersionPolicy(plugins="major"), "shop-cart", "plugin", "1.0.0", offered).version == "2.0.0"
    pre = VersionPolicy(plugins="minor", allow_prerelease=True)
    assert choose(pre, "shop-cart", "plugin", "1.0.0", offered).version == "1.2.0-beta1"
    refused = choose(VersionPolicy(plugins="patch"), "x", "plugin", "1.0.1", ["2.0.0"])
    assert refused.version is None and "2.0.0 is available but policy plugin: patch" in refused.reason
    assert choose(policy, "x", "plugin", "2.0.0", offered).reason == "up to date"
    held = choose(policy, "shop-cart", "plugin", "1.0.0", offered)
    assert held.held_back == "2.0.0" and "policy plugin: minor does not allow" in held.reason
    assert choose(VersionPolicy(plugins="major"), "shop-cart", "plugin", "1.0.0", offered).held_back is None


def test_choose_scope_pins_and_kinds() -> None:
    policy = VersionPolicy(
        core="patch",
        plugins="major",
        themes="none",
        exclude=["akismet"],
        pins={"woocommerce": "8.4.*", "acme-*": "<3"},
    )
    assert choose(policy, "akismet", "plugin", "5.0", ["5.1"]).reason == "excluded by policy"
    assert choose(policy, "woocommerce", "plugin", "8.3.0", ["8.4.1", "8.4.3", "8.5.0"]).version == "8.4.3"
    assert choose(policy, "acme-pay", "plugin", "2.0", ["2.5", "3.0"]).version == "2.5"
    assert choose(policy, "twentytwentythree", "theme", "1.0", ["1.1"]).version is None
    assert choose(policy, "wordpress", "core", "6.1.1", ["6.1.9", "6.2.0"]).version == "6.1.9"
    only = VersionPolicy(include=["shop-*"])
    assert only.in_scope("shop-cart") and not only.in_scope("akismet")


def test_policy_aliases_and_invalid_pins() -> None:
    assert VersionPolicy(plugins="all").plugins == "major"  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="pin for woocommerce"):
        VersionPolicy(pins={"woocommerce": "~~8"})


versions = st.lists(st.integers(min_value=0, max_value=30), min_size=1, max_size=4).map(
    lambda parts: ".".join(map(str, parts))
)


@given(current=versions, offered=st.lists(versions, max_size=12), level=st.sampled_from(["patch", "minor", "major"]))
def test_choose_never_downgrades_and_respects_level(current: str, offered: list[str], level: str) -> None:
    policy = VersionPolicy(plugins=level)  # type: ignore[arg-type]
    decision = choose(policy, "p", "plugin", current, offered)
    if decision.version is not None:
        chosen, cur = Version.parse(decision.version), Version.parse(current)
        assert chosen > cur
        assert within_level(cur, chosen, level)  # type: ignore[arg-type]
        assert all(
            not within_level(cur, Version.parse(o), level) or Version.parse(o) <= chosen  # type: ignore[arg-type]
            for o in offered
        )


# -- parameters ----------------------------------------------------------------------------------


def test_effective_params_merge_site_vars_under_step() -> None:
    ctx = make_context(
        FakeTransport(),
        platform="wordpress",
        vars={"cms_update": {"plugins": "patch", "pins": {"woocommerce": "8.4.*"}}, "error_logs": ["/var/log/php.log"]},
    )
    step = CmsUpdateParams.model_validate({"plugins": "major", "repository": "/srv/zips"})
    eff = effective_params(ctx, step)
    assert eff.plugins == "major"
    assert eff.pins == {"woocommerce": "8.4.*"}
    assert eff.repository is not None and eff.repository.path == "/srv/zips" and eff.repository.on == "controller"
    assert eff.error_logs == ["/var/log/php.log"]
    assert eff.policy().core == "minor"


def test_effective_params_reports_bad_vars() -> None:
    ctx = make_context(FakeTransport(), vars={"cms_update": {"plugins": "sometimes"}})
    with pytest.raises(CheckFailed, match="plugins"):
        effective_params(ctx, CmsUpdateParams())


# -- composer output -----------------------------------------------------------------------------

DRY_RUN = """Loading composer repositories with package information
Updating dependencies
Lock file operations: 1 install, 2 updates, 1 removal
  - Removing old/thing (1.0.0)
  - Upgrading acme/lib (1.0.0 => 1.2.0)
  - Downgrading acme/other (2.0.0 => 1.9.0)
  - Installing acme/new (0.3.0)
Writing lock file
Installing dependencies from lock file (including require-dev)
Package operations: 1 install, 2 updates, 1 removal
  - Upgrading acme/lib (1.0.0 => 1.2.0)
"""


def test_parse_operations_reads_the_lock_file_block_only() -> None:
    assert parse_operations(DRY_RUN) == [
        ("remove", "old/thing", "1.0.0", None),
        ("upgrading", "acme/lib", "1.0.0", "1.2.0"),
        ("downgrading", "acme/other", "2.0.0", "1.9.0"),
        ("install", "acme/new", None, "0.3.0"),
    ]


def test_parse_marked_json_ignores_noise() -> None:
    out = 'Notice: something\n@@MAINTKIT-JSON@@{"ok": false}\nmore\n@@MAINTKIT-JSON@@{"ok": true, "x": 1}\n'
    assert parse_marked_json(out) == {"ok": True, "x": 1}
    assert parse_marked_json("PHP Fatal error") is None


# -- tree hashes ---------------------------------------------------------------------------------


def _zip(files: dict[str, bytes], top: str = "shop-cart") -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(f"{top}/", b"")
        for rel, data in files.items():
            zf.writestr(f"{top}/{rel}", data)
    return buf.getvalue()


def test_zip_tree_hash_equals_the_shell_tree_hash_of_the_extracted_tree(tmp_path: Path) -> None:
    files = {
        "shop-cart.php": b"<?php\n/* Plugin Name: Shop Cart\n * Version: 1.1.0\n */\n",
        "includes/cart.php": b"<?php function f() {}\n",
        "includes/a-b.php": b"x",
        "includes/a/b.php": b"y",
        "empty.txt": b"",
        "Z.txt": b"upper",
    }
    data = _zip(files)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        zf.extractall(tmp_path)
    plugin = tmp_path / "shop-cart"
    out = subprocess.run(
        ["sh", "-c", tree_hash_script([str(plugin), str(tmp_path / "nope")])], capture_output=True, text=True
    )
    # one line per path, in the order given (names are never printed: any byte is safe in them)
    assert out.stdout.splitlines() == [zip_tree_hash(data, "shop-cart"), "missing"]
    changed = _zip({**files, "includes/cart.php": b"<?php function g() {}\n"})
    assert zip_tree_hash(changed, "shop-cart") != zip_tree_hash(data, "shop-cart")


def test_read_zip_package_reads_plugin_header_and_refuses_wrong_folder() -> None:
    header = (
        b"<?php\n/**\n * Plugin Name: Shop Cart\n * Version: 1.2.0\n"
        b" * Requires at least: 6.0\n * Requires PHP: 9.1\n */\n"
    )
    info = read_zip_package(_zip({"shop-cart.php": header}), "plugin", "shop-cart")
    assert (info["version"], info["requires_php"], info["requires_wp"], info["error"]) == ("1.2.0", "9.1", "6.0", "")
    wrong = read_zip_package(_zip({"x.php": header}, top="other"), "plugin", "shop-cart")
    assert "not shop-cart/" in wrong["error"]
    assert read_zip_package(b"not a zip", "plugin", "x")["error"] == "not a zip file"


# -- locks ---------------------------------------------------------------------------------------


def _lock(env: str = "staging", run_id: str = "r1", status: str = "validated") -> VersionLock:
    return VersionLock.model_validate(
        {
            "site": "site",
            "env": env,
            "run_id": run_id,
            "platform": "wordpress",
            "driver": "wordpress",
            "status": status,
            "packages": {
                "plugin:shop-cart": {
                    "name": "shop-cart",
                    "type": "plugin",
                    "version": "1.1.0",
                    "tree": "ab",
                    "from": "1.0.0",
                }
            },
        }
    )


def test_lock_is_written_atomically_with_mode_0600_and_merged(tmp_path: Path) -> None:
    ctx = make_context(FakeTransport(), run_dir=tmp_path)
    ctx.options.run_id = "r1"
    ctx.env.name = "staging"
    path = write_lock(ctx, _lock())
    assert path == lock_path(tmp_path, "site")
    assert path is not None and (path.stat().st_mode & 0o777) == 0o600
    more = _lock()
    more.packages = {"theme:t": more.packages["plugin:shop-cart"].model_copy(update={"name": "t", "type": "theme"})}
    write_lock(ctx, more)
    again = read_lock(path)
    assert set(again.packages) == {"plugin:shop-cart", "theme:t"}
    assert json.loads(path.read_text())["packages"]["plugin:shop-cart"]["from"] == "1.0.0"
    assert [p.name for p in tmp_path.joinpath("locks").iterdir()] == ["site.json"]


def test_promotion_lock_refusals(tmp_path: Path) -> None:
    ctx = make_context(FakeTransport(), run_dir=tmp_path)
    assert promotion_lock(ctx, "wordpress") == (None, None)  # the stage does not promote
    ctx.stage_promote = "staging"
    with pytest.raises(CheckFailed, match="no version lock"):
        promotion_lock(ctx, "wordpress")
    ctx.options.check = True
    assert promotion_lock(ctx, "wordpress") == (None, lock_path(tmp_path, "site"))  # plan mode: predict
    ctx.options.check = False
    path = lock_path(tmp_path, "site")
    path.parent.mkdir()
    path.write_text(_lock(status="rolled-back").to_json())
    with pytest.raises(CheckFailed, match="rolled-back"):
        promotion_lock(ctx, "wordpress")
    path.write_text(_lock(env="qa").to_json())
    with pytest.raises(CheckFailed, match="comes from 'qa'"):
        promotion_lock(ctx, "wordpress")
    path.write_text(_lock().to_json())
    with pytest.raises(CheckFailed, match="is for wordpress"):
        promotion_lock(ctx, "composer")
    lock, found = promotion_lock(ctx, "wordpress")
    assert lock is not None and found == path and lock.packages["plugin:shop-cart"].version == "1.1.0"


def test_promote_from_refuses_a_run_where_the_site_failed(tmp_path: Path) -> None:
    earlier = tmp_path / "runs" / "20250101T000000Z-abc"
    lock_path(earlier, "site").parent.mkdir(parents=True)
    lock_path(earlier, "site").write_text(_lock().to_json())
    (earlier / "summary.json").write_text(json.dumps({"sites": [{"site": "site", "status": "rolled-back"}]}))
    ctx = make_context(FakeTransport(), run_dir=tmp_path / "runs" / "now")
    ctx.stage_promote = "staging"
    ctx.options.promote_from = earlier
    with pytest.raises(CheckFailed, match="did not validate site"):
        promotion_lock(ctx, "wordpress")
    (earlier / "summary.json").write_text(json.dumps({"sites": [{"site": "site", "status": "ok"}]}))
    lock, _ = promotion_lock(ctx, "wordpress")
    assert lock is not None and hashlib.sha256(lock.to_json().encode()).hexdigest()
