"""cache.clear's OPcache reset through FastCGI, on a php-fpm master shared by staging and production.

One private php-fpm master runs three pools: ``staging`` (as deploy), ``production`` (as
www-data) and ``off`` (as deploy, OPcache disabled), each on a unix socket that only
www-data (nginx) and root may connect to. The lab's nginx serves staging and production from
those sockets. maint runs over SSH as deploy with sudo.

OPcache's shared memory belongs to the master, so production's pages can report the master's
``manual_restarts`` and ``restart_pending``: a production request held in flight until it sees
the reset pending proves it was served through the reset, and the poller's answers show
production before and after it.

Every run's transport is wrapped in :class:`~tests.lab.recording.Recorder`: with ``cgi-fcgi``
the whole reset (the script written, every request, the script removed) is ONE command of the
step, also when it fails. A production request that asked for a reset itself and is held in
flight (until staging's pool logged a status request) keeps that reset pending: staging's
reset joins it and polls until php-fpm performed it. A directory made append-only
(``chattr +a``) lets the script be created but not removed.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from maintkit.inventory import Inventory, load_inventory
from maintkit.playbook import playbook_from_text
from maintkit.results import RunResult, StepStatus
from tests import runs
from tests.gates import wait_until
from tests.lab.procs import free_port
from tests.lab.recording import Recorder
from tests.lab.sshd import LabHost, SshLab
from tests.lab.web import PHP_FPM, WebStack

pytestmark = pytest.mark.lab

OLD = time.time() - 3600  # files older than opcache.file_update_protection (2 s) are cached

STATUS_PHP = """<?php
$st = opcache_get_status(true);
$dir = __DIR__ . '/';
$cached = array_values(array_filter(array_keys($st['scripts'] ?? []), fn($p) => str_starts_with($p, $dir)));
sort($cached);
header('Content-Type: application/json');
echo json_encode(['restarts' => $st['opcache_statistics']['manual_restarts'],
                  'pending' => $st['restart_pending'], 'cached' => $cached]);
"""

PRODUCTION_PHP = """<?php
$st = opcache_get_status(false);
header('Content-Type: application/json');
echo json_encode(['restarts' => $st['opcache_statistics']['manual_restarts'], 'pending' => $st['restart_pending']]);
"""

#: Held in flight until the master's OPcache reset is pending (at most 20 s): while it runs,
#: php-fpm cannot perform the reset, so it is in flight through the whole reset.
INFLIGHT_PHP = """<?php
file_put_contents('GATES/inflight-started', (string) getmypid());
$deadline = microtime(true) + 20;
$saw = false;
while (!$saw && microtime(true) < $deadline) {
    $saw = (bool) opcache_get_status(false)['restart_pending'];
    if (!$saw) { usleep(10000); }
}
header('Content-Type: application/json');
echo json_encode(['saw_pending' => $saw]);
"""

#: Asks for a reset itself, then is held in flight until the test opens the gate (at most 20 s):
#: while it runs, its reset stays pending.
RESET_HOLD_PHP = """<?php
$asked = opcache_reset();
file_put_contents('GATES/reset-hold-started', (string) getmypid());
$deadline = microtime(true) + 20;
while (!file_exists('GATES/reset-release') && microtime(true) < $deadline) { usleep(10000); }
echo json_encode(['asked' => $asked, 'released' => file_exists('GATES/reset-release')]);
"""

#: Held in flight until the test opens the gate (at most 20 s).
HOLD_PHP = """<?php
file_put_contents('GATES/hold-started', (string) getmypid());
$deadline = microtime(true) + 20;
while (!file_exists('GATES/release') && microtime(true) < $deadline) { usleep(10000); }
echo file_exists('GATES/release') ? "released" : "timeout";
"""


@dataclass
class SharedFpm:
    """The private php-fpm master, its pools' sockets and the two sites nginx serves from them."""

    base: Path
    proc: subprocess.Popen[bytes]
    staging: Path
    production: Path
    staging_url: str
    production_url: str
    gates: Path

    def sock(self, pool: str) -> str:
        return str(self.base / "run" / f"{pool}.sock")

    @property
    def pidfile(self) -> str:
        return str(self.base / "php-fpm.pid")

    def access_log(self) -> str:
        """Staging's pool's access log: one line per request, ``STATUS QUERY``."""
        log = self.base / "staging-access.log"
        return log.read_text(errors="replace") if log.exists() else ""

    def ready_count(self) -> int:
        log = self.base / "php-fpm.log"
        return log.read_text(errors="replace").count("ready to handle connections") if log.exists() else 0

    def staging_status(self) -> dict[str, Any]:
        resp = requests.get(self.staging_url + "/status.php", timeout=10)
        assert resp.status_code == 200, resp.text
        data: dict[str, Any] = json.loads(resp.text)
        return data


