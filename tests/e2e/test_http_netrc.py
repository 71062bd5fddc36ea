"""No request maint makes carries credentials from the operator's ``~/.netrc``.

requests reads ``~/.netrc`` and puts its credentials (a ``default`` entry's for every host) on
requests that have none, and over an ``Authorization`` header the caller set. A real HTTP
server on 127.0.0.1 (and one on 127.0.0.2, for redirects to another host) records the header
of every request; ``HOME`` points at a directory with a hostile ``.netrc``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from maintkit import _http
from maintkit.actions.watch.feed import FeedConfig, _download
from maintkit.results import StepStatus
from tests import runs

NETRC_SECRET = "netrc-secret-7f3a"


class Recorder:
    """HTTP servers on 127.0.0.1 and 127.0.0.2 recording (host, path, Authorization) of each request.

    ``/away`` on the first redirects to ``/landed`` on the second; every other path answers 200 ``[]``.
    """

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str | None]] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                host = self.server.server_address[0]
                recorder.seen.append((str(host), self.path, self.headers.get("Authorization")))
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                if self.path == "/away":
                    self.send_response(302)
                    self.send_header("Location", f"{recorder.url(1)}/landed")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"[]")

            do_GET = do_POST = _answer  # noqa: N815

            def log_message(self, *args: object) -> None:
                pass

        self.servers = [ThreadingHTTPServer((ip, 0), Handler) for ip in ("127.0.0.1", "127.0.0.2")]
        self.threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in self.servers]
        for t in self.threads:
            t.start()

    def url(self, i: int = 0) -> str:
        host, port = self.servers[i].server_address[:2]
        return f"http://{host!s}:{port}"

    def close(self) -> None:
        for s in self.servers:
            s.shutdown()
            s.server_close()


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    rec = Recorder()
    try:
        yield rec
    finally:
        rec.close()


@pytest.fixture(autouse=True)
def hostile_netrc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A ``.netrc`` whose ``default`` entry matches every host, in the ``HOME`` of this test."""
    home = tmp_path / "home"
    home.mkdir()
    netrc = home / ".netrc"
    netrc.write_text(f"default login operator password {NETRC_SECRET}\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("NETRC", raising=False)
    return netrc


def _basic(header: str | None) -> bool:
    return header is not None and header.startswith("Basic ")


def test_requests_itself_sends_the_netrc_credentials(recorder: Recorder) -> None:
    """What maint guards against (if requests stopped reading ~/.netrc, this would say so)."""
    requests.get(f"{recorder.url()}/plain", timeout=10)
    requests.get(f"{recorder.url()}/bearer", headers={"Authorization": "Bearer feed-key"}, timeout=10)
    assert [_basic(auth) for _, _, auth in recorder.seen] == [True, True]  # the Bearer key replaced


def test_maint_requests_carry_only_what_they_were_given(recorder: Recorder) -> None:
    _http.get(f"{recorder.url()}/get", timeout=10)
    _http.post(f"{recorder.url()}/post", json={"x": 1}, timeout=10)
    _http.get(f"{recorder.url()}/bearer", headers={"Authorization": "Bearer feed-key"}, timeout=10)
    assert recorder.seen == [
        ("127.0.0.1", "/get", None),
        ("127.0.0.1", "/post", None),
        ("127.0.0.1", "/bearer", "Bearer feed-key"),
    ]


def test_a_redirect_to_another_host_drops_the_header_and_takes_nothing_from_netrc(recorder: Recorder) -> None:
    resp = _http.get(f"{recorder.url()}/away", headers={"Authorization": "Bearer feed-key"}, timeout=10)
    assert resp.status_code == 200
    assert recorder.seen == [("127.0.0.1", "/away", "Bearer feed-key"), ("127.0.0.2", "/landed", None)]


def test_the_feed_download_sends_its_api_key_not_the_netrc_credentials(recorder: Recorder) -> None:
    assert _download(FeedConfig(url=f"{recorder.url()}/feed.json", api_key="feed-key")) == []
    assert recorder.seen == [("127.0.0.1", "/feed.json", "Bearer feed-key")]


def test_an_http_check_step_sends_no_netrc_credentials(tmp_path: Path, recorder: Recorder) -> None:
    site = tmp_path / "site"
    site.mkdir()
    inventory = runs.write_inventory(
        tmp_path, runs.one_site({"connection": "local", "path": str(site), "url": recorder.url()})
    )
    playbook = """\
name: smoke
stages:
  - env: production
    steps:
      - {id: home, action: http.check, with: {paths: [/, /away], retries: 0}}
"""
    result = runs.run(playbook, inventory, tmp_path / "state")

    assert result.ok, result.sites[0].error
    assert result.sites[0].steps[0].status is StepStatus.UNCHANGED
    assert recorder.seen == [("127.0.0.1", "/", None), ("127.0.0.1", "/away", None), ("127.0.0.2", "/landed", None)]


def test_no_module_calls_requests_around_the_netrc_free_session() -> None:
    """Every request goes through maintkit._http: no module calls requests' own get/post/Session."""
    import ast

    root = Path(__file__).resolve().parents[2] / "maintkit"
    direct = {"get", "post", "put", "patch", "delete", "head", "options", "request", "Session", "session"}
    found = []
    for path in sorted(root.rglob("*.py")):
        if path.name == "_http.py" and path.parent == root:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and node.attr in direct:
                if isinstance(node.value, ast.Name) and node.value.id == "requests":
                    found.append(f"{path.relative_to(root.parent)}:{node.lineno} requests.{node.attr}")
    assert found == []
