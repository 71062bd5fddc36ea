"""The one shell of the FastCGI OPcache reset (cgi-fcgi client), run by the system's ``sh``.

``cgi-fcgi`` is replaced by a recording stand-in that answers as the reset script would, from
a scripted list (its NEXT line included), so what the shell does with each answer is seen:
asking again, polling, the shared budget of ``ceil(settle / 0.1)`` pauses, the empty
environment of each request, and the script removed whatever happened. Its framed output is
then read as :meth:`OpcacheFastcgi.clear` reads it (``read_run`` and ``replay``). The real
script against a real php-fpm over SSH is in tests/lab/test_opcache_fastcgi.py.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from maintkit.actions.cache.base import TargetFailed
from maintkit.actions.cache.opcache_fcgi import replay
from maintkit.actions.cache.opcache_host import MARKER, NEXT, FcgiPlan, HostRun, read_run, reset_shell
from maintkit.results import CommandResult
from maintkit.transport.base import output_marker

FAKE = """#!/bin/sh
PATH=/usr/bin:/bin
d={dir}
n=$(( $(cat "$d/count") + 1 )); echo "$n" > "$d/count"
env | sort > "$d/env.$n"
printf '%s\\n' "$QUERY_STRING" >> "$d/queries"
[ -f "$d/$n.err" ] && cat "$d/$n.err" >&2
[ -f "$d/$n" ] && cat "$d/$n"
exit "$(cat "$d/$n.code" 2>/dev/null || echo 0)"
"""


def status(pending: bool, restarts: int) -> dict[str, Any]:
    return {"enabled": not pending, "pending": pending, "restarts": restarts, "cached_scripts": 7}


def answer(data: dict[str, Any], next_line: str) -> str:
    facts = {"script_mode": "0600", "script_uid": 1000, "pool_uid": 1000}
    return f"Content-type: text/plain\r\n\r\n{MARKER}{json.dumps({**data, **facts})}\n{NEXT}{next_line}\n"


AGAIN = answer({"ini": True, "status": status(False, 4), "reset": False, "joined": False, "next": "again"}, "again")
WAIT = answer({"ini": True, "status": status(True, 5), "next": "wait"}, "wait")
DONE = answer({"ini": True, "status": status(False, 6), "next": "done"}, "done")


def go(restarts: int, pending: bool = False) -> str:
    data = {"ini": True, "status": status(pending, restarts), "reset": True, "next": "go"}
    return answer(data, f"go {restarts} {int(pending)}")


@dataclass
class Ran:
    run: HostRun
    queries: list[str]
    envs: list[dict[str, str]]
    left: list[str]
    exit_code: int


def run_shell(
    tmp_path: Path, answers: list[str | tuple[str, str, int]], *, settle: float = 5.0, tmpdir: Path | None = None
) -> Ran:
    """Run the reset shell with the stand-in answering ``answers`` (text, or stdout, stderr, exit)."""
    fake_dir = tmp_path / "fake"
    fake_dir.mkdir()
    (fake_dir / "count").write_text("0")
    for i, ans in enumerate(answers, 1):
        out, err, code = (ans, "", 0) if isinstance(ans, str) else ans
        (fake_dir / str(i)).write_text(out)
        (fake_dir / f"{i}.err").write_text(err)
        (fake_dir / f"{i}.code").write_text(str(code))
    fake = fake_dir / "cgi-fcgi"
    fake.write_text(FAKE.format(dir=fake_dir))
    fake.chmod(0o755)
    tmpdir = tmpdir or tmp_path / "tmp"
    tmpdir.mkdir(exist_ok=True)
    plan = FcgiPlan("/run/php/x.sock", "cgi-fcgi", str(tmpdir), None, None, "php", 5.0, settle)
    marker = output_marker()
    script = reset_shell(plan, marker)
    assert script.count(" cgi-fcgi -bind -connect ") == 1
    script = script.replace(" cgi-fcgi -bind -connect ", f" {fake} -bind -connect ")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LEAK": "login-variable"}
    proc = subprocess.run(["sh", "-c", script], capture_output=True, text=True, env=env, timeout=60)
    res = CommandResult("h", "", proc.returncode, proc.stdout, proc.stderr, 1.0)
    count = int((fake_dir / "count").read_text())
    envs = [
        dict(line.split("=", 1) for line in (fake_dir / f"env.{i}").read_text().splitlines())
        for i in range(1, count + 1)
    ]
    queries = (fake_dir / "queries").read_text().splitlines() if count else []
    left = sorted(p.name for p in tmpdir.iterdir())
    return Ran(read_run(res, marker), queries, envs, left, proc.returncode)


def plan_of(ran: Ran, settle: float = 5.0) -> FcgiPlan:
    assert ran.run.script is not None
    return FcgiPlan("/run/php/x.sock", "cgi-fcgi", str(Path(ran.run.script).parent), None, None, "php", 5.0, settle)


def test_asked_again_then_polled_until_done_in_one_shell(tmp_path: Path) -> None:
    ran = run_shell(tmp_path, [AGAIN, go(5), WAIT, DONE])

    assert ran.exit_code == 0 and ran.left == [] and ran.run.removed == ""
    assert ran.queries == ["reset", "reset", "status&restarts=5&pending=0", "status&restarts=5&pending=0"]
    script = ran.run.script
    assert script is not None and Path(script).parent == tmp_path / "tmp"
    assert Path(script).name.startswith(".maint-opcache-") and script.endswith(".php")
    name = "/" + Path(script).name
    assert ran.envs[2] == {
        "GATEWAY_INTERFACE": "CGI/1.1",
        "SERVER_SOFTWARE": "maintkit",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "SERVER_NAME": "localhost",
        "REMOTE_ADDR": "127.0.0.1",
        "REQUEST_METHOD": "GET",
        "SCRIPT_FILENAME": script,
        "SCRIPT_NAME": name,
        "REQUEST_URI": f"{name}?status&restarts=5&pending=0",
        "DOCUMENT_ROOT": str(tmp_path / "tmp"),
        "QUERY_STRING": "status&restarts=5&pending=0",
        "PWD": ran.envs[2]["PWD"],  # the stand-in's shell sets it; nothing of the login's comes through
    }
    assert [s.kind for s in ran.run.sent] == ["reset", "reset", "status", "status"]
    out = replay(plan_of(ran), ran.run)
    assert (out["before"]["restarts"], out["after"]["restarts"], out["status_requests"]) == (5, 6, 2)
    assert (out["script_mode"], out["script_uid"], out["pool_uid"]) == ("0600", 1000, 1000)


def test_a_reset_that_stays_false_stops_after_settle(tmp_path: Path) -> None:
    ran = run_shell(tmp_path, [AGAIN] * 10, settle=0.3)

    assert ran.queries == ["reset"] * 4 and ran.left == [] and ran.run.removed == ""  # 3 pauses of 0.1 s
    with pytest.raises(TargetFailed) as err:
        replay(plan_of(ran, 0.3), ran.run)
    assert str(err.value) == (
        "opcache_reset() returned false in the pool at /run/php/x.sock 4 time(s) in 0.3 s (opcache.restrict_api?)"
    )


def test_the_pauses_are_shared_by_both_loops(tmp_path: Path) -> None:
    ran = run_shell(tmp_path, [AGAIN, go(4, pending=True), *[WAIT] * 10], settle=0.3)

    # 3 pauses in all: one before the second reset request, two between the three status requests
    assert ran.queries == ["reset", "reset", *["status&restarts=4&pending=1"] * 3] and ran.left == []
    with pytest.raises(TargetFailed) as err:
        replay(plan_of(ran, 0.3), ran.run)
    assert str(err.value) == (
        "opcache_reset() was accepted at /run/php/x.sock but php-fpm had not performed it after 0.3 s "
        "(a long request kept the cache in use?)"
    )


@pytest.mark.parametrize(
    ("first", "message"),
    [
        (
            ("", "Could not connect to /run/php/x.sock\n", 111),
            "php-fpm at /run/php/x.sock did not run the reset script (exit 111): Could not connect to /run/php/x.sock",
        ),
        (
            (
                "Status: 404 Not Found\r\nContent-type: text/html\r\n\r\nFile not found.\n",
                "Primary script unknown\n",
                0,
            ),
            "php-fpm at /run/php/x.sock did not run the reset script (exit 0): 404 Not Found File not found. "
            "Primary script unknown (can the pool read the script? set opcache.user to the pool's user, "
            "or opcache.tmpdir inside its open_basedir)",
        ),
        (
            answer({"ini": False, "status": None, "reset": False, "joined": False, "next": "stop"}, "stop"),
            "OPcache is disabled in the pool at /run/php/x.sock (opcache.enable=0): nothing to reset",
        ),
    ],
)
def test_a_failed_request_ends_the_shell_and_the_script_is_removed(
    tmp_path: Path, first: str | tuple[str, str, int], message: str
) -> None:
    ran = run_shell(tmp_path, [first, DONE])

    assert ran.queries == ["reset"] and ran.left == [] and ran.run.removed == ""
    with pytest.raises(TargetFailed) as err:
        replay(plan_of(ran), ran.run)
    assert str(err.value) == message


def test_a_go_without_a_count_sends_no_status_request(tmp_path: Path) -> None:
    bad = answer({"ini": True, "status": status(False, 4), "reset": True, "next": "go"}, "go 4x 0")
    ran = run_shell(tmp_path, [bad, DONE])

    assert ran.queries == ["reset"] and ran.left == []
    with pytest.raises(TargetFailed) as err:
        replay(plan_of(ran), ran.run)
    assert str(err.value) == "the reset at /run/php/x.sock stopped before its status request (the shell ended)"


def test_a_hostile_tmpdir_is_only_a_value(tmp_path: Path) -> None:
    tmpdir = tmp_path / "a dir 'with' $(touch pwned) `x` \\ ;"
    tmpdir.mkdir()
    ran = run_shell(tmp_path, [go(1), DONE], tmpdir=tmpdir)

    assert ran.run.script is not None and Path(ran.run.script).parent == tmpdir
    assert ran.envs[0]["DOCUMENT_ROOT"] == str(tmpdir) and ran.envs[0]["SCRIPT_FILENAME"] == ran.run.script
    assert ran.left == [] and not (tmp_path / "pwned").exists() and not Path("pwned").exists()
    assert replay(plan_of(ran), ran.run)["status_requests"] == 1


def test_no_script_no_request(tmp_path: Path) -> None:
    plan = FcgiPlan("/run/php/x.sock", "cgi-fcgi", str(tmp_path / "missing"), None, None, "php", 5.0, 1.0)
    marker = output_marker()
    proc = subprocess.run(["sh", "-c", reset_shell(plan, marker)], capture_output=True, text=True, timeout=60)
    run = read_run(CommandResult("h", "", proc.returncode, proc.stdout, proc.stderr, 1.0), marker)

    assert (proc.returncode, run.script, run.sent, run.removed) == (90, None, [], None)
    assert "mktemp" in proc.stderr and proc.stdout == ""