def _fpm_conf(base: Path) -> str:
    pools = {"staging": ("deploy", ""), "production": ("www-data", ""), "off": ("deploy", "off")}
    out = [f"[global]\npid = {base}/php-fpm.pid\nerror_log = {base}/php-fpm.log\ndaemonize = no\n"]
    for name, (user, opcache) in pools.items():
        out.append(
            f"[{name}]\nuser = {user}\ngroup = {user}\nlisten = {base}/run/{name}.sock\n"
            "listen.owner = www-data\nlisten.group = www-data\nlisten.mode = 0660\n"
            "pm = static\npm.max_children = 3\n"
            + (f"php_admin_flag[opcache.enable] = {opcache}\n" if opcache else "")
            + (f'access.log = {base}/staging-access.log\naccess.format = "%s %q"\n' if name == "staging" else "")
        )
    return "\n".join(out)


def _site_conf(name: str, port: int, root: Path, sock: str, params: Path) -> str:
    return (
        f"server {{\n    listen 127.0.0.1:{port};\n    server_name {name};\n    root {root};\n"
        "    location ~ \\.php$ {\n"
        f"        include {params};\n"
        "        fastcgi_param SCRIPT_FILENAME $realpath_root$fastcgi_script_name;\n"
        f"        fastcgi_pass unix:{sock};\n    }}\n}}\n"
    )


def _write_site(path: Path, files: dict[str, str]) -> None:
    path.mkdir(mode=0o755)
    for name, text in files.items():
        (path / name).write_text(text)
        os.utime(path / name, (OLD, OLD))
    for p in (path, *path.iterdir()):
        shutil.chown(p, "deploy", "deploy")


@pytest.fixture(scope="module")
def fpm(web_stack: WebStack, ssh_lab: SshLab) -> Iterator[SharedFpm]:
    """php-fpm with pools staging, production and off under one master, served by the lab nginx."""
    base = Path(tempfile.mkdtemp(prefix="maintkit-lab-opcache-", dir="/tmp"))
    token = uuid.uuid4().hex[:8]
    confs = [web_stack.nginx_dir / "sites" / f"opcache-{token}-{env}.conf" for env in ("staging", "production")]
    proc: subprocess.Popen[bytes] | None = None
    try:
        base.chmod(0o755)
        (base / "run").mkdir(mode=0o755)
        gates = base / "gates"
        gates.mkdir()
        gates.chmod(0o777)
        staging, production = base / "staging", base / "production"
        _write_site(staging, {"index.php": "<?php echo 'staging';\n", "status.php": STATUS_PHP})
        _write_site(
            production,
            {
                "index.php": PRODUCTION_PHP,
                "inflight.php": INFLIGHT_PHP.replace("GATES", str(gates)),
                "hold.php": HOLD_PHP.replace("GATES", str(gates)),
                "reset-hold.php": RESET_HOLD_PHP.replace("GATES", str(gates)),
            },
        )
        (base / "php-fpm.conf").write_text(_fpm_conf(base))
        with open(base / "php-fpm.out", "wb") as out:
            proc = subprocess.Popen(
                [PHP_FPM, "--nodaemonize", "--fpm-config", str(base / "php-fpm.conf")], stdout=out, stderr=out
            )
        ports = {}
        for conf, root, pool in zip(confs, (staging, production), ("staging", "production"), strict=True):
            ports[pool] = free_port()
            conf.write_text(
                _site_conf(
                    conf.stem, ports[pool], root, f"{base}/run/{pool}.sock", web_stack.nginx_dir / "fastcgi_params"
                )
            )
        shared = SharedFpm(
            base,
            proc,
            staging,
            production,
            f"http://127.0.0.1:{ports['staging']}",
            f"http://127.0.0.1:{ports['production']}",
            gates,
        )
        wait_until(
            lambda: (
                shared.ready_count() == 1
                and all(Path(shared.sock(p)).exists() for p in ("staging", "production", "off"))
            ),
            "php-fpm pools ready",
            15.0,
            proc=proc,
        )
        web_stack.reload_nginx()
        yield shared
    finally:
        for conf in confs:
            conf.unlink(missing_ok=True)
        web_stack.reload_nginx()
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        if os.environ.get("MAINTKIT_LAB_KEEP") != "1":
            shutil.rmtree(base, ignore_errors=True)


