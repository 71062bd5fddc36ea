"""staging.refresh without a host: the pipe's exit statuses, refusals, URL pairs, "nothing to do"."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime, timedelta

import pytest

from maintkit.actions.staging.dbcopy import pipe_script
from maintkit.actions.staging.guards import refusal
from maintkit.actions.staging.params import DbRef
from maintkit.actions.staging.refresh import Digests, up_to_date
from maintkit.actions.staging.sides import Side, Sides
from maintkit.actions.staging.wp import url_pairs
from maintkit.inventory import Environment
from maintkit.testing import FakeTransport


def _sh(script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=10, check=False)


@pytest.mark.parametrize(
    ("producer", "consumer", "code", "stdout"),
    [
        ("printf 'a\\nb\\n'", "tr a-z A-Z", 0, "A\nB\n"),
        ("printf 'a\\n'; exit 5", "cat", 3, "a\n"),
        ("printf 'a\\n'", "cat >/dev/null; exit 7", 4, ""),
    ],
)
def test_the_pipe_fails_when_either_side_fails(producer: str, consumer: str, code: int, stdout: str) -> None:
    res = _sh(pipe_script(producer, consumer))
    assert (res.returncode, res.stdout) == (code, stdout)


def _sides(target: dict[str, object], source: dict[str, object] | None = None, same_db: bool = False) -> Sides:
    src = Environment.model_validate(
        {"name": "production", "host": "web1", "path": "/srv/shop", "url": "https://shop.example", **(source or {})}
    )
    dst = Environment.model_validate(
        {
            "name": "staging",
            "host": "web1",
            "path": "/srv/shop-staging",
            "url": "https://staging.shop.example",
            **target,
        }
    )
    t = FakeTransport()
    return Sides(
        Side(src, t, DbRef(name="shop")), Side(dst, t, DbRef(name="shop" if same_db else "shop_stg")), True, "wordpress"
    )


HEAD = "staging.refresh refuses to write to shop/"


@pytest.mark.parametrize(
    ("target", "same_db", "message"),
    [
        ({"name": "production"}, False, HEAD + "production: an environment named production is never a refresh target"),
        ({"protected": True}, False, HEAD + "staging: the inventory marks it protected: true"),
        (
            {"url": "https://SHOP.example/"},
            False,
            HEAD + "staging: its URL https://SHOP.example/ is the URL of production",
        ),
        ({"path": "/srv/shop/"}, False, HEAD + "staging: its path web1:/srv/shop/ is the path of production"),
        ({}, True, HEAD + "staging: its database shop is the database of production"),
        ({}, False, None),
    ],
)
def test_unsafe_targets_are_refused(target: dict[str, object], same_db: bool, message: str | None) -> None:
    assert refusal("shop", _sides(target, same_db=same_db), same_db) == message


def test_url_pairs_cover_the_json_escaped_form_and_extra_pairs() -> None:
    assert url_pairs("https://shop.example/", "http://127.0.0.1:8080", {"shop.example": "staging.example"}) == [
        ["https://shop.example", "http://127.0.0.1:8080"],
        ["https:\\/\\/shop.example", "http:\\/\\/127.0.0.1:8080"],
        ["shop.example", "staging.example"],
    ]
    assert url_pairs(None, "http://x", {}) == []


def test_a_recent_refresh_holds_only_while_neither_side_changed() -> None:
    src, dst = Digests("d1", "f1"), Digests("d2", "f2")
    now = datetime.now(UTC)
    marker = {
        "refreshed_at": (now - timedelta(hours=1)).isoformat(),
        "source_env": "production",
        "source": src.public(),
        "target": dst.public(),
    }
    assert up_to_date(marker, src, dst, "production", "20h") is not None
    assert up_to_date(marker, Digests("d1", "changed"), dst, "production", "20h") is None
    assert up_to_date(marker, src, Digests("changed", "f2"), "production", "20h") is None
    assert up_to_date(marker, src, dst, "production", "30m") is None
    assert up_to_date(marker, src, dst, "live", "20h") is None
    assert up_to_date(None, src, dst, "production", "20h") is None
