"""Helpers for the deploy tests: a tiny PHP app in a git repository, inventories, host inspection.

Inventories, in-process runs and the ``maint`` CLI come from :mod:`tests.runs`; the functions
here only bind what every deploy test passes (one ``shop`` site, production, plain output).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from maintkit.inventory import Inventory
from maintkit.results import RunResult
from tests import runs

WAIT_TIMEOUT = 60.0


def app_files(version: str, *, cart_status: int = 200, front_broken: bool = False) -> dict[str, str]:
    """A PHP app: the front page names ``version`` and the shared config value, /cart/ answers ``cart_status``.

    ``front_broken`` puts a parse error into the front page (PHP answers 500 with a fatal error).
    """
    front = (
        "<?php\n$config = require __DIR__ . '/../config.php';\n"
        f"echo 'shop front {version} ' . $config['name'] . \"\\n\";\n"
    )
    if front_broken:
        front = f"<?php\necho 'shop front {version}'\n  this is not php;\n"
    return {
        "public/index.php": front,
        "public/cart/index.php": f'<?php\nhttp_response_code({cart_status});\necho "cart {version}\\n";\n',
        "public/health.txt": f"ok {version}\n",
        "VERSION": version + "\n",
    }


@dataclass(frozen=True)
class SshTarget:
    """Where the lab host's sshd listens and how to log in (as the inventory needs it)."""

    host: str
    port: int
    user: str
    key_file: str
    known_hosts: str

    def env(self, path: str | Path, url: str, **extra: Any) -> dict[str, Any]:
        """An inventory environment for ``path`` on this host."""
        return {
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "key_file": self.key_file,
            "known_hosts": self.known_hosts,
            "host_key_policy": "strict",
            "path": str(path),
            "url": url,
            **extra,
        }


def write_inventory(tmp_path: Path, target: SshTarget, path: Path, url: str, vars: Mapping[str, Any]) -> Path:
    """Write a new inventory (several per test) with one site ``shop`` whose production is ``path`` on the lab host."""
    env = target.env(path, url, vars=dict(vars))
    return runs.write_inventory(tmp_path, runs.one_site(env, platform="generic"), unique=True)


def run_playbook(pb: Any, inventory: Inventory | Path, tmp_path: Path, *, check: bool = False) -> RunResult:
    """Run a playbook in-process on production, the state dir under ``tmp_path``, only ``PATH`` exported."""
    environ = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    return runs.run(pb, inventory, tmp_path / "state", env="production", check=check, environ=environ)


def maint(tmp_path: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the ``maint`` CLI in ``tmp_path`` (plain output)."""
    return runs.maint_cli(*args, cwd=tmp_path, timeout=timeout)


def spawn_maint(tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    """Start the ``maint`` CLI in ``tmp_path`` in the background (stderr into stdout)."""
    return runs.spawn_maint(*args, cwd=tmp_path, stderr=subprocess.STDOUT)


def wait_for(condition: Callable[[], bool], what: str, proc: subprocess.Popen[str] | None = None) -> None:
    """Poll ``condition`` until it holds; fail with ``what`` (and the process output) otherwise."""
    deadline = time.monotonic() + WAIT_TIMEOUT
    while time.monotonic() < deadline:
        if condition():
            return
        if proc is not None and proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            raise AssertionError(f"process exited ({proc.returncode}) before {what}:\n{out}")
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def stop(proc: subprocess.Popen[str], sig: signal.Signals) -> str:
    """Send ``sig`` to a process we started, wait for it, return its output."""
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=WAIT_TIMEOUT)
    return out


def fetch(url: str) -> tuple[int, str]:
    """GET ``url``: (status, body), also for error statuses."""
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:  # noqa: S310 (loopback lab URL)
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def current_release(path: Path) -> str | None:
    """The release name ``<path>/current`` points at (None if missing)."""
    link = path / "current"
    return os.readlink(link).rstrip("/").rsplit("/", 1)[-1] if link.is_symlink() else None


def releases(path: Path) -> list[str]:
    """Release directory names, sorted."""
    d = path / "releases"
    return sorted(p.name for p in d.iterdir()) if d.is_dir() else []


def marker(path: Path, release: str) -> dict[str, Any] | None:
    """The completion marker of a release, None when half-built."""
    f = path / "releases" / release / ".maint-release.json"
    return json.loads(f.read_text()) if f.is_file() else None


def release_of(path: Path, commit: str) -> list[str]:
    """Releases holding ``commit`` (by their marker)."""
    return [r for r in releases(path) if (marker(path, r) or {}).get("commit") == commit]


def releases_log(path: Path) -> list[dict[str, Any]]:
    """The releases log entries."""
    f = path / ".maint" / "releases.jsonl"
    return [json.loads(line) for line in f.read_text().splitlines() if line.strip()] if f.is_file() else []


def status_of(path: Path, release: str) -> str | None:
    """A release's latest status in the log."""
    entries = [e for e in releases_log(path) if e["release"] == release]
    return entries[-1]["status"] if entries else None


def tree(path: Path) -> dict[str, tuple[str, str | None]]:
    """Every path under ``path`` with its type and link target or content (to prove nothing changed)."""
    out: dict[str, tuple[str, str | None]] = {}
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            p = Path(root) / name
            rel = str(p.relative_to(path))
            if p.is_symlink():
                out[rel] = ("link", os.readlink(p))
            elif p.is_file():
                out[rel] = ("file", p.read_bytes().hex())
            else:
                out[rel] = ("dir", None)
    return out
