"""``maint daemon``: a real daemon, real ``maint`` console-script callers, real runs on this machine.

Every test starts its own daemon in a cache folder of its own (``XDG_CACHE_HOME``) and stops it.
What a command handed to the daemon does is checked the way a user sees it: its exit status,
its output, the files it changed, its audit log; that the daemon took it is checked by the
daemon's count of commands taken (``maint daemon status --json``).
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from maintkit.cli.daemon_wire import receive, send
from tests.gates import gated_shell, make_gates, wait_started
from tests.runs import PLAIN, local_env, one_site, write_inventory

MAINT = str(Path(sys.executable).with_name("maint"))
MAINT_PYTHON = Path(MAINT).read_text().splitlines()[0].removeprefix("#!")  # the console script's interpreter
ROOT = Path(__file__).resolve().parents[2]

WRITE = """\
name: write
stages:
  - env: production
    steps:
      - {action: file.content, with: {path: "{{ env.path }}/config.txt", content: "served warm\\n"}}
"""

WAIT = f"""\
name: wait
stages:
  - env: production
    steps:
      - {{action: command, with: {{argv: [sh, -c, "{gated_shell("{{ env.path }}")}"]}}}}
"""  # the step says it started, then waits on its gate, which no test opens: it is stopped

BAD = "name: bad\nstages:\n  - env: production\n    steps:\n      - {action: no.such.action}\n"


class Daemon:
    """The environment of the callers, and questions to the daemon."""

    def __init__(self, cache: Path) -> None:
        base = {k: v for k, v in os.environ.items() if not k.startswith(("MAINT_", "GITHUB_", "RUNNER_"))}
        self.env = {**base, **PLAIN, "XDG_CACHE_HOME": str(cache)}
        self.folder = cache / "maintkit" / "daemon"

    def maint(self, *args: str, cwd: Path | str = "/", **env: str) -> subprocess.CompletedProcess[str]:
        """``maint ARGS`` through the console script, as a user types it."""
        return subprocess.run(
            [MAINT, *args], cwd=cwd, env={**self.env, **env}, capture_output=True, text=True, timeout=120
        )

    def status(self) -> dict[str, object]:
        done = self.maint("daemon", "status", "--json")
        assert done.returncode == 0, done.stderr
        return dict(json.loads(done.stdout))

    def served(self) -> int:
        return int(self.status()["served"])  # type: ignore[call-overload]


def _caller_build() -> dict[str, object]:
    """What the console script sends as its build (its interpreter and start-up)."""
    code = "import json; from maintkit.cli.daemon_wire import build; print(json.dumps(build()))"
    out = subprocess.run([MAINT_PYTHON, "-c", code], capture_output=True, text=True, check=True).stdout
    built = dict(json.loads(out))
    built["path"][0] = os.path.dirname(MAINT)  # a script's folder comes first on its path
    return built


def wait_gone(pid: int, timeout: float = 60.0) -> None:
    """Wait until process ``pid`` has exited (its pidfd becomes readable)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        ready, _, _ = select.select([fd], [], [], timeout)
        assert ready, f"process {pid} still runs after {timeout} s"
    finally:
        os.close(fd)


@pytest.fixture
def daemon() -> Iterator[Daemon]:
    cache = Path(tempfile.mkdtemp(prefix="mk", dir="/tmp"))  # short: a socket path has 107 bytes
    d = Daemon(cache)
    started = d.maint("daemon", "start", "--idle", "0")
    assert started.returncode == 0 and started.stdout.startswith("started (pid "), started.stderr
    pid = int(d.status()["pid"])  # type: ignore[call-overload]
    yield d
    stopped = d.maint("daemon", "stop")
    if os.path.isdir(d.folder):
        os.chmod(d.folder, 0o700)
    wait_gone(pid)
    shutil.rmtree(cache)
    assert stopped.returncode == 0


def test_the_daemon_keeps_its_socket_to_its_user(daemon: Daemon) -> None:
    status = daemon.status()
    assert status["ok"] is True and status["served"] == 0 and status["running"] == 0
    assert status["last_run"] is None
    sock = Path(str(status["socket"]))
    assert sock.parent == daemon.folder and sock.is_socket()
    assert (daemon.folder.stat().st_mode & 0o777, sock.stat().st_mode & 0o777) == (0o700, 0o600)
    assert (
        status["package"] == str(ROOT / "maintkit")
        and status["python"] == os.path.realpath(sys.executable)
        and status["prefix"] == sys.prefix
    )
    again = daemon.maint("daemon", "start")
    assert again.returncode == 0 and again.stdout == f"already running (pid {status['pid']})\n"


