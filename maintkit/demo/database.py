"""The demo's private MariaDB: initialized once in the demo directory, started by pid on
127.0.0.1 and a private socket, seeded with one small shop database per environment."""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from maintkit.demo.common import DemoServerError, free_port, terminate

__all__ = ["MARIADB_TOOLS", "Database", "mariadb_missing", "start_database"]

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
    names: tuple[str, ...]
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
            terminate(self._proc, timeout=20)
            self._proc = None
        shutil.rmtree(self._rundir, ignore_errors=True)


def start_database(directory: Path, names: tuple[str, ...], user: str = "demo_shop") -> Database:
    """Initialize (once) and start a MariaDB in ``directory`` with a small shop database for each of ``names``.

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
         "--innodb-buffer-pool-size=32M", "--innodb-log-file-size=8M", "--skip-name-resolve",
         "--innodb-flush-log-at-trx-commit=0"],
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
    db = Database(sock, port, names, user, password, directory / "my.cnf", proc, rundir)
    try:
        _wait_socket(sock, proc, log)
        _sql(db, "".join(_seed_sql(name, user, password) for name in names), as_root=as_root)
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
        "INSERT IGNORE INTO orders (id, product_id, qty, placed)"
        " VALUES (1, 1, 2, '2024-01-05 10:00:00'), (2, 3, 1, '2024-01-06 12:30:00');\n"
        "CREATE TABLE IF NOT EXISTS schema_migrations (version VARCHAR(64) PRIMARY KEY, applied DATETIME);\n"
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
