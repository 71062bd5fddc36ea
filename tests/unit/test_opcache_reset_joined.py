"""cache.clear's OPcache reset through FastCGI on a php-fpm master that other sites reset too.

Another site's reset can be scheduled between the reset script's status read and its
``opcache_reset()`` call; the call then returns false while that reset is pending, and the
pending reset empties the cache all the same (joined). While another request's restart is
being performed the call returns false with nothing pending: the reset is asked again. The
decision is tested here with the pool's answers scripted (the FastCGI round trips themselves
are tested against a real php-fpm in tests/lab/test_opcache_fastcgi.py).
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


def status(pending: bool, restarts: int) -> dict[str, Any]:
    return {"enabled": not pending, "pending": pending, "restarts": restarts, "last_restart_time": 0}


def scripted(monkeypatch: pytest.MonkeyPatch, answers: list[dict[str, Any]]) -> list[str]:
    queries: list[str] = []

    def request(_ctx: object, _plan: object, _script: str, query: str) -> dict[str, Any]:
        queries.append(query)
        return answers.pop(0)

    monkeypatch.setattr(opcache_fcgi, "request", request)
    return queries


PLAN = FcgiPlan("/run/php/fpm.sock", "cgi-fcgi", "/tmp", None, None, "php", 5.0, 5.0)


def test_a_false_reset_while_another_reset_is_pending_is_joined(monkeypatch: pytest.MonkeyPatch) -> None:
    queries = scripted(
        monkeypatch,
        [
            {"ini": True, "status": status(False, 4), "reset": False, "joined": True},
            {"status": status(True, 4)},
            {"status": status(False, 5)},
        ],
    )

    out = reset(None, PLAN, "/tmp/x.php")  # type: ignore[arg-type]

    assert queries == ["reset", "status", "status"]
    assert (out["before"]["restarts"], out["after"]["restarts"], out["status_requests"]) == (4, 5, 2)


def test_a_false_reset_with_the_status_readable_is_asked_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """False with nothing pending: another request's restart being performed; asked again."""
    queries = scripted(
        monkeypatch,
        [
            {"ini": True, "status": status(False, 4), "reset": False, "joined": False},
            {"ini": True, "status": status(False, 5), "reset": True},
            {"status": status(False, 6)},
        ],
    )

    out = reset(None, PLAN, "/tmp/x.php")  # type: ignore[arg-type]

    assert queries == ["reset", "reset", "status"]
    assert (out["before"]["restarts"], out["after"]["restarts"]) == (5, 6)


def test_a_reset_that_stays_false_fails_within_settle(monkeypatch: pytest.MonkeyPatch) -> None:
    answer = {"ini": True, "status": status(False, 4), "reset": False, "joined": False}
    queries: list[str] = []

    def request(_ctx: object, _plan: object, _script: str, query: str) -> dict[str, Any]:
        queries.append(query)
        return answer

    monkeypatch.setattr(opcache_fcgi, "request", request)
    short = FcgiPlan("/run/php/fpm.sock", "cgi-fcgi", "/tmp", None, None, "php", 5.0, 0.3)

    with pytest.raises(TargetFailed) as err:
        reset(None, short, "/tmp/x.php")  # type: ignore[arg-type]

    assert str(err.value) == (
        f"opcache_reset() returned false in the pool at /run/php/fpm.sock {len(queries)} time(s) in 0.3 s "
        "(opcache.restrict_api?)"
    )
    assert len(queries) >= 2 and set(queries) == {"reset"}


def run_script(tmp_path: Path, *, pending: bool) -> dict[str, Any]:
    """The reset script on the real PHP CLI (OPcache on); ``pending``: a reset asked for first,
    which stays pending until the process ends, as another request's does in php-fpm."""
    (tmp_path / "reset.php").write_text(RESET_PHP)
    first = "opcache_reset();" if pending else ""
    (tmp_path / "main.php").write_text(
        f"<?php {first} $_SERVER['QUERY_STRING'] = 'reset'; include __DIR__ . '/reset.php';\n"
    )
    res = subprocess.run(
        ["php", "-d", "opcache.enable_cli=1", str(tmp_path / "main.php")], capture_output=True, text=True, check=True
    )
    line = next(x for x in res.stdout.splitlines() if x.startswith(MARKER))
    data: dict[str, Any] = json.loads(line[len(MARKER) :])
    return data


def test_the_script_joins_a_pending_reset_on_the_real_php(tmp_path: Path) -> None:
    joined = run_script(tmp_path, pending=True)
    # (here the status read before the call already saw it pending; in php-fpm the other
    # request's reset can come between the two, which the scripted test above covers)
    assert (joined["reset"], joined["joined"]) == (False, True)

    alone = run_script(tmp_path, pending=False)
    assert (alone["reset"], "joined" in alone) == (True, False)
