"""The demo's TLS: a demo CA and a server certificate for 127.0.0.1/localhost, and an HTTPS
front serving the shop with it (for the certificate check)."""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from maintkit.demo.common import DemoServerError, free_port, wait_http
from maintkit.demo.web import ThreadedServer, shop_handler

__all__ = ["TlsFiles", "TlsFront", "make_tls", "new_ca", "new_leaf", "pem", "start_tls", "write_key"]


@dataclass(frozen=True)
class TlsFiles:
    """A demo CA and a server certificate for 127.0.0.1/localhost."""

    ca: Path
    cert: Path
    key: Path


def make_tls(directory: Path, days: int = 90) -> TlsFiles:
    """Create (once) a CA and a server certificate signed by it, with ``cryptography``."""
    files = TlsFiles(directory / "ca.pem", directory / "server.pem", directory / "server.key")
    if files.ca.is_file() and files.cert.is_file() and files.key.is_file():
        return files
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    ca, ca_key = new_ca("maint demo CA")
    cert, key = new_leaf(ca, ca_key, days)
    files.ca.write_bytes(pem(ca))
    files.cert.write_bytes(pem(cert) + pem(ca))
    write_key(files.key, key)
    return files


def new_ca(name: str, days: int = 3650) -> tuple[Any, Any]:
    """A self-signed CA certificate named ``name`` and its (EC P-256) key."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.now(UTC) - timedelta(minutes=5)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    return ca, ca_key


def new_leaf(ca: Any, ca_key: Any, days: int) -> tuple[Any, Any]:
    """A server certificate for localhost and 127.0.0.1 signed by ``ca``, and its key (a new serial each time)."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.now(UTC) - timedelta(minutes=5)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=days))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


def pem(cert: Any) -> bytes:
    """A certificate as PEM."""
    from cryptography.hazmat.primitives import serialization

    return bytes(cert.public_bytes(serialization.Encoding.PEM))


def write_key(path: Path, key: Any) -> None:
    """Write a private key as unencrypted PKCS#8 PEM, created 0600."""
    from cryptography.hazmat.primitives import serialization

    encoding, pkcs8 = serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8
    data = key.private_bytes(encoding, pkcs8, serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


@dataclass
class TlsFront:
    """An HTTPS endpoint serving the demo shop with the demo certificate."""

    port: int
    _server: ThreadedServer

    def stop(self) -> None:
        """Stop it."""
        self._server.stop()


def start_tls(docroot: Path, tls: TlsFiles, preferred_port: int | None = None) -> TlsFront:
    """Serve the shop over TLS on 127.0.0.1 (for the certificate check)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(tls.cert), str(tls.key))
    server = ThreadedServer(shop_handler(docroot, "?"), free_port(preferred_port), ctx)
    client = ssl.create_default_context(cafile=str(tls.ca))
    try:
        wait_http(f"https://127.0.0.1:{server.port}/", context=client)
    except DemoServerError:
        server.stop()
        raise
    return TlsFront(server.port, server)
