"""The start-up daemon's messages and where its socket lives (maintkit.cli.daemon_wire)."""

from __future__ import annotations

import os
import socket
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from maintkit.cli.daemon_wire import (
    MAX_MESSAGE,
    WireError,
    daemon_dir,
    decode,
    receive,
    send,
    socket_path,
    switched_off,
    take,
)

messages = st.dictionaries(st.text(max_size=20), st.text(max_size=200) | st.integers() | st.none(), max_size=8)


@given(messages)
def test_a_message_arrives_whole(message: dict[str, object]) -> None:
    a, b = socket.socketpair()
    with a, b:
        send(a, message)
        assert receive(b) == (message, [])


def test_descriptors_ride_along_and_stay_usable() -> None:
    a, b = socket.socketpair()
    r, w = os.pipe()
    with a, b:
        send(a, {"op": "run"}, [w])
        os.close(w)
        message, fds = receive(b, maxfds=4)
        assert message == {"op": "run"} and len(fds) == 1
        os.write(fds[0], b"through")
        os.close(fds[0])
        assert os.read(r, 16) == b"through"
    os.close(r)


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (b"", "the other side closed the connection"),
        (struct.pack("!I", 10) + b"{}", "the other side closed the connection"),
        (struct.pack("!I", MAX_MESSAGE + 1), f"message of {MAX_MESSAGE + 1} bytes (the limit is {MAX_MESSAGE})"),
        (struct.pack("!I", 2) + b"[]", "a message is not a JSON object"),
    ],
)
def test_a_broken_message_is_an_error(raw: bytes, why: str) -> None:
    a, b = socket.socketpair()
    with b:
        a.sendall(raw)
        a.close()
        with pytest.raises(WireError) as caught:
            receive(b)
        assert str(caught.value) == why


def test_the_socket_is_per_user_cache_and_installation() -> None:
    assert daemon_dir({"XDG_CACHE_HOME": "/c"}) == "/c/maintkit/daemon"
    assert daemon_dir({"XDG_CACHE_HOME": "relative", "HOME": "/h"}) == "/h/.cache/maintkit/daemon"
    path = socket_path({"HOME": "/h"})
    assert os.path.dirname(path) == "/h/.cache/maintkit/daemon"
    assert os.path.basename(path).startswith("d-") and len(os.path.basename(path)) == len("d-") + 16 + len(".sock")


@pytest.mark.parametrize(
    ("value", "off"), [("0", True), ("off", True), (" No ", True), ("false", True), ("1", False), ("", False)]
)
def test_maint_daemon_0_switches_it_off(value: str, off: bool) -> None:
    assert switched_off({"MAINT_DAEMON": value}) is off


def test_messages_are_taken_from_a_buffer_as_they_complete() -> None:
    a, b = socket.socketpair()
    with a, b:
        send(a, {"op": "run"})
        send(a, {"op": "go"})
        raw = b.recv(1 << 16)
    buffer = bytearray(raw[:3])
    assert take(buffer) is None and buffer == raw[:3]
    buffer += raw[3:10]
    assert take(buffer) is None
    buffer += raw[10:]
    assert take(buffer) == {"op": "run"}
    assert take(buffer) == {"op": "go"} and buffer == bytearray()


@pytest.mark.parametrize(
    ("body", "why"),
    [(b"[" * 100_000, "a message is not JSON: RecursionError"), (b"{", "a message is not JSON: JSONDecodeError"),
     (b'"x"', "a message is not a JSON object")],
)  # fmt: skip
def test_a_body_that_is_not_an_object_is_an_error(body: bytes, why: str) -> None:
    with pytest.raises(WireError) as caught:
        decode(body)
    assert str(caught.value) == why
