"""The built-in ``health`` playbook over SSH on the lab host, run through the library (``Runner``).

The runner itself records the health, opens and closes the incident and alerts (no CLI in
between): an outage of two runs alerts once, its recovery once; the access log lines written
between runs are counted once; the metrics file names the lab site.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from maintkit.inventory import load_inventory
from maintkit.playbook import load_playbook_full
from maintkit.runner import Runner
from maintkit.state.index import series
from tests import runs
from tests.health_helpers import NO_LATENCY_LIMIT, Receiver, Shop, serving
from tests.lab.sshd import SshLab, chown_login_user

pytestmark = pytest.mark.lab

LINE = '198.51.100.7 - - [10/Oct/2024:13:55:36 +0000] "GET /product/1 HTTP/1.1" {status} 512 "-" "Mozilla/5.0"\n'


def _runner(inventory: Path, state: Path, receiver: Receiver, prom: Path) -> Runner:
    return Runner(
        load_playbook_full("health"),
        load_inventory(inventory),
        state_dir=state,
        handle_signals=False,
        environ={"MAINT_ALERT_URL": f"json://127.0.0.1:{receiver.port}/alert"},
        extra={"metrics": str(prom)},
    )


def test_health_over_ssh_records_alerts_and_counts_logs(ssh_lab: SshLab, tmp_path: Path) -> None:
    host = ssh_lab.hosts[0]
    path = ssh_lab.scratch(host, "health") / "site"
    path.mkdir()
    log = path / "access.log"
    log.write_text(LINE.format(status=200))
    chown_login_user(path)
    chown_login_user(log)
    state, prom = tmp_path / ".maint", tmp_path / "maint.prom"
    with serving(Shop()) as shop, serving(Receiver()) as receiver:
        vars_: dict[str, Any] = {
            "health_checks": ["http", "host", "logs"],
            "health_retries": 0,
            "health_load_per_cpu": {"warn": None, "fail": None},  # the lab machine is shared
            "health_max_latency_ms": NO_LATENCY_LIMIT,  # so is its CPU: a stalled answer is not an outage here
            "access_log": str(log),
        }
        inventory = runs.write_inventory(tmp_path, runs.one_site(host.env(path, url=shop.url), vars=vars_))
        summaries, errors = [], []
        for status in (200, 500, 500, 200):
            shop.status = status
            with log.open("a") as f:
                f.write(LINE.format(status=status) * 3)
            runner = _runner(inventory, state, receiver, prom)
            result = runner.run()
            health = runner.health
            errors.append([(s.step, s.error) for site in result.sites for s in site.steps if s.error])
            summaries.append((result.status.value, [h.failed for h in health.envs], [a.kind for a in health.alerts]))
        alerts = [(r["body"]["event"], r["body"]["failures"]) for r in receiver.requests]

    assert summaries == [
        ("ok", [[]], []),
        ("failed", [["http"]], []),
        ("failed", [["http"]], ["down"]),
        ("ok", [[]], ["recovered"]),
    ], errors
    assert alerts == [("health.down", 2), ("health.recovered", 2)]
    logs = series(state, "shop", "production", "logs")
    # the first scan starts at the end of the log; then every line written is counted once
    assert [(p["requests"], p["status_5xx"]) for p in logs] == [(0, 0), (3, 3), (3, 3), (3, 0)]
    [incident] = [p for p in series(state, "shop", "production", "incidents") if p["state"] == "closed"]
    assert (incident["check"], incident["failures"]) == ("http", 2)
    text = prom.read_text()
    assert 'maint_check_up{check="logs",env="production",site="shop"} 1.0' in text
    assert 'maint_logs_requests{env="production",site="shop"} 3.0' in text
    assert 'maint_health_up{env="production",site="shop"} 1.0' in text
