"""LocalTransport: the same protocol on this machine (subprocess, process groups, files)."""

from __future__ import annotations

import hashlib
import io
import os
import pwd
import queue
import subprocess
import threading
import uuid
from pathlib import Path
from typing import IO

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from maintkit.errors import CommandFailed, TransportError
from maintkit.transport import local
from maintkit.transport.base import Transport
from maintkit.transport.local import LocalTransport
from tests.gates import wait_until


def pgrep(pattern: str) -> bool:
    return subprocess.run(["pgrep", "-f", pattern], capture_output=True, check=False).returncode == 0


def test_is_a_transport() -> None:
    t = LocalTransport()
    assert isinstance(t, Transport) and t.host == "local" and t.connected
    assert LocalTransport(name="web1").host == "web1"


def test_exit_codes_output_and_command_failed() -> None:
    t = LocalTransport()
    res = t.run_shell("echo out; echo err >&2; exit 3", check=False)
    assert (res.exit_code, res.stdout, res.stderr, res.ok) == (3, "out\n", "err\n", False)
    with pytest.raises(CommandFailed) as info:
        t.run(["sh", "-c", "echo bad >&2; exit 7"])
    assert info.value.result.exit_code == 7 and "bad" in str(info.value)
    assert t.run_shell("kill -TERM $$", check=False).exit_code == 128 + 15
    assert t.round_trips == 3


def test_stdin_stdout_sink_cwd_env(tmp_path: Path) -> None:
    t = LocalTransport()
    data = os.urandom(2 * 1024 * 1024 + 5)
    assert t.run(["cat"], stdin=data).stdout_bytes == data
    assert t.run(["sha256sum"], stdin=io.BytesIO(data)).stdout.split()[0] == hashlib.sha256(data).hexdigest()
    sink = io.BytesIO()
    res = t.run(["cat"], stdin=data, stdout_sink=sink)
    assert sink.getvalue() == data and res.stdout == "" and res.stdout_bytes is None
    assert t.run(["cat"]).stdout == ""
    assert t.run(["pwd"], cwd=str(tmp_path)).stdout.strip() == str(tmp_path)
    assert t.run(["sh", "-c", 'echo "$V"'], env={"V": "$(x) `y` ;z"}).stdout == "$(x) `y` ;z\n"
    assert t.run(["printf", "\\377"]).stdout == "\ufffd"


#: where a pump's progress keeps its count (the slot of the transport's own class)
_SLOT = local.Progress.__dict__["n"]


class _Counted(local.Progress):
    """A pump's progress that wakes :data:`_ARRIVED`'s waiters whenever it moves."""

    __slots__ = ()

    @property
    def n(self) -> int:
        return _SLOT.__get__(self)  # type: ignore[no-any-return]

    @n.setter
    def n(self, value: int) -> None:
        with _ARRIVED:
            _SLOT.__set__(self, value)
            _ARRIVED.notify_all()


#: notified on every move of a :class:`_Counted`
_ARRIVED = threading.Condition()


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> queue.SimpleQueue[float]:
    """Each wait the transport makes for a pump after the exit, as it begins (its timeout);
    ``_KILL_GRACE`` is 1 s."""
    monkeypatch.setattr(local, "_KILL_GRACE", 1.0)
    seen: queue.SimpleQueue[float] = queue.SimpleQueue()
    real_join = local._join

    def join(thread: threading.Thread, timeout: float) -> None:
        seen.put(timeout)
        real_join(thread, timeout)

    monkeypatch.setattr(local, "_join", join)
    return seen


@pytest.fixture
def gated_waits(monkeypatch: pytest.MonkeyPatch) -> queue.SimpleQueue[float]:
    """As :func:`waits`, but a wait that begins ends only once more output arrived or its pump
    ended (about 60 s at most): what a wait of ``_KILL_GRACE`` sees when the output it waits
    for comes within it, on a machine however loaded. The transport's decision after each wait
    (wait again, or give up) is its own."""
    counted: list[_Counted] = []

    class Counted(_Counted):
        __slots__ = ()

        def __init__(self) -> None:
            super().__init__()
            counted.append(self)

    monkeypatch.setattr(local, "_KILL_GRACE", 1.0)
    monkeypatch.setattr(local, "Progress", Counted)
    seen: queue.SimpleQueue[float] = queue.SimpleQueue()

    def join(thread: threading.Thread, timeout: float) -> None:
        with _ARRIVED:
            before = sum(p.n for p in counted)
            seen.put(timeout)  # the test's gate opens now
            # woken by the output itself; the pump's end wakes no one, so look again now and then
            for _ in range(1200):
                if sum(p.n for p in counted) > before or not thread.is_alive():
                    return
                _ARRIVED.wait(0.05)

    monkeypatch.setattr(local, "_join", join)
    return seen


