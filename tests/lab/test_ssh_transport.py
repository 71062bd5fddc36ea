"""SSHTransport against real sshd hosts on loopback aliases (and one in a network namespace)."""

from __future__ import annotations

import io
import os
import subprocess
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from maintkit.errors import CommandFailed, HostKeyError, HostUnreachable, TransportError
from maintkit.results import CommandResult
from maintkit.transport.base import Transport
from maintkit.transport.ssh import SSHTransport
from tests.gates import wait_until
from tests.lab.procs import free_port
from tests.lab.sshd import LabHost, SshLab

pytestmark = pytest.mark.lab

HANG_GUARD = 60.0  # a call that has not returned by then is hanging (the test fails)


@pytest.fixture(scope="module")
def deploy_transports(ssh_lab: SshLab) -> Iterator[dict[str, SSHTransport]]:
    """One shared transport per host, as deploy (like the runner: one connection per host)."""
    transports = {h.name: h.transport() for h in ssh_lab.hosts}
    try:
        yield transports
    finally:
        for t in transports.values():
            t.close()


@pytest.fixture
def fresh(ssh_lab: SshLab) -> Iterator[Callable[..., SSHTransport]]:
    """Make transports that are closed after the test."""
    made: list[SSHTransport] = []

    def make(host: LabHost | None = None, **kwargs: Any) -> SSHTransport:
        t = (host or ssh_lab.hosts[0]).transport(**kwargs)
        made.append(t)
        return t

    try:
        yield make
    finally:
        for t in made:
            t.close()


