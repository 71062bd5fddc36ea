"""The built-in ``health`` playbook: it validates, runs every environment, records its health."""

from __future__ import annotations

import json
from pathlib import Path

from maintkit.results import ExitCode
from tests.health_helpers import Shop, health_project, points, serving
from tests.operator_helpers import maint

FLOW_VARS = """health_checks: [http, ssl, host]
health_retries: 0
health_load_per_cpu: {warn: null, fail: null}
health_product: /product/blue-mug/
health_add_to_cart: {path: /cart/, method: POST, data: {add-to-cart: '42'}}"""
CHECKS = ["http", "ssl", "host", "logs", "integrity", "vuln", "malware", "admins"]


def test_health_validates(tmp_path: Path) -> None:
    res = maint("validate", "health", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip().endswith("maintkit/playbooks/health.yml")


def test_health_runs_every_environment_and_records_it(tmp_path: Path) -> None:
    with serving(Shop()) as shop:
        root = health_project(tmp_path, shop.url, envs=("staging", "production"), vars_=FLOW_VARS)
        first = maint("run", "health", "-i", "inventory.yml", "--json", cwd=root)
        assert first.returncode == 0, first.stderr
        flow = [
            ("GET", "/"),
            ("GET", "/product/blue-mug/"),
            ("POST", "/cart/"),
            ("GET", "/cart/"),
            ("GET", "/checkout/"),
        ]
        assert shop.requests == flow * 2  # staging, then production
        second = maint("run", "health", "-i", "inventory.yml", "--json", cwd=root)
        assert second.returncode == 0, second.stderr
    for res in (first, second):
        result = json.loads(res.stdout.strip().splitlines()[-1])
        assert result["changed"] == 0  # read-only: nothing changes, first run or second
    expected = {"http": "unchanged", "ssl": "skipped", "host": "unchanged"}
    expected.update({c: "skipped" for c in CHECKS[3:]})
    for env in ("staging", "production"):
        health = points(root, "health", env)
        assert [(p["ok"], p["failed"], p["checks"]) for p in health] == [(True, [], expected)] * 2
        http = points(root, "http", env)
        assert [(p["playbook"], p["ok"], p["count"], p["failed"]) for p in http] == [("health", True, 5, 0)] * 2
        assert all(isinstance(p["median_ms"], float) and p["max_ms"] >= p["p95_ms"] >= p["median_ms"] for p in http)
        assert [p["run_id"] for p in http] == [p["run_id"] for p in health]
        assert points(root, "incidents", env) == []


def test_env_option_runs_only_that_environment(tmp_path: Path) -> None:
    with serving(Shop()) as shop:
        root = health_project(tmp_path, shop.url, envs=("staging", "production"), vars_="health_checks: [http]")
        res = maint("run", "health", "-i", "inventory.yml", "--env", "production", cwd=root)
        assert res.returncode == 0, res.stderr
        assert shop.requests == [("GET", "/"), ("GET", "/cart/"), ("GET", "/checkout/")]
    assert points(root, "health", "staging") == []
    assert [p["ok"] for p in points(root, "health", "production")] == [True]


def test_unreachable_stage_is_recorded_as_the_stage_check(tmp_path: Path) -> None:
    with serving(Shop()) as shop:
        root = health_project(tmp_path, shop.url, vars_="health_checks: [http]")
    inv = (root / "inventory.yml").read_text().replace("connection: local", "host: 127.0.0.1, port: 1, user: nobody")
    (root / "inventory.yml").write_text(inv)
    res = maint("run", "health", "-i", "inventory.yml", cwd=root)
    assert res.returncode == ExitCode.UNREACHABLE, res.stdout + res.stderr
    [point] = points(root, "health")
    assert point["ok"] is False and point["failed"] == ["stage"]
    assert point["checks"] == {"stage": "failed", **dict.fromkeys(CHECKS, "not-run")}
