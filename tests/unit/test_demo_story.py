"""The demo's observers: the checksum of a release's files and the shopper polling a cart."""

from __future__ import annotations

import json
import os
from pathlib import Path

from maintkit.demo.releases import BROKEN, GOOD, RELEASES, release_files
from maintkit.demo.story import CartPoller, deployed, tree_checksum
from maintkit.demo.web import ThreadedServer, shop_handler


def _release(env: Path, version: str, name: str = "r1") -> Path:
    """A release of the demo's code under env/releases/NAME, linked like deploy.release does."""
    rdir = env / "releases" / name
    for rel, content in release_files(version).items():
        (rdir / rel).parent.mkdir(parents=True, exist_ok=True)
        (rdir / rel).write_text(content)
    shared = env / "shared"
    (shared / "var" / "cache").mkdir(parents=True, exist_ok=True)
    (shared / ".env").write_text(f"DB_NAME={env.name}\n")
    os.symlink(shared / ".env", rdir / ".env")
    (rdir / "var").mkdir()
    os.symlink(shared / "var" / "cache", rdir / "var" / "cache")
    marker = {"release": name, "commit": "c" * 40, "ref": version, "built_at": env.name}
    (rdir / ".maint-release.json").write_text(json.dumps(marker))
    os.symlink(f"releases/{name}", env / "current")
    return rdir


def test_the_same_release_in_two_environments_has_one_checksum(tmp_path: Path) -> None:
    staging = _release(tmp_path / "staging", GOOD, "20260101T000000Z-aaaaaaa")
    production = _release(tmp_path / "production", GOOD, "20260102T000000Z-aaaaaaa")
    one = tree_checksum(staging, tmp_path / "staging" / "shared")
    two = tree_checksum(production, tmp_path / "production" / "shared")
    # every file, .env and var/cache (links into each environment's shared/), not the marker
    assert one == two and one[1] == len(release_files(GOOD)) + 2
    found = deployed("production", tmp_path / "production")
    assert found is not None
    assert (found.release, found.ref, found.commit, found.checksum) == (production.name, GOOD, "c" * 40, one[0])
    assert deployed("staging", tmp_path / "nowhere") is None


def test_checksum_sees_content_mode_and_link_changes(tmp_path: Path) -> None:
    rdir = _release(tmp_path / "env", GOOD)
    shared = tmp_path / "env" / "shared"
    base = tree_checksum(rdir, shared)[0]
    seen = {base}
    (rdir / "config" / "cart.json").write_text(release_files(BROKEN)["config/cart.json"])
    seen.add(tree_checksum(rdir, shared)[0])
    (rdir / "bin" / "migrate").chmod(0o755)
    seen.add(tree_checksum(rdir, shared)[0])
    (rdir / ".env").unlink()
    os.symlink(tmp_path / "elsewhere" / ".env", rdir / ".env")
    seen.add(tree_checksum(rdir, shared)[0])
    assert len(seen) == 4
    (rdir / ".maint-release.json").write_text("{}")  # the marker names the release: not counted
    assert tree_checksum(rdir, shared)[0] in seen


def test_releases_break_and_fix_the_cart_configuration() -> None:
    assert RELEASES == ("v1", BROKEN, GOOD) == ("v1", "v2", "v3")
    json.loads(release_files("v1")["config/cart.json"])
    json.loads(release_files(GOOD)["config/cart.json"])
    try:
        json.loads(release_files(BROKEN)["config/cart.json"])
    except ValueError:
        pass
    else:
        raise AssertionError("v2's cart configuration must not parse")


def test_shopper_counts_what_the_cart_answers(tmp_path: Path) -> None:
    _release(tmp_path / "shop", "v1")
    server = ThreadedServer(shop_handler(tmp_path / "shop" / "current" / "public", "?"), 0)
    try:
        url = f"http://127.0.0.1:{server.port}/cart/"
        polls = CartPoller(url, interval=0.01).start().stop()
        assert polls.total >= 2 and polls.ok == polls.total  # the first request, and the last after stop
        assert polls.describe() == f"{polls.total} of {polls.total} cart requests"
        (tmp_path / "shop" / "current" / "config" / "cart.json").write_text(release_files(BROKEN)["config/cart.json"])
        broken = CartPoller(url, interval=0.01).start().stop()
        assert broken.ok == 0 and set(broken.statuses) == {500}
        assert broken.describe() == f"0 of {broken.total} cart requests (others: {broken.total} x 500)"
    finally:
        server.stop()
    gone = CartPoller(url, interval=0.01, timeout=1).start().stop()
    assert set(gone.statuses) == {0} and gone.describe().endswith(f"(others: {gone.total} x no answer)")
