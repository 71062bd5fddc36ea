"""The health playbook's alerts: an outage alerts once, its recovery once, to a real receiver on loopback."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from tests.health_helpers import Receiver, Shop, health_project, points, serving
from tests.operator_helpers import clean_env, maint


def _run(root: Path, env: dict[str, str]) -> int:
    res = maint("run", "health", "-i", "inventory.yml", cwd=root, env=env)
    return res.returncode


def test_outage_alerts_once_and_recovery_once(tmp_path: Path) -> None:
    with serving(Shop()) as shop, serving(Receiver()) as receiver:
        root = health_project(tmp_path, shop.url, vars_="health_checks: [http]\nhealth_retries: 0")
        env = clean_env(MAINT_ALERT_URL=f"json://127.0.0.1:{receiver.port}/alert")
        seen: list[int] = []
        for status in (500, 500, 500, 200, 200):
            shop.status = status
            assert _run(root, env) == (1 if status == 500 else 0)
            seen.append(len(receiver.requests))
        assert seen == [0, 1, 1, 2, 2]  # down after run 2, recovered in run 4, nothing else

    health = points(root, "health")
    runs = [p["run_id"] for p in health]
    assert [p["failed"] for p in health] == [["http"], ["http"], ["http"], [], []]
    assert [p["ok"] for p in health] == [False, False, False, True, True]
    opened, closed = health[0]["ts"], health[3]["ts"]
    reason = f"check: 1 of 1 checks failed: flow step 1: home: GET {shop.url}/: status 500 (expected 200)"

    down, up = (r["body"] for r in receiver.requests)
    assert [r["path"] for r in receiver.requests] == ["/alert", "/alert"]
    assert down == {
        "version": "1.0",
        "type": "failure",
        "title": "maint health: http down on shop/production",
        "message": f"http on shop/production failed 2 runs in a row since {opened}.\n{reason}\nrun {runs[1]}",
        "event": "health.down",
        "playbook": "health",
        "run_id": runs[1],
        "site": "shop",
        "env": "production",
        "check": "http",
        "state": "open",
        "opened": opened,
        "closed": None,
        "failures": 2,
        "duration_s": None,
        "reason": reason,
        "run_url": None,
    }
    duration = (datetime.fromisoformat(closed) - datetime.fromisoformat(opened)).total_seconds()
    secs = round(duration)
    took = f"{secs // 60}m {secs % 60:02d}s" if secs >= 60 else f"{secs}s"
    assert up["title"] == "maint health: http recovered on shop/production"
    assert up["message"] == (
        f"http on shop/production passes again after 3 failed runs: down {took} ({opened} to {closed}).\nrun {runs[3]}"
    )
    assert (up["type"], up["event"], up["state"], up["closed"], up["failures"]) == (
        "success", "health.recovered", "closed", closed, 3,
    )  # fmt: skip
    assert up["duration_s"] == duration

    incidents = points(root, "incidents")
    assert [(p["state"], p["failures"], p["run_id"]) for p in incidents] == [
        ("open", 2, runs[1]),
        ("open", 3, runs[2]),
        ("closed", 3, runs[3]),
    ]
    assert {p["opened"] for p in incidents} == {opened}
    assert incidents[-1]["closed"] == closed and incidents[-1]["duration_s"] == duration
    assert incidents[-1]["reason"] == reason


def test_single_failure_opens_no_incident_and_sends_nothing(tmp_path: Path) -> None:
    with serving(Shop()) as shop, serving(Receiver()) as receiver:
        root = health_project(tmp_path, shop.url, vars_="health_checks: [http]\nhealth_retries: 0")
        env = clean_env(MAINT_ALERT_URL=f"json://127.0.0.1:{receiver.port}/alert")
        for status in (500, 200, 500, 200):
            shop.status = status
            _run(root, env)
        assert receiver.requests == []
    assert [p["ok"] for p in points(root, "health")] == [False, True, False, True]
    assert points(root, "incidents") == []
