"""ssl.renew's verify waits for the renewed certificate on several handshakes in a row.

A reloading nginx hands connections to its old and new workers for a moment; a real TLS
server on loopback plays that script (which certificate each handshake gets).
"""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography import x509

from maintkit.actions.ssl import Endpoint
from maintkit.actions.ssl.params import SslRenewParams
from maintkit.actions.ssl.renew import SslRenew
from maintkit.demo.tls import TlsFiles, new_ca, new_leaf, pem, write_key


@dataclass
class ScriptedTls:
    """Serves connection ``i`` with ``script[i]`` (the last entry repeats); counts them."""

    script: list[TlsFiles]
    sock: socket.socket = field(default_factory=lambda: socket.create_server(("127.0.0.1", 0)))
    served: int = 0

    def __post_init__(self) -> None:
        self.contexts: dict[Path, ssl.SSLContext] = {}
        for files in self.script:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(str(files.cert), str(files.key))
            self.contexts[files.cert] = ctx
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    def _serve(self) -> None:
        while True:
            try:
                raw, _ = self.sock.accept()
            except OSError:
                return
            files = self.script[min(self.served, len(self.script) - 1)]
            self.served += 1  # counted before the handshake the client waits for
            try:
                with self.contexts[files.cert].wrap_socket(raw, server_side=True):
                    pass
            except (OSError, ssl.SSLError):
                raw.close()


def _serial(files: TlsFiles) -> str:
    return format(x509.load_pem_x509_certificate(files.cert.read_bytes()).serial_number, "x")


@pytest.fixture
def certs(tmp_path: Path) -> Iterator[tuple[TlsFiles, TlsFiles, Path]]:
    """The old and the renewed certificate, both issued by one CA (the bundle)."""
    ca, ca_key = new_ca("test CA", days=2)
    bundle = tmp_path / "ca.pem"
    bundle.write_bytes(pem(ca))
    pairs = []
    for name in ("old", "new"):
        cert, key = new_leaf(ca, ca_key, days=1)
        files = TlsFiles(bundle, tmp_path / f"{name}.pem", tmp_path / f"{name}.key")
        files.cert.write_bytes(pem(cert))
        write_key(files.key, key)
        pairs.append(files)
    yield pairs[0], pairs[1], bundle


def _wait(script: list[TlsFiles], want: TlsFiles, bundle: Path, timeout: float = 15) -> tuple[str, int]:
    server = ScriptedTls(script)
    try:
        action = SslRenew(SslRenewParams(cert_name="shop", ca_bundle=str(bundle), verify_timeout=timeout))
        served = action._wait_served(Endpoint("127.0.0.1", server.port, "localhost"), _serial(want))
        return served.info.serial, server.served
    finally:
        server.sock.close()


def test_three_handshakes_in_a_row_must_show_the_renewed_certificate(certs: tuple[TlsFiles, TlsFiles, Path]) -> None:
    old, new, bundle = certs
    serial, handshakes = _wait([old, new, old, new, new, old, new, new, new, old], new, bundle)
    assert serial == _serial(new)
    assert handshakes == 9  # new at 2, 4-5 and 7-9: only the third run of three counts


def test_a_server_serving_the_renewed_certificate_at_once_takes_three_handshakes(
    certs: tuple[TlsFiles, TlsFiles, Path],
) -> None:
    _, new, bundle = certs
    assert _wait([new], new, bundle) == (_serial(new), 3)


def test_the_deadline_returns_what_is_served(certs: tuple[TlsFiles, TlsFiles, Path]) -> None:
    old, new, bundle = certs
    serial, handshakes = _wait([old], new, bundle, timeout=0.5)
    assert serial == _serial(old)  # verify then reports "still serves serial ..."
    assert handshakes >= 2
