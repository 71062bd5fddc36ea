"""Git remotes for state store tests: a bare repository over a lab sshd, or over HTTP with a token.

* :func:`ssh_git_remote` creates a bare repository as ``deploy`` on a lab host (the lab user's
  scratch folder) and returns a :class:`GitRemote` whose :meth:`GitRemote.options` are the
  git backend's options (``ssh://deploy@127.0.0.X:PORT/...``, the lab's client key and
  known_hosts).
* :class:`HttpGitServer` serves bare repositories with ``git http-backend`` (smart HTTP,
  push included) on 127.0.0.1 and refuses every request whose ``Authorization`` header is
  not the expected Basic token (401), for tests of the HTTPS token path.
"""

from __future__ import annotations

import base64
import os
import subprocess
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from tests.lab.sshd import LabHost

GIT_ENV = {"GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1", "GIT_TERMINAL_PROMPT": "0"}
HTTP_BACKEND = "/usr/lib/git-core/git-http-backend"


@dataclass
class GitRemote:
    """A bare repository at ``path`` on this machine, reached by the store as ``url``."""

    path: Path
    url: str
    host: LabHost | None = None

    def options(self, **extra: Any) -> dict[str, Any]:
        """The git backend's options for this remote (``extra`` adds or overrides)."""
        opts: dict[str, Any] = {"remote": self.url}
        if self.host is not None:
            opts |= {"ssh_key": str(self.host.client_key), "known_hosts": str(self.host.known_hosts)}
        return opts | extra

    def git(self, *args: str) -> str:
        """``git --git-dir PATH ARGS`` as root on this machine (no user config); its output."""
        argv = ["git", "-c", "safe.directory=*", "--git-dir", str(self.path), *args]
        res = subprocess.run(argv, env={**os.environ, **GIT_ENV}, capture_output=True, text=True, timeout=60)
        assert res.returncode == 0, res.stderr
        return res.stdout

    def subjects(self, branch: str = "maint-state") -> list[str]:
        """The subjects of the branch's commits, oldest first."""
        return self.git("log", "--reverse", "--format=%s", f"refs/heads/{branch}").splitlines()


def ssh_git_remote(host: LabHost, scratch: Path, name: str = "state.git") -> GitRemote:
    """A bare repository made by ``deploy`` in ``scratch`` on ``host``, reached over SSH."""
    path = scratch / name
    res = subprocess.run(host.ssh_argv("git", "init", "-q", "--bare", str(path)), capture_output=True, text=True,
                         timeout=60)  # fmt: skip
    assert res.returncode == 0, res.stderr
    return GitRemote(path, f"ssh://deploy@{host.ip}:{host.port}{path}", host)


def basic_header(user: str, token: str) -> str:
    """``Basic base64(user:token)``."""
    return "Basic " + base64.b64encode(f"{user}:{token}".encode()).decode()


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class HttpGitServer:
    """``git http-backend`` over HTTP on 127.0.0.1 for the repositories under ``root``; Basic token auth."""

    def __init__(self, root: Path, token: str, user: str = "x-access-token") -> None:
        self.root = root
        self.expected = basic_header(user, token)
        self.seen_auth: list[str] = []
        self._server: WSGIServer = make_server("127.0.0.1", 0, self._app, handler_class=_QuietHandler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        """The port the server listens on."""
        return int(self._server.server_address[1])

    def url(self, name: str) -> str:
        """The URL of repository ``name`` under ``root``."""
        return f"http://127.0.0.1:{self.port}/{name}"

    def __enter__(self) -> HttpGitServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)

    def _app(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        auth = environ.get("HTTP_AUTHORIZATION", "")
        self.seen_auth.append(auth)
        if auth != self.expected:
            start_response("401 Unauthorized", [("WWW-Authenticate", 'Basic realm="state"')])
            return [b"authentication required\n"]
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        cgi_env = {**GIT_ENV, "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "GIT_PROJECT_ROOT": str(self.root),
                   "GIT_HTTP_EXPORT_ALL": "1", "REMOTE_USER": "ci", "REMOTE_ADDR": "127.0.0.1",
                   "CONTENT_LENGTH": str(len(body))}  # fmt: skip
        for key in ("PATH_INFO", "REQUEST_METHOD", "QUERY_STRING", "CONTENT_TYPE"):
            cgi_env[key] = environ.get(key, "")
        for key in ("HTTP_CONTENT_ENCODING", "HTTP_GIT_PROTOCOL"):
            if key in environ:
                cgi_env[key] = environ[key]
        out = subprocess.run([HTTP_BACKEND], input=body, env=cgi_env, capture_output=True, timeout=60).stdout
        head, _, rest = out.partition(b"\r\n\r\n")
        headers = [tuple(line.split(": ", 1)) for line in head.decode("latin-1").split("\r\n") if ": " in line]
        status = next((v for k, v in headers if k.lower() == "status"), "200 OK")
        start_response(status, [(k, v) for k, v in headers if k.lower() != "status"])
        return [rest]
