"""A real nginx + php-fpm stack for tests, demos and benchmarks.

One :class:`WebStack` is one private php-fpm master and one private nginx master,
both started by hand under ``base_dir`` on 127.0.0.1 (no system service, nothing
under /etc is touched). Sites are added at run time with :meth:`WebStack.add_site`,
each on its own free port, and nginx is reloaded until the new config answers.

Permissions: the nginx workers and the php-fpm pool run as ``user`` (default
``www-data``). They need to traverse every directory on the way to a site's
root, so ``base_dir`` and site directories must be world-searchable (0755; a
pytest ``tmp_path`` is 0700 and therefore unsuitable). Directories a login user
such as ``deploy`` creates under /tmp with the default umask (022) are readable
as they are. A stack that must write as ``deploy`` (for example so that
``deploy`` can delete the fastcgi cache files) is built with ``user="deploy"``.

Layout under ``base_dir``::

    nginx/nginx.conf  nginx/sites/<name>.conf  nginx/fastcgi_params
    nginx/logs/{error,access}.log  nginx/tmp/*  nginx/cache/<name>/
    php/php-fpm.conf  php/php-fpm.log  php/php-error.log  php/sessions/
    sites/<name>/        (from :meth:`WebStack.make_site_dir`)
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import re
import shutil
import signal
import socket
import ssl
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tests.gates import wait_until
from tests.lab.procs import free_port, same_process, start_time

NGINX = "/usr/sbin/nginx"
PHP_FPM = "/usr/sbin/php-fpm8.2"
CACHE_PURGE_MODULE = "/usr/lib/nginx/modules/ngx_http_cache_purge_module.so"
SYSTEM_FASTCGI_PARAMS = Path("/etc/nginx/fastcgi_params")
START_TIMEOUT = 15.0
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


class WebStackError(RuntimeError):
    """nginx or php-fpm failed to start, reload or stop (the message carries the log tail)."""


def maintenance_snippet(flag_path: str, retry_after: int = 300) -> str:
    """Return the nginx snippet that answers 503 while ``flag_path`` exists.

    Put it in a ``server { }`` block, before the ``location`` blocks. While the
    flag file exists every request gets ``503 Service Unavailable`` with a
    ``Retry-After`` header; removing the file ends maintenance at once (no nginx
    reload needed). Responses produced by the application itself are unaffected.
    """
    if not flag_path.startswith("/") or any(c in flag_path for c in " \t\n;{}\"'$\\"):
        raise ValueError(f"flag path must be an absolute path without spaces or nginx syntax: {flag_path!r}")
    return (
        "# Maintenance mode: answer 503 while the flag file exists.\n"
        f"if (-f {flag_path}) {{\n"
        "    return 503;\n"
        "}\n"
        "error_page 503 @maintenance;\n"
        "location @maintenance {\n"
        f"    add_header Retry-After {int(retry_after)} always;\n"
        "    default_type text/plain;\n"
        '    return 503 "Down for maintenance, back soon.\\n";\n'
        "}\n"
    )


@dataclass(frozen=True)
class SiteHandle:
    """One site served by a :class:`WebStack`."""

    name: str
    url: str
    port: int
    root: str
    conf_path: Path
    server_name: str
    cache_dir: Path | None
    cache_zone: str | None
    maintenance_flag: str | None
    tls: bool

    @property
    def purge_url_prefix(self) -> str | None:
        """``{url}/purge`` for cached sites: GET ``/purge/PATH`` drops the cache entry of ``/PATH``."""
        return f"{self.url}/purge" if self.cache_zone else None


class WebStack:
    """A private php-fpm 8.2 + nginx pair under ``base_dir``.

    Use :meth:`start` (or a ``with`` block), then :meth:`add_site`; :meth:`stop`
    ends both masters and their children.
    """

    def __init__(self, base_dir: str | Path, *, user: str = "www-data") -> None:
        self.base_dir = Path(base_dir)
        self.user = user
        pw = pwd.getpwnam(user)
        self._uid, self._gid = pw.pw_uid, pw.pw_gid
        self.group = _group_name(pw.pw_gid)
        self.nginx_dir = self.base_dir / "nginx"
        self.php_dir = self.base_dir / "php"
        self.sites_dir = self.base_dir / "sites"
        self.nginx_conf = self.nginx_dir / "nginx.conf"
        self.nginx_error_log = self.nginx_dir / "logs" / "error.log"
        self.nginx_access_log = self.nginx_dir / "logs" / "access.log"
        self.php_conf = self.php_dir / "php-fpm.conf"
        self.php_fpm_log = self.php_dir / "php-fpm.log"
        self.php_error_log = self.php_dir / "php-error.log"
        self.nginx_pid_file = self.nginx_dir / "nginx.pid"
        self.php_pid_file = self.php_dir / "php-fpm.pid"
        self.php_port = 0
        self.control_port = 0
        self.sites: dict[str, SiteHandle] = {}
        self._generation = 0
        self._nginx: subprocess.Popen[bytes] | None = None
        self._php: subprocess.Popen[bytes] | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    def __enter__(self) -> WebStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> WebStack:
        """Start php-fpm, then nginx; raise :class:`WebStackError` with the log tail on failure."""
        for name in ("logs", "sites", "tmp", "cache"):
            (self.nginx_dir / name).mkdir(parents=True, exist_ok=True)
        self.php_dir.mkdir(parents=True, exist_ok=True)
        for d in (self.base_dir, self.nginx_dir, self.nginx_dir / "cache", self.php_dir):
            d.chmod(0o755)
        self.sites_dir.mkdir(mode=0o755, exist_ok=True)
        try:
            self._start_php()
            self._start_nginx()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop nginx and php-fpm (children first, then the master; KILL after a grace period)."""
        for proc in (self._nginx, self._php):
            if proc is not None:
                _stop_process(proc)
        self._nginx = self._php = None

    @property
    def nginx_pid(self) -> int:
        """PID of the nginx master."""
        if self._nginx is None:
            raise WebStackError("nginx is not running")
        return self._nginx.pid

    @property
    def php_pid(self) -> int:
        """PID of the php-fpm master."""
        if self._php is None:
            raise WebStackError("php-fpm is not running")
        return self._php.pid

    # -- php-fpm ---------------------------------------------------------------------------------

    def _start_php(self) -> None:
        self.php_port = free_port()
        sessions = self.php_dir / "sessions"
        sessions.mkdir(mode=0o700, exist_ok=True)
        self.php_error_log.touch()
        for path in (sessions, self.php_error_log):
            os.chown(path, self._uid, self._gid)
        self.php_conf.write_text(self._php_conf_text())
        argv = [PHP_FPM, "--nodaemonize", "--fpm-config", str(self.php_conf)]
        if self.user == "root":
            argv.append("--allow-to-run-as-root")
        before = _log_count(self.php_fpm_log, "ready to handle connections")
        self._php = _spawn(argv, self.php_dir / "php-fpm.stdout")
        _wait_until(
            lambda: _log_count(self.php_fpm_log, "ready to handle connections") > before and _port_open(self.php_port),
            self._php,
            "php-fpm",
            self.php_fpm_log,
        )

    def _php_conf_text(self) -> str:
        return f"""[global]
pid = {self.php_pid_file}
error_log = {self.php_fpm_log}
daemonize = no

[lab]
user = {self.user}
group = {self.group}
listen = 127.0.0.1:{self.php_port}
listen.allowed_clients = 127.0.0.1
pm = dynamic
pm.max_children = 8
pm.start_servers = 2
pm.min_spare_servers = 1
pm.max_spare_servers = 3
catch_workers_output = yes
php_admin_flag[log_errors] = on
php_admin_value[error_log] = {self.php_error_log}
php_value[session.save_path] = {self.php_dir}/sessions
"""

    def reload_php(self) -> None:
        """Gracefully reload php-fpm (SIGUSR2 to the master): workers restart, OPcache starts empty."""
        before = _log_count(self.php_fpm_log, "ready to handle connections")
        os.kill(self.php_pid, signal.SIGUSR2)
        assert self._php is not None  # php_pid raised otherwise
        _wait_until(
            lambda: _log_count(self.php_fpm_log, "ready to handle connections") > before and _port_open(self.php_port),
            self._php,
            "php-fpm reload",
            self.php_fpm_log,
        )

    # -- nginx -----------------------------------------------------------------------------------

    def _start_nginx(self) -> None:
        self.control_port = free_port()
        params = self.nginx_dir / "fastcgi_params"
        params.write_text(fastcgi_params_text())
        self.nginx_error_log.touch()
        self._write_nginx_conf()
        self._nginx_test()
        self._nginx = _spawn(self._nginx_cmd(), self.nginx_dir / "logs" / "nginx.stdout")
        _wait_until(self._generation_answers, self._nginx, "nginx", self.nginx_error_log)

    def _nginx_cmd(self, *extra: str) -> list[str]:
        return [NGINX, "-e", str(self.nginx_error_log), "-c", str(self.nginx_conf), "-p", f"{self.nginx_dir}/", *extra]

    def _nginx_test(self) -> None:
        res = subprocess.run(self._nginx_cmd("-t", "-q"), capture_output=True, text=True, timeout=30)
        if res.returncode != 0:
            raise WebStackError(f"nginx config test failed:\n{res.stderr.strip()}")

    def _write_nginx_conf(self) -> None:
        self._generation += 1
        tmp = self.nginx_dir / "tmp"
        user_line = f"user {self.user} {self.group};" if os.geteuid() == 0 else ""
        self.nginx_conf.write_text(f"""load_module {CACHE_PURGE_MODULE};
{user_line}
worker_processes 2;
daemon off;
pid {self.nginx_pid_file};
error_log {self.nginx_error_log} notice;

events {{
    worker_connections 512;
}}

http {{
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    access_log {self.nginx_access_log};
    sendfile on;
    keepalive_timeout 5;
    server_tokens off;
    client_max_body_size 64m;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;

    upstream lab_php {{
        server 127.0.0.1:{self.php_port};
    }}

    # Control server: answers the config generation, so a reload can be awaited.
    server {{
        listen 127.0.0.1:{self.control_port};
        location = /generation {{
            default_type text/plain;
            return 200 "{self._generation}";
        }}
    }}

    include {self.nginx_dir}/sites/*.conf;
}}
""")

    def _generation_answers(self) -> bool:
        url = f"http://127.0.0.1:{self.control_port}/generation"
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:  # noqa: S310 (fixed local URL)
                return bool(resp.read().decode() == str(self._generation))
        except (OSError, urllib.error.URLError):
            return False

    def reload_nginx(self) -> None:
        """Rewrite nginx.conf, test it, ``nginx -s reload`` and wait until the new config answers."""
        if self._nginx is None:
            raise WebStackError("nginx is not running")
        self._write_nginx_conf()
        self._nginx_test()
        old_workers = self.nginx_workers()
        res = subprocess.run(self._nginx_cmd("-s", "reload"), capture_output=True, text=True, timeout=30)
        if res.returncode != 0:
            raise WebStackError(f"nginx -s reload failed:\n{res.stderr.strip()}")
        _wait_until(self._generation_answers, self._nginx, "nginx reload", self.nginx_error_log)
        self.wait_workers_retired(old_workers)

    def nginx_workers(self) -> list[int]:
        """The pids of nginx's worker processes now (to wait for them after a reload)."""
        if self._nginx is None:
            raise WebStackError("nginx is not running")
        return _children(self._nginx.pid)

    def wait_workers_retired(self, workers: list[int]) -> None:
        """Wait until each of ``workers`` has exited or stopped accepting (shutting down).

        After ``nginx -s reload`` the old workers keep accepting connections until they process
        the master's QUIT; a handshake in that window still gets the old configuration.
        """
        if self._nginx is None:
            raise WebStackError("nginx is not running")
        _wait_until(
            lambda: all(_old_worker_gone(pid) for pid in workers),
            self._nginx,
            "old nginx workers",
            self.nginx_error_log,
        )

    # -- sites -----------------------------------------------------------------------------------

    def make_site_dir(self, name: str, owner: str | None = None) -> Path:
        """Create ``<base>/sites/<name>`` (0755, optionally chowned to ``owner``) for a site's files."""
        _check_name(name)
        path = self.sites_dir / name
        path.mkdir(mode=0o755, parents=True, exist_ok=False)
        path.chmod(0o755)
        if owner is not None:
            shutil.chown(path, owner, _group_name(pwd.getpwnam(owner).pw_gid))
        return path

    def add_site(
        self,
        name: str,
        root: str,
        *,
        php: bool = True,
        fastcgi_cache: bool = False,
        tls: tuple[str, str] | None = None,
        server_name: str = "localhost",
        maintenance_flag: str | None = None,
        port: int | None = None,
    ) -> SiteHandle:
        """Write a server block for ``root`` on its own port and reload nginx.

        ``root`` is used as nginx ``root`` (typically ``<path>/current/public``);
        PHP gets ``$realpath_root`` so a ``current`` symlink switch takes effect at
        once. ``tls=(cert, key)`` makes it an HTTPS server; ``port`` fixes the port
        (for example the http-01 port of an ACME server), otherwise a free one is used.
        """
        _check_name(name)
        if name in self.sites:
            raise WebStackError(f"site {name!r} exists already")
        port = port or free_port()
        cache_dir = self.nginx_dir / "cache" / name if fastcgi_cache else None
        zone = f"cache_{name.replace('-', '_').replace('.', '_')}" if fastcgi_cache else None
        scheme = "https" if tls else "http"
        site = SiteHandle(
            name=name,
            url=f"{scheme}://127.0.0.1:{port}",
            port=port,
            root=root,
            conf_path=self.nginx_dir / "sites" / f"{name}.conf",
            server_name=server_name,
            cache_dir=cache_dir,
            cache_zone=zone,
            maintenance_flag=maintenance_flag,
            tls=tls is not None,
        )
        site.conf_path.write_text(
            site_conf_text(site, php=php, tls=tls, fastcgi_params=self.nginx_dir / "fastcgi_params")
        )
        try:
            self.reload_nginx()
        except BaseException:
            site.conf_path.unlink()
            raise
        self.sites[name] = site
        return site

    def remove_site(self, name: str) -> None:
        """Remove a site's server block and reload nginx (its cache files stay)."""
        site = self.sites.pop(name)
        site.conf_path.unlink()
        self.reload_nginx()


