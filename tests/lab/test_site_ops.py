"""Site operations against real servers: cache.clear, maintenance.*, http.check, service.*.

The actions run through the Runner over SSH as the ``deploy`` user (with sudo where the
operation needs root) against a private nginx + php-fpm whose workers run as ``deploy``
(so ``deploy`` owns the fastcgi cache files), the lab Redis, and a loopback CDN API.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from maintkit.actions.maintenance import maintenance_snippet as action_snippet
from maintkit.inventory import Inventory, load_inventory
from maintkit.playbook import load_playbook, playbook_from_text
from maintkit.results import RunResult, StepStatus
from maintkit.runner import Runner
from tests import runs
from tests.gates import wait_until
from tests.lab.redisd import RedisServer
from tests.lab.sshd import LabHost, SshLab
from tests.lab.web import SiteHandle, WebStack
from tests.lab.web import maintenance_snippet as lab_snippet
from tests.siteops_helpers import SHOP_FLOW, cdn_api, read_events, run_folder_text, write_shop

pytestmark = pytest.mark.lab

ROOT = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def lab_host(ssh_lab: SshLab) -> LabHost:
    """The SSH host the actions run on (as deploy; the lab's deploy user has sudo)."""
    return ssh_lab.hosts[0]


@pytest.fixture(scope="module")
def ops_web(lab_host: LabHost) -> Iterator[WebStack]:
    """nginx + php-fpm whose workers run as deploy (deploy owns cache files and sessions)."""
    base = Path(tempfile.mkdtemp(prefix="maintkit-lab-siteops-", dir="/tmp"))
    base.chmod(0o755)
    try:
        with WebStack(base, user="deploy") as stack:
            yield stack
    finally:
        if os.environ.get("MAINTKIT_LAB_KEEP") != "1":
            shutil.rmtree(base, ignore_errors=True)


@dataclass
class Shop:
    """One lab shop: its directory (env path), nginx site, and flag file."""

    path: Path
    site: SiteHandle

    @property
    def url(self) -> str:
        return self.site.url

    @property
    def flag(self) -> Path:
        return self.path / ".maint" / "maintenance.flag"


@pytest.fixture()
def make_shop(ops_web: WebStack) -> Callable[..., Shop]:
    """Create a shop owned by deploy: ``make_shop(fastcgi_cache=False)``."""

    def make(*, fastcgi_cache: bool = False) -> Shop:
        name = f"shop-{uuid.uuid4().hex[:8]}"
        path = ops_web.make_site_dir(name, owner="deploy")
        write_shop(path, owner="deploy")
        site = ops_web.add_site(
            name,
            f"{path}/current/public",
            fastcgi_cache=fastcgi_cache,
            maintenance_flag=f"{path}/.maint/maintenance.flag",
        )
        return Shop(path, site)

    return make


def write_inventory(
    tmp_path: Path, lab_host: LabHost, shop_path: Path | str, url: str, *, platform: str = "generic", **env: Any
) -> Inventory:
    """An inventory with one site (``shop``) whose production is ``shop_path`` on the lab host."""
    sites = runs.one_site(lab_host.env(shop_path, url=url, **env), platform=platform)
    return load_inventory(runs.write_inventory(tmp_path, sites, unique=True))


def playbook(steps: list[dict[str, Any]], on_failure: str = "rollback") -> Any:
    """A one-stage playbook on production."""
    text = yaml.safe_dump(
        {"name": "site-ops", "on_failure": on_failure, "stages": [{"env": "production", "steps": steps}]}
    )
    return playbook_from_text(text)


def run(
    pb: Any,
    inv: Inventory,
    tmp_path: Path,
    *,
    environ: dict[str, str] | None = None,
    check: bool = False,
    on_event: Callable[[dict[str, Any]], None] | None = None,
) -> RunResult:
    """Run a playbook with its own state dir under tmp_path."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **(environ or {})}
    return runs.run(pb, inv, tmp_path / "state", environ=env, check=check, on_event=on_event)


def errors(result: RunResult) -> str:
    """Every error of a one-site run, for assertion messages."""
    steps = "; ".join(f"{s.step}: {s.error}" for s in result.sites[0].steps if s.error)
    return f"{steps} | site: {result.sites[0].error}"


def step(result: RunResult, step_id: str) -> Any:
    """The StepResult of ``step_id`` in a one-site run."""
    return next(s for s in result.sites[0].steps if s.step == step_id)


# ---------------------------------------------------------------------------- redis


def _redis_fill(redis: RedisServer, db: int, keys: dict[str, str]) -> None:
    for key, value in keys.items():
        assert redis.cli("-n", str(db), "SET", key, value) == "OK"


def _redis_keys(redis: RedisServer, db: int) -> set[str]:
    out = redis.cli("-n", str(db), "--scan")
    return set(out.split()) if out else set()


def test_redis_flush_with_password_then_unchanged(
    tmp_path: Path, lab_host: LabHost, make_shop: Callable[..., Shop], redis_server: RedisServer
) -> None:
    shop = make_shop()
    _redis_fill(redis_server, 3, {"obj:1": "a", "obj:2": "b", "obj:3": "c"})
    _redis_fill(redis_server, 4, {"page:/": "x", "page:/cart/": "y", "session:42": "keep"})
    inv = write_inventory(tmp_path, lab_host, shop.path, shop.url)
    pb = playbook(
        [
            {
                "id": "clear",
                "action": "cache.clear",
                "with": {
                    "targets": ["redis"],
                    "redis": [
                        {"port": redis_server.port, "db": 3},
                        {"port": redis_server.port, "db": 4, "pattern": "page:*"},
                    ],
                    "redis_password": "{{ secrets.LAB_REDIS_PASSWORD }}",
                },
            }
        ]
    )
    environ = {"LAB_REDIS_PASSWORD": redis_server.password}

    first = run(pb, inv, tmp_path, environ=environ)
    assert first.ok, errors(first)
    assert first.changed == 1
    assert _redis_keys(redis_server, 3) == set()
    assert _redis_keys(redis_server, 4) == {"session:42"}  # only the pattern's keys went
    cleared = step(first, "clear").data["cleared"]
    assert [c["keys"] for c in cleared] == [3, 2]

    second = run(pb, inv, tmp_path, environ=environ)
    assert second.ok and second.changed == 0
    assert step(second, "clear").status is StepStatus.UNCHANGED
    assert "empty" in step(second, "clear").reason

    for result in (first, second):
        assert redis_server.password not in run_folder_text(result.run_dir or "")


def test_redis_wrong_password_is_a_clear_failure(
    tmp_path: Path, lab_host: LabHost, make_shop: Callable[..., Shop], redis_server: RedisServer
) -> None:
    shop = make_shop()
    _redis_fill(redis_server, 5, {"obj:1": "a"})
    inv = write_inventory(tmp_path, lab_host, shop.path, shop.url)
    wrong = "not-the-password-" + uuid.uuid4().hex[:6]
    pb = playbook(
        [
            {
                "id": "clear",
                "action": "cache.clear",
                "with": {"targets": ["redis"], "redis": {"port": redis_server.port, "db": 5, "password": wrong}},
            }
        ]
    )
    result = run(pb, inv, tmp_path)
    assert not result.ok
    failed = step(result, "clear")
    assert failed.status is StepStatus.FAILED
    assert "authentication failed" in (failed.error or "")
    assert _redis_keys(redis_server, 5) == {"obj:1"}  # nothing was flushed
    assert wrong not in run_folder_text(result.run_dir or "")


# ---------------------------------------------------------------------------- nginx cache directory


def test_fastcgi_cache_directory_purged_and_idempotent(
    tmp_path: Path, lab_host: LabHost, make_shop: Callable[..., Shop]
) -> None:
    shop = make_shop(fastcgi_cache=True)
    assert shop.site.cache_dir is not None
    for path in ("/", "/cart/"):
        requests.get(shop.url + path, timeout=5)
        assert requests.get(shop.url + path, timeout=5).headers["X-Cache"] == "HIT"
    inv = write_inventory(tmp_path, lab_host, shop.path, shop.url)
    pb = playbook(
        [
            {
                "id": "clear",
                "action": "cache.clear",
                "with": {"targets": ["directory"], "directory": str(shop.site.cache_dir)},
            }
        ]
    )

    plan = run(pb, inv, tmp_path, check=True)
    assert step(plan, "clear").status is StepStatus.WOULD_CHANGE
    assert "2 files" in step(plan, "clear").reason
    assert requests.get(shop.url + "/", timeout=5).headers["X-Cache"] == "HIT"  # plan changed nothing

    first = run(pb, inv, tmp_path)
    assert first.ok, errors(first)
    assert step(first, "clear").status is StepStatus.CHANGED
    assert step(first, "clear").data["cleared"][0]["files"] == 2
    assert not any(p.is_file() for p in shop.site.cache_dir.rglob("*"))

    second = run(pb, inv, tmp_path)  # nothing requested in between: the cache is still empty
    assert second.ok and second.changed == 0

    assert requests.get(shop.url + "/", timeout=5).headers["X-Cache"] == "MISS"
    assert requests.get(shop.url + "/", timeout=5).headers["X-Cache"] == "HIT"


def test_clear_cache_playbook_redis_empty_reports_unchanged(
    tmp_path: Path, lab_host: LabHost, make_shop: Callable[..., Shop], redis_server: RedisServer
) -> None:
    shop = make_shop()
    inv = write_inventory(
        tmp_path,
        lab_host,
        shop.path,
        shop.url,
        vars={"cache_targets": ["redis"], "cache_redis": {"port": redis_server.port, "db": 6}},
    )
    pb = load_playbook("clear-cache")
    environ = {"REDIS_PASSWORD": redis_server.password}
    _redis_fill(redis_server, 6, {"k": "v"})

    first = run(pb, inv, tmp_path, environ=environ)
    assert first.ok, errors(first)
    assert step(first, "clear").status is StepStatus.CHANGED
    assert step(first, "smoke").status is StepStatus.UNCHANGED  # the home page answered

    second = run(pb, inv, tmp_path, environ=environ)
    assert second.ok and second.changed == 0
    assert redis_server.password not in run_folder_text(second.run_dir or "")


# ---------------------------------------------------------------------------- maintenance


class Observer:
    """Fetches the shop when a given step event arrives (the runner calls on_event in its thread)."""

    def __init__(self, url: str, event: str, step_id: str) -> None:
        self.url, self.event, self.step_id = url, event, step_id
        self.seen: list[tuple[int, str | None]] = []

    def __call__(self, record: dict[str, Any]) -> None:
        if record.get("event") == self.event and record.get("step") == self.step_id:
            resp = requests.get(self.url + "/cart/", timeout=5)
            self.seen.append((resp.status_code, resp.headers.get("Retry-After")))


def test_maintenance_503_during_run_200_after(
    tmp_path: Path, lab_host: LabHost, make_shop: Callable[..., Shop]
) -> None:
    shop = make_shop()
    inv = write_inventory(tmp_path, lab_host, shop.path, shop.url)
    pb = playbook(
        [
            {"id": "on", "action": "maintenance.enable"},
            {"id": "work", "action": "command", "with": {"argv": ["true"]}},
            {"id": "off", "action": "maintenance.disable"},
            {"id": "smoke", "action": "http.check", "with": {"paths": ["/", "/cart/"], "retries": 0}},
        ]
    )
    during = Observer(shop.url, "step.applied", "work")
    plan = run(pb, inv, tmp_path, check=True)
    assert step(plan, "on").status is StepStatus.WOULD_CHANGE
    assert step(plan, "off").status is StepStatus.WOULD_CHANGE  # honest: it switches off what "on" switches on
    assert "step on" in step(plan, "off").reason
    assert step(plan, "smoke").status is StepStatus.UNKNOWN

    result = run(pb, inv, tmp_path, on_event=during)
    assert result.ok, errors(result)
    assert during.seen == [(503, "300")]
    assert requests.get(shop.url + "/cart/", timeout=5).status_code == 200
    assert not shop.flag.exists()
    assert [s.status for s in result.sites[0].steps] == [
        StepStatus.CHANGED,
        StepStatus.CHANGED,
        StepStatus.CHANGED,
        StepStatus.UNCHANGED,
    ]


@pytest.mark.parametrize("keep", [False, True])
def test_maintenance_switched_off_when_a_later_step_fails(
    tmp_path: Path, lab_host: LabHost, make_shop: Callable[..., Shop], keep: bool
) -> None:
    shop = make_shop()
    inv = write_inventory(tmp_path, lab_host, shop.path, shop.url)
    pb = playbook(
        [
            {"id": "on", "action": "maintenance.enable", "with": {"keep": keep}},
            {"id": "broken", "action": "command", "with": {"argv": ["sh", "-c", "echo update failed >&2; exit 3"]}},
        ]
    )
    during = Observer(shop.url, "step.failed", "broken")
    result = run(pb, inv, tmp_path, on_event=during)
    assert not result.ok
    assert during.seen == [(503, "300")]  # maintenance was on when the step failed
    assert requests.get(shop.url + "/cart/", timeout=5).status_code == 200
    assert not shop.flag.exists()
    assert step(result, "on").status is StepStatus.ROLLED_BACK


def test_maintenance_switched_off_after_an_interrupt(
    tmp_path: Path, lab_host: LabHost, make_shop: Callable[..., Shop]
) -> None:
    shop = make_shop()
    inv = write_inventory(tmp_path, lab_host, shop.path, shop.url)
    pb = playbook(
        [
            {"id": "on", "action": "maintenance.enable", "with": {"keep": True}},
            {"id": "later", "action": "command", "with": {"argv": ["true"]}},
        ]
    )
    seen: list[int] = []

    def interrupt(record: dict[str, Any]) -> None:  # what SIGINT/SIGTERM do, right after "on"
        if record.get("event") == "step.verified" and record.get("step") == "on":
            seen.append(requests.get(shop.url + "/", timeout=5).status_code)
            runner.request_stop()

    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    runner = Runner(pb, inv, state_dir=tmp_path / "state", environ=env, on_event=interrupt, handle_signals=False)
    result = runner.run()
    assert result.status == "interrupted" and result.exit_code == 3
    assert seen == [503]
    assert [s.step for s in result.sites[0].steps] == ["on"]  # "later" never ran
    assert requests.get(shop.url + "/", timeout=5).status_code == 200  # keep applies to success only
    assert not shop.flag.exists()


def test_maintenance_keep_stays_on_after_success(
    tmp_path: Path, lab_host: LabHost, make_shop: Callable[..., Shop]
) -> None:
    shop = make_shop()
    inv = write_inventory(tmp_path, lab_host, shop.path, shop.url)
    keep = playbook([{"id": "on", "action": "maintenance.enable", "with": {"keep": True}}])
    assert run(keep, inv, tmp_path).ok
    resp = requests.get(shop.url + "/", timeout=5)
    assert (resp.status_code, resp.headers.get("Retry-After")) == (503, "300")

    again = run(keep, inv, tmp_path)
    assert again.ok and again.changed == 0  # already on: unchanged

    off = playbook([{"id": "off", "action": "maintenance.disable"}])
    assert run(off, inv, tmp_path).changed == 1
    assert requests.get(shop.url + "/", timeout=5).status_code == 200
    assert run(off, inv, tmp_path).changed == 0


def test_maintenance_disable_rolled_back_switches_on_again(
    tmp_path: Path, lab_host: LabHost, make_shop: Callable[..., Shop]
) -> None:
    shop = make_shop()
    shop.flag.parent.mkdir(exist_ok=True)
    shop.flag.write_text("set by hand\n")
    shutil.chown(shop.flag.parent, "deploy", "deploy")
    inv = write_inventory(tmp_path, lab_host, shop.path, shop.url)
    pb = playbook(
        [
            {"id": "off", "action": "maintenance.disable"},
            {"id": "fails", "action": "command", "with": {"argv": ["false"]}},
        ]
    )
    result = run(pb, inv, tmp_path)
    assert not result.ok
    assert step(result, "off").status is StepStatus.ROLLED_BACK
    assert shop.flag.read_text() == "set by hand\n"
    assert requests.get(shop.url + "/", timeout=5).status_code == 503


def test_maintenance_snippet_is_the_same_in_lab_action_and_docs() -> None:
    flag = "/var/www/shop-a/.maint/maintenance.flag"
    assert action_snippet(flag) == lab_snippet(flag)
    assert action_snippet(flag) in (ROOT / "docs" / "actions-site.md").read_text()


# ---------------------------------------------------------------------------- http.check


def smoke(**params: Any) -> dict[str, Any]:
    return {"id": "smoke", "action": "http.check", "with": {"retries": 0, **params}}


def test_http_check_failures_name_url_and_reason(
    tmp_path: Path, lab_host: LabHost, make_shop: Callable[..., Shop]
) -> None:
    shop = make_shop()
    inv = write_inventory(tmp_path, lab_host, shop.path, shop.url)

    (shop.path / "broken-cart").touch()
    status = run(playbook([smoke(paths=["/", "/cart/"])]), inv, tmp_path)
    error = step(status, "smoke").error or ""
    assert f"GET {shop.url}/cart/: status 500 (expected 200)" in error
    assert f"{shop.url}/:" not in error  # the home page was fine

    regex = run(
        playbook([smoke(paths=["/cart/"], status=[200, 500], must_not_match="Fatal error|Warning:")]), inv, tmp_path
    )
    assert f"{shop.url}/cart/: body matches 'Fatal error|Warning:'" in (step(regex, "smoke").error or "")
    (shop.path / "broken-cart").unlink()

    must = run(playbook([smoke(paths=["/cart/"], must_match="Checkout complete")]), inv, tmp_path)
    assert "body does not match 'Checkout complete'" in (step(must, "smoke").error or "")

    slow = run(playbook([smoke(paths=["/slow.php"], max_latency_ms=50)]), inv, tmp_path)
    error = step(slow, "smoke").error or ""
    assert f"{shop.url}/slow.php: latency" in error and "> 50 ms" in error

    refused = run(playbook([smoke(paths=["http://127.0.0.1:9/"])]), inv, tmp_path)
    assert "http://127.0.0.1:9/: connection failed: Connection refused" in (step(refused, "smoke").error or "")

    for result in (status, regex, must, slow, refused):
        assert step(result, "smoke").status is StepStatus.FAILED
        requests_logged = [e for e in read_events(result.run_dir or "") if e["event"] == "http.request"]
        assert requests_logged and all(
            {"url", "method", "status", "latency_ms", "ok"} <= set(e) for e in requests_logged
        )


def test_http_check_retries_then_passes_and_records_latency(
    tmp_path: Path, lab_host: LabHost, make_shop: Callable[..., Shop]
) -> None:
    shop = make_shop()
    inv = write_inventory(tmp_path, lab_host, shop.path, shop.url)
    ok = run(playbook([smoke(paths=["/", "/cart/", "/product.php"], must_not_match="Fatal error")]), inv, tmp_path)
    assert ok.ok and ok.changed == 0
    data = step(ok, "smoke").data
    assert [r["status"] for r in data["requests"]] == [200, 200, 200]
    assert data["latency"]["count"] == 3 and data["latency"]["median_ms"] > 0
    events = [e for e in read_events(ok.run_dir or "") if e["event"] == "http.request"]
    assert [e["url"] for e in events] == [shop.url + p for p in ("/", "/cart/", "/product.php")]

    (shop.path / "broken-cart").touch()
    retried = run(playbook([smoke(paths=["/cart/"], retries=2, backoff_s=0)]), inv, tmp_path)
    attempts = [r["attempt"] for r in step(retried, "smoke").data["requests"]]
    assert attempts == [1, 2, 3]
    (shop.path / "broken-cart").unlink()


def test_commerce_flow_passes_and_fails_when_cart_breaks(
    tmp_path: Path, lab_host: LabHost, make_shop: Callable[..., Shop]
) -> None:
    shop = make_shop()
    inv = write_inventory(tmp_path, lab_host, shop.path, shop.url)
    marker = shop.path / "marker.txt"
    steps = [
        {"id": "change", "action": "file.content", "with": {"path": str(marker), "content": "new\n"}},
        smoke(flow=SHOP_FLOW, must_not_match="Fatal error"),
    ]

    good = run(playbook(steps), inv, tmp_path)
    assert good.ok, errors(good)
    flow_steps = [r["flow_step"] for r in step(good, "smoke").data["requests"]]
    assert flow_steps == ["1: product", "2: add to cart", "3: cart", "4: checkout"]
    assert marker.read_text() == "new\n"

    marker.write_text("old\n")
    (shop.path / "broken-cart").touch()
    bad = run(playbook(steps), inv, tmp_path)
    assert not bad.ok
    error = step(bad, "smoke").error or ""
    assert "flow step 2: add to cart" in error and "status 500" in error and f"redirected to {shop.url}/cart/" in error
    assert step(bad, "change").status is StepStatus.ROLLED_BACK
    assert marker.read_text() == "old\n"  # the smoke check's failure rolled the change back


def test_flow_placeholder_and_capture_errors(tmp_path: Path, lab_host: LabHost, make_shop: Callable[..., Shop]) -> None:
    shop = make_shop()
    inv = write_inventory(tmp_path, lab_host, shop.path, shop.url)
    typo = [dict(SHOP_FLOW[0]), {**SHOP_FLOW[1], "data": {"product": "42", "nonce": "{nonse}"}}]
    result = run(playbook([smoke(flow=typo)]), inv, tmp_path)
    assert "unknown placeholder {nonse} (captured so far: nonce)" in (step(result, "smoke").error or "")

    missing = [{"path": "/", "capture": {"token": "csrf=([a-z]+)"}}]
    result = run(playbook([smoke(flow=missing)]), inv, tmp_path)
    assert "capture of 'token' failed: 'csrf=([a-z]+)' not found" in (step(result, "smoke").error or "")


def test_plan_mode_does_not_run_a_posting_flow(
    tmp_path: Path, lab_host: LabHost, make_shop: Callable[..., Shop]
) -> None:
    shop = make_shop()
    inv = write_inventory(tmp_path, lab_host, shop.path, shop.url)
    plan = run(playbook([smoke(flow=SHOP_FLOW)]), inv, tmp_path, check=True)
    res = step(plan, "smoke")
    assert res.status is StepStatus.UNKNOWN
    assert "would run a flow of 4 requests (1 POST)" in res.reason
    assert not [e for e in read_events(plan.run_dir or "") if e["event"] == "http.request"]

    gets = run(playbook([smoke(paths=["/"])]), inv, tmp_path, check=True)
    assert step(gets, "smoke").status is StepStatus.UNCHANGED  # GETs are read-only: checked for real


def test_http_check_resolve_keeps_host_name_and_cookies(
    tmp_path: Path, lab_host: LabHost, make_shop: Callable[..., Shop]
) -> None:
    shop = make_shop()
    named = f"http://shop.invalid:{shop.site.port}"
    inv = write_inventory(tmp_path, lab_host, shop.path, named)
    result = run(playbook([smoke(flow=SHOP_FLOW, resolve="127.0.0.1")]), inv, tmp_path)
    assert result.ok, errors(result)
    assert step(result, "smoke").data["requests"][0]["url"] == named + "/product.php"


def test_secret_header_never_logged(tmp_path: Path, lab_host: LabHost, make_shop: Callable[..., Shop]) -> None:
    shop = make_shop()
    inv = write_inventory(tmp_path, lab_host, shop.path, shop.url)
    token = "hdr-" + uuid.uuid4().hex
    pb = playbook([smoke(paths=["/nope-404/"], status=201, headers={"Authorization": "Bearer {{ secrets.LAB_HDR }}"})])
    result = run(pb, inv, tmp_path, environ={"LAB_HDR": token})
    assert not result.ok
    assert token not in run_folder_text(result.run_dir or "")


# ---------------------------------------------------------------------------- CDN


def test_cdn_purge_against_loopback_api(tmp_path: Path, lab_host: LabHost, make_shop: Callable[..., Shop]) -> None:
    shop = make_shop()
    inv = write_inventory(tmp_path, lab_host, shop.path, shop.url)
    token, zone = "cf-" + uuid.uuid4().hex, "zone" + uuid.uuid4().hex[:8]
    with cdn_api(token, zone) as api:
        cdn = {"zone_id": zone, "token": "{{ secrets.LAB_CF_TOKEN }}", "api_base": api.url}
        everything = playbook([{"id": "cdn", "action": "cache.clear", "with": {"targets": ["cdn"], "cdn": cdn}}])
        result = run(everything, inv, tmp_path, environ={"LAB_CF_TOKEN": token})
        assert result.ok, errors(result)
        some = playbook(
            [
                {
                    "id": "cdn",
                    "action": "cache.clear",
                    "with": {"targets": ["cdn"], "cdn": {**cdn, "urls": ["/", "/cart/"]}},
                }
            ]
        )
        listed = run(some, inv, tmp_path, environ={"LAB_CF_TOKEN": token})
        assert listed.ok
        wrong = run(everything, inv, tmp_path, environ={"LAB_CF_TOKEN": "cf-wrong-token"})

    assert [r["auth_ok"] for r in api.requests] == [True, True, False]
    assert api.requests[0]["body"] == {"purge_everything": True}
    assert api.requests[1]["body"] == {"files": [shop.url + "/", shop.url + "/cart/"]}
    assert api.requests[0]["path"] == f"/client/v4/zones/{zone}/purge_cache"
    error = step(wrong, "cdn").error or ""
    assert "CDN purge refused" in error and "HTTP 403" in error and "Authentication error" in error
    for r in (result, listed, wrong):
        text = run_folder_text(r.run_dir or "")
        assert token not in text and "cf-wrong-token" not in text


# ---------------------------------------------------------------------------- opcache / service


def _fpm_ready_count(stack: WebStack) -> int:
    return stack.php_fpm_log.read_text(errors="replace").count("ready to handle connections")


def test_opcache_reload_signals_php_fpm_master_with_become(
    tmp_path: Path, lab_host: LabHost, make_shop: Callable[..., Shop], ops_web: WebStack
) -> None:
    shop = make_shop()
    pidfile = str(ops_web.php_dir / "php-fpm.pid")
    inv = write_inventory(tmp_path, lab_host, shop.path, shop.url)
    before = _fpm_ready_count(ops_web)
    pb = playbook(
        [
            {
                "id": "opcache",
                "action": "cache.clear",
                "with": {"targets": ["opcache"], "opcache": {"pidfile": pidfile, "sudo": True}},
            },
            smoke(paths=["/"], retries=5, backoff_s=0.2),
        ]
    )
    result = run(pb, inv, tmp_path)
    assert result.ok, errors(result)
    wait_until(lambda: _fpm_ready_count(ops_web) > before, "php-fpm reloaded", 15.0)
    assert requests.get(shop.url + "/", timeout=5).status_code == 200

    denied = playbook(
        [
            {
                "id": "opcache",
                "action": "cache.clear",
                "with": {"targets": ["opcache"], "opcache": {"pidfile": pidfile, "sudo": False}},
            }
        ]
    )
    failed = run(denied, inv, tmp_path)  # deploy may not signal root's php-fpm master
    assert "Operation not permitted" in (step(failed, "opcache").error or "")


def test_service_reload_only_if_changed(
    tmp_path: Path, lab_host: LabHost, make_shop: Callable[..., Shop], ops_web: WebStack
) -> None:
    shop = make_shop()
    pidfile = str(ops_web.php_dir / "php-fpm.pid")
    target = shop.path / "conf.txt"
    inv = write_inventory(tmp_path, lab_host, shop.path, shop.url, become=True)
    pb = playbook(
        [
            {"id": "conf", "action": "file.content", "with": {"path": str(target), "content": "v1\n", "mode": "0644"}},
            {
                "id": "reload",
                "action": "service.reload",
                "with": {"name": "lab-php-fpm", "signal": "USR2", "pidfile": pidfile, "only_if_changed": ["conf"]},
            },
        ]
    )
    plan = run(pb, inv, tmp_path, check=True)
    assert step(plan, "reload").status is StepStatus.WOULD_CHANGE

    before = _fpm_ready_count(ops_web)
    first = run(pb, inv, tmp_path)
    assert first.ok, errors(first)
    assert step(first, "reload").status is StepStatus.CHANGED
    wait_until(lambda: _fpm_ready_count(ops_web) > before, "php-fpm reloaded", 15.0)

    second = run(pb, inv, tmp_path)
    assert second.ok and second.changed == 0
    assert "none of conf changed" in step(second, "reload").reason


def test_service_reload_runs_again_after_stage_rollback(
    tmp_path: Path, lab_host: LabHost, make_shop: Callable[..., Shop]
) -> None:
    shop = make_shop()
    log = shop.path / "reloads.log"
    inv = write_inventory(tmp_path, lab_host, shop.path, shop.url)
    pb = playbook(
        [
            {"id": "reload", "action": "service.reload", "with": {"command": ["sh", "-c", f"echo reload >> {log}"]}},
            {"id": "fails", "action": "command", "with": {"argv": ["false"]}},
        ]
    )
    result = run(pb, inv, tmp_path)
    assert not result.ok
    assert log.read_text() == "reload\nreload\n"  # once in the stage, once after its rollback


# ---------------------------------------------------------------------------- platforms

FAKE_ARTISAN = """<?php
// A stand-in for Laravel's artisan: logs its arguments and keeps the down file like Laravel.
file_put_contents(__DIR__ . '/artisan.log', implode(' ', array_slice($argv, 1)) . "\\n", FILE_APPEND);
$down = __DIR__ . '/storage/framework/down';
switch ($argv[1] ?? '') {
    case 'down': @mkdir(dirname($down), 0755, true); file_put_contents($down, '{}'); break;
    case 'up': if (file_exists(__DIR__ . '/broken')) { fwrite(STDERR, "boot failed\\n"); exit(1); }
               @unlink($down); break;
    case 'optimize:clear': echo "Caches cleared successfully.\\n"; break;
    default: fwrite(STDERR, "unknown command\\n"); exit(1);
}
"""


def test_laravel_maintenance_and_cache_clear(tmp_path: Path, lab_host: LabHost, make_shop: Callable[..., Shop]) -> None:
    shop = make_shop()
    app = shop.path / "releases" / "r1"
    (app / "artisan").write_text(FAKE_ARTISAN)
    shutil.chown(app / "artisan", "deploy", "deploy")
    inv = write_inventory(tmp_path, lab_host, shop.path, shop.url, platform="laravel")
    pb = playbook(
        [
            {"id": "on", "action": "maintenance.enable", "with": {"flag": False, "retry_after": 60}},
            {"id": "clear", "action": "cache.clear", "with": {"targets": ["platform"]}},
            {"id": "off", "action": "maintenance.disable", "with": {"flag": False}},
        ]
    )
    result = run(pb, inv, tmp_path)
    assert result.ok, errors(result)
    assert (app / "artisan.log").read_text() == "down --retry=60\noptimize:clear\nup\n"
    assert not (app / "storage" / "framework" / "down").exists()

    (app / "broken").touch()  # `artisan up` fails on a broken release: the flag file is removed anyway
    failing = playbook(
        [
            {"id": "on", "action": "maintenance.enable", "with": {"flag": False}},
            {"id": "fails", "action": "command", "with": {"argv": ["false"]}},
        ]
    )
    assert not run(failing, inv, tmp_path).ok
    assert not (app / "storage" / "framework" / "down").exists()


def _wordpress(shop: Shop, db_host: str) -> Path:
    wp = shop.path / "releases" / "r1"
    shutil.rmtree(wp / "public")
    subprocess.run(["cp", "-al", "/usr/share/wordpress/.", str(wp)], check=True)
    shutil.chown(wp, "deploy", "deploy")  # cp -a gave the release directory root's ownership
    (wp / "wp-config.php").unlink()
    (wp / "wp-config.php").write_text(
        "<?php\n"
        "define('DB_NAME', 'wp'); define('DB_USER', 'wp'); define('DB_PASSWORD', 'wp');\n"
        f"define('DB_HOST', '{db_host}');\n"
        "$table_prefix = 'wp_';\n"
        "if (!defined('ABSPATH')) define('ABSPATH', __DIR__ . '/');\n"
        "require_once ABSPATH . 'wp-settings.php';\n"
    )
    return wp


def test_wordpress_maintenance_file_and_platform_flush_reach_wordpress(
    tmp_path: Path, lab_host: LabHost, make_shop: Callable[..., Shop], ops_web: WebStack
) -> None:
    shop = make_shop()
    wp = _wordpress(shop, "127.0.0.1:1")  # no database there: WordPress answers 500 unless in maintenance
    name = f"wp-{uuid.uuid4().hex[:6]}"
    site = ops_web.add_site(name, f"{shop.path}/current")
    inv = write_inventory(tmp_path, lab_host, shop.path, site.url, platform="wordpress")
    assert requests.get(site.url + "/", timeout=10).status_code == 500

    on = playbook([{"id": "on", "action": "maintenance.enable", "with": {"flag": False, "keep": True}}])
    enabled = run(on, inv, tmp_path)
    assert enabled.ok, errors(enabled)
    assert (wp / ".maintenance").read_text() == "<?php $upgrading = time(); ?>\n"
    resp = requests.get(site.url + "/", timeout=10)
    assert resp.status_code == 503 and "maintenance" in resp.text.lower()  # WordPress itself says so

    # The PHP flush bypasses maintenance mode for its own process: it gets as far as the database.
    flush = playbook([{"id": "clear", "action": "cache.clear", "with": {"targets": ["platform"]}}])
    failed = run(flush, inv, tmp_path)
    assert "Error establishing a database connection" in (step(failed, "clear").error or "")

    off = playbook([{"id": "off", "action": "maintenance.disable", "with": {"flag": False}}])
    assert run(off, inv, tmp_path).ok
    assert not (wp / ".maintenance").exists()
    assert requests.get(site.url + "/", timeout=10).status_code == 500


def test_http_check_tls_verification_and_resolve(
    tmp_path: Path, lab_host: LabHost, make_shop: Callable[..., Shop], ops_web: WebStack
) -> None:
    shop = make_shop()
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "2", "-subj", "/CN=shop.test", "-addext", "subjectAltName=DNS:shop.test"],
        check=True, capture_output=True,
    )  # fmt: skip
    site = ops_web.add_site(f"tls-{uuid.uuid4().hex[:6]}", f"{shop.path}/current/public", tls=(str(cert), str(key)))
    named = f"https://shop.test:{site.port}"
    inv = write_inventory(tmp_path, lab_host, shop.path, named)

    trusted = run(playbook([smoke(paths=["/"], resolve="127.0.0.1", verify=str(cert))]), inv, tmp_path)
    assert trusted.ok, errors(trusted)  # SNI and the certificate check use shop.test, not the address

    untrusted = run(playbook([smoke(paths=["/"], resolve="127.0.0.1")]), inv, tmp_path)
    assert f"GET {named}/: TLS error: certificate verify failed" in (step(untrusted, "smoke").error or "")

    unchecked = run(playbook([smoke(paths=["/"], resolve="127.0.0.1", verify=False)]), inv, tmp_path)
    assert unchecked.ok, errors(unchecked)


def test_service_reload_config_test_failure_stops_before_reload(
    tmp_path: Path, lab_host: LabHost, make_shop: Callable[..., Shop]
) -> None:
    shop = make_shop()
    log = shop.path / "reloads.log"
    inv = write_inventory(tmp_path, lab_host, shop.path, shop.url)
    reload = {"command": ["sh", "-c", f"echo reload >> {log}"], "again_after_rollback": False}
    bad = playbook(
        [
            {
                "id": "reload",
                "action": "service.reload",
                "with": {**reload, "test": ["sh", "-c", "echo 'syntax error in line 3' >&2; exit 1"]},
            }
        ]
    )
    result = run(bad, inv, tmp_path)
    error = step(result, "reload").error or ""
    assert "configuration test" in error and "syntax error in line 3" in error
    assert not log.exists()

    good = playbook([{"id": "reload", "action": "service.restart", "with": {**reload, "test": ["true"]}}])
    assert run(good, inv, tmp_path).changed == 1
    assert log.read_text() == "reload\n"