def finishes(call: Callable[[], Any]) -> Any:
    """Run ``call`` in a thread; fail if it hangs. Returns its result or its exception."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = call()
        except BaseException as exc:  # noqa: BLE001 - handed back to the test
            box["value"] = exc

    th = threading.Thread(target=target, daemon=True)
    th.start()
    th.join(HANG_GUARD)
    assert not th.is_alive(), "the call hung"
    return box["value"]


def pgrep(pattern: str) -> bool:
    return subprocess.run(["pgrep", "-f", pattern], capture_output=True, check=False).returncode == 0


# ---------------------------------------------------------------- commands
def test_is_a_transport(deploy_transports: dict[str, SSHTransport]) -> None:
    assert all(isinstance(t, Transport) for t in deploy_transports.values())


def test_parallel_threads_share_one_connection_per_host(
    ssh_hosts: list[tuple[LabHost, Path]], deploy_transports: dict[str, SSHTransport]
) -> None:
    errors: list[BaseException] = []
    seen: dict[str, set[str]] = {h.name: set() for h, _ in ssh_hosts}
    lock = threading.Lock()

    def worker(host: LabHost, scratch: Path, n: int) -> None:
        t = deploy_transports[host.name]
        try:
            for i in range(6):
                path = f"{scratch}/file-{n}-{i}.txt"
                data = f"{host.name} {n} {i}\n".encode() * (n + 1)
                t.put(data, path)
                assert t.get(path) == data
                res = t.run(["sh", "-c", 'echo "$SSH_CONNECTION"; wc -c < "$1"', "sh", path])
                conn, size = res.stdout.splitlines()
                assert int(size) == len(data)
                with lock:
                    seen[host.name].add(conn)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(h, d, n)) for h, d in ssh_hosts for n in range(5)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(HANG_GUARD)
    assert not errors, errors
    # every command of a host came over the same TCP connection (same client port)
    assert all(len(conns) == 1 for conns in seen.values()), seen
    for h, d in ssh_hosts:
        assert len(list(d.iterdir())) == 5 * 6, "no temp files are left behind"


def test_more_threads_than_sessions_all_complete(fresh: Callable[..., SSHTransport]) -> None:
    t = fresh(max_sessions=3)
    results: list[CommandResult] = []
    threads = [threading.Thread(target=lambda i=i: results.append(t.run(["echo", str(i)]))) for i in range(20)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(HANG_GUARD)
    assert sorted(int(r.stdout) for r in results) == list(range(20))
    assert t.round_trips == 20


def test_exit_codes_and_command_failed_carries_the_result(deploy_transports: dict[str, SSHTransport]) -> None:
    t = deploy_transports["h1"]
    res = t.run_shell("echo out; echo err >&2; exit 3", check=False)
    assert (res.exit_code, res.stdout, res.stderr, res.ok, res.host) == (3, "out\n", "err\n", False, "h1")
    with pytest.raises(CommandFailed) as info:
        t.run(["sh", "-c", "echo bad >&2; exit 7"])
    assert info.value.result.exit_code == 7
    assert info.value.result.stderr == "bad\n"
    assert "exit 7" in str(info.value) and "bad" in str(info.value)
    assert isinstance(info.value, TransportError) and info.value.host == "h1"


def test_stdin_bytes_file_and_stdout_sink(deploy_transports: dict[str, SSHTransport]) -> None:
    t = deploy_transports["h2"]
    data = os.urandom(3 * 1024 * 1024 + 17)  # larger than the SSH window: stdin and stdout interleave
    res = t.run(["cat"], stdin=data)
    assert res.stdout_bytes == data
    res = t.run(["sha256sum"], stdin=io.BytesIO(data))
    import hashlib

    assert res.stdout.split()[0] == hashlib.sha256(data).hexdigest()
    sink = io.BytesIO()
    res = t.run(["cat"], stdin=data, stdout_sink=sink)
    assert sink.getvalue() == data and res.stdout == "" and res.stdout_bytes is None
    res = t.run_shell("head -c 2000000 /dev/zero >&2; echo done")
    assert len(res.stderr) == 2_000_000 and res.stdout == "done\n"
    assert t.run(["cat"]).stdout == "", "without stdin the command reads EOF at once"
    invalid = t.run(["printf", "\\377ok"])
    assert invalid.stdout == "\ufffdok" and invalid.stdout_bytes == b"\xffok"


def test_cwd_env_and_become(ssh_hosts: list[tuple[LabHost, Path]], fresh: Callable[..., SSHTransport]) -> None:
    host, scratch = ssh_hosts[0]
    t = fresh(host)
    assert t.run(["pwd"], cwd=str(scratch)).stdout.strip() == str(scratch)
    assert t.run(["sh", "-c", 'echo "$X"'], env={"X": "$(id) ; `x`"}).stdout == "$(id) ; `x`\n"
    assert t.run(["id", "-u"]).stdout.strip() != "0"
    assert t.run(["id", "-u"], sudo=True).stdout.strip() == "0"
    root = fresh(host, become=True)
    assert root.run(["id", "-u"]).stdout.strip() == "0"
    assert root.run(["id", "-un"], sudo=False).stdout.strip() == "deploy"
    assert root.run_shell("id -u; pwd", cwd=str(scratch)).stdout.split() == ["0", str(scratch)]
    as_www = fresh(host, become=True, sudo_user="www-data")
    assert as_www.run(["id", "-un"]).stdout.strip() == "www-data"
    # put/get through sudo: a root-only directory
    private = scratch / "private"
    root.run(["install", "-d", "-m", "0700", "-o", "root", str(private)])
    root.put(b"secret\n", f"{private}/f", mode=0o600)
    assert root.get(f"{private}/f") == b"secret\n"
    with pytest.raises(CommandFailed):
        t.get(f"{private}/f")


def test_put_modes_and_get_errors(
    ssh_hosts: list[tuple[LabHost, Path]], deploy_transports: dict[str, SSHTransport]
) -> None:
    host, scratch = ssh_hosts[1]
    t = deploy_transports[host.name]
    new = f"{scratch}/new file 'q'.txt"
    t.put(b"a", new)
    assert t.run(["stat", "-c", "%a", new]).stdout.strip() == "644"
    t.run(["chmod", "0600", new])
    t.put(b"b", new)
    assert t.run(["stat", "-c", "%a", new]).stdout.strip() == "600", "an existing file keeps its mode"
    t.put(b"c", new, mode=0o755)
    assert t.run(["stat", "-c", "%a", new]).stdout.strip() == "755"
    assert t.get(new) == b"c"
    t.put(b"", f"{scratch}/empty")
    assert t.get(f"{scratch}/empty") == b""
    with pytest.raises(CommandFailed):
        t.put(b"x", f"{scratch}/missing/dir/f")
    with pytest.raises(CommandFailed) as info:
        t.get(f"{scratch}/missing")
    assert "No such file" in info.value.result.stderr
    assert sorted(p.name for p in scratch.iterdir()) == ["empty", "new file 'q'.txt"]


def test_timeout_fails_kills_the_remote_command_and_keeps_the_connection(
    fresh: Callable[..., SSHTransport],
) -> None:
    t = fresh()
    marker = f"sleep 3{uuid.uuid4().int % 1000}.5"
    with pytest.raises(CommandFailed) as info:
        t.run(["sh", "-c", f"echo started; {marker}; echo never"], timeout=1)
    res = info.value.result
    assert res.timed_out and res.exit_code == 124 and not res.ok
    assert res.stdout == "started\n"
    assert "timed out after 1 s" in str(info.value)
    wait_until(lambda: not pgrep(marker), "the remote command was terminated", 20.0)
    res = t.run(["sleep", "5"], timeout=0.5, check=False)
    assert res.timed_out and res.exit_code == 124
    assert t.run(["echo", "still usable"]).stdout == "still usable\n"
    assert t.connected


def test_command_timeout_is_the_default(fresh: Callable[..., SSHTransport]) -> None:
    t = fresh(command_timeout=0.5)
    res = t.run(["sleep", "5"], check=False)
    assert res.timed_out


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    args=st.lists(
        st.one_of(
            st.sampled_from(
                [
                    "$(touch pwned)",
                    "`touch pwned`",
                    "; touch pwned",
                    "a && b",
                    "| x",
                    "*",
                    "'",
                    '"',
                    "\n",
                    "\\",
                    "~",
                    "",
                ]
            ),
            st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\x00"), max_size=30),
        ),
        max_size=6,
    )
)
def test_metacharacters_reach_the_remote_command_literally(
    args: list[str], ssh_hosts: list[tuple[LabHost, Path]], deploy_transports: dict[str, SSHTransport]
) -> None:
    host, scratch = ssh_hosts[2]
    t = deploy_transports[host.name]
    res = t.run(["printf", "%s\\0", "START", *args], cwd=str(scratch))
    assert res.stdout_bytes is not None
    assert [p.decode() for p in res.stdout_bytes.split(b"\0")[1:-1]] == args
    assert list(scratch.iterdir()) == []


# ---------------------------------------------------------------- host keys
def test_unknown_host_key_is_refused_and_nothing_runs(
    ssh_hosts: list[tuple[LabHost, Path]], fresh: Callable[..., SSHTransport], tmp_path: Path
) -> None:
    host, scratch = ssh_hosts[0]
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    t = fresh(host, known_hosts=[str(empty)])
    with pytest.raises(HostKeyError) as info:
        t.run(["touch", f"{scratch}/ran"])
    text = str(info.value)
    assert f"[{host.ip}]:{host.port} is not in known_hosts" in text
    assert "ssh-keyscan" in text and "accept-new" in text
    assert not t.connected and t.round_trips == 0
    assert not (scratch / "ran").exists()
    assert empty.read_text() == ""


def test_changed_host_key_is_refused_even_with_accept_new(
    ssh_lab: SshLab, ssh_hosts: list[tuple[LabHost, Path]], fresh: Callable[..., SSHTransport], tmp_path: Path
) -> None:
    (h1, _), (h2, scratch), _ = ssh_hosts
    wrong = tmp_path / "known_hosts"
    wrong.write_text(f"[{h2.ip}]:{h2.port} {h1.hostkey_pub}\n")  # h1's key claimed for h2
    for policy in ("strict", "accept-new"):
        t = fresh(h2, known_hosts=[str(wrong)], host_key_policy=policy)
        with pytest.raises(HostKeyError) as info:
            t.run(["touch", f"{scratch}/ran"])
        assert "CHANGED" in str(info.value) and "man-in-the-middle" in str(info.value)
        assert not t.connected
    assert not (scratch / "ran").exists()
    assert wrong.read_text() == f"[{h2.ip}]:{h2.port} {h1.hostkey_pub}\n", "the file is left alone"


def test_accept_new_records_an_unknown_key(
    ssh_hosts: list[tuple[LabHost, Path]], fresh: Callable[..., SSHTransport], tmp_path: Path
) -> None:
    host, _ = ssh_hosts[1]
    tofu = tmp_path / "sub" / "known_hosts"
    t = fresh(host, known_hosts=[str(tofu)], host_key_policy="accept-new")
    assert t.run(["true"]).ok
    assert tofu.read_text() == f"[{host.ip}]:{host.port} {host.hostkey_pub}\n"
    assert tofu.stat().st_mode & 0o777 == 0o600
    strict = fresh(host, known_hosts=[str(tofu)])
    assert strict.run(["echo", "trusted"]).stdout == "trusted\n"
    again = fresh(host, known_hosts=[str(tofu)], host_key_policy="accept-new")
    again.run(["true"])
    assert tofu.read_text().count(host.ip) == 1, "a known key is not recorded twice"


# ---------------------------------------------------------------- unreachable hosts
def test_closed_port_is_unreachable(ssh_lab: SshLab, fresh: Callable[..., SSHTransport]) -> None:
    host = ssh_lab.hosts[0]
    t = fresh(host, port=free_port(host.ip))
    err = finishes(lambda: t.run(["true"]))
    assert isinstance(err, HostUnreachable) and "refused" in str(err)


def test_unresolvable_name_is_unreachable(ssh_lab: SshLab) -> None:
    t = SSHTransport("no-such-host.invalid", key_filename=str(ssh_lab.client_key), connect_timeout=3)
    err = finishes(lambda: t.run(["true"]))
    assert isinstance(err, HostUnreachable) and "resolve" in str(err)


def test_rejected_key_is_an_authentication_failure(fresh: Callable[..., SSHTransport], tmp_path: Path) -> None:
    other = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    t = fresh(key_filename=str(other))
    with pytest.raises(HostUnreachable, match="authentication failed"):
        t.run(["true"])
    missing = fresh(key_filename=str(tmp_path / "nope"))
    with pytest.raises(HostUnreachable, match="cannot read key file"):
        missing.run(["true"])


def test_a_dropped_connection_fails_the_command_and_the_next_one_reconnects(
    fresh: Callable[..., SSHTransport],
) -> None:
    t = fresh()
    first = t.run(["sh", "-c", 'echo "$SSH_CONNECTION"']).stdout
    # the login shell's parent is this connection's sshd session process
    err = finishes(lambda: t.run_shell("kill -9 $PPID; sleep 20", timeout=30))
    assert isinstance(err, HostUnreachable) and "connection lost" in str(err)
    assert not t.connected
    second = t.run(["sh", "-c", 'echo "$SSH_CONNECTION"']).stdout
    assert second != first and t.connected


def test_close_is_idempotent_and_counts_round_trips(fresh: Callable[..., SSHTransport]) -> None:
    t = fresh()
    assert not t.connected and t.round_trips == 0
    t.connect()
    assert t.connected and t.round_trips == 0
    t.run(["true"])
    t.run(["false"], check=False)
    assert t.round_trips == 2
    t.close()
    t.close()
    assert not t.connected


# ---------------------------------------------------------------- network faults
def test_proxy_command_reaches_a_host_in_a_namespace(netns_host: LabHost, fresh: Callable[..., SSHTransport]) -> None:
    t = fresh(netns_host)
    assert t.run(["hostname"]).stdout.strip() == f"lab-{netns_host.name}"
    assert t.run(["sh", "-c", 'echo "$SSH_CONNECTION"']).stdout.split()[2] == netns_host.ip


def test_a_cut_network_fails_within_the_timeout(
    ssh_lab: SshLab, netns_host: LabHost, fresh: Callable[..., SSHTransport]
) -> None:
    t = fresh(netns_host, connect_timeout=2)
    assert t.run(["true"]).ok
    marker = f"sleep 4{uuid.uuid4().int % 1000}.5"
    box: list[Any] = []
    running = threading.Thread(target=lambda: box.append(finishes(lambda: t.run(["sh", "-c", marker], timeout=3))))
    running.start()
    wait_until(lambda: pgrep(marker), "the command started", 20.0)
    ssh_lab.cut(netns_host)
    running.join(HANG_GUARD)
    err = box[0]
    assert isinstance(err, CommandFailed) and err.result.timed_out, err
    # the next command cannot even open a session: unreachable, within connect_timeout
    err = finishes(lambda: t.run(["true"], timeout=3))
    assert isinstance(err, HostUnreachable), err
    # a new connection attempt on the cut network times out too
    err = finishes(lambda: t.run(["true"], timeout=3))
    assert isinstance(err, HostUnreachable), err
    ssh_lab.restore(netns_host)
    back = finishes(lambda: t.run(["echo", "back"]))
    assert isinstance(back, CommandResult) and back.stdout == "back\n", back


def test_many_fast_parallel_commands_never_break_the_connection(fresh: Callable[..., SSHTransport]) -> None:
    """Regression: an EOF sent after the server's CLOSE made sshd drop the connection
    ("ieof packet referred to nonexistent channel"), failing every command on it."""
    for _ in range(40):
        t = fresh()
        errors: list[BaseException] = []

        def one(i: int, t: SSHTransport = t) -> None:
            try:
                assert t.run(["echo", str(i)]).stdout == f"{i}\n"
            except BaseException as exc:  # collected and asserted below
                errors.append(exc)

        threads = [threading.Thread(target=one, args=(i,)) for i in range(20)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(HANG_GUARD)
        assert not errors, errors
        t.close()
