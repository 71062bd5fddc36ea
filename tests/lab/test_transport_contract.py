"""The Transport contract, one set of tests for every implementation: the FakeTransport of
:mod:`maintkit.testing`, LocalTransport, SSHTransport and OpenSSHTransport (a lab sshd, as the login user).

The fake cannot run anything: it is told what a real host answers (``_fake_answers``, the
same outputs the real transports are checked against here) and must then behave like them:
quoted command lines, exit codes, CommandFailed with ``check``, stdin fed from bytes or a
stream, raw stdout to a sink, undecodable output, timeouts, binary put/get, errors.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from maintkit.errors import CommandFailed, TransportError
from maintkit.testing import TIMEOUT, Answer, FakeTransport
from maintkit.transport.base import Transport, build_command, join
from maintkit.transport.local import LocalTransport
from tests.lab.openssh_helpers import control_home, openssh_transport

KINDS = ["fake", "local", "ssh", "openssh"]
BINARY = bytes(range(256)) * 4 + b"\r\n\0end"
BIG = os.urandom(3 * 1024 * 1024 + 7)  # larger than any pipe or channel window
QUOTED = ["a b", "$(touch x)", "`id`", "'q'", '"dq"', ";|&", "-n", "*", "\\"]
SLEEP = ["sh", "-c", "echo started; exec sleep 30"]
#: the shell exits 5 at once; a process it leaves waits until that shell is gone (``tail
#: --pid``), then writes 3 MiB to stdout and ``late`` to stderr
LATE_SIZE = 3 * 1024 * 1024
AFTER_EXIT = (
    f"( tail -s 0.01 --pid=$$ -f /dev/null; head -c {LATE_SIZE} /dev/zero | tr '\\0' z; printf late >&2 ) & exit 5"
)


@dataclass
class Subject:
    """A transport under test and a directory it may write (the same one on disk for local/ssh)."""

    kind: str
    transport: Transport
    work: Path


def _fake_answers(work: Path) -> dict[str, Answer]:
    """What a real host answers to the commands of these tests (checked below for local/ssh)."""
    script = build_command(script="printf out; printf err >&2; exit 3")
    return {
        script: (3, "out", "err"),
        join(["sh", "-c", "echo bad >&2; exit 7"]): (7, "", "bad\n"),
        join(["printf", "%s|", *QUOTED]): (0, "".join(f"{q}|" for q in QUOTED), ""),
        join(["cat"]): lambda data: (0, data, ""),
        join(["printf", "\\377"]): (0, b"\xff", ""),
        build_command(["pwd"], cwd=str(work)): (0, f"{work}\n", ""),
        build_command(["sh", "-c", 'echo "$V"'], env={"V": "$(x) `y` ;z"}): (0, "$(x) `y` ;z\n", ""),
        join(SLEEP): TIMEOUT,
        join(["true"]): (0, "", ""),
        build_command(script=AFTER_EXIT): (5, b"z" * LATE_SIZE, "late"),
    }


@pytest.fixture(params=KINDS)
def subject(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Subject]:
    """Each transport in turn; ssh and local share a directory the login user owns."""
    kind: str = request.param
    if kind == "fake":
        work = Path("/srv/fake-work")
        yield Subject(kind, FakeTransport(responses=_fake_answers(work)), work)
        return
    ssh_hosts = request.getfixturevalue("ssh_hosts")
    host, scratch = ssh_hosts[0]
    if kind == "openssh":  # the system's ssh; its master is ended after the test
        with control_home() as home:
            ssh = openssh_transport(host, home)
            try:
                yield Subject(kind, ssh, scratch)
            finally:
                ssh.close()
        return
    transport: Transport = LocalTransport() if kind == "local" else host.transport()
    try:
        yield Subject(kind, transport, scratch)
    finally:
        transport.close()


def test_is_a_transport_with_a_host_name(subject: Subject) -> None:
    assert isinstance(subject.transport, Transport)
    assert isinstance(subject.transport.host, str) and subject.transport.host


def test_exit_code_and_output_without_check(subject: Subject) -> None:
    t = subject.transport
    res = t.run_shell("printf out; printf err >&2; exit 3", check=False)
    assert (res.exit_code, res.stdout, res.stderr, res.stdout_bytes) == (3, "out", "err", b"out")
    assert (res.ok, res.failed, res.timed_out, res.host) == (False, True, False, t.host)
    assert res.command == build_command(script="printf out; printf err >&2; exit 3")
    assert t.run(["true"]).ok


def test_output_written_after_the_shell_exited_arrives_whole(subject: Subject) -> None:
    """Output that comes after the command's exit status (a process the command left writes it
    once the shell is gone) is part of the result, whole, with the shell's exit code: the
    OpenSSH transport lost the end of such output before 13a4910."""
    res = subject.transport.run_shell(AFTER_EXIT, check=False)
    assert (res.exit_code, res.stderr, res.timed_out) == (5, "late", False)
    assert res.stdout_bytes == b"z" * LATE_SIZE


def test_check_raises_command_failed_with_the_result(subject: Subject) -> None:
    t = subject.transport
    argv = ["sh", "-c", "echo bad >&2; exit 7"]
    with pytest.raises(CommandFailed) as info:
        t.run(argv)
    assert info.value.result.exit_code == 7 and info.value.result.stderr == "bad\n"
    assert info.value.host == t.host
    assert str(info.value) == f"{t.host}: command failed with exit 7: {join(argv)}\nbad"
    assert t.run(argv, check=False).exit_code == 7


def test_arguments_arrive_literally(subject: Subject) -> None:
    res = subject.transport.run(["printf", "%s|", *QUOTED])
    assert res.command == join(["printf", "%s|", *QUOTED])
    assert res.stdout == "".join(f"{q}|" for q in QUOTED)


@pytest.mark.parametrize("stream", [False, True], ids=["bytes", "stream"])
def test_stdin_is_fed_and_stdout_is_binary_safe(subject: Subject, stream: bool) -> None:
    res = subject.transport.run(["cat"], stdin=io.BytesIO(BIG) if stream else BIG)
    assert res.stdout_bytes == BIG
    assert subject.transport.run(["cat"], stdin=b"").stdout_bytes == b""


def test_stdout_sink_gets_the_raw_bytes(subject: Subject) -> None:
    sink = io.BytesIO()
    res = subject.transport.run(["cat"], stdin=BINARY, stdout_sink=sink)
    assert sink.getvalue() == BINARY
    assert (res.stdout, res.stdout_bytes, res.exit_code) == ("", None, 0)


def test_output_that_is_not_utf8_is_replaced_in_text_kept_in_bytes(subject: Subject) -> None:
    res = subject.transport.run(["printf", "\\377"])
    assert (res.stdout, res.stdout_bytes) == ("\ufffd", b"\xff")


def test_cwd_and_env(subject: Subject) -> None:
    t = subject.transport
    assert t.run(["pwd"], cwd=str(subject.work)).stdout == f"{subject.work}\n"
    assert t.run(["sh", "-c", 'echo "$V"'], env={"V": "$(x) `y` ;z"}).stdout == "$(x) `y` ;z\n"


def test_timeout_gives_exit_124_and_raises_with_check(subject: Subject) -> None:
    t = subject.transport
    res = t.run(SLEEP, timeout=1, check=False)
    assert (res.timed_out, res.exit_code, res.ok) == (True, 124, False)
    with pytest.raises(CommandFailed) as info:
        t.run(SLEEP, timeout=1)
    assert info.value.result.timed_out
    assert str(info.value) == f"{t.host}: command timed out after 1 s: {join(SLEEP)}"


def test_put_get_binary_round_trip_and_replace(subject: Subject) -> None:
    t = subject.transport
    path = str(subject.work / "blob.bin")
    t.put(BINARY, path, mode=0o640)
    assert t.get(path) == BINARY
    t.put(b"second\n", path)
    assert t.get(path) == b"second\n"
    t.put(b"", path)
    assert t.get(path) == b""


def test_get_of_a_missing_file_is_a_transport_error(subject: Subject) -> None:
    missing = str(subject.work / "no-such-file")
    with pytest.raises(TransportError) as info:
        subject.transport.get(missing)
    assert info.value.host == subject.transport.host
    assert missing in str(info.value) and "No such file or directory" in str(info.value)


def test_put_refuses_an_invalid_mode_and_writes_nothing(subject: Subject) -> None:
    path = str(subject.work / "never.bin")
    with pytest.raises(ValueError, match="invalid file mode"):
        subject.transport.put(b"x", path, mode=0o10000)
    with pytest.raises(TransportError):
        subject.transport.get(path)


def test_close_is_idempotent(subject: Subject) -> None:
    subject.transport.close()
    subject.transport.close()
