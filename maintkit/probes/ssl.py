"""TLS certificate facts (:class:`CertInfo`) and the probes that read certificate files on a host.

:class:`CertFile` reads a PEM file (``cat``) and parses it on the controller with
``cryptography``; :class:`OpensslEnddate` asks ``openssl x509`` on the host for the expiry
and serial only. The served certificate (read from the controller over TLS) is the
``ssl.check`` action's business, in ``maintkit/actions/ssl/served.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from ipaddress import ip_address
from typing import Any, ClassVar

from maintkit.probes import Probe, RawOutput
from maintkit.transport.base import quote

_DAY = 86400.0


@dataclass(frozen=True)
class CertInfo:
    """The facts of one certificate that checks and reports use."""

    subject: str
    issuer: str
    serial: str
    not_before: datetime
    not_after: datetime
    names: tuple[str, ...]

    @property
    def seconds_left(self) -> float:
        """Seconds until it expires (negative when expired)."""
        return (self.not_after - datetime.now(UTC)).total_seconds()

    @property
    def days_left(self) -> float:
        """Days until it expires (fractional; negative when expired)."""
        return self.seconds_left / _DAY

    def covers(self, name: str) -> bool:
        """True when one of the certificate's names matches ``name`` (wildcards: one label)."""
        return any(_name_matches(pattern, name) for pattern in self.names)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready facts (for the audit log and reports)."""
        return {
            "subject": self.subject,
            "issuer": self.issuer,
            "serial": self.serial,
            "not_before": self.not_before.isoformat(timespec="seconds"),
            "not_after": self.not_after.isoformat(timespec="seconds"),
            "days_left": round(self.days_left, 2),
            "names": list(self.names),
        }


def cert_info_from_der(der: bytes) -> CertInfo:
    """Parse a DER certificate."""
    from cryptography import x509

    return _cert_info(x509.load_der_x509_certificate(der))


def cert_info_from_pem(pem: bytes) -> CertInfo:
    """Parse the first certificate of a PEM file."""
    from cryptography import x509

    return _cert_info(x509.load_pem_x509_certificate(pem))


def _cert_info(cert: Any) -> CertInfo:
    from cryptography import x509

    names: list[str] = []
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names += [str(n) for n in san.get_values_for_type(x509.DNSName)]
        names += [str(n) for n in san.get_values_for_type(x509.IPAddress)]
    except x509.ExtensionNotFound:
        pass
    return CertInfo(
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        serial=format(cert.serial_number, "x"),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        names=tuple(names),
    )


def _name_matches(pattern: str, name: str) -> bool:
    pattern, name = pattern.lower().rstrip("."), name.lower().rstrip(".")
    if pattern == name:
        return True
    if not pattern.startswith("*.") or is_ip(name):
        return False
    head, _, rest = name.partition(".")
    return bool(head) and rest == pattern[2:]


def is_ip(text: str) -> bool:
    """True when ``text`` is an IPv4 or IPv6 address (not a host name)."""
    try:
        ip_address(text)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class CertFile(Probe["CertInfo | None"]):
    """Read a PEM certificate file on the host (None when missing or unreadable)."""

    path: str
    kind: ClassVar[str] = "certfile"

    def inline(self) -> bool:
        return True

    def script(self) -> str:
        return f"cat -- {quote(self.path)}"

    def parse(self, raw: RawOutput) -> CertInfo | None:
        if raw.exit_code != 0 or "BEGIN CERTIFICATE" not in raw.stdout:
            return None
        try:
            return cert_info_from_pem(raw.stdout.encode())
        except ValueError:
            return None


@dataclass(frozen=True)
class OpensslEnddate(Probe["tuple[datetime, str] | None"]):
    """``openssl x509 -enddate -serial -noout -in FILE``: expiry and serial of a certificate file."""

    path: str
    kind: ClassVar[str] = "openssl-enddate"

    def inline(self) -> bool:
        return True

    def script(self) -> str:
        return f"openssl x509 -enddate -serial -noout -in {quote(self.path)}"

    def parse(self, raw: RawOutput) -> tuple[datetime, str] | None:
        values = dict(line.split("=", 1) for line in raw.stdout.splitlines() if "=" in line)
        if raw.exit_code != 0 or "notAfter" not in values:
            return None
        try:
            end = datetime.strptime(values["notAfter"].strip(), "%b %d %H:%M:%S %Y %Z").replace(tzinfo=UTC)
        except ValueError:
            return None
        return end, values.get("serial", "").strip().lower().lstrip("0")


__all__ = ["CertFile", "CertInfo", "OpensslEnddate", "cert_info_from_der", "cert_info_from_pem", "is_ip"]