@pytest.mark.parametrize("stream", ["stdout", "stderr"])
def test_output_still_arriving_after_the_exit_is_read_whole(
    gated_waits: queue.SimpleQueue[float], tmp_path: Path, stream: str
) -> None:
    """The command exits at once; a process it left writes the rest of its output, one line per
    gate: a line the test writes into a FIFO the process reads (blocking, no polling). Each gate
    opens while the transport is waiting for the output after the exit (each wait is seen
    through ``local._join``; a wait ends once the line arrived, see :func:`gated_waits`), so
    the output arrives over five waits of ``_KILL_GRACE``: all of it is read, where one wait
    per stream returned three lines of six and the exit code as if that were all, and where
    stderr's lines did not count as output still arriving (the process holds stdout open too,
    with nothing on it). Closing the FIFO ends the process whatever happens."""
    fifo = tmp_path / "gates"
    os.mkfifo(fifo)
    held: list[IO[str]] = []

    def open_gates() -> None:
        held.append(open(fifo, "w"))  # noqa: SIM115 - closed by the test, whatever happens
        for _ in range(1, 6):
            gated_waits.get(timeout=60)
            held[0].write("\n")
            held[0].flush()

    gates = threading.Thread(target=open_gates, daemon=True)
    gates.start()
    to = " >&2" if stream == "stderr" else ""
    line = f"( for i in 1 2 3 4 5; do read -r _ || exit 0; echo line$i{to}; done ) < {fifo} & echo line0{to}"
    try:
        res = LocalTransport().run_shell(line, timeout=120)
        gates.join(timeout=60)
    finally:  # the end of the FIFO ends the writer: no process left behind
        for f in held:
            f.close()

    assert (res.exit_code, res.timed_out) == (0, False)
    assert getattr(res, stream) == "".join(f"line{i}\n" for i in range(6))
    assert getattr(res, "stderr" if stream == "stdout" else "stdout") == ""


def test_streams_held_open_with_nothing_coming_are_given_up_after_one_wait(
    waits: queue.SimpleQueue[float], tmp_path: Path
) -> None:
    """A process the command left holds stdout and stderr open; nothing is written to either (so
    no byte can arrive during a wait, however late the pumps run): after one wait of
    ``_KILL_GRACE`` with nothing on either stream, both are given up at once (each stream
    waited for in turn took two). The process reads a FIFO until the test closes it."""
    fifo = tmp_path / "hold"
    os.mkfifo(fifo)
    try:
        res = LocalTransport().run_shell(f"( read -r _ < {fifo} ) & exit 3", timeout=120, check=False)
    finally:
        with open(fifo, "w"):  # the process's read ends: nothing is left behind
            pass
    assert (res.exit_code, res.stdout, res.stderr, res.timed_out) == (3, "", "", False)
    assert [waits.get_nowait() for _ in range(waits.qsize())] == [1.0]


def test_timeout_kills_the_whole_process_group() -> None:
    t = LocalTransport()
    marker = f"sleep 5{uuid.uuid4().int % 1000}.5"
    with pytest.raises(CommandFailed) as info:
        t.run_shell(f"echo started; {marker} & {marker}; echo never", timeout=1)
    res = info.value.result
    assert res.timed_out and res.exit_code == 124 and res.stdout == "started\n"
    assert "timed out after 1 s" in str(info.value)
    wait_until(lambda: not pgrep(marker), "every process of the command is gone", 20.0)
    assert LocalTransport(command_timeout=0.3).run(["sleep", "5"], check=False).timed_out


def test_become_runs_through_sudo() -> None:
    t = LocalTransport(become=True)
    assert t.run(["id", "-u"]).stdout.strip() == "0"
    nobody = LocalTransport(become=True, sudo_user="nobody")
    assert nobody.run(["id", "-un"]).stdout.strip() == "nobody"
    assert nobody.run(["id", "-un"], sudo=False).stdout.strip() == pwd.getpwuid(os.geteuid()).pw_name


def test_put_is_atomic_and_keeps_mode_and_owner(tmp_path: Path) -> None:
    t = LocalTransport()
    path = tmp_path / "conf.txt"
    t.put(b"one", str(path))
    assert path.read_bytes() == b"one" and path.stat().st_mode & 0o777 == 0o644
    path.chmod(0o600)
    os.chown(path, 65534, 65534)
    t.put(b"two", str(path))
    st = path.stat()
    assert (st.st_mode & 0o777, st.st_uid, st.st_gid) == (0o600, 65534, 65534)
    t.put(b"three", str(path), mode=0o640)
    assert path.stat().st_mode & 0o777 == 0o640 and t.get(str(path)) == b"three"
    assert [p.name for p in tmp_path.iterdir()] == ["conf.txt"]
    with pytest.raises(TransportError, match="cannot write"):
        t.put(b"x", str(tmp_path / "missing" / "f"))
    with pytest.raises(TransportError, match="cannot read"):
        t.get(str(tmp_path / "missing"))
    with pytest.raises(ValueError):
        t.put(b"x", str(path), mode=0o17777)


@given(
    args=st.lists(
        st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\x00"), max_size=30),
        max_size=6,
    )
)
@settings(max_examples=50, deadline=None)
def test_arguments_are_literal(args: list[str]) -> None:
    res = LocalTransport().run(["printf", "%s\\0", "START", *args])
    assert res.stdout_bytes is not None
    assert [p.decode() for p in res.stdout_bytes.split(b"\0")[1:-1]] == args