@dataclass
class Poller:
    """GETs production's page back to back in a thread, recording every status and answer."""

    url: str
    answers: list[tuple[int, dict[str, Any] | None]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def _loop(self) -> None:
        with requests.Session() as session:
            while not self.stop.is_set():
                try:
                    resp = session.get(self.url, timeout=10)
                except requests.RequestException:
                    self.answers.append((0, None))
                    continue
                body = json.loads(resp.text) if resp.status_code == 200 else None
                self.answers.append((resp.status_code, body))

    def __enter__(self) -> Poller:
        self.thread = threading.Thread(target=self._loop, name="production-poller", daemon=True)
        self.thread.start()
        wait_until(lambda: len(self.answers) >= 20, "20 production answers before the reset", 30.0)
        return self

    def more(self, n: int) -> None:
        """Wait for ``n`` more answers."""
        target = len(self.answers) + n
        wait_until(lambda: len(self.answers) >= target, f"{n} more production answers", 30.0)

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        assert self.thread is not None
        self.thread.join(timeout=15)


class Background:
    """One request in a thread; ``result`` is (status, text), status 0 on a connection error."""

    def __init__(self, url: str) -> None:
        self.result: tuple[int, str] | None = None
        self.thread = threading.Thread(target=self._get, args=(url,), daemon=True)
        self.thread.start()

    def _get(self, url: str) -> None:
        try:
            resp = requests.get(url, timeout=30)
            self.result = (resp.status_code, resp.text)
        except requests.RequestException as exc:
            self.result = (0, type(exc).__name__)

    def join(self) -> tuple[int, str]:
        self.thread.join(timeout=30)
        assert self.result is not None, "the background request never ended"
        return self.result


def _inventory(tmp_path: Path, host: LabHost, fpm: SharedFpm) -> Inventory:
    env = host.env(fpm.staging, url=fpm.staging_url)
    return load_inventory(runs.write_inventory(tmp_path, runs.one_site(env, env_name="staging"), unique=True))


def _run(
    tmp_path: Path, inv: Inventory, opcache: dict[str, Any], *, check: bool = False, rec: Recorder | None = None
) -> RunResult:
    step = {"id": "opcache", "action": "cache.clear", "with": {"targets": ["opcache"], "opcache": opcache}}
    text = yaml.safe_dump({"name": "opcache", "stages": [{"env": "staging", "steps": [step]}]})
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    more = {"transport_factory": rec} if rec is not None else {}
    return runs.run(playbook_from_text(text), inv, tmp_path / "state", environ=env, check=check, **more)


def _step_commands(rec: Recorder, host: LabHost, fpm: SharedFpm, result: RunResult) -> list[str]:
    """The commands the reset sent: the step's own, without the stage's read, lock and unlock,
    and without the runner's read of the step's probes after the change (which clients the
    host has, whether the socket exists: ``command -v``, no script). With the host's
    ``cgi-fcgi`` that read comes back in the reset's own round trip after a reset that ran
    (never a command of its own); with the controller's client it is a command of its own."""
    kinds = rec.kinds(host, fpm.staging, result.run_id)
    sent = rec.by_host[host.ip].sent
    assert rec.sessions(host) == len(sent)  # the SSH transport's own count agrees
    own = [text for kind, (_, text) in zip(kinds, sent, strict=True) if kind == "step"]
    reset = [t for t in own if ".maint-opcache-" in t or "stream_socket_client" in t]
    reread = [t for t in own if t not in reset]
    assert all("command -v -- cgi-fcgi " in t for t in reread) and len(reread) <= 1, reread
    if any("cgi-fcgi -bind -connect" in t for t in reset):
        assert reread == [], reread
    return reset


def _step(result: RunResult) -> Any:
    return next(s for s in result.sites[0].steps if s.step == "opcache")


def _leftovers(fpm: SharedFpm) -> list[str]:
    return sorted(p.name for p in (fpm.staging / ".maint").glob(".maint-opcache-*"))


@pytest.mark.parametrize("client", ["cgi-fcgi", "controller"])
def test_reset_through_fastcgi_drops_no_production_request(
    tmp_path: Path, ssh_lab: SshLab, fpm: SharedFpm, client: str
) -> None:
    deploy_uid = pwd.getpwnam("deploy").pw_uid
    host = ssh_lab.hosts[0]
    inv = _inventory(tmp_path, host, fpm)
    rec = Recorder()
    requests.get(fpm.staging_url + "/index.php", timeout=10)
    before = fpm.staging_status()
    assert str(fpm.staging / "index.php") in before["cached"]
    opcache = {"fastcgi": fpm.sock("staging"), "user": "deploy", "sudo": True, "client": client}
    (fpm.gates / "inflight-started").unlink(missing_ok=True)
    with Poller(fpm.production_url + "/index.php") as poller:
        inflight = Background(fpm.production_url + "/inflight.php")
        wait_until((fpm.gates / "inflight-started").exists, "production request in flight")
        result = _run(tmp_path, inv, opcache, rec=rec)
        poller.more(20)
    held = inflight.join()
    after = fpm.staging_status()

    assert result.ok, _step(result).error
    assert held == (200, '{"saw_pending":true}')
    statuses = [status for status, _ in poller.answers]
    assert len(statuses) >= 40
    assert [s for s in statuses if s != 200] == []
    seen = {body["restarts"] for _, body in poller.answers if body is not None}
    assert seen == {before["restarts"], before["restarts"] + 1}
    assert after["restarts"] == before["restarts"] + 1 and after["pending"] is False
    assert str(fpm.staging / "index.php") not in after["cached"]

    step = _step(result)
    assert step.status is StepStatus.CHANGED
    (cleared,) = step.data["cleared"]
    script = cleared["script"]
    assert Path(script).parent == fpm.staging / ".maint" and Path(script).name.startswith(".maint-opcache-")
    assert (cleared["via"], cleared["client"], cleared["address"]) == ("fastcgi", client, fpm.sock("staging"))
    assert (cleared["script_mode"], cleared["script_uid"], cleared["pool_uid"]) == ("0600", deploy_uid, deploy_uid)
    assert cleared["after"]["restarts"] == cleared["before"]["restarts"] + 1
    assert step.data["opcache_script"] == script and step.data["opcache_script_removed"] is True
    assert not Path(script).exists() and _leftovers(fpm) == []
    assert [c.summary for c in step.changes] == [
        f"reset through FastCGI at {fpm.sock('staging')} ({client}): "
        f"{cleared['before']['cached_scripts']} cached scripts dropped, restart confirmed"
    ]
    # an OPcache reset always runs: the stage takes its lock in its first round trip
    assert rec.kinds(host, fpm.staging, result.run_id)[0] == "lock+read"
    commands = _step_commands(rec, host, fpm, result)
    if client == "cgi-fcgi":  # written, every request, removed: one round trip
        assert len(commands) == 1, [c[:200] for c in commands]
        (one,) = commands
        assert one.startswith("( sudo -n -- sh -c 'umask 077\n") and "cgi-fcgi -bind -connect" in one
        assert "\nrm -f -- " in one
        # the runner's read after the change, in the same round trip, after the sudo shell
        shell, _, after = one.partition("\n) || exit $?\n")
        assert "command -v -- cgi-fcgi " not in shell and "command -v -- cgi-fcgi " in after
    else:  # the controller's client: written, the reset, each status request, removed
        assert len(commands) == 3 + cleared["status_requests"]


def test_reset_fails_when_the_pool_has_no_opcache_and_leaves_nothing(
    tmp_path: Path, ssh_lab: SshLab, fpm: SharedFpm
) -> None:
    host = ssh_lab.hosts[0]
    inv = _inventory(tmp_path, host, fpm)
    rec = Recorder()
    failed = _run(tmp_path, inv, {"fastcgi": fpm.sock("off"), "user": "deploy", "sudo": True}, rec=rec)
    step = _step(failed)
    assert not failed.ok and step.status is StepStatus.FAILED
    assert step.error == (
        f"apply: opcache: OPcache is disabled in the pool at {fpm.sock('off')} (opcache.enable=0): nothing to reset"
    )
    assert step.data["opcache_script_removed"] is True and _leftovers(fpm) == []
    assert Path(step.data["opcache_script"]).parent == fpm.staging / ".maint"
    assert len(_step_commands(rec, host, fpm, failed)) == 1

    missing = f"{fpm.base}/run/missing.sock"
    planned = _run(tmp_path, inv, {"fastcgi": missing, "sudo": True}, check=True)
    assert _step(planned).error == f"check: opcache: php-fpm socket {missing} does not exist (is the pool running?)"


@pytest.mark.parametrize("client", ["cgi-fcgi", "controller"])
def test_a_reset_another_request_left_pending_is_joined_and_waited_for(
    tmp_path: Path, ssh_lab: SshLab, fpm: SharedFpm, client: str
) -> None:
    host = ssh_lab.hosts[0]
    inv = _inventory(tmp_path, host, fpm)
    rec = Recorder()
    for gate in ("reset-hold-started", "reset-release"):
        (fpm.gates / gate).unlink(missing_ok=True)
    polled = fpm.access_log().count("restarts=")
    held = Background(fpm.production_url + "/reset-hold.php")
    wait_until((fpm.gates / "reset-hold-started").exists, "production asked for a reset and is in flight")
    ended = threading.Event()

    def release_after_a_status_request() -> None:
        # staging's pool answered a status request while production held its reset pending
        wait_until(lambda: ended.is_set() or fpm.access_log().count("restarts=") > polled, "a status request")
        (fpm.gates / "reset-release").touch()

    releaser = threading.Thread(target=release_after_a_status_request, daemon=True)
    releaser.start()
    try:
        opcache = {"fastcgi": fpm.sock("staging"), "user": "deploy", "sudo": True, "client": client}
        result = _run(tmp_path, inv, opcache, rec=rec)
    finally:
        ended.set()
        releaser.join(timeout=30)

    assert held.join() == (200, '{"asked":true,"released":true}')
    assert result.ok, _step(result).error
    step = _step(result)
    (cleared,) = step.data["cleared"]
    before, after = cleared["before"], cleared["after"]
    assert before["pending"] is True  # production's reset, still pending when staging asked: joined
    assert after["pending"] is False and after["restarts"] == before["restarts"] + 1
    assert cleared["status_requests"] >= 2  # the first one while production still held the cache
    assert step.data["opcache_script_removed"] is True and _leftovers(fpm) == []
    commands = _step_commands(rec, host, fpm, result)
    assert len(commands) == (1 if client == "cgi-fcgi" else 3 + cleared["status_requests"])


@pytest.mark.parametrize("where", ["tcp", "stale-socket"])
def test_an_unreachable_pool_fails_in_one_command_and_leaves_nothing(
    tmp_path: Path, ssh_lab: SshLab, fpm: SharedFpm, where: str
) -> None:
    host = ssh_lab.hosts[0]
    inv = _inventory(tmp_path, host, fpm)
    rec = Recorder()
    address = f"127.0.0.1:{free_port()}" if where == "tcp" else str(fpm.base / "run" / "stale.sock")
    if where == "stale-socket":  # the socket file is there (check passes), nobody listens on it
        with socket.socket(socket.AF_UNIX) as stale:
            stale.bind(address)
    try:
        failed = _run(tmp_path, inv, {"fastcgi": address, "user": "deploy", "sudo": True}, rec=rec)
    finally:
        if where == "stale-socket":
            Path(address).unlink(missing_ok=True)

    step = _step(failed)
    assert not failed.ok and step.status is StepStatus.FAILED
    assert step.error == (
        f"apply: opcache: php-fpm at {address} did not run the reset script (exit 111): Could not connect to {address}"
    )
    assert step.data["opcache_script_removed"] is True and _leftovers(fpm) == []
    assert not Path(step.data["opcache_script"]).exists()
    assert len(_step_commands(rec, host, fpm, failed)) == 1


@pytest.fixture
def append_only(fpm: SharedFpm) -> Iterator[Path]:
    """A directory the staging pool can read, where files can be created but not removed."""
    path = fpm.base / f"append-only-{uuid.uuid4().hex[:6]}"
    path.mkdir(mode=0o755)
    shutil.chown(path, "deploy", "deploy")
    made = subprocess.run(["chattr", "+a", str(path)], capture_output=True, text=True)
    if made.returncode != 0:
        path.rmdir()
        pytest.skip(f"this file system has no append-only directories: {made.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["chattr", "-a", str(path)], check=True)
        shutil.rmtree(path)


@pytest.mark.parametrize("pool", ["staging", "off"])
def test_a_script_that_cannot_be_removed_fails_the_step(
    tmp_path: Path, ssh_lab: SshLab, fpm: SharedFpm, append_only: Path, pool: str
) -> None:
    host = ssh_lab.hosts[0]
    inv = _inventory(tmp_path, host, fpm)
    rec = Recorder()
    opcache = {"fastcgi": fpm.sock(pool), "user": "deploy", "sudo": True, "tmpdir": str(append_only)}
    failed = _run(tmp_path, inv, opcache, rec=rec)

    step = _step(failed)
    script = step.data["opcache_script"]
    assert Path(script).parent == append_only and Path(script).name.startswith(".maint-opcache-")
    left = f"exit 1: rm: cannot remove '{script}': Operation not permitted"
    reason = (
        "OPcache was reset, but the reset script"
        if pool == "staging"
        else f"OPcache is disabled in the pool at {fpm.sock('off')} (opcache.enable=0): nothing to reset; the reset script"
    )
    assert not failed.ok and step.error == f"apply: opcache: {reason} {script} was not removed: {left}"
    assert step.data["opcache_script_removed"] is False
    assert [p.name for p in append_only.iterdir()] == [Path(script).name]  # the one the step reported
    assert len(_step_commands(rec, host, fpm, failed)) == 1


def test_method_reload_still_reloads_the_master(
    tmp_path: Path, ssh_lab: SshLab, fpm: SharedFpm, record_property: Any
) -> None:
    inv = _inventory(tmp_path, ssh_lab.hosts[0], fpm)
    ready = fpm.ready_count()
    (fpm.gates / "hold-started").unlink(missing_ok=True)
    (fpm.gates / "release").unlink(missing_ok=True)
    held = Background(fpm.production_url + "/hold.php")
    wait_until((fpm.gates / "hold-started").exists, "production request in flight")
    opcache = {"method": "reload", "fastcgi": fpm.sock("staging"), "pidfile": fpm.pidfile, "sudo": True}
    result = _run(tmp_path, inv, opcache)
    (fpm.gates / "release").touch()
    wait_until(lambda: fpm.ready_count() > ready, "php-fpm reloaded", 15.0)
    wait_until(lambda: all(Path(fpm.sock(p)).exists() for p in ("staging", "production", "off")), "pools back", 15.0)

    assert result.ok, _step(result).error
    assert [c.summary for c in _step(result).changes] == [f"reloaded (kill -USR2 $(cat {fpm.pidfile}))"]
    # what the reload did to the request in flight is recorded, not asserted: a reload may drop it
    record_property("reload_inflight_request", held.join())
    assert requests.get(fpm.production_url + "/index.php", timeout=10).status_code == 200
