"""A private ACME certificate authority (pebble) and a certbot helper, fully offline.

:class:`AcmeServer` starts ``pebble-challtestsrv`` as the DNS server that answers
every name with 127.0.0.1, and ``pebble`` using it, both on free loopback ports.
Pebble validates http-01 challenges on 127.0.0.1:``http_port``: a web server
must serve the certbot webroot there (see :func:`serve_http01`). Pebble keeps
its state in memory and makes a new root CA at each start, so a certbot config
dir belongs to one pebble run.

Pebble's own API is TLS with a server certificate made here for
127.0.0.1/localhost; :attr:`AcmeServer.ca_bundle` is the CA file for it (give it
to certbot as ``REQUESTS_CA_BUNDLE``).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import ssl
import subprocess
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography import x509

from maintkit.demo.tls import new_ca, new_leaf, pem, write_key
from tests.gates import wait_until
from tests.lab.procs import free_port

if TYPE_CHECKING:
    from tests.lab.web import WebStack

PEBBLE = "/usr/bin/pebble"
CHALLTESTSRV = "/usr/bin/pebble-challtestsrv"
CERTBOT = "/usr/bin/certbot"
START_TIMEOUT = 15.0


class AcmeError(RuntimeError):
    """pebble or challtestsrv failed to start or answer (the message carries the log tail)."""


class AcmeServer:
    """pebble + pebble-challtestsrv on 127.0.0.1.

    ``cert_validity`` (seconds) sets ``certificateValidityPeriod``: a short value
    (for example one day) issues certificates that are due for renewal at once.
    """

    def __init__(self, base_dir: str | Path, *, cert_validity: int | None = 86400) -> None:
        self.base_dir = Path(base_dir)
        self.cert_validity = cert_validity
        self.ca_bundle = self.base_dir / "api-ca.pem"
        self.pebble_log = self.base_dir / "pebble.log"
        self.challtestsrv_log = self.base_dir / "challtestsrv.log"
        self.acme_port = self.mgmt_port = self.http_port = self.tls_port = 0
        self.dns_port = self.chall_mgmt_port = 0
        #: The webroot served on ``http_port``, once :func:`serve_http01` ran.
        self.webroot: Path | None = None
        self._pebble: subprocess.Popen[bytes] | None = None
        self._chall: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> AcmeServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def directory_url(self) -> str:
        """The ACME directory URL (``--server`` for certbot)."""
        return f"https://127.0.0.1:{self.acme_port}/dir"

    def start(self) -> AcmeServer:
        """Start challtestsrv, then pebble; raise :class:`AcmeError` with the log tail on failure."""
        self.base_dir.mkdir(parents=True, exist_ok=True)
        cert, key = self._make_api_cert()
        self.acme_port, self.mgmt_port, self.http_port, self.tls_port, self.chall_mgmt_port = (
            free_port() for _ in range(5)
        )
        self.dns_port = free_port(udp=True)
        try:
            self._start_challtestsrv()
            self._start_pebble(cert, key)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop pebble and challtestsrv."""
        for proc in (self._pebble, self._chall):
            if proc is not None:
                _stop_process(proc)
        self._pebble = self._chall = None

    def _make_api_cert(self) -> tuple[Path, Path]:
        ca_cert, ca_key = new_ca("maintkit lab ACME API CA", days=30)
        cert, key = new_leaf(ca_cert, ca_key, days=30)
        self.ca_bundle.write_bytes(pem(ca_cert))
        cert_path, key_path = self.base_dir / "api-cert.pem", self.base_dir / "api-key.pem"
        cert_path.write_bytes(pem(cert))
        write_key(key_path, key)
        return cert_path, key_path

    def _start_challtestsrv(self) -> None:
        argv = [
            CHALLTESTSRV,
            "-defaultIPv4",
            "127.0.0.1",
            "-defaultIPv6",
            "",
            "-dns01",
            f"127.0.0.1:{self.dns_port}",
            "-http01",
            "",
            "-https01",
            "",
            "-tlsalpn01",
            "",
            "-management",
            f"127.0.0.1:{self.chall_mgmt_port}",
        ]
        self._chall = _spawn(argv, self.challtestsrv_log)
        _wait_until(lambda: _port_open(self.chall_mgmt_port), self._chall, "pebble-challtestsrv", self.challtestsrv_log)

    def _start_pebble(self, cert: Path, key: Path) -> None:
        settings: dict[str, object] = {
            "listenAddress": f"127.0.0.1:{self.acme_port}",
            "managementListenAddress": f"127.0.0.1:{self.mgmt_port}",
            "certificate": str(cert),
            "privateKey": str(key),
            "httpPort": self.http_port,
            "tlsPort": self.tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": False,
        }
        if self.cert_validity is not None:
            settings["certificateValidityPeriod"] = self.cert_validity
        conf = self.base_dir / "pebble-config.json"
        conf.write_text(json.dumps({"pebble": settings}, indent=2))
        env = {
            **os.environ,
            "PEBBLE_VA_NOSLEEP": "1",
            "PEBBLE_WFE_NONCEREJECT": "0",
            "PEBBLE_AUTHZREUSE": "0",
        }
        argv = [PEBBLE, "-config", str(conf), "-dnsserver", f"127.0.0.1:{self.dns_port}", "-strict=false"]
        self._pebble = _spawn(argv, self.pebble_log, env=env)
        _wait_until(
            lambda: _port_open(self.acme_port) and _port_open(self.mgmt_port) and self._directory_answers(),
            self._pebble,
            "pebble",
            self.pebble_log,
        )

    def _ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_bundle))

    def _directory_answers(self) -> bool:
        try:
            with urllib.request.urlopen(self.directory_url, timeout=2, context=self._ssl_context()) as resp:  # noqa: S310
                return bool(resp.status == 200)
        except OSError:
            return False

    def issuing_root_pem(self) -> str:
        """PEM of pebble's current root CA (new at each pebble start), from the management API."""
        url = f"https://127.0.0.1:{self.mgmt_port}/roots/0"
        with urllib.request.urlopen(url, timeout=5, context=self._ssl_context()) as resp:  # noqa: S310
            return str(resp.read().decode())

    def _chall_post(self, path: str, payload: dict[str, object]) -> None:
        req = urllib.request.Request(  # noqa: S310 (fixed local URL)
            f"http://127.0.0.1:{self.chall_mgmt_port}{path}",
            data=json.dumps(payload).encode(),
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=5) as resp:  # noqa: S310
            if resp.status != 200:
                raise AcmeError(f"challtestsrv {path} answered {resp.status}")

    def make_fail(self, name: str) -> None:
        """Make validations of ``name`` fail: its A record now points at 127.0.0.2 (nothing listens there)."""
        self._chall_post("/add-a", {"host": name, "addresses": ["127.0.0.2"]})

    def unfail(self, name: str) -> None:
        """Undo :meth:`make_fail` (``name`` resolves to 127.0.0.1 again)."""
        self._chall_post("/clear-a", {"host": name})

    def certbot(self, base_dir: str | Path) -> Certbot:
        """A :class:`Certbot` with fresh config/work/logs dirs under ``base_dir``, pointed at this server."""
        base = Path(base_dir)
        return Certbot(base / "config", base / "work", base / "logs", self.directory_url, self.ca_bundle)


