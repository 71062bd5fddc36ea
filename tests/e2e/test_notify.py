"""Notifications after a run, sent to a real HTTP receiver on loopback."""

from __future__ import annotations

import importlib.util
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest

from maintkit.notify import display_url, notify_run
from maintkit.playbook import playbook_from_text
from maintkit.results import RunResult, SiteResult, SiteStatus, StepResult, StepStatus
from tests.operator_helpers import SECRET_NAME, SECRET_VALUE, clean_env, maint, make_project


class Receiver:
    """An HTTP server on 127.0.0.1 that records every POST (path, content type, body)."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.status = 200
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                raw = self.rfile.read(length).decode()
                ctype = self.headers.get("Content-Type", "")
                body: Any = json.loads(raw) if "json" in ctype else {k: v[0] for k, v in parse_qs(raw).items()}
                outer.requests.append({"path": self.path, "type": ctype, "body": body, "raw": raw})
                self.send_response(outer.status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)

    def by_path(self, prefix: str) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["path"].startswith(prefix)]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    try:
        yield r
    finally:
        r.stop()


def notify_block(port: int) -> str:
    return (
        f'- url: "json://127.0.0.1:{port}/hook?auth={{{{ secrets.{SECRET_NAME} }}}}"\n'
        '  "on": [failure, changed]\n'
        f'- url: "http://127.0.0.1:{port}/plain"\n'
        '  "on": [success]\n'
    )


def test_run_notifies_json_webhooks(tmp_path: Path, receiver: Receiver) -> None:
    root = make_project(tmp_path / "proj", notify=notify_block(receiver.port))
    res = maint("run", "ops", "-i", "inventory.yml", cwd=root)
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"notification json://127.0.0.1:{receiver.port}/… sent" in res.stderr
    assert f"notification http://127.0.0.1:{receiver.port}/… sent" in res.stderr
    assert SECRET_VALUE not in res.stderr + res.stdout
    (hook,) = receiver.by_path("/hook")
    assert hook["path"] == f"/hook?auth={SECRET_VALUE}"  # the rendered URL reaches the receiver
    body = hook["body"]
    assert body["status"] == "ok" and body["type"] == "success" and body["changed"] == 4
    assert body["playbook"] == "ops" and body["event"] == "run.finished"
    assert [s["site"] for s in body["sites"]] == ["shop-a", "shop-b"]
    assert body["title"] == "maint run ops: ok"
    assert (root / ".maint" / "runs" / body["run_id"]).is_dir()
    (plain,) = receiver.by_path("/plain")
    assert plain["body"]["run_id"] == body["run_id"]
    # second run: unchanged, so only the success hook fires
    res = maint("run", "ops", "-i", "inventory.yml", cwd=root)
    assert res.returncode == 0
    assert len(receiver.by_path("/hook")) == 1 and len(receiver.by_path("/plain")) == 2
    # a plan never notifies
    res = maint("plan", "ops", "-i", "inventory.yml", cwd=root)
    assert res.returncode == 0 and "notification" not in res.stderr
    assert len(receiver.requests) == 3


def test_failure_message_explains_and_is_redacted(tmp_path: Path, receiver: Receiver) -> None:
    root = make_project(tmp_path / "proj", sites=("shop-a",), failing=True, notify=notify_block(receiver.port))
    res = maint("run", "ops", "-i", "inventory.yml", cwd=root)
    assert res.returncode == 1
    (hook,) = receiver.by_path("/hook")
    body = hook["body"]
    assert body["status"] == "failed" and body["type"] == "failure"
    assert body["title"] == "maint run ops: failed (shop-a)"
    assert "shop-a: rolled-back at production step boom (command)" in body["message"]
    assert "deploy hook failed" in body["message"]
    assert "rolled back: motd, robots" in body["message"]
    assert SECRET_VALUE not in hook["raw"]
    assert receiver.by_path("/plain") == []


def test_receiver_errors_are_reported_not_fatal(tmp_path: Path, receiver: Receiver) -> None:
    receiver.status = 500
    root = make_project(tmp_path / "proj", sites=("shop-a",), notify=notify_block(receiver.port))
    res = maint("run", "ops", "-i", "inventory.yml", cwd=root)
    assert res.returncode == 0
    assert (
        f"notification json://127.0.0.1:{receiver.port}/… FAILED: json://127.0.0.1:{receiver.port}/…: HTTP 500"
        in res.stderr
    )
    assert SECRET_VALUE not in res.stderr


def _result(status: str = "failed") -> RunResult:
    step = StepResult(
        "shop-a", "production", "deploy", "deploy.release", StepStatus.FAILED, error=f"apply: token={SECRET_VALUE}"
    )
    failed = status == "failed"
    site = SiteResult(
        "shop-a",
        SiteStatus.FAILED if failed else SiteStatus.OK,
        [step] if failed else [],
        step.error if failed else None,
    )
    return RunResult("20261102T050000Z-abcd", "pb", False, status, [site], "/tmp/x")


def _playbook(urls: str) -> Any:
    return playbook_from_text(
        "name: pb\nnotify:\n"
        + urls
        + "stages:\n  - env: production\n    steps:\n      - {action: command, with: {argv: ['true']}}\n"
    ).playbook


def test_without_apprise_json_still_works(receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(__import__("sys").modules, "apprise", None)  # import apprise -> ImportError
    pb = _playbook(
        f'  - {{url: "https://127.0.0.1:1/x", "on": [success]}}\n'
        f'  - {{url: "http://127.0.0.1:{receiver.port}/generic", "on": [failure]}}\n'
        '  - {url: "tgram://123456789:AAbbCCdd/42", "on": [failure]}\n'
    )
    sent = notify_run(pb, _result(), environ=clean_env())
    assert [(s.target, s.ok) for s in sent] == [(f"http://127.0.0.1:{receiver.port}/…", True), ("tgram://…", False)]
    assert "needs apprise" in sent[1].detail
    body = receiver.by_path("/generic")[0]["body"]
    assert body["sites"][0]["error"] == "apply: token=***"


def test_apprise_urls_go_through_apprise(receiver: Receiver) -> None:
    pb = _playbook(f'  - {{url: "form://127.0.0.1:{receiver.port}/form", "on": [failure]}}\n')
    sent = notify_run(pb, _result(), environ=clean_env())
    if importlib.util.find_spec("apprise") is None:
        assert not sent[0].ok and "needs apprise" in sent[0].detail
        return
    assert sent[0].ok, sent[0].detail
    (form,) = receiver.by_path("/form")
    assert form["body"]["title"] == "maint run pb: failed (shop-a)"
    assert "apply: token=***" in form["body"]["message"]
    assert SECRET_VALUE not in form["raw"]


def test_missing_secret_and_display() -> None:
    pb = _playbook('  - {url: "json://127.0.0.1:9/{{ secrets.NOT_SET_ANYWHERE }}", "on": [failure]}\n')
    (sent,) = notify_run(pb, _result(), environ={})
    assert not sent.ok and "NOT_SET_ANYWHERE" in sent.detail
    assert display_url("https://hooks.slack.com/services/T/B/secretpart") == "https://hooks.slack.com/…"
    assert display_url("tgram://bot:token/123") == "tgram://…"
    assert notify_run(pb, _result("ok"), environ={}) == []  # on: [failure] only


class SmtpReceiver:
    """A minimal SMTP server on 127.0.0.1 that keeps every message it receives."""

    def __init__(self) -> None:
        import socketserver

        self.mails: list[str] = []
        outer = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                def say(text: str) -> None:
                    self.wfile.write((text + "\r\n").encode())

                say("220 receiver ESMTP")
                lines: list[str] = []
                in_data = False
                while line := self.rfile.readline():
                    text = line.decode().rstrip("\r\n")
                    if in_data:
                        if text == ".":
                            in_data = False
                            outer.mails.append("\n".join(lines))
                            lines = []
                            say("250 queued")
                        else:
                            lines.append(text[1:] if text.startswith("..") else text)
                        continue
                    verb = text.split(" ")[0].upper()
                    if verb == "EHLO":
                        say("250-receiver")
                        say("250 8BITMIME")
                    elif verb in ("HELO", "MAIL", "RCPT", "RSET", "NOOP"):
                        say("250 ok")
                    elif verb == "DATA":
                        in_data = True
                        say("354 go ahead")
                    elif verb == "QUIT":
                        say("221 bye")
                        return
                    else:
                        say("502 not implemented")

        class Server(socketserver.ThreadingTCPServer):
            allow_reuse_address = True
            daemon_threads = True

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def test_email_through_apprise() -> None:
    smtp = SmtpReceiver()
    try:
        url = f"mailto://127.0.0.1:{smtp.port}?from=maint@example.net&to=ops@example.net&mode=insecure"
        pb = _playbook(f'  - {{url: "{url}", "on": [failure]}}\n')
        (sent,) = notify_run(pb, _result(), environ=clean_env())
        assert sent.target == "mailto://…"
        if importlib.util.find_spec("apprise") is None:
            assert not sent.ok and "needs apprise" in sent.detail
            return
        assert sent.ok, sent.detail
        (mail,) = smtp.mails
        assert "Subject: maint run pb: failed (shop-a)" in mail
        assert "To: ops@example.net" in mail
        assert "rolled" in mail or "failed" in mail
        assert SECRET_VALUE not in mail
    finally:
        smtp.stop()
