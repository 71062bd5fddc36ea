"""benchmarks/latency.py's relay: every byte passes, in order, both ways, and an end is passed on.

Against a real echo server on loopback (no timing is asserted: what the relay's delay costs is
measured by the benchmark, never here).
"""

from __future__ import annotations

import os
import socket
import socketserver
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCH))
try:
    import latency
finally:
    sys.path.remove(str(BENCH))


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(65536):
            self.request.sendall(data)


@pytest.fixture
def echo() -> Iterator[tuple[str, int]]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address  # type: ignore[misc]
    finally:
        server.shutdown()
        server.server_close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.2.200", 0))
        return int(s.getsockname()[1])


def test_every_byte_comes_back_in_order_and_the_end_is_passed_on(echo: tuple[str, int]) -> None:
    relay = latency.Relay(0.002)
    try:
        port = _free_port()
        relay.listen("127.0.2.200", port, echo)
        payload = os.urandom(3 * 1024 * 1024 + 17)
        with socket.create_connection(("127.0.2.200", port)) as conn:
            sender = threading.Thread(target=lambda: (conn.sendall(payload), conn.shutdown(socket.SHUT_WR)))
            sender.start()
            got = bytearray()
            while chunk := conn.recv(65536):  # ends when the echo server's end came back through the relay
                got += chunk
            sender.join()
        assert bytes(got) == payload
    finally:
        relay.stop()
    assert not relay.thread.is_alive()
