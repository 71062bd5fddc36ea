"""A private MariaDB server for tests, demos and benchmarks.

:class:`MariaDB` copies an initialized data directory (made once per process
with ``mariadb-install-db`` and kept as a template) and runs ``mariadbd
--no-defaults`` as user ``mysql`` on 127.0.0.1 with its own socket, pid file and
error log under ``base_dir``. ``root`` logs in through the socket with unix_socket
authentication (so only OS root can); sites get their own database and user
with :meth:`MariaDB.create_database`, and a login user gets a ``~/.my.cnf``
with :meth:`MariaDB.write_my_cnf`.

``base_dir`` and its parents must be searchable by ``mysql`` (a pytest
``tmp_path`` is 0700: use a directory under /tmp made 0755).
"""

from __future__ import annotations

import atexit
import os
import pwd
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import threading
from pathlib import Path

from tests.gates import wait_until
from tests.lab.labdirs import lab_tmpdir
from tests.lab.procs import free_port

MARIADBD = "/usr/sbin/mariadbd"
INSTALL_DB = "/usr/bin/mariadb-install-db"
CLIENT = "/usr/bin/mariadb"
START_TIMEOUT = 30.0
_COMMON_OPTS = ["--innodb-log-file-size=8M"]
_IDENT_RE = re.compile(r"^[A-Za-z0-9_]{1,64}$")

_template_lock = threading.Lock()
_template: Path | None = None


class MariaDBError(RuntimeError):
    """MariaDB failed to initialize, start or answer (the message carries the log tail)."""


