"""The served certificate: a TLS handshake from the controller, and how its dates are shown."""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from maintkit.action import Context
from maintkit.errors import CheckFailed
from maintkit.probes.ssl import CertInfo, cert_info_from_der, is_ip


def format_left(days: float) -> str:
    """``"45 days"``, ``"0.9 days"``, ``"expired 2.0 days ago"``."""
    if days < 0:
        return f"expired {-days:.1f} days ago"
    return f"{int(days)} days" if days >= 10 else f"{days:.1f} days"


def format_date(dt: datetime) -> str:
    """``"2027-03-04 12:43 UTC"``."""
    return dt.strftime("%Y-%m-%d %H:%M UTC")


@dataclass(frozen=True)
class Endpoint:
    """Where to connect and which name to ask for (SNI)."""

    host: str
    port: int
    server_name: str

    def __str__(self) -> str:
        sni = "" if self.server_name == self.host else f" (SNI {self.server_name})"
        return f"{self.host}:{self.port}{sni}"


@dataclass(frozen=True)
class Served:
    """The certificate a TLS server presented, and whether its chain verified."""

    endpoint: Endpoint
    info: CertInfo
    chain_ok: bool
    chain_error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready facts, including where they were read."""
        return {
            **self.info.to_dict(),
            "host": self.endpoint.host,
            "port": self.endpoint.port,
            "server_name": self.endpoint.server_name,
            "covers_name": self.info.covers(self.endpoint.server_name),
            "chain_ok": self.chain_ok,
            "chain_error": self.chain_error,
        }


def resolve_endpoint(ctx: Context, host: str | None, port: int | None, server_name: str | None) -> Endpoint | None:
    """Host/port/SNI from the parameters, else from the environment's URL (port 443 unless https with a port)."""
    parts = urlsplit(ctx.env.url) if ctx.env.url else None
    url_host = parts.hostname if parts else None
    url_port = parts.port if parts and parts.scheme == "https" else None
    h = host or url_host
    if not h:
        return None
    return Endpoint(h, port or url_port or 443, server_name or url_host or h)


def _handshake(endpoint: Endpoint, context: ssl.SSLContext, timeout: float) -> bytes:
    sni = None if is_ip(endpoint.server_name) else endpoint.server_name
    with (
        socket.create_connection((endpoint.host, endpoint.port), timeout=timeout) as raw,
        context.wrap_socket(raw, server_hostname=sni) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    if not der:
        raise ssl.SSLError(f"{endpoint} presented no certificate")
    return der


def fetch_served(endpoint: Endpoint, *, ca_bundle: str | None = None, timeout: float = 10.0) -> Served:
    """Handshake with ``endpoint`` from the controller and read the certificate it serves.

    The chain is verified against ``ca_bundle`` (a PEM file on the controller) or the
    system store; names are judged separately (:meth:`CertInfo.covers`). Raises
    :class:`OSError` / :class:`ssl.SSLError` when no handshake is possible.
    """
    verifying = ssl.create_default_context(cafile=ca_bundle) if ca_bundle else ssl.create_default_context()
    verifying.check_hostname = False
    try:
        der = _handshake(endpoint, verifying, timeout)
        return Served(endpoint, cert_info_from_der(der), True)
    except ssl.SSLCertVerificationError as exc:
        error = str(exc.verify_message or exc)
    lenient = ssl.create_default_context()
    lenient.check_hostname = False
    lenient.verify_mode = ssl.CERT_NONE
    der = _handshake(endpoint, lenient, timeout)
    return Served(endpoint, cert_info_from_der(der), False, error)


def served_or_fail(endpoint: Endpoint, ca_bundle: str | None, timeout: float) -> Served:
    """:func:`fetch_served`, raising CheckFailed when no certificate can be read."""
    try:
        return fetch_served(endpoint, ca_bundle=ca_bundle, timeout=timeout)
    except (OSError, ssl.SSLError, ValueError) as exc:
        raise CheckFailed(f"cannot read the certificate served by {endpoint}: {exc}") from None


__all__ = ["Endpoint", "Served", "fetch_served", "format_date", "format_left", "resolve_endpoint", "served_or_fail"]
