"""``logs.scan`` and ``host.health`` over SSH on the lab host, against real files, nginx, php-fpm and MariaDB.

Access log lines are counted once across scans and a logrotate-style rename; plan mode reads
nothing and moves no offset; a PHP fatal error is reported once; real nginx requests are
counted; host.health reports what ``df -P`` says, fails with the exact message at a 0% disk
threshold, reads a saturated php-fpm pool from its status page, and checks the database with
an explicit option file while the login user's hostile ``~/.my.cnf`` is in place.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from maintkit.results import RunResult, StepResult, StepStatus
from maintkit.state.index import series
from tests import runs
from tests.gates import wait_until
from tests.lab.mariadb import MariaDB
from tests.lab.procs import free_port
from tests.lab.sshd import LabHost, SshLab, chown_login_user
from tests.lab.web import WebStack

pytestmark = pytest.mark.lab

OK_LINE = '198.51.100.7 - - [10/Oct/2024:13:55:36 +0000] "GET /product/1 HTTP/1.1" 200 5120 "-" "Mozilla/5.0"\n'
ERR_LINE = '198.51.100.7 - - [10/Oct/2024:13:55:37 +0000] "POST /checkout?step=pay HTTP/1.1" 500 17 "-" "Mozilla/5.0"\n'
MISS_LINE = '198.51.100.7 - - [10/Oct/2024:13:55:38 +0000] "GET /missing.png HTTP/1.1" 404 0 "-" "Mozilla/5.0"\n'
FATAL = (
    "[10-Oct-2024 13:55:37 UTC] PHP Fatal error:  Uncaught Error: Call to undefined function pay() in "
    "/srv/shop/wp-content/plugins/gateway/pay.php:42\n"
)
#: the lab machine is shared by parallel suites: its load is not this test's to judge
SHARED_LOAD = {"load_per_cpu": {"warn": None, "fail": None}}
WARNING = "[10-Oct-2024 13:55:38 UTC] PHP Warning:  Undefined variable $x in /srv/shop/index.php on line 3\n"


@dataclass
class Shop:
    """A site directory on the lab host, its inventory and its state store."""

    host: LabHost
    path: Path
    state: Path
    inventory: Path

    def run(self, steps: list[dict[str, Any]], *, check: bool = False) -> RunResult:
        """Run the steps as a playbook (on_failure: continue) against the shop."""
        playbook = {"name": "watch", "on_failure": "continue", "stages": [{"env": "production", "steps": steps}]}
        return runs.run(yaml.safe_dump(playbook), self.inventory, self.state, check=check)

    def points(self, name: str) -> list[dict[str, Any]]:
        """The points of series ``name`` of the shop."""
        return series(self.state, "shop", "production", name)


@pytest.fixture()
def shop(ssh_lab: SshLab, tmp_path: Path, request: pytest.FixtureRequest) -> Shop:
    host = ssh_lab.hosts[0]
    path = ssh_lab.scratch(host, request.node.name) / "site"
    path.mkdir()
    (path / "logs").mkdir()
    chown_login_user(path)
    chown_login_user(path / "logs")
    inventory = runs.write_inventory(tmp_path, runs.one_site(host.env(path)))
    return Shop(host, path, tmp_path / ".maint", inventory)


def _step(result: RunResult, step: str) -> StepResult:
    assert result.sites[0].steps, result.sites[0].error
    return next(s for s in result.sites[0].steps if s.step == step)


def _no_change(result: RunResult) -> None:
    for s in result.sites[0].steps:
        assert s.status in (StepStatus.UNCHANGED, StepStatus.FAILED) and s.changes == [], s


# ----------------------------------------------------------------------------- logs.scan
def test_lines_are_counted_once_across_scans_plan_and_rotation(shop: Shop) -> None:
    log, php = shop.path / "logs" / "access.log", shop.path / "logs" / "php-error.log"
    steps = [
        {
            "id": "logs",
            "action": "logs.scan",
            "with": {
                "access_log": "logs/access.log",
                "php_error_log": str(php),
                "first_scan": "start",
                "min_requests": 5,
            },
        }
    ]
    log.write_text(OK_LINE * 7 + ERR_LINE * 2 + MISS_LINE)
    php.write_text(WARNING + FATAL + WARNING)

    first = _step(shop.run(steps), "logs")
    assert first.status is StepStatus.FAILED
    assert first.error == (
        "check: 5xx rate 20.0% (2 of 10) over 5.0%; 1 new PHP fatal error: "
        "/srv/shop/wp-content/plugins/gateway/pay.php:42 (1)"
    )
    second = _step(shop.run(steps), "logs")  # nothing new: zero requests, the fatal is not reported again
    assert second.status is StepStatus.UNCHANGED
    assert second.reason == "0 requests; 0 new PHP fatal errors; 0 bytes read"

    with log.open("a") as fh:  # four whole lines and one still being written
        fh.write(OK_LINE * 4 + ERR_LINE[:30])
    plan = shop.run(steps, check=True)
    size = log.stat().st_size
    assert _step(plan, "logs").reason == (
        f"would read {len(OK_LINE) * 4 + 30} bytes of {log}; would read 0 bytes of {php}"
    )
    assert len(shop.points("logs")) == 2  # a plan writes nothing and moves no offset
    third = _step(shop.run(steps), "logs")
    assert third.status is StepStatus.UNCHANGED, third.error
    assert third.data["requests"] == 4 and third.reason.startswith("4 requests, 5xx 0.0% (0), 4xx 0.0% (0) (rates")
    assert shop.points("logs-offsets")[-1]["logs"][str(log)]["offset"] == size - 30  # the partial line waits

    with log.open("a") as fh:  # finish the partial line, one more line, then rotate
        fh.write(ERR_LINE[30:] + OK_LINE)
    log.rename(log.with_name("access.log.1"))
    log.write_text(ERR_LINE + OK_LINE * 2)
    chown_login_user(log)
    fourth = _step(shop.run(steps), "logs")
    assert fourth.status is StepStatus.FAILED
    assert fourth.error == "check: 5xx rate 40.0% (2 of 5) over 5.0%"
    assert fourth.data["notes"] == [f"{log}: rotated (rest of the rotated file read first)"]
    fifth = _step(shop.run(steps), "logs")
    assert fifth.reason == "0 requests; 0 new PHP fatal errors; 0 bytes read"

    points = shop.points("logs")
    assert [p["requests"] for p in points] == [10, 0, 4, 5, 0]  # 19 lines written, each counted once
    assert [p["status_5xx"] for p in points] == [2, 0, 0, 2, 0]
    assert [p["status_4xx"] for p in points] == [1, 0, 0, 0, 0]
    assert [p["php_fatals"] for p in points] == [1, 0, 0, 0, 0]
    assert points[0]["top_failing"] == [["/checkout", 2], ["/missing.png", 1]]
    assert (points[0]["rate_5xx"], points[0]["rate_4xx"], points[0]["slow"]) == (0.2, 0.1, None)
    assert (points[1]["rate_5xx"], points[1]["top_failing"]) == (None, [])
    assert len({p["run_id"] for p in points}) == 5
    _no_change(shop.run(steps))


def test_first_scan_starts_at_the_end_and_a_missing_log_is_reported(shop: Shop) -> None:
    log = shop.path / "logs" / "access.log"
    log.write_text(ERR_LINE * 50)
    steps = [{"id": "logs", "action": "logs.scan", "with": {"access_log": [str(log), "logs/none.log"]}}]
    first = _step(shop.run(steps), "logs")
    assert first.reason == (
        f"0 requests; 0 new PHP fatal errors; 0 bytes read; {log}: first scan, starts at byte {len(ERR_LINE) * 50}; "
        f"{shop.path}/logs/none.log: not found"
    )
    with log.open("a") as fh:
        fh.write(OK_LINE * 3)
    second = _step(shop.run(steps), "logs")
    assert second.data["requests"] == 3 and second.status is StepStatus.UNCHANGED
    _no_change(shop.run(steps))


def test_the_byte_cap_leaves_the_rest_for_the_next_scan(shop: Shop) -> None:
    log = shop.path / "logs" / "access.log"
    log.write_text(OK_LINE * 40)  # 40 lines, about 4 KiB
    steps = [
        {
            "id": "logs",
            "action": "logs.scan",
            "with": {"access_log": str(log), "first_scan": "start", "max_bytes": 1024},
        }
    ]
    per_scan = 1024 // len(OK_LINE)
    expected = [per_scan] * (40 // per_scan) + ([40 % per_scan] if 40 % per_scan else []) + [0]
    got = [_step(shop.run(steps), "logs") for _ in expected]
    assert [g.data["requests"] for g in got] == expected
    capped = "capped at 1024 bytes: the rest is read by the next scan"
    assert [capped in g.reason for g in got] == [len(OK_LINE) * (40 - per_scan * i) > 1024 for i in range(len(got))]
    assert shop.points("logs-offsets")[-1]["logs"][str(log)]["offset"] == len(OK_LINE) * 40


# ----------------------------------------------------------------------------- real nginx + php-fpm
class StatusStack(WebStack):
    """A WebStack whose pool has two children and a status page on its own listener."""

    status_port = 0

    def _php_conf_text(self) -> str:
        if not self.status_port:
            self.status_port = free_port()
        text = super()._php_conf_text()
        for old, new in (
            ("pm.max_children = 8", "pm.max_children = 2"),
            ("pm.max_spare_servers = 3", "pm.max_spare_servers = 2"),
        ):
            text = text.replace(old, new)
        return text + f"pm.status_path = /fpm-status\npm.status_listen = 127.0.0.1:{self.status_port}\n"

    def add_status(self, port: int) -> str:
        """A server block on ``port`` serving the status page; its URL."""
        conf = self.nginx_dir / "sites" / "zz-fpm-status.conf"
        conf.write_text(
            f"server {{\n  listen 127.0.0.1:{port};\n  location = /fpm-status {{\n"
            f"    include {self.nginx_dir / 'fastcgi_params'};\n    fastcgi_param SCRIPT_FILENAME /fpm-status;\n"
            f"    fastcgi_pass 127.0.0.1:{self.status_port};\n  }}\n}}\n"
        )
        self.reload_nginx()
        return f"http://127.0.0.1:{port}/fpm-status"


@pytest.fixture(scope="module")
def status_stack() -> Iterator[StatusStack]:
    base = Path(tempfile.mkdtemp(prefix="maintkit-lab-watch-", dir="/tmp"))
    base.chmod(0o755)
    try:
        with StatusStack(base) as stack:
            yield stack
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_real_nginx_requests_are_counted(shop: Shop, status_stack: StatusStack) -> None:
    name = "watch-" + uuid.uuid4().hex[:8]
    root = status_stack.make_site_dir(name)
    (root / "boom.php").write_text("<?php http_response_code(500); echo 'boom';\n")
    (root / "ok.php").write_text("<?php echo 'ok';\n")
    site = status_stack.add_site(name, str(root))
    steps = [
        {
            "id": "logs",
            "action": "logs.scan",
            "with": {"access_log": str(status_stack.nginx_access_log), "min_requests": 10},
        }
    ]
    _step(shop.run(steps), "logs")  # the first scan starts at the end of the shared log
    codes = [
        requests.get(f"{site.url}/{page}", timeout=10).status_code for page in ["boom.php?a=1"] * 3 + ["ok.php"] * 7
    ]
    assert codes == [500] * 3 + [200] * 7
    got = _step(shop.run(steps), "logs")
    assert got.error == "check: 5xx rate 30.0% (3 of 10) over 5.0%"
    assert shop.points("logs")[-1]["top_failing"] == [["/boom.php", 3]]


# ----------------------------------------------------------------------------- host.health
def _df(path: Path) -> tuple[str, int]:
    out = subprocess.run(["df", "-P", "--", str(path)], capture_output=True, text=True, check=True).stdout
    fields = out.splitlines()[-1].split()
    return fields[-1], int(fields[-2].rstrip("%"))


def test_host_health_reports_df_and_fails_at_a_zero_threshold(shop: Shop) -> None:
    steps: list[dict[str, Any]] = [{"id": "host", "action": "host.health", "with": SHARED_LOAD}]
    first = shop.run(steps)
    host = _step(first, "host")
    assert host.status is StepStatus.UNCHANGED, host.error
    mount, used = _df(shop.path)
    point = shop.points("host")[-1]
    assert [d["path"] for d in point["disk"]] == [str(shop.path)]  # the backups folder does not exist
    assert point["disk"][0]["mount"] == mount and abs(point["disk"][0]["used_pct"] - used) <= 1
    assert point["cpus"] == int(subprocess.run(["nproc"], capture_output=True, text=True).stdout)
    assert (point["fpm"], point["db_ok"], point["status"]) == (None, None, "ok")
    assert host.reason.endswith(f"; path not found: {shop.path}/.maint/backups")
    _no_change(shop.run(steps))

    steps[0]["with"] = {**SHARED_LOAD, "disk_pct": {"fail": 0}, "paths": ["."]}
    failed = _step(shop.run(steps), "host")
    got = shop.points("host")[-1]["disk"][0]["used_pct"]
    assert failed.error == f"check: disk {shop.path} ({mount}): {got}% used (fail at 0%)"
    assert shop.points("host")[-1]["status"] == "fail"


def test_host_health_reads_a_saturated_php_fpm_pool(shop: Shop, status_stack: StatusStack) -> None:
    name = "hold-" + uuid.uuid4().hex[:8]
    root = status_stack.make_site_dir(name)
    gate = root / "gate"
    (root / "hold.php").write_text(f"<?php while (!file_exists('{gate}')) {{ usleep(20000); }} echo 'released';\n")
    site = status_stack.add_site(name, str(root))
    url = status_stack.add_status(free_port())
    steps = [{"id": "host", "action": "host.health", "with": {**SHARED_LOAD, "fpm_status_url": url, "paths": ["."]}}]
    calm = _step(shop.run(steps), "host")
    assert calm.status is StepStatus.UNCHANGED, calm.error
    before = shop.points("host")[-1]["fpm"]
    assert before["total"] == 2 and before["listen_queue"] == 0

    answers: list[int] = []

    def hold() -> None:
        answers.append(requests.get(f"{site.url}/hold.php", timeout=60).status_code)

    held = [threading.Thread(target=hold) for _ in range(3)]
    for thread in held:
        thread.start()
    try:
        wait_until(lambda: _saturated(url, before["max_children_reached"]), "the pool reached pm.max_children")
        busy = _step(shop.run(steps), "host")
    finally:
        gate.touch()
        for thread in held:
            thread.join(60)
    fpm = shop.points("host")[-1]["fpm"]
    grew = fpm["max_children_reached"] - before["max_children_reached"]
    assert grew >= 1 and fpm["active"] == 2 and fpm["listen_queue"] >= 1
    assert busy.error == f"check: php-fpm reached pm.max_children {grew} more time(s) since the last check"
    assert f"php-fpm listen queue {fpm['listen_queue']} (warn at 1)" in busy.data["warnings"]
    assert answers == [200, 200, 200]
    calm_again = _step(shop.run(steps), "host")  # the counter did not grow since: no failure
    assert calm_again.status is StepStatus.UNCHANGED, calm_again.error


def _saturated(url: str, reached_before: int) -> bool:
    status = _status(url)
    return bool(status["max children reached"] > reached_before and status["listen queue"] >= 1)


def _status(url: str) -> dict[str, Any]:
    data: dict[str, Any] = requests.get(url + "?json", timeout=5).json()
    return data


def test_host_health_checks_the_database_with_its_option_file(shop: Shop, mariadb: MariaDB) -> None:
    db = "watch_" + uuid.uuid4().hex[:8]
    user, password = mariadb.create_database(db)
    try:
        cnf = shop.path / "db.cnf"
        cnf.write_text(mariadb.my_cnf_text(user, password))
        cnf.chmod(0o600)
        chown_login_user(cnf)
        steps = [{"id": "host", "action": "host.health", "with": {**SHARED_LOAD, "database": True, "paths": ["."]}}]
        site = runs.one_site(shop.host.env(shop.path), vars={"db_defaults_file": str(cnf)})
        assert runs.write_inventory(shop.inventory.parent, site) == shop.inventory
        ok = _step(shop.run(steps), "host")
        assert ok.status is StepStatus.UNCHANGED, ok.error
        point = shop.points("host")[-1]
        assert point["db_ok"] is True
        datadir = mariadb.sql("SELECT @@datadir").strip().rstrip("/")
        assert [d["path"] for d in point["disk"]] == [str(shop.path), datadir]
        assert ok.reason.endswith("database answers")

        cnf.write_text(mariadb.my_cnf_text(user, "wrong-password"))
        failed = _step(shop.run(steps), "host")
        assert failed.error is not None and failed.error.startswith(
            "check: database does not answer: ERROR 1045 (28000)"
        )
        assert shop.points("host")[-1]["db_ok"] is False
    finally:
        mariadb.drop_database(db)