def serve_http01(acme: AcmeServer, web: WebStack, name: str = "acme-http01", mode: int = 0o755) -> Path:
    """Create a webroot under ``web`` and serve it on ``acme.http_port``; return the webroot.

    certbot ``--webroot -w WEBROOT`` then passes pebble's http-01 validation.
    """
    webroot = web.make_site_dir(name)
    webroot.chmod(mode)
    web.add_site(name, str(webroot), php=False, port=acme.http_port)
    acme.webroot = webroot
    return webroot


@dataclass(frozen=True)
class Certbot:
    """certbot run against a given ACME server with its own config, work and logs dirs."""

    config_dir: Path
    work_dir: Path
    logs_dir: Path
    server: str
    ca_bundle: Path

    def run(self, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        """Run ``certbot ARGS`` non-interactively (not checked: look at ``returncode``)."""
        argv = [
            CERTBOT,
            *args,
            "--config-dir",
            str(self.config_dir),
            "--work-dir",
            str(self.work_dir),
            "--logs-dir",
            str(self.logs_dir),
            "--server",
            self.server,
            "--non-interactive",
            "--agree-tos",
            "--register-unsafely-without-email",
        ]
        env = {**os.environ, "REQUESTS_CA_BUNDLE": str(self.ca_bundle)}
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env, check=False)

    def certonly_webroot(
        self, name: str, webroot: str | Path, extra: Sequence[str] = ()
    ) -> subprocess.CompletedProcess[str]:
        """Issue a certificate for ``name`` with an http-01 challenge written under ``webroot``."""
        return self.run("certonly", "--webroot", "-w", str(webroot), "-d", name, "--cert-name", name, *extra)

    def renew(self, cert_name: str, extra: Sequence[str] = ()) -> subprocess.CompletedProcess[str]:
        """``certbot renew --cert-name NAME --no-random-sleep-on-renew`` (renews only when due)."""
        return self.run("renew", "--cert-name", cert_name, "--no-random-sleep-on-renew", *extra)

    def fresh_account(self, cert_name: str) -> str:
        """Replace this config dir's ACME account with a newly registered one; return its id.

        pebble may reuse an account's valid authorization for a new order (about one order in a
        hundred even with ``PEBBLE_AUTHZREUSE=0``: its check is ``rand.Intn(100) > percent``),
        and a reused authorization skips the validation a failing test counts on. A new account
        has no authorization to reuse. It is registered in a scratch config dir and takes the
        old one's place (certbot renews with the only account there is; the old one is kept
        beside the config dir), and ``cert_name``'s renewal configuration names it.
        """
        scratch = replace(self, config_dir=self.config_dir.parent / f"{self.config_dir.name}-account")
        shutil.rmtree(scratch.config_dir, ignore_errors=True)
        res = scratch.run("register")
        if res.returncode != 0:
            raise AcmeError(f"certbot register failed: {res.stdout}{res.stderr}")
        (meta,) = (scratch.config_dir / "accounts").rglob("meta.json")
        (old,) = (p.parent for p in (self.config_dir / "accounts").rglob("meta.json"))
        old.rename(self.config_dir.parent / f"retired-account-{old.name}")
        shutil.copytree(meta.parent, old.parent / meta.parent.name)
        shutil.rmtree(scratch.config_dir)
        conf = self.config_dir / "renewal" / f"{cert_name}.conf"
        lines = conf.read_text().splitlines()
        swapped = [f"account = {meta.parent.name}" if ln.startswith("account = ") else ln for ln in lines]
        if swapped == lines:
            raise AcmeError(f"{conf} names no account")
        conf.write_text("\n".join(swapped) + "\n")
        return meta.parent.name

    def account_of(self, cert_name: str) -> str:
        """The ACME account id ``cert_name``'s renewal configuration names."""
        conf = self.config_dir / "renewal" / f"{cert_name}.conf"
        return next(ln.split(" = ", 1)[1] for ln in conf.read_text().splitlines() if ln.startswith("account = "))

    def live_dir(self, cert_name: str) -> Path:
        """``<config>/live/<name>`` holding fullchain.pem, privkey.pem, cert.pem, chain.pem."""
        return self.config_dir / "live" / cert_name

    def fullchain(self, cert_name: str) -> Path:
        """Path of the current full chain (a symlink certbot moves on renewal)."""
        return self.live_dir(cert_name) / "fullchain.pem"

    def privkey(self, cert_name: str) -> Path:
        """Path of the current private key."""
        return self.live_dir(cert_name) / "privkey.pem"

    def certificate(self, cert_name: str) -> x509.Certificate:
        """The current leaf certificate of ``cert_name``."""
        return x509.load_pem_x509_certificate((self.live_dir(cert_name) / "cert.pem").read_bytes())


# -- small private process helpers -------------------------------------------------------------


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _spawn(argv: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env)


def _log_tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return f"(no log: {exc})"


def _wait_until(ready: Callable[[], bool], proc: subprocess.Popen[bytes], what: str, log: Path) -> None:
    wait_until(
        ready, what, START_TIMEOUT, proc=proc, explain=lambda: f"log tail ({log}):\n{_log_tail(log)}", error=AcmeError
    )


def _stop_process(proc: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    if proc.poll() is not None:
        return
    subprocess.run(["pkill", "-TERM", "-P", str(proc.pid)], check=False)  # none expected; children first
    proc.terminate()
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=grace)