def datadir_template() -> Path:
    """An initialized data directory, made once per process and removed at exit.

    Copy it (``cp -a``) rather than use it: each server needs its own copy.
    """
    global _template
    with _template_lock:
        if _template is None or not (_template / "mysql").is_dir():
            root = lab_tmpdir("maintkit-mariadb-template-", mode=0o755)
            atexit.register(shutil.rmtree, root, True)
            data = root / "data"
            res = subprocess.run(
                [
                    INSTALL_DB,
                    "--no-defaults",
                    "--user=mysql",
                    f"--datadir={data}",
                    "--auth-root-authentication-method=socket",
                    "--skip-test-db",
                    *_COMMON_OPTS,
                ],
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            if res.returncode != 0:
                tail = "\n".join((res.stdout + res.stderr).splitlines()[-30:])
                raise MariaDBError(f"mariadb-install-db failed ({res.returncode}):\n{tail}")
            _template = data
        return _template


class MariaDB:
    """One mariadbd on 127.0.0.1 with a fresh copy of the template data directory."""

    def __init__(self, base_dir: str | Path) -> None:
        self.base_dir = Path(base_dir)
        self.datadir = self.base_dir / "data"
        self.run_dir = self.base_dir / "run"
        self.socket = str(self.run_dir / "mariadb.sock")
        self.pid_file = self.run_dir / "mariadb.pid"
        self.error_log = self.run_dir / "error.log"
        self.host = "127.0.0.1"
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> MariaDB:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def pid(self) -> int:
        """PID of the running mariadbd."""
        if self._proc is None:
            raise MariaDBError("MariaDB is not running")
        return self._proc.pid

    def start(self) -> MariaDB:
        """Copy the template datadir, start mariadbd and wait until root can query it."""
        template = datadir_template()
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.base_dir.chmod(0o755)
        if self.datadir.exists():
            raise MariaDBError(f"{self.datadir} exists already: use a fresh base_dir")
        subprocess.run(["cp", "-a", str(template), str(self.datadir)], check=True, timeout=60)
        self.run_dir.mkdir(mode=0o755, exist_ok=True)
        shutil.chown(self.run_dir, "mysql", "mysql")
        self.port = free_port()
        argv = [
            MARIADBD,
            "--no-defaults",
            "--user=mysql",
            f"--datadir={self.datadir}",
            f"--socket={self.socket}",
            f"--pid-file={self.pid_file}",
            f"--port={self.port}",
            "--bind-address=127.0.0.1",
            f"--log-error={self.error_log}",
            "--innodb-buffer-pool-size=64M",
            "--skip-name-resolve",
            *_COMMON_OPTS,
        ]
        with open(self.base_dir / "mariadbd.stdout", "ab") as out:
            self._proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        assert self._proc is not None
        wait_until(
            lambda: Path(self.socket).exists() and self._root_ok(),
            "mariadbd ready",
            START_TIMEOUT,
            proc=self._proc,
            explain=lambda: f"log tail:\n{self._log_tail()}",
            error=MariaDBError,
        )

    def _root_ok(self) -> bool:
        res = subprocess.run(self._client_argv("SELECT 1"), capture_output=True, text=True, timeout=10, check=False)
        return res.returncode == 0

    def _log_tail(self, lines: int = 30) -> str:
        parts = []
        for path in (self.error_log, self.base_dir / "mariadbd.stdout"):
            try:
                text = "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
            except OSError:
                continue
            if text:
                parts.append(f"--- {path}\n{text}")
        return "\n".join(parts) or f"(no output in {self.base_dir})"

    def stop(self, grace: float = 10.0) -> None:
        """Stop mariadbd (SIGTERM: clean shutdown; SIGKILL after ``grace`` seconds)."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        subprocess.run(["pkill", "-TERM", "-P", str(proc.pid)], check=False)  # none expected; children first
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=grace)

    # -- queries ---------------------------------------------------------------------------------

    def _client_argv(self, query: str, db: str | None = None) -> list[str]:
        argv = [CLIENT, "--no-defaults", f"--socket={self.socket}", "-uroot", "--batch", "--skip-column-names"]
        argv += ["-e", query]
        if db is not None:
            argv.append(db)
        return argv

    def sql(self, query: str, db: str | None = None) -> str:
        """Run ``query`` as root over the socket; return its tab-separated output (no header)."""
        res = subprocess.run(self._client_argv(query, db), capture_output=True, text=True, timeout=60, check=False)
        if res.returncode != 0:
            raise MariaDBError(f"query failed ({res.returncode}): {res.stderr.strip()}")
        return res.stdout

    def create_database(self, name: str, user: str | None = None) -> tuple[str, str]:
        """Create database ``name`` and a user (default: same name) with all privileges on it.

        The user may connect from 127.0.0.1 (TCP) and localhost (socket). Returns
        ``(user, password)``; the password is random.
        """
        user = user or name
        for ident in (name, user):
            if not _IDENT_RE.match(ident):
                raise ValueError(f"invalid database or user name: {ident!r}")
        password = secrets.token_urlsafe(18)
        stmts = [f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"]
        for host in ("127.0.0.1", "localhost"):
            stmts.append(f"CREATE USER '{user}'@'{host}' IDENTIFIED BY '{password}'")
            stmts.append(f"GRANT ALL PRIVILEGES ON `{name}`.* TO '{user}'@'{host}'")
        self.sql("; ".join(stmts))
        return user, password

    def drop_database(self, name: str, user: str | None = None) -> None:
        """Drop a database made by :meth:`create_database` and its user."""
        user = user or name
        for ident in (name, user):
            if not _IDENT_RE.match(ident):
                raise ValueError(f"invalid database or user name: {ident!r}")
        self.sql(
            f"DROP DATABASE IF EXISTS `{name}`; "
            f"DROP USER IF EXISTS '{user}'@'127.0.0.1'; DROP USER IF EXISTS '{user}'@'localhost'"
        )

    def my_cnf_text(self, user: str, password: str, database: str | None = None) -> str:
        """The ``[client]`` option file text for ``user`` on this server (TCP to 127.0.0.1)."""
        lines = ["[client]", f"host={self.host}", f"port={self.port}", f"user={user}", f'password="{password}"']
        if database:
            lines += ["", "[mysql]", f"database={database}"]
        return "\n".join(lines) + "\n"

    def write_my_cnf(
        self, home_dir: str | Path, user: str, password: str, owner: str | None = None, database: str | None = None
    ) -> Path:
        """Write ``home_dir/.my.cnf`` (mode 0600, owned by ``owner``) atomically; return its path."""
        path = Path(home_dir) / ".my.cnf"
        fd, tmp = tempfile.mkstemp(prefix=".my.cnf.", dir=path.parent)
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(self.my_cnf_text(user, password, database))
            os.chmod(tmp, 0o600)
            if owner is not None:
                pw = pwd.getpwnam(owner)
                os.chown(tmp, pw.pw_uid, pw.pw_gid)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path