def fastcgi_params_text() -> str:
    """Debian's fastcgi_params with ``HTTP_HOST $http_host`` (keeps the port; ``$host`` drops it)."""
    lines = [
        line
        for line in SYSTEM_FASTCGI_PARAMS.read_text().splitlines()
        if line.strip().startswith("fastcgi_param") and line.split()[1] != "HTTP_HOST"
    ]
    lines.append("# The Host header with its port: applications build absolute URLs from it.")
    lines.append("fastcgi_param  HTTP_HOST          $http_host;")
    return "\n".join(lines) + "\n"


def site_conf_text(site: SiteHandle, *, php: bool, tls: tuple[str, str] | None, fastcgi_params: Path) -> str:
    """Render the nginx config (http-level cache path + server block) of one site."""
    out: list[str] = []
    if site.cache_dir is not None:
        out.append(f"fastcgi_cache_path {site.cache_dir} levels=1:2 keys_zone={site.cache_zone}:10m inactive=60m;")
    out.append("server {")
    body: list[str] = [
        f"listen 127.0.0.1:{site.port}{' ssl' if tls else ''};",
        f"server_name {site.server_name};",
        f"root {site.root};",
        "index index.php index.html;",
    ]
    if tls:
        body += [f"ssl_certificate {tls[0]};", f"ssl_certificate_key {tls[1]};"]
    if site.maintenance_flag:
        body += maintenance_snippet(site.maintenance_flag).splitlines()
    if php:
        body += _php_locations(site, fastcgi_params)
    else:
        body += ["location / {", "    try_files $uri $uri/ =404;", "}"]
    out += ["    " + line if line else "" for line in body]
    out.append("}")
    return "\n".join(out) + "\n"


