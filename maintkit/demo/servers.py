"""Local servers of the demo shop: the web front (PHP's built-in server or Python's), a TLS
endpoint with a self-signed certificate, and optionally a private MariaDB.

Everything listens on 127.0.0.1 only and is stopped by :meth:`stop` (by pid for processes).
"""

from __future__ import annotations

import contextlib
import http.server
import os
import pwd
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css",
    ".js": "application/javascript",
    ".txt": "text/plain",
}


class DemoServerError(RuntimeError):
    """A demo server could not start (the message says why)."""


def free_port(preferred: int | None = None) -> int:
    """``preferred`` if it is free on 127.0.0.1, else any free port."""
    for port in (preferred, 0):
        if port is None:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(s.getsockname()[1])
    raise DemoServerError("no free port on 127.0.0.1")


def wait_http(url: str, timeout: float = 10.0, context: ssl.SSLContext | None = None) -> None:
    """Wait until ``url`` answers (any HTTP status)."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2, context=context):  # noqa: S310 - loopback URL we built
                return
        except urllib.error.HTTPError:
            return
        except OSError as exc:
            last = exc
            time.sleep(0.05)
    raise DemoServerError(f"{url} did not answer within {timeout:.0f} s ({last})")


# --------------------------------------------------------------------------- web front
def _handler(docroot: Path, release_hint: str) -> type[http.server.BaseHTTPRequestHandler]:
    """Static files from ``docroot`` (resolved per request, so a symlink switch shows at once),
    plus a small dynamic cart at ``/cart/`` (used when PHP is not installed)."""

    class Handler(http.server.BaseHTTPRequestHandler):
        server_version = "maint-demo"
        sys_version = ""

        def log_message(self, format: str, *args: Any) -> None:
            return

        def _send(
            self, status: int, body: bytes, ctype: str = "text/html; charset=utf-8", extra: dict[str, str] | None = None
        ) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            for k, v in (extra or {}).items():
                self.send_header(k, v)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _root(self) -> Path | None:
            try:
                return docroot.resolve(strict=True)
            except OSError:
                return None

        def do_HEAD(self) -> None:
            self.do_GET()

        def do_GET(self) -> None:
            root = self._root()
            if root is None:
                self._send(503, b"<h1>503</h1><p>No release deployed yet.</p>")
                return
            path = self.path.split("?", 1)[0].split("#", 1)[0]
            if path.rstrip("/") == "/cart":
                self._cart(root)
                return
            target = (root / path.lstrip("/")).resolve()
            if not target.is_relative_to(root):
                self._send(404, b"not found")
                return
            if target.is_dir():
                target = target / "index.html"
            if not target.is_file():
                self._send(404, b"<h1>404</h1><p>not found</p>")
                return
            self._send(200, target.read_bytes(), _TYPES.get(target.suffix, "application/octet-stream"))

        def _cart(self, root: Path) -> None:
            release = (
                (root.parent / "RELEASE").read_text().strip() if (root.parent / "RELEASE").is_file() else release_hint
            )
            cookie = self.headers.get("Cookie", "")
            session = cookie.split("cart=", 1)[1].split(";", 1)[0] if "cart=" in cookie else secrets.token_hex(8)
            body = (
                "<!doctype html><title>Cart - Demo Shop</title><h1>Your cart</h1>"
                f"<p>1 x Demo mug, 12.00 EUR</p><p>release {release}</p>"
            ).encode()
            self._send(200, body, extra={"Set-Cookie": f"cart={session}; Path=/; HttpOnly"})

    return Handler


class _ThreadedServer:
    """An HTTP(S) server in a daemon thread."""

    def __init__(
        self, handler: type[http.server.BaseHTTPRequestHandler], port: int, context: ssl.SSLContext | None = None
    ) -> None:
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
        self.httpd.daemon_threads = True
        if context is not None:
            self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.port = int(self.httpd.server_address[1])
        self.thread = threading.Thread(target=self.httpd.serve_forever, name=f"maint-demo-{self.port}", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


ROUTER_PHP = r"""<?php
// Router for PHP's built-in server: serves <path>/current/public resolved per request,
// so a release switch (symlink) shows at once.
$root = realpath(getenv('MAINT_DEMO_DOCROOT'));
if ($root === false) { http_response_code(503); echo "No release deployed yet.\n"; return true; }
$path = parse_url($_SERVER['REQUEST_URI'], PHP_URL_PATH);
$file = realpath($root . $path);
if ($file === false || strncmp($file, $root, strlen($root)) !== 0) {
    http_response_code(404); echo "not found\n"; return true;
}
if (is_dir($file)) {
    foreach (['index.php', 'index.html'] as $index) {
        if (is_file($file . '/' . $index)) { $file = $file . '/' . $index; break; }
    }
}
if (!is_file($file)) { http_response_code(404); echo "not found\n"; return true; }
if (substr($file, -4) === '.php') { chdir(dirname($file)); require $file; return true; }
$types = [
    'html' => 'text/html; charset=utf-8', 'css' => 'text/css', 'js' => 'application/javascript', 'txt' => 'text/plain',
];
header('Content-Type: ' . ($types[pathinfo($file, PATHINFO_EXTENSION)] ?? 'application/octet-stream'));
readfile($file);
return true;
"""


@dataclass
class WebFront:
    """The demo shop's web server on 127.0.0.1:``port``, PHP's when available."""

    port: int
    kind: str
    _server: _ThreadedServer | None = None
    _proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Base URL."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        """The PHP server's pid (None for the in-process Python server)."""
        return self._proc.pid if self._proc is not None else None

    def stop(self) -> None:
        """Stop the server (the PHP process by its pid)."""
        if self._server is not None:
            self._server.stop()
            self._server = None
        if self._proc is not None:
            _terminate(self._proc)
            self._proc = None