def test_a_command_runs_in_the_daemon_as_in_a_process_of_its_own(daemon: Daemon, tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    write_inventory(tmp_path, one_site(local_env(site)))
    (tmp_path / "write.yml").write_text(WRITE)
    run = ("run", "write.yml", "-i", "inventory.yml", "--state-dir", "state", "--yes")  # relative: the caller's folder
    first = daemon.maint(*run, cwd=tmp_path, LOGNAME="warm-actor", USER="warm-actor")
    assert first.returncode == 0, first.stderr
    assert (site / "config.txt").read_text() == "served warm\n"
    assert daemon.served() == 1
    (run_dir,) = (tmp_path / "state" / "runs").iterdir()
    started = json.loads((run_dir / "events.jsonl").read_text().splitlines()[0])
    assert started["event"] == "run.started" and started["actor"].startswith("warm-actor@")
    second = daemon.maint(*run, cwd=tmp_path)
    assert second.returncode == 0 and daemon.served() == 2
    (newest,) = set((tmp_path / "state" / "runs").iterdir()) - {run_dir}
    assert json.loads((newest / "summary.json").read_text())["changed"] == 0

    (tmp_path / "bad.yml").write_text(BAD)
    bad = daemon.maint("validate", "bad.yml", cwd=tmp_path)
    assert bad.returncode == 2 and "bad.yml:5" in bad.stderr and "no.such.action" in bad.stderr
    assert bad.stdout == "ok: inventory.yml (1 site)\n" and daemon.served() == 3
    last = daemon.status()["last_run"]
    assert isinstance(last, dict) and last["exit"] == 2  # the status tells of the last run's end
    assert last["cpu_s"] > 0 and last["max_rss_mb"] > 0
    text = daemon.maint("daemon", "status").stdout
    assert (
        f"  last run: pid {last['pid']}, exit 2, {last['cpu_s']} s CPU, peak memory {last['max_rss_mb']} MB\n" in text
    )
    version = daemon.maint("--version")
    assert (version.returncode, version.stdout) == (0, "maint, version 0.1.0\n") and daemon.served() == 4
    here = daemon.maint("--version", MAINT_DAEMON="0")
    assert (here.returncode, here.stdout) == (0, "maint, version 0.1.0\n") and daemon.served() == 4


def _start_waiting_run(daemon: Daemon, tmp_path: Path) -> tuple[subprocess.Popen[str], Path]:
    """A run whose one step waits; returned once the step has started (its gate file is there)."""
    site = tmp_path / "site"
    site.mkdir()
    write_inventory(tmp_path, one_site(local_env(site)))
    (tmp_path / "wait.yml").write_text(WAIT)
    make_gates(site)
    proc = subprocess.Popen(
        [MAINT, "run", "wait.yml", "-i", "inventory.yml", "--state-dir", "state", "--yes"],
        cwd=tmp_path, env=daemon.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    wait_started(site, proc)
    return proc, site


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
            except (OSError, IndexError):
                continue
    return found


def _comm(pid: int) -> str:
    return Path(f"/proc/{pid}/comm").read_text().strip()


def _interrupted(tmp_path: Path) -> dict[str, object]:
    (run_dir,) = (tmp_path / "state" / "runs").iterdir()
    return dict(json.loads((run_dir / "summary.json").read_text()))


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signals_reach_the_run_and_it_cleans_up(daemon: Daemon, tmp_path: Path, sig: signal.Signals) -> None:
    proc, site = _start_waiting_run(daemon, tmp_path)
    status = daemon.status()
    assert status["running"] == 1
    (run,) = _children(int(status["pid"]))  # type: ignore[call-overload]
    assert _comm(run) == "maint"
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 3, out + err
    assert _interrupted(tmp_path)["status"] == "interrupted"
    (run_dir,) = (tmp_path / "state" / "runs").iterdir()
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    # the run itself got the signal (a caller that died instead would have it stopped by SIGTERM)
    assert [e["signal"] for e in events if e["event"] == "run.interrupt_requested"] == [sig.name]
    assert not (site / ".maint" / "lock").exists()
    after = daemon.status()
    assert after["running"] == 0 and after["served"] == 1
    assert {k: after["last_run"][k] for k in ("pid", "exit")} == {"pid": run, "exit": 3}  # type: ignore[index]


def test_a_killed_caller_stops_its_run(daemon: Daemon, tmp_path: Path) -> None:
    proc, site = _start_waiting_run(daemon, tmp_path)
    (run,) = _children(int(daemon.status()["pid"]))  # type: ignore[call-overload]
    proc.kill()
    proc.wait()
    wait_gone(run, 120)  # the run ends (stopped by the daemon) rather than wait on its gate
    assert daemon.status()["running"] == 0
    assert _interrupted(tmp_path)["status"] == "interrupted"
    assert not (site / ".maint" / "lock").exists()


def test_changed_code_is_never_served(daemon: Daemon) -> None:
    pid = int(daemon.status()["pid"])  # type: ignore[call-overload]
    source = ROOT / "maintkit" / "cli" / "daemon_wire.py"
    before = source.stat()
    os.utime(source, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000_000))
    try:
        here = daemon.maint("--version")
        assert (here.returncode, here.stdout) == (0, "maint, version 0.1.0\n")
        wait_gone(pid)  # it stopped rather than serve its stale code
        assert daemon.maint("daemon", "status").stdout == "not running\n"
    finally:
        os.utime(source, ns=(before.st_atime_ns, before.st_mtime_ns))


def test_a_folder_others_may_use_is_refused(daemon: Daemon) -> None:
    os.chmod(daemon.folder, 0o755)
    here = daemon.maint("--version")
    assert (here.returncode, here.stdout) == (0, "maint, version 0.1.0\n")
    refused = daemon.maint("daemon", "start")
    assert refused.returncode == 1
    assert f"error: refusing the daemon folder {daemon.folder}: its mode is 0755" in refused.stderr
    os.chmod(daemon.folder, 0o700)
    assert daemon.served() == 0


def test_the_daemon_keeps_no_secret_of_the_shell_that_started_it(tmp_path: Path) -> None:
    cache = Path(tempfile.mkdtemp(prefix="mk", dir="/tmp"))
    d = Daemon(cache)
    started = d.maint("daemon", "start", "--idle", "0", DB_PASSWORD="hunter2-start")
    assert started.returncode == 0, started.stderr
    pid = int(d.status()["pid"])  # type: ignore[call-overload]
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        assert not [e for e in environ if b"hunter2-start" in e]
        assert f"XDG_CACHE_HOME={cache}".encode() in environ
    finally:
        d.maint("daemon", "stop")
        wait_gone(pid)
        shutil.rmtree(cache)


def test_an_idle_daemon_stops_by_itself_and_removes_its_socket() -> None:
    cache = Path(tempfile.mkdtemp(prefix="mk", dir="/tmp"))
    d = Daemon(cache)
    try:
        assert d.maint("daemon", "start", "--idle", "3").returncode == 0
        status = d.status()
        assert status["idle"] == 3.0 and isinstance(status["idle_left"], float)
        assert d.maint("--version").stdout == "maint, version 0.1.0\n" and d.served() == 1
        wait_gone(int(status["pid"]))  # type: ignore[call-overload]
        assert not Path(str(status["socket"])).exists()
        assert d.maint("daemon", "status").stdout == "not running\n"
    finally:
        d.maint("daemon", "stop")
        shutil.rmtree(cache)


def test_a_daemon_of_another_environment_is_not_handed_the_command() -> None:
    cache = Path(tempfile.mkdtemp(prefix="mk", dir="/tmp"))
    d = Daemon(cache)
    probe = subprocess.run(
        [MAINT, "daemon", "status", "--json"], env=d.env, capture_output=True, text=True, check=True, timeout=60
    )
    assert json.loads(probe.stdout) == {"ok": False}
    code = "from maintkit.cli.daemon_wire import socket_path; import os; print(socket_path(os.environ))"
    path = subprocess.run([sys.executable, "-c", code], env=d.env, capture_output=True, text=True, check=True).stdout
    os.makedirs(d.folder, mode=0o700)
    base = os.path.realpath(sys.executable)  # the same interpreter outside this virtual environment
    paths = os.pathsep.join([str(ROOT), *[p for p in sys.path if p.endswith("site-packages")]])
    r, w = os.pipe()
    other = subprocess.Popen(
        [base, "-m", "maintkit.cli.daemon_server", "--socket", path.strip(), "--idle", "0", "--ready-fd", str(w)],
        env={**d.env, "PYTHONPATH": paths}, pass_fds=(w,), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    os.close(w)
    with os.fdopen(r) as ready:
        assert ready.read().strip() == str(other.pid)
    try:
        status = d.status()
        assert status["prefix"] != sys.prefix and status["served"] == 0
        here = d.maint("--version")
        assert (here.returncode, here.stdout) == (0, "maint, version 0.1.0\n")
        assert d.served() == 0  # refused: it ran in the caller's own process
    finally:
        d.maint("daemon", "stop")
        other.wait(timeout=60)
        shutil.rmtree(cache)


hostile = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"), min_size=1, max_size=24
) | st.sampled_from(["-", "--", "-e", "--help", "'; rm -rf ~", "a\nb", "*", "$(id)", "\\x", " sp ace", "é/ü"])


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=hostile, value=hostile)
def test_hostile_arguments_and_environment_give_the_same_result_as_without_it(
    daemon: Daemon, name: str, value: str
) -> None:
    before = daemon.served()
    argv = ("validate", name, "-i", value)
    warm = daemon.maint(*argv, cwd=daemon.folder.parent, MAINT_STATE_DIR=value)
    here = daemon.maint(*argv, cwd=daemon.folder.parent, MAINT_STATE_DIR=value, MAINT_DAEMON="0")
    assert (warm.returncode, warm.stdout, warm.stderr) == (here.returncode, here.stdout, here.stderr)
    assert warm.returncode in (0, 2) and daemon.served() == before + 1  # 0: a name that asks for --help