def _php_locations(site: SiteHandle, fastcgi_params: Path) -> list[str]:
    lines: list[str] = []
    if site.cache_zone:  # before the PHP location: regex locations match in order
        lines += [
            "location ~ ^/purge(/.*)$ {",
            "    allow 127.0.0.1;",
            "    deny all;",
            f'    fastcgi_cache_purge {site.cache_zone} "$scheme$request_method$host$1$is_args$args";',
            "}",
        ]
    lines += [
        "location / {",
        "    try_files $uri $uri/ /index.php?$args;",
        "}",
        "location ~ \\.php$ {",
        "    try_files $uri =404;",
        f"    include {fastcgi_params};",
        "    fastcgi_param SCRIPT_FILENAME $realpath_root$fastcgi_script_name;",
        "    fastcgi_param DOCUMENT_ROOT $realpath_root;",
        "    fastcgi_pass lab_php;",
    ]
    if site.cache_zone:
        lines += [
            f"    fastcgi_cache {site.cache_zone};",
            "    fastcgi_cache_key $scheme$request_method$host$request_uri;",
            "    fastcgi_cache_valid 200 10m;",
            "    fastcgi_ignore_headers Cache-Control Expires Set-Cookie;",
            "    add_header X-Cache $upstream_cache_status always;",
        ]
    lines.append("}")
    return lines


