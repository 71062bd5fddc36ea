"""``ssl.check``, ``ssl.renew``, ``ssl.issue``: TLS certificates, judged from the outside.

``ssl.check`` connects from the controller to the environment's host and reads the
certificate the server actually serves (not the file on disk): days left, issuer,
serial, whether its names cover the server name and whether its chain verifies.

``ssl.renew`` renews a certbot lineage on the host when it is due by *our* threshold
(``renew_days``), reloads the web server and then verifies from the outside that the
new certificate is served. ``ssl.issue`` obtains the first certificate of a lineage.
"""

from __future__ import annotations

import socket
import ssl
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from ipaddress import ip_address
from typing import Any, ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from maintkit._text import tail as text_tail
from maintkit.action import Action, Context, Params
from maintkit.errors import ApplyFailed, CheckFailed, NotReversible, VerifyFailed
from maintkit.probes import Probe, RawOutput
from maintkit.results import Change, Check
from maintkit.transport.base import quote

DEFAULT_CONFIG_DIR = "/etc/letsencrypt"
DEFAULT_LOGS_DIR = "/var/log/letsencrypt"
_DAY = 86400.0


# ---------------------------------------------------------------------------------------------
# certificates


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
    if not pattern.startswith("*.") or _is_ip(name):
        return False
    head, _, rest = name.partition(".")
    return bool(head) and rest == pattern[2:]


def _is_ip(text: str) -> bool:
    try:
        ip_address(text)
    except ValueError:
        return False
    return True


def format_left(days: float) -> str:
    """``"45 days"``, ``"0.9 days"``, ``"expired 2.0 days ago"``."""
    if days < 0:
        return f"expired {-days:.1f} days ago"
    return f"{int(days)} days" if days >= 10 else f"{days:.1f} days"


