"""Parameters of ``ssl.check``, ``ssl.renew`` and ``ssl.issue`` (and the certbot options they share)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from maintkit.action import Params

DEFAULT_CONFIG_DIR = "/etc/letsencrypt"
DEFAULT_LOGS_DIR = "/var/log/letsencrypt"


class EndpointParams(Params):
    """Where the served certificate is read (shared by the ssl actions)."""

    host: str | None = Field(None, description="Host to connect to (default: the host of the environment's url)")
    port: int | None = Field(None, ge=1, le=65535, description="TLS port (default: the url's https port, else 443)")
    server_name: str | None = Field(None, description="Name asked for with SNI and matched (default: the url's host)")
    ca_bundle: str | None = Field(
        None, description="PEM CA file on the controller to verify the chain (default: the system store)"
    )
    timeout: float = Field(10.0, gt=0, description="Seconds for each TLS handshake")


class SslCheckParams(EndpointParams):
    """Parameters of ``ssl.check``."""

    warn_days: float = Field(30, ge=0, description="Warn when fewer days are left")
    fail_days: float = Field(14, ge=0, description="Fail when fewer days are left")
    cert_file: str | None = Field(None, description="Also read this certificate file on the host (openssl over SSH)")
    require_trusted: bool = Field(True, description="Fail when the chain does not verify")
    require_name: bool = Field(True, description="Fail when the certificate's names do not cover the server name")
    report_only: bool = Field(False, description="Never fail: report problems as warnings (e.g. before ssl.renew)")


class CertbotParams(EndpointParams):
    """The certbot lineage, command and directories (shared by ``ssl.renew`` and ``ssl.issue``)."""

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


class SslRenewParams(CertbotParams):
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


class SslIssueParams(CertbotParams):
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


__all__ = [
    "DEFAULT_CONFIG_DIR",
    "DEFAULT_LOGS_DIR",
    "CertbotParams",
    "EndpointParams",
    "SslCheckParams",
    "SslIssueParams",
    "SslRenewParams",
]