# -- small private process helpers -------------------------------------------------------------


def _check_name(name: str) -> None:
    if not _NAME_RE.match(name):
        raise ValueError(f"invalid site name: {name!r}")


def _group_name(gid: int) -> str:
    return grp.getgrgid(gid).gr_name


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _spawn(argv: list[str], out_path: Path) -> subprocess.Popen[bytes]:
    with open(out_path, "ab") as out:
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)


def _log_tail(path: Path, lines: int = 30) -> str:
    """The last lines of ``path`` and of the stdout/stderr capture next to it (``*.stdout``)."""
    parts = []
    for p in (path, *sorted(path.parent.glob("*.stdout"))):
        try:
            text = "\n".join(p.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            continue
        if text:
            parts.append(f"--- {p}\n{text}")
    return "\n".join(parts) or f"(no output in {path.parent})"


def _log_count(path: Path, needle: str) -> int:
    try:
        return path.read_text(errors="replace").count(needle)
    except OSError:
        return 0


def _wait_until(
    ready: Callable[[], bool], proc: subprocess.Popen[bytes], what: str, log: Path, timeout: float = START_TIMEOUT
) -> None:
    wait_until(ready, what, timeout, proc=proc, explain=lambda: f"log tail:\n{_log_tail(log)}", error=WebStackError)


def _children(pid: int) -> list[int]:
    res = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False)
    return [int(p) for p in res.stdout.split()]


def _old_worker_gone(pid: int) -> bool:
    """True once an nginx worker from before a reload has exited or is shutting down."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state == "Z" or b"worker process" not in cmdline or b"shutting down" in cmdline


def _stop_process(proc: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    """TERM the children, then the process; KILL whatever is left after ``grace`` seconds."""
    if proc.poll() is not None:
        return
    children = [(pid, start_time(pid)) for pid in _children(proc.pid)]
    subprocess.run(["pkill", "-TERM", "-P", str(proc.pid)], check=False)
    proc.terminate()
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=grace)
    for pid, started in children:  # leftovers of ours only: same pid and same start time
        if same_process(pid, started):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def tls_peer_cert_der(port: int, server_name: str = "localhost", timeout: float = 5.0) -> bytes:
    """The DER certificate a TLS server on 127.0.0.1:``port`` presents (no verification)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection(("127.0.0.1", port), timeout=timeout) as raw,
        ctx.wrap_socket(raw, server_hostname=server_name) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    if der is None:
        raise WebStackError(f"no certificate from 127.0.0.1:{port}")
    return der