def _date(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%d %H:%M UTC")


# ---------------------------------------------------------------------------------------------
# the served certificate


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
    sni = None if _is_ip(endpoint.server_name) else endpoint.server_name
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


def _served_or_fail(endpoint: Endpoint, ca_bundle: str | None, timeout: float, action: str) -> Served:
    try:
        return fetch_served(endpoint, ca_bundle=ca_bundle, timeout=timeout)
    except (OSError, ssl.SSLError, ValueError) as exc:
        raise CheckFailed(f"cannot read the certificate served by {endpoint}: {exc}", action=action) from None


# ---------------------------------------------------------------------------------------------
# certificate files on the host


@dataclass(frozen=True)
class CertFile(Probe["CertInfo | None"]):
    """Read a PEM certificate file on the host (None when missing or unreadable)."""

    path: str
    kind: ClassVar[str] = "certfile"

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


# ---------------------------------------------------------------------------------------------
# ssl.check


class _EndpointParams(Params):
    host: str | None = Field(None, description="Host to connect to (default: the host of the environment's url)")
    port: int | None = Field(None, ge=1, le=65535, description="TLS port (default: the url's https port, else 443)")
    server_name: str | None = Field(None, description="Name asked for with SNI and matched (default: the url's host)")
    ca_bundle: str | None = Field(
        None, description="PEM CA file on the controller to verify the chain (default: the system store)"
    )
    timeout: float = Field(10.0, gt=0, description="Seconds for each TLS handshake")


class SslCheckParams(_EndpointParams):
    """Parameters of ``ssl.check``."""

    warn_days: float = Field(30, ge=0, description="Warn when fewer days are left")
    fail_days: float = Field(14, ge=0, description="Fail when fewer days are left")
    cert_file: str | None = Field(None, description="Also read this certificate file on the host (openssl over SSH)")
    require_trusted: bool = Field(True, description="Fail when the chain does not verify")
    require_name: bool = Field(True, description="Fail when the certificate's names do not cover the server name")
    report_only: bool = Field(False, description="Never fail: report problems as warnings (e.g. before ssl.renew)")


class SslCheck(Action[SslCheckParams]):
    """Read the certificate the server serves, from the controller (read-only; never changes anything).

    Fails below ``fail_days``, when the chain does not verify or the names do not cover the
    server name; warns below ``warn_days``. Records ``cert`` (expiry, issuer, serial...) for reports.
    """

    name = "ssl.check"
    Params = SslCheckParams
    summary = "Check the served TLS certificate from outside: expiry, names, chain (read-only)."
    rollback_kind = "noop"
    rollback_reason = "a check changes nothing"
    depends_on_previous = True

    def probes(self, ctx: Context) -> list[Probe[Any]]:
        return [OpensslEnddate(self.params.cert_file)] if self.params.cert_file else []

    def check(self, ctx: Context) -> Check:
        p = self.params
        endpoint = resolve_endpoint(ctx, p.host, p.port, p.server_name)
        if endpoint is None:
            raise CheckFailed(
                "no host to connect to: set url on the environment or host: on the step", action=self.name
            )
        served = _served_or_fail(endpoint, p.ca_bundle, p.timeout, self.name)
        cert = served.to_dict()
        warnings = self._file_warnings(ctx, served, cert)
        ctx.record(cert=cert)
        problems = self._problems(served)
        if problems and not p.report_only:
            raise CheckFailed(f"{endpoint}: " + "; ".join(problems), action=self.name, details={"cert": cert})
        warnings = problems + warnings
        days = served.info.days_left
        if days < p.warn_days and not problems:
            warnings.insert(0, f"expires in {format_left(days)} (warn below {p.warn_days:g})")
        reason = (
            f"{endpoint}: valid until {_date(served.info.not_after)}, {format_left(days)} left, "
            f"issuer {served.info.issuer}, serial {served.info.serial}"
        )
        if warnings:
            reason += "; warning: " + "; ".join(warnings)
            ctx.record(warnings=warnings)
        return Check.ok(reason, cert=cert, warnings=warnings)

    def rollback(self, ctx: Context, changes: list[Change]) -> None:
        """Nothing to undo: ssl.check never changes anything."""

    def _problems(self, served: Served) -> list[str]:
        p = self.params
        info = served.info
        out = []
        if info.days_left < 0:
            out.append(f"the certificate expired on {_date(info.not_after)}")
        elif info.days_left < p.fail_days:
            out.append(
                f"expires in {format_left(info.days_left)} (fail below {p.fail_days:g}), on {_date(info.not_after)}"
            )
        if p.require_trusted and not served.chain_ok:
            out.append(f"the chain does not verify: {served.chain_error}")
        if p.require_name and not info.covers(served.endpoint.server_name):
            out.append(
                f"the certificate names {', '.join(info.names) or '(none)'} do not cover {served.endpoint.server_name}"
            )
        return out

    def _file_warnings(self, ctx: Context, served: Served, cert: dict[str, Any]) -> list[str]:
        path = self.params.cert_file
        if not path:
            return []
        facts = ctx.probe(OpensslEnddate(path))
        if facts is None:
            raise CheckFailed(f"cannot read the certificate file {path} on {ctx.env.display_host}", action=self.name)
        end, serial = facts
        cert["file"] = {"path": path, "not_after": end.isoformat(timespec="seconds"), "serial": serial}
        if serial and serial != served.info.serial.lstrip("0"):
            return [
                f"{path} (serial {serial}, valid until {_date(end)}) is not the certificate served: "
                "reload the web server?"
            ]
        return []


# ---------------------------------------------------------------------------------------------
# certbot


class _CertbotParams(_EndpointParams):
    cert_name: str = Field(..., min_length=1, description="certbot lineage name (--cert-name)")
    certbot: list[str] = Field(default_factory=lambda: ["certbot"], min_length=1, description="certbot command")
    config_dir: str | None = Field(None, description="certbot --config-dir (default /etc/letsencrypt)")
    work_dir: str | None = Field(None, description="certbot --work-dir")
    logs_dir: str | None = Field(None, description="certbot --logs-dir (default /var/log/letsencrypt)")
    env: dict[str, str] = Field(default_factory=dict, description="Extra environment, e.g. REQUESTS_CA_BUNDLE")
    extra_args: list[str] = Field(default_factory=list, description="More certbot arguments")
    certbot_timeout: float = Field(600, gt=0, description="Seconds certbot may take")
    served: bool = Field(True, description="Also judge the certificate the server serves (from the controller)")

    @field_validator("cert_name")
    @classmethod
    def _plain_name(cls, v: str) -> str:
        if "/" in v or v.startswith(".") or v.startswith("-"):
            raise ValueError("a lineage name is a plain name such as shop.example")
        return v

    def live_cert(self) -> str:
        """The lineage's current leaf certificate on the host."""
        return f"{(self.config_dir or DEFAULT_CONFIG_DIR).rstrip('/')}/live/{self.cert_name}/cert.pem"

    def dir_args(self) -> list[str]:
        """``--config-dir`` & co. for the directories that are set."""
        out: list[str] = []
        for flag, value in (
            ("--config-dir", self.config_dir),
            ("--work-dir", self.work_dir),
            ("--logs-dir", self.logs_dir),
        ):
            if value:
                out += [flag, value]
        return out


def _certbot_failure(ctx: Context, p: _CertbotParams, what: str, res: Any, action: str) -> ApplyFailed:
    """An ApplyFailed carrying certbot's output and the tail of its log."""
    log = f"{(p.logs_dir or DEFAULT_LOGS_DIR).rstrip('/')}/letsencrypt.log"
    tail = ctx.run(["tail", "-n", "40", "--", log], check=False, timeout=30)
    output = _summarize_certbot((res.stdout + "\n" + res.stderr).strip())
    note = " (timed out)" if res.timed_out else ""
    return ApplyFailed(
        f"certbot {what} failed with exit {res.exit_code}{note}:\n{output}",
        action=action,
        details={"certbot_output": output, "certbot_log_tail": text_tail(tail.stdout, 6000), "certbot_log": log},
    )


_NOISE = ("Saving debug log", "Ask for help", "Hint:", "Certbot failed to authenticate", "Processing ")


def _summarize_certbot(text: str, limit: int = 10) -> str:
    """The informative lines of certbot's output (no separators, hints or log-file notices)."""
    lines = [
        line.strip()
        for line in text.splitlines()
        if line.strip() and set(line.strip()) - set("- ") and not line.strip().startswith(_NOISE)
    ]
    keep = [line for line in lines if any(k in line for k in ("Detail:", "Type:", "rror", "ailed", "Domain:"))]
    return "\n".join((keep or lines)[-limit:])


def _reload(ctx: Context, argv: list[str] | None, action: str) -> None:
    if not argv:
        return
    res = ctx.run(argv, check=False, timeout=120)
    if not res.ok:
        raise ApplyFailed(
            f"reloading the web server ({' '.join(argv)}) failed with exit {res.exit_code}: "
            f"{text_tail(res.stderr or res.stdout, 500)}",
            action=action,
        )


class SslRenewParams(_CertbotParams):
    """Parameters of ``ssl.renew``."""

    renew_days: float = Field(30, gt=0, description="Renew when fewer days are left (our threshold decides)")
    verify_days: float | None = Field(
        None, gt=0, description="After renewal the served certificate must have more days left (default: renew_days)"
    )
    reload: list[str] | None = Field(
        default_factory=lambda: ["nginx", "-s", "reload"],
        description="Command that reloads the web server (null: none)",
    )
    verify_timeout: float = Field(15, gt=0, description="Seconds to wait for the server to serve the new certificate")


@dataclass
class _RenewPlan:
    mode: Literal["renew", "reload"]
    file: CertInfo
    served: Served | None = None
    data: dict[str, Any] = field(default_factory=dict)


def _stale(served: CertInfo, lineage: CertInfo) -> bool:
    """The server serves an older certificate of this lineage (same names, expires sooner)."""
    return (
        served.serial != lineage.serial
        and {n.lower() for n in served.names} == {n.lower() for n in lineage.names}
        and served.not_after < lineage.not_after
    )


class SslRenew(Action[SslRenewParams]):
    """Renew a certbot lineage when it is due by ``renew_days``, reload the server, verify from outside.

    Uses whatever authenticator the lineage is configured with (``certbot renew --cert-name``,
    forced when our threshold says due). A failed renewal is reported with the tail of
    certbot's log; the old certificate keeps being served. Rollback keeps the renewed
    certificate (it is as valid as the old one, which stays in ``archive/``) and succeeds.
    """

    name = "ssl.renew"
    Params = SslRenewParams
    summary = "Renew a certbot certificate when due, reload the web server, verify the served certificate."
    rollback_kind = "noop"
    rollback_reason = "a renewed certificate is valid and kept; the previous one stays in archive/"

    def probes(self, ctx: Context) -> list[Probe[Any]]:
        return [CertFile(self.params.live_cert())]

    def _endpoint(self, ctx: Context) -> Endpoint | None:
        p = self.params
        return resolve_endpoint(ctx, p.host, p.port, p.server_name) if p.served else None

    def check(self, ctx: Context) -> Check:
        p = self.params
        info = ctx.probe(CertFile(p.live_cert()))
        if info is None:
            raise CheckFailed(
                f"no certbot certificate {p.cert_name!r} ({p.live_cert()} is missing or unreadable); "
                "issue it with ssl.issue",
                action=self.name,
            )
        endpoint = self._endpoint(ctx)
        served = _served_or_fail(endpoint, p.ca_bundle, p.timeout, self.name) if endpoint else None
        data: dict[str, Any] = {"lineage": {**info.to_dict(), "path": p.live_cert()}}
        if served is not None:
            data["cert"] = served.to_dict()
        ctx.record(**data)
        left = info.days_left
        if left < p.renew_days:
            reason = (
                f"due: valid until {_date(info.not_after)}, {format_left(left)} left (renews below {p.renew_days:g})"
            )
            return Check.change(reason, snapshot=_RenewPlan("renew", info, served, data), **data)
        if served is not None and _stale(served.info, info):
            reason = (
                f"the lineage is renewed (valid until {_date(info.not_after)}) but {served.endpoint} still serves "
                f"serial {served.info.serial} ({format_left(served.info.days_left)} left): reload needed"
            )
            return Check.change(reason, snapshot=_RenewPlan("reload", info, served, data), **data)
        reason = f"valid until {_date(info.not_after)}, {format_left(left)} left"
        if served is not None and served.info.serial != info.serial:
            reason += f"; note: {served.endpoint} serves another certificate ({', '.join(served.info.names)})"
        return Check.ok(reason, **data)

    def apply(self, ctx: Context, check: Check) -> list[Change]:
        p = self.params
        plan: _RenewPlan = check.snapshot
        before = {"serial": plan.file.serial, "not_after": plan.file.not_after.isoformat(timespec="seconds")}
        if plan.mode == "reload":
            _reload(ctx, p.reload, self.name)
            return [Change(f"certificate {p.cert_name}", "web server reloaded", before=before, after=before)]
        argv = [*p.certbot, "renew", "--cert-name", p.cert_name, "--no-random-sleep-on-renew", "--force-renewal"]
        argv += ["--non-interactive", *p.dir_args(), *p.extra_args]
        res = ctx.run(argv, env=p.env or None, check=False, timeout=p.certbot_timeout)
        if not res.ok:
            raise _certbot_failure(ctx, p, "renew", res, self.name)
        ctx.invalidate()
        new = ctx.probe(CertFile(p.live_cert()))
        if new is None or new.serial == plan.file.serial:
            raise ApplyFailed(
                f"certbot renew exited 0 but {p.live_cert()} did not change: {text_tail(res.stdout, 400)}",
                action=self.name,
            )
        _reload(ctx, p.reload, self.name)
        after = {"serial": new.serial, "not_after": new.not_after.isoformat(timespec="seconds")}
        ctx.record(lineage={**new.to_dict(), "path": p.live_cert()}, renewed={"from": before, "to": after})
        return [Change(f"certificate {p.cert_name}", "renewed", before=before, after=after)]

    def verify(self, ctx: Context) -> None:
        p = self.params
        ctx.invalidate()
        info = ctx.probe(CertFile(p.live_cert()))
        if info is None:
            raise VerifyFailed(f"{p.live_cert()} is missing after renewal", action=self.name)
        need = p.verify_days if p.verify_days is not None else p.renew_days
        endpoint = self._endpoint(ctx)
        if endpoint is None:
            self._days_ok(info, need)
            return
        served = self._wait_served(endpoint, info.serial)
        ctx.record(cert=served.to_dict())
        if served.info.serial != info.serial:
            raise VerifyFailed(
                f"{endpoint} still serves serial {served.info.serial}, not the renewed {info.serial} "
                f"(after {p.verify_timeout:g} s): is the web server using {p.live_cert()} and did it reload?",
                action=self.name,
                details={"cert": served.to_dict()},
            )
        if not served.chain_ok:
            raise VerifyFailed(
                f"the renewed certificate's chain does not verify: {served.chain_error}", action=self.name
            )
        self._days_ok(served.info, need)

    def _days_ok(self, info: CertInfo, need: float) -> None:
        if info.days_left <= need:
            raise VerifyFailed(
                f"the renewed certificate has only {format_left(info.days_left)} left (needs more than {need:g}); "
                "the CA issues shorter certificates than renew_days: lower renew_days or set verify_days",
                action=self.name,
            )

    def _wait_served(self, endpoint: Endpoint, serial: str) -> Served:
        p = self.params
        deadline = time.monotonic() + p.verify_timeout
        while True:
            try:
                served = fetch_served(endpoint, ca_bundle=p.ca_bundle, timeout=p.timeout)
            except (OSError, ssl.SSLError, ValueError) as exc:
                if time.monotonic() >= deadline:
                    raise VerifyFailed(
                        f"cannot read the certificate served by {endpoint}: {exc}", action=self.name
                    ) from None
            else:
                if served.info.serial == serial or time.monotonic() >= deadline:
                    return served
            time.sleep(0.3)

    def rollback(self, ctx: Context, changes: list[Change]) -> None:
        """Keep the renewed certificate: it is as valid as the old one (which remains in ``archive/``)."""
        for change in changes:
            ctx.event(
                "ssl.rollback_kept",
                target=change.target,
                reason="a renewed certificate is kept on rollback: it is valid, the previous one remains in archive/",
            )


# ---------------------------------------------------------------------------------------------
# ssl.issue


class SslIssueParams(_CertbotParams):
    """Parameters of ``ssl.issue``."""

    cert_name: str = Field("", description="certbot lineage name (default: the first domain)")
    domains: list[str] = Field(..., min_length=1, description="Names on the certificate")
    authenticator: Literal["webroot", "nginx", "apache", "standalone"] = Field("webroot")
    webroot: str | None = Field(None, description="Webroot for the http-01 challenge (authenticator webroot)")
    email: str | None = Field(None, description="Account e-mail (default: register without e-mail)")
    server: str | None = Field(None, description="ACME directory URL (default: certbot's, Let's Encrypt)")
    key_type: Literal["ecdsa", "rsa"] | None = None
    reload: list[str] | None = Field(None, description="Command that reloads the web server afterwards")
    served: bool = Field(False, description="Also read the served certificate (after issuance, when configured)")

    @model_validator(mode="after")
    def _defaults(self) -> SslIssueParams:
        if not self.cert_name:
            self.cert_name = self.domains[0].removeprefix("*.")
        if self.authenticator == "webroot" and not self.webroot:
            raise ValueError("authenticator webroot needs webroot: the directory served at /.well-known/acme-challenge")
        return self


class SslIssue(Action[SslIssueParams]):
    """Obtain the first certificate of a lineage with certbot (idempotent: unchanged when it exists for these names).

    Rollback deletes a lineage it created (``certbot delete``); changing the names of an
    existing lineage is not reversible.
    """

    name = "ssl.issue"
    Params = SslIssueParams
    summary = "Issue a certificate with certbot for new shops (unchanged when the lineage has these names)."
    rollback_kind = "undo"

    def probes(self, ctx: Context) -> list[Probe[Any]]:
        return [CertFile(self.params.live_cert())]

    def check(self, ctx: Context) -> Check:
        p = self.params
        info = ctx.probe(CertFile(p.live_cert()))
        want = sorted({d.lower() for d in p.domains})
        if info is None:
            return Check.change(f"no certificate {p.cert_name!r} yet: issue for {', '.join(want)}", snapshot=None)
        have = sorted({n.lower() for n in info.names})
        ctx.record(lineage={**info.to_dict(), "path": p.live_cert()})
        if have == want:
            return Check.ok(f"{p.cert_name} covers {', '.join(want)}, valid until {_date(info.not_after)}")
        diff = "".join(f"-{n}\n" for n in have if n not in want) + "".join(f"+{n}\n" for n in want if n not in have)
        return Check.change(
            f"{p.cert_name} covers {', '.join(have)}: reissue for {', '.join(want)}", diff=diff, snapshot=info
        )

    def apply(self, ctx: Context, check: Check) -> list[Change]:
        p = self.params
        existed: CertInfo | None = check.snapshot
        argv = [*p.certbot, "certonly", "--non-interactive", "--agree-tos", "--cert-name", p.cert_name]
        argv += ["--webroot", "-w", p.webroot or ""] if p.authenticator == "webroot" else [f"--{p.authenticator}"]
        for domain in p.domains:
            argv += ["-d", domain]
        argv += ["--email", p.email] if p.email else ["--register-unsafely-without-email"]
        if p.server:
            argv += ["--server", p.server]
        if p.key_type:
            argv += ["--key-type", p.key_type]
        if existed is not None:
            argv += ["--expand", "--renew-with-new-domains"]
        argv += [*p.dir_args(), *p.extra_args]
        res = ctx.run(argv, env=p.env or None, check=False, timeout=p.certbot_timeout)
        if not res.ok:
            raise _certbot_failure(ctx, p, "certonly", res, self.name)
        ctx.invalidate()
        new = ctx.probe(CertFile(p.live_cert()))
        if new is None:
            raise ApplyFailed(f"certbot exited 0 but {p.live_cert()} is missing", action=self.name)
        _reload(ctx, p.reload, self.name)
        ctx.record(lineage={**new.to_dict(), "path": p.live_cert()})
        before = list(existed.names) if existed else None
        return [
            Change(
                f"certificate {p.cert_name}",
                "issued" if existed is None else "reissued",
                before,
                list(new.names),
                existed is None,
            )
        ]

    def rollback(self, ctx: Context, changes: list[Change]) -> None:
        p = self.params
        for change in changes:
            if not change.undo:
                raise NotReversible(
                    f"the names of {p.cert_name} were changed; the previous certificate remains in archive/",
                    action=self.name,
                )
            argv = [*p.certbot, "delete", "--cert-name", p.cert_name, "--non-interactive", *p.dir_args()]
            res = ctx.run(argv, env=p.env or None, check=False, timeout=p.certbot_timeout)
            if not res.ok:
                raise ApplyFailed(
                    f"certbot delete failed: {text_tail(res.stderr or res.stdout, 400)}", action=self.name
                )


__all__ = [
    "CertFile",
    "CertInfo",
    "Endpoint",
    "OpensslEnddate",
    "Served",
    "SslCheck",
    "SslIssue",
    "SslRenew",
    "cert_info_from_der",
    "cert_info_from_pem",
    "fetch_served",
    "format_left",
    "resolve_endpoint",
]