def _socket(daemon: Daemon) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(30)
    sock.connect(str(daemon.status()["socket"]))
    return sock


def test_a_stalled_or_broken_caller_holds_up_no_one(daemon: Daemon) -> None:
    stalled = _socket(daemon)
    stalled.sendall(b"\x00\x00")  # half a header, then nothing
    deep = _socket(daemon)
    body = b"[" * 100_000  # JSON nested too deep to parse
    deep.sendall(len(body).to_bytes(4, "big") + body)
    assert deep.recv(1) == b""  # dropped
    with stalled:
        version = daemon.maint("--version")
        assert (version.returncode, version.stdout) == (0, "maint, version 0.1.0\n")
        assert daemon.served() == 1  # taken at once, while the stalled caller is still connected
    deep.close()


def test_a_signal_at_once_reaches_the_command_never_the_daemon(daemon: Daemon) -> None:
    for n in range(1, 21):
        sock = _socket(daemon)
        r, w = os.pipe()
        cwd = os.open("/", os.O_RDONLY)
        command = os.memfd_create("command")
        os.write(command, json.dumps({"argv": ["maint", "--version"], "env": daemon.env}).encode())
        os.lseek(command, 0, os.SEEK_SET)
        with sock:
            send(sock, {"op": "run", "umask": 0o022, **_caller_build()}, (r, w, w, cwd, command))
            for fd in (r, w, cwd, command):
                os.close(fd)
            assert receive(sock) == ({"ok": True, "ready": True}, [])
            send(sock, {"op": "go"})
            answer, [pidfd] = receive(sock, maxfds=1)
            try:
                signal.pidfd_send_signal(pidfd, signal.SIGTERM)
                sent = True
            except ProcessLookupError:  # the command had already ended and been reaped
                sent = False
            os.close(pidfd)
            status, _ = receive(sock)
        # it ran, or the signal ended it; a signal that found no process came after a clean end
        assert status["status"] in ((0, -signal.SIGTERM) if sent else (0,))
        assert daemon.served() == n  # the daemon still answers, and took every command


def _memory_holds(pid: int, needle: bytes) -> bool:
    """Whether any writable memory of process ``pid`` holds ``needle`` (read through /proc)."""
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb", buffering=0) as mem:
        for line in maps:
            span, perms = line.split()[:2]
            if not perms.startswith("rw"):
                continue
            start, end = (int(x, 16) for x in span.split("-"))
            try:
                mem.seek(start)
                if needle in mem.read(end - start):
                    return True
            except OSError:
                continue
    return False


def test_a_commands_environment_never_enters_the_daemons_memory(daemon: Daemon, tmp_path: Path) -> None:
    status = daemon.status()
    pid = int(status["pid"])  # type: ignore[call-overload]
    secret = "s3cr3t-" + os.urandom(8).hex()
    done = daemon.maint("validate", "missing.yml", cwd=tmp_path, DB_PASSWORD=secret)
    assert done.returncode == 2 and daemon.served() == 1
    assert _memory_holds(pid, str(status["socket"]).encode())  # the scan does read the daemon's memory
    assert not _memory_holds(pid, secret.encode())