def start_web(docroot: Path, workdir: Path, preferred_port: int | None = None, use_php: bool = True) -> WebFront:
    """Start the web front serving ``docroot`` (``<path>/current/public``)."""
    php = shutil.which("php") if use_php else None
    port = free_port(preferred_port)
    if php:
        router = workdir / "router.php"
        router.write_text(ROUTER_PHP)
        log = (workdir / "php-server.log").open("ab")
        env = {**os.environ, "MAINT_DEMO_DOCROOT": str(docroot), "PHP_CLI_SERVER_WORKERS": "4"}
        proc = subprocess.Popen(
            [php, "-S", f"127.0.0.1:{port}", "-t", str(workdir), str(router)],
            cwd=workdir,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        front = WebFront(port, "php", _proc=proc)
    else:
        front = WebFront(port, "python", _server=_ThreadedServer(_handler(docroot, "?"), port))
    try:
        wait_http(front.url + "/")
    except DemoServerError:
        front.stop()
        raise
    return front


def stop_leftover(pid: int, marker: str, timeout: float = 20.0) -> bool:
    """Stop process ``pid`` if it is still running and its command line mentions ``marker``
    (a server an earlier, killed demo run started). Returns True when it was stopped."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return False
    if marker not in cmdline:
        return False
    with contextlib.suppress(ProcessLookupError):
        if os.getpgid(pid) == pid:  # started with its own session: stop its workers too
            os.killpg(pid, signal.SIGTERM)
        else:
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
        time.sleep(0.05)
    return True


def _terminate(proc: subprocess.Popen[bytes], timeout: float = 5.0) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=timeout)


# --------------------------------------------------------------------------- TLS
@dataclass(frozen=True)
class TlsFiles:
    """A demo CA and a server certificate for 127.0.0.1/localhost."""

    ca: Path
    cert: Path
    key: Path


def make_tls(directory: Path, days: int = 90) -> TlsFiles:
    """Create (once) a CA and a server certificate signed by it, with ``cryptography``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    files = TlsFiles(directory / "ca.pem", directory / "server.pem", directory / "server.key")
    if files.ca.is_file() and files.cert.is_file() and files.key.is_file():
        return files
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    now = datetime.now(UTC) - timedelta(minutes=5)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "maint demo CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    import ipaddress

    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
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
    pem = serialization.Encoding.PEM
    files.ca.write_bytes(ca.public_bytes(pem))
    files.cert.write_bytes(cert.public_bytes(pem) + ca.public_bytes(pem))
    key_bytes = key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    fd = os.open(files.key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key_bytes)
    return files


@dataclass
class TlsFront:
    """An HTTPS endpoint serving the demo shop with the demo certificate."""

    port: int
    _server: _ThreadedServer

    def stop(self) -> None:
        """Stop it."""
        self._server.stop()


def start_tls(docroot: Path, tls: TlsFiles, preferred_port: int | None = None) -> TlsFront:
    """Serve the shop over TLS on 127.0.0.1 (for the certificate check)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(tls.cert), str(tls.key))
    server = _ThreadedServer(_handler(docroot, "?"), free_port(preferred_port), ctx)
    client = ssl.create_default_context(cafile=str(tls.ca))
    try:
        wait_http(f"https://127.0.0.1:{server.port}/", context=client)
    except DemoServerError:
        server.stop()
        raise
    return TlsFront(server.port, server)


# --------------------------------------------------------------------------- MariaDB
MARIADB_TOOLS = ("mariadbd", "mariadb-install-db", "mariadb", "mariadb-dump")


def mariadb_missing() -> list[str]:
    """The MariaDB programs that are not installed (empty when the database part can run)."""
    missing = []
    for tool in MARIADB_TOOLS:
        if not (shutil.which(tool) or shutil.which(tool, path="/usr/sbin:/usr/bin")):
            missing.append(tool)
    return missing


def _tool(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin")
    if not found:
        raise DemoServerError(f"{name} is not installed")
    return found


@dataclass
class Database:
    """A private MariaDB for the demo shop, reached through its socket."""

    socket: Path
    port: int
    name: str
    user: str
    password: str
    my_cnf: Path
    _proc: subprocess.Popen[bytes] | None
    _rundir: Path

    @property
    def pid(self) -> int | None:
        """mariadbd's pid."""
        return self._proc.pid if self._proc is not None else None

    def stop(self) -> None:
        """Stop mariadbd by its pid and remove the socket directory."""
        if self._proc is not None:
            _terminate(self._proc, timeout=20)
            self._proc = None
        shutil.rmtree(self._rundir, ignore_errors=True)


def start_database(directory: Path, name: str = "demo_shop", user: str = "demo_shop") -> Database:
    """Initialize (once) and start a MariaDB with a small shop database in ``directory``.

    Started by root, the server runs as root too (the demo directory may sit in a home
    directory the ``mysql`` user cannot enter); it listens on 127.0.0.1 and a private socket.
    Credentials go to ``directory/my.cnf`` (0600).
    """
    as_root = os.geteuid() == 0
    data = directory / "data"
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    user_opt = ["--user=root"] if as_root else []
    if not (data / "mysql").is_dir():
        shutil.rmtree(data, ignore_errors=True)
        res = subprocess.run(
            [_tool("mariadb-install-db"), "--no-defaults", *user_opt, f"--datadir={data}",
             "--auth-root-authentication-method=socket", "--skip-test-db", "--innodb-log-file-size=8M"],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        if res.returncode != 0:
            tail = "\n".join((res.stdout + res.stderr).splitlines()[-10:])
            raise DemoServerError(f"mariadb-install-db failed:\n{tail}")
    rundir = Path(tempfile.mkdtemp(prefix="maint-demo-db-"))  # short path: sockets have a length limit
    sock, port = rundir / "mysqld.sock", free_port()
    log = directory / "error.log"
    proc = subprocess.Popen(
        [_tool("mariadbd"), "--no-defaults", *user_opt, f"--datadir={data}", f"--socket={sock}",
         f"--pid-file={rundir / 'mysqld.pid'}", f"--port={port}", "--bind-address=127.0.0.1", f"--log-error={log}",
         "--innodb-buffer-pool-size=32M", "--innodb-log-file-size=8M", "--skip-name-resolve"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    password_file = directory / "password"
    if password_file.is_file():
        password = password_file.read_text().strip()
    else:
        password = secrets.token_urlsafe(18)
        fd = os.open(password_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(password + "\n")
    db = Database(sock, port, name, user, password, directory / "my.cnf", proc, rundir)
    try:
        _wait_socket(sock, proc, log)
        _sql(db, _seed_sql(name, user, password), as_root=as_root)
    except DemoServerError:
        db.stop()
        raise
    section = f"user={user}\npassword={password}\nsocket={sock}\n"
    cnf = f"[client]\n{section}\n[mysqldump]\n{section}"
    fd = os.open(db.my_cnf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(cnf)
    return db


def _wait_socket(sock: Path, proc: subprocess.Popen[bytes], log: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-10:]) if log.is_file() else ""
            raise DemoServerError(f"mariadbd exited ({proc.returncode}):\n{tail}")
        if sock.exists():
            return
        time.sleep(0.05)
    raise DemoServerError(f"mariadbd did not open {sock} within {timeout:.0f} s")


def _seed_sql(name: str, user: str, password: str) -> str:
    pw = password.replace("\\", "\\\\").replace("'", "\\'")
    return (
        f"CREATE DATABASE IF NOT EXISTS `{name}`;\n"
        f"CREATE USER IF NOT EXISTS '{user}'@'localhost' IDENTIFIED BY '{pw}';\n"
        f"ALTER USER '{user}'@'localhost' IDENTIFIED BY '{pw}';\n"
        f"GRANT ALL ON `{name}`.* TO '{user}'@'localhost';\n"
        f"GRANT ALL ON `maint\\_verify\\_%`.* TO '{user}'@'localhost';\n"
        f"USE `{name}`;\n"
        "CREATE TABLE IF NOT EXISTS products (id INT PRIMARY KEY, name VARCHAR(80), price DECIMAL(8,2));\n"
        "INSERT IGNORE INTO products VALUES (1, 'Demo mug', 12.00), (2, 'Demo shirt', 25.00),"
        " (3, 'Sticker pack', 4.50);\n"
        "CREATE TABLE IF NOT EXISTS orders (id INT PRIMARY KEY, product_id INT, qty INT, placed DATETIME);\n"
        "INSERT IGNORE INTO orders VALUES (1, 1, 2, '2024-01-05 10:00:00'), (2, 3, 1, '2024-01-06 12:30:00');\n"
    )


def _sql(db: Database, script: str, *, as_root: bool) -> None:
    cmd = [
        _tool("mariadb"),
        "--no-defaults",
        f"--socket={db.socket}",
        "-u",
        "root" if as_root else pwd.getpwuid(os.getuid()).pw_name,
    ]
    for _ in range(40):
        res = subprocess.run(cmd, input=script, capture_output=True, text=True, timeout=30, check=False)
        if res.returncode == 0:
            return
        if "Can't connect" not in res.stderr:
            raise DemoServerError(f"seeding the demo database failed: {res.stderr.strip()[-300:]}")
        time.sleep(0.1)
    raise DemoServerError("the demo database did not accept connections")
