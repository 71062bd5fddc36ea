"""cache.clear's OPcache reset through FastCGI on a php-fpm master that other sites reset too.

Another site's reset can be scheduled between the reset script's status read and its
``opcache_reset()`` call; the call then returns false while that reset is pending, and the
pending reset empties the cache all the same (joined). While another request's restart is
being performed the call returns false with nothing pending: the reset is asked again. The
script decides (its answer's ``next``) and :func:`settle_reset`, which both clients share, reads
its answers: tested here with the pool's answers scripted, and the script's decisions on the
real PHP CLI (the FastCGI round trips themselves are tested against a real php-fpm in
tests/lab/test_opcache_fastcgi.py, the host's shell loop in tests/unit/test_opcache_host.py).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from maintkit.actions.cache import opcache_fcgi
from maintkit.actions.cache.base import TargetFailed
from maintkit.actions.cache.opcache_fcgi import MARKER, RESET_PHP, FcgiPlan, reset
from maintkit.actions.cache.opcache_host import NEXT


def status(pending: bool, restarts: int) -> dict[str, Any]:
    return {"enabled": not pending, "pending": pending, "restarts": restarts, "last_restart_time": 0}


def scripted(monkeypatch: pytest.MonkeyPatch, answers: list[dict[str, Any]]) -> list[str]:
    queries: list[str] = []

    def request(_ctx: object, _plan: object, _script: str, query: str) -> dict[str, Any]:
        queries.append(query)
        return answers.pop(0)

    monkeypatch.setattr(opcache_fcgi, "request", request)
    return queries


PLAN = FcgiPlan("/run/php/fpm.sock", "controller", "/tmp", None, None, "php", 5.0, 5.0)


def test_a_false_reset_while_another_reset_is_pending_is_joined(monkeypatch: pytest.MonkeyPatch) -> None:
    queries = scripted(
        monkeypatch,
        [
            {"ini": True, "status": status(False, 4), "reset": False, "joined": True, "next": "go"},
            {"status": status(True, 4), "next": "wait"},
            {"status": status(False, 5), "next": "done"},
        ],
    )

    out = reset(None, PLAN, "/tmp/x.php")  # type: ignore[arg-type]

    assert queries == ["reset", "status&restarts=4&pending=0", "status&restarts=4&pending=0"]
    assert (out["before"]["restarts"], out["after"]["restarts"], out["status_requests"]) == (4, 5, 2)


def test_a_false_reset_with_the_status_readable_is_asked_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """False with nothing pending: another request's restart being performed; asked again."""
    queries = scripted(
        monkeypatch,
        [
            {"ini": True, "status": status(False, 4), "reset": False, "joined": False, "next": "again"},
            {"ini": True, "status": status(False, 5), "reset": True, "next": "go"},
            {"status": status(False, 6), "next": "done"},
        ],
    )

    out = reset(None, PLAN, "/tmp/x.php")  # type: ignore[arg-type]

    assert queries == ["reset", "reset", "status&restarts=5&pending=0"]
    assert (out["before"]["restarts"], out["after"]["restarts"]) == (5, 6)


def test_a_reset_that_stays_false_fails_within_settle(monkeypatch: pytest.MonkeyPatch) -> None:
    answer = {"ini": True, "status": status(False, 4), "reset": False, "joined": False, "next": "again"}
    queries: list[str] = []

    def request(_ctx: object, _plan: object, _script: str, query: str) -> dict[str, Any]:
        queries.append(query)
        return answer

    monkeypatch.setattr(opcache_fcgi, "request", request)
    short = FcgiPlan("/run/php/fpm.sock", "controller", "/tmp", None, None, "php", 5.0, 0.3)

    with pytest.raises(TargetFailed) as err:
        reset(None, short, "/tmp/x.php")  # type: ignore[arg-type]

    assert str(err.value) == (
        f"opcache_reset() returned false in the pool at /run/php/fpm.sock {len(queries)} time(s) in 0.3 s "
        "(opcache.restrict_api?)"
    )
    assert len(queries) >= 2 and set(queries) == {"reset"}


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (
            {"ini": False, "status": None, "next": "stop"},
            "OPcache is disabled in the pool at /run/php/fpm.sock (opcache.enable=0): nothing to reset",
        ),
        (
            {"ini": True, "status": None, "next": "stop"},
            "opcache_get_status() refused in the pool at /run/php/fpm.sock (opcache.restrict_api?)",
        ),
    ],
)
def test_a_pool_without_a_usable_opcache_fails_at_once(
    monkeypatch: pytest.MonkeyPatch, answer: dict[str, Any], message: str
) -> None:
    queries = scripted(monkeypatch, [answer])

    with pytest.raises(TargetFailed) as err:
        reset(None, PLAN, "/tmp/x.php")  # type: ignore[arg-type]

    assert (str(err.value), queries) == (message, ["reset"])


def run_script(tmp_path: Path, query: str, *, pending: bool) -> tuple[dict[str, Any], str]:
    """The reset script on the real PHP CLI (OPcache on) with ``query``: what it printed, and
    its NEXT line's words. ``pending``: a reset asked for first, which stays pending until the
    process ends, as another request's does in php-fpm."""
    (tmp_path / "reset.php").write_text(RESET_PHP)
    first = "opcache_reset();" if pending else ""
    (tmp_path / "main.php").write_text(
        f"<?php {first} $_SERVER['QUERY_STRING'] = {json.dumps(query)}; include __DIR__ . '/reset.php';\n"
    )
    res = subprocess.run(
        ["php", "-d", "opcache.enable_cli=1", str(tmp_path / "main.php")], capture_output=True, text=True, check=True
    )
    line = next(x for x in res.stdout.splitlines() if x.startswith(MARKER))
    data: dict[str, Any] = json.loads(line[len(MARKER) :])
    words = next(x for x in res.stdout.splitlines() if x.startswith(NEXT))[len(NEXT) :]
    return data, words


def test_the_script_joins_a_pending_reset_on_the_real_php(tmp_path: Path) -> None:
    joined, words = run_script(tmp_path, "reset", pending=True)
    # (here the status read before the call already saw it pending; in php-fpm the other
    # request's reset can come between the two, which the scripted test above covers)
    assert (joined["reset"], joined["joined"], joined["next"]) == (False, True, "go")
    assert words == f"go {joined['status']['restarts']} 1"

    alone, words = run_script(tmp_path, "reset", pending=False)
    assert (alone["reset"], "joined" in alone, alone["next"]) == (True, False, "go")
    assert words == f"go {alone['status']['restarts']} 0"


@pytest.mark.parametrize(
    ("query", "pending", "next_"),
    [
        ("status&restarts=0&pending=0", False, "wait"),  # no restart since the status before
        ("status&restarts=0&pending=1", False, "done"),  # pending before, nothing pending now
        ("status&restarts=0&pending=1", True, "wait"),  # still pending
        ("status&restarts=x&pending=1", False, "wait"),  # not a count: never done
        ("status", False, "wait"),
    ],
)
def test_the_script_says_when_php_performed_the_reset(tmp_path: Path, query: str, pending: bool, next_: str) -> None:
    data, words = run_script(tmp_path, query, pending=pending)
    assert data["status"]["restarts"] == 0  # a fresh CLI process: no restart performed yet
    assert (data["next"], words) == (next_, next_)
    assert "reset" not in data
