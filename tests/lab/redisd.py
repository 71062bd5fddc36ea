"""A private Redis server for tests, demos and benchmarks.

:class:`RedisServer` runs ``redis-server`` in the foreground on 127.0.0.1 with
a password, no persistence and its own pid file, log and working directory
under ``base_dir``.
"""

from __future__ import annotations

import secrets
import subprocess
import time
from pathlib import Path

from tests.lab.procs import free_port

REDIS_SERVER = "/usr/bin/redis-server"
REDIS_CLI = "/usr/bin/redis-cli"
START_TIMEOUT = 15.0


class RedisError(RuntimeError):
    """Redis failed to start or a command failed (the message carries the log tail)."""


class RedisServer:
    """One password-protected redis-server on 127.0.0.1 and a free port."""

    def __init__(self, base_dir: str | Path, password: str | None = None) -> None:
        self.base_dir = Path(base_dir)
        self.password = password or secrets.token_urlsafe(18)
        self.host = "127.0.0.1"
        self.port = 0
        self.pid_file = self.base_dir / "redis.pid"
        self.log_file = self.base_dir / "redis.log"
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def pid(self) -> int:
        """PID of the running redis-server."""
        if self._proc is None:
            raise RedisError("redis-server is not running")
        return self._proc.pid

    @property
    def url(self) -> str:
        """``redis://:PASSWORD@127.0.0.1:PORT/0`` (contains the password: do not log it)."""
        return f"redis://:{self.password}@{self.host}:{self.port}/0"

    def start(self) -> RedisServer:
        """Start redis-server and wait until an authenticated PING answers PONG."""
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        conf = self.base_dir / "redis.conf"
        # The password goes into a 0600 config file, not onto the command line (ps shows argv).
        conf.touch(mode=0o600)
        conf.write_text(
            "\n".join(
                [
                    "bind 127.0.0.1",
                    f"port {self.port}",
                    "daemonize no",
                    f"pidfile {self.pid_file}",
                    f"dir {self.base_dir}",
                    f"logfile {self.log_file}",
                    'save ""',
                    "appendonly no",
                    f"requirepass {_conf_quote(self.password)}",
                ]
            )
            + "\n"
        )
        with open(self.base_dir / "redis.stdout", "ab") as out:
            self._proc = subprocess.Popen(
                [REDIS_SERVER, str(conf)], stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + START_TIMEOUT
        try:
            while time.monotonic() < deadline:
                if self._proc.poll() is not None:
                    raise RedisError(f"redis-server exited with status {self._proc.returncode}:\n{self._log_tail()}")
                if self._ping():
                    return self
                time.sleep(0.02)
            raise RedisError(f"redis-server not ready after {START_TIMEOUT:.0f} s:\n{self._log_tail()}")
        except BaseException:
            self.stop()
            raise

    def _ping(self) -> bool:
        try:
            return self.cli("PING") == "PONG"
        except (RedisError, subprocess.TimeoutExpired):
            return False

    def _log_tail(self, lines: int = 30) -> str:
        parts = []
        for path in (self.log_file, self.base_dir / "redis.stdout"):
            try:
                text = "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
            except OSError:
                continue
            if text:
                parts.append(f"--- {path}\n{text}")
        return "\n".join(parts) or f"(no output in {self.base_dir})"

    def cli(self, *args: str, password: str | None = None, auth: bool = True) -> str:
        """Run ``redis-cli`` with ``args``; return its output stripped.

        Authenticates with the server password (or ``password``) unless ``auth``
        is false. The password is passed in ``REDISCLI_AUTH``, not in argv.
        Error replies (``NOAUTH``, ``ERR``, ``WRONGPASS``...) come back as text:
        redis-cli exits 0 on them.
        """
        env = {"PATH": "/usr/bin:/bin"}
        if auth:
            env["REDISCLI_AUTH"] = password if password is not None else self.password
        res = subprocess.run(
            [REDIS_CLI, "-h", self.host, "-p", str(self.port), *args],
            capture_output=True,
            text=True,
            timeout=10,
            env=env,
            check=False,
        )
        if res.returncode != 0:
            raise RedisError(f"redis-cli failed ({res.returncode}): {res.stderr.strip()}")
        return res.stdout.strip()

    def stop(self, grace: float = 5.0) -> None:
        """Stop redis-server (SIGTERM, SIGKILL after ``grace`` seconds)."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        subprocess.run(["pkill", "-TERM", "-P", str(proc.pid)], check=False)  # none expected; children first
        proc.terminate()
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=grace)


def _conf_quote(value: str) -> str:
    """Quote a value for redis.conf (a double-quoted string with backslash escapes)."""
    if any(c in value for c in "\r\n\0"):
        raise ValueError("redis password must not contain line breaks or NUL")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
