"""``maint run health --metrics FILE --pushgateway URL``: OpenMetrics that prometheus-client parses."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from prometheus_client.openmetrics.parser import text_string_to_metric_families
from prometheus_client.parser import text_string_to_metric_families as text_format_families

from tests.health_helpers import Receiver, Shop, health_project, points, serving
from tests.operator_helpers import clean_env, maint

#: the machine running the tests is shared: its load is not this test's to judge
VARS = "health_checks: [http, host]\nhealth_retries: 0\nhealth_load_per_cpu: {warn: null, fail: null}"
HOST_NAMES = {
    "maint_disk_used_ratio", "maint_disk_inodes_used_ratio", "maint_disk_free_bytes",
    "maint_load1", "maint_cpus", "maint_memory_used_ratio",
}  # fmt: skip


def _samples(
    text: str, parse: object = text_string_to_metric_families
) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in parse(text):  # type: ignore[operator]
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_metrics_file_and_push(tmp_path: Path) -> None:
    with serving(Shop()) as shop, serving(Receiver()) as gateway:
        shop.status = 500
        root = health_project(tmp_path, shop.url, vars_=VARS)
        prom = tmp_path / "textfile" / "maint.prom"
        prom.parent.mkdir()
        args = ("run", "health", "-i", "inventory.yml", "--metrics", str(prom), "--pushgateway", gateway.url)
        assert maint(*args, cwd=root, env=clean_env()).returncode == 1
        res = maint(*args, cwd=root, env=clean_env())  # second failure: the incident opens
        assert res.returncode == 1
        assert f"metrics written to {prom}\nmetrics pushed to {gateway.url}\n" in res.stderr

    text = prom.read_text()
    assert text.endswith("# EOF\n")
    assert stat.S_IMODE(os.stat(prom).st_mode) == 0o644
    got = _samples(text)
    names = {name for name, _ in got}
    assert names == {
        "maint_health_up", "maint_health_run_timestamp_seconds", "maint_check_up", "maint_incident_open",
        "maint_http_latency_ms", "maint_http_requests", "maint_http_requests_failed", *HOST_NAMES,
    }  # fmt: skip
    se = (("env", "production"), ("site", "shop"))
    health = points(root, "health")[-1]
    assert got[("maint_health_up", se)] == 0.0
    from datetime import datetime

    assert got[("maint_health_run_timestamp_seconds", se)] == datetime.fromisoformat(health["ts"]).timestamp()
    assert got[("maint_check_up", (("check", "http"), *se))] == 0.0
    assert got[("maint_check_up", (("check", "host"), *se))] == 1.0
    assert got[("maint_incident_open", (("check", "http"), *se))] == 1.0
    http = points(root, "http")[-1]
    assert (got[("maint_http_requests", se)], got[("maint_http_requests_failed", se)]) == (1.0, 1.0)
    for q, key in (("0.5", "median_ms"), ("0.95", "p95_ms"), ("1", "max_ms")):
        assert got[("maint_http_latency_ms", (("env", "production"), ("quantile", q), ("site", "shop")))] == http[key]
    host = points(root, "host")[-1]
    disk = host["disk"][0]
    mount = (("env", "production"), ("mount", disk["mount"]), ("site", "shop"))
    assert got[("maint_disk_used_ratio", mount)] == round(disk["used_pct"] / 100, 6)
    assert got[("maint_disk_free_bytes", mount)] == disk["free_bytes"]
    assert got[("maint_cpus", se)] == host["cpus"]
    assert {k[1] for k in got} <= {
        se,
        (("check", "http"), *se),
        (("check", "host"), *se),
        *((("env", "production"), ("quantile", q), ("site", "shop")) for q in ("0.5", "0.95", "1")),
        *((("env", "production"), ("mount", d["mount"]), ("site", "shop")) for d in host["disk"]),
    }  # no label but site, env, check, quantile, mount

    pushes = gateway.requests
    assert [(r["method"], r["path"]) for r in pushes] == [("PUT", "/metrics/job/maint/playbook/health")] * 2
    pushed = _samples(pushes[-1]["body"], text_format_families)
    assert pushed[("maint_incident_open", (("check", "http"), *se))] == 1.0
    assert pushed[("maint_check_up", (("check", "host"), *se))] == 1.0


def test_plan_writes_no_metrics_and_no_health(tmp_path: Path) -> None:
    with serving(Shop()) as shop:
        root = health_project(tmp_path, shop.url, vars_="health_checks: [http]")
        prom = tmp_path / "maint.prom"
        res = maint("run", "health", "--check", "-i", "inventory.yml", "--metrics", str(prom), cwd=root)
        assert res.returncode == 0, res.stderr
    assert not prom.exists()
    assert points(root, "health") == [] and points(root, "http") == []
