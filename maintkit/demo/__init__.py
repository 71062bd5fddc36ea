"""The demo shop behind ``maint demo``: everything on this machine, with the real actions.

:class:`Demo` creates (once) a shop directory with a release layout, a git repository with
releases v1 and v2, a page cache, a TLS certificate from a demo CA and, when MariaDB is
installed, a private database server; it starts the local servers and writes an inventory
(``connection: local``). The CLI then runs the built-in playbooks ``setup.yml`` (v1, the
first time only) and ``demo.yml`` (the monthly flow) with the normal runner and reporter.

Nothing here prints: :meth:`Demo.start` returns :class:`Note` objects for the CLI to show.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from maintkit.demo import servers, shop

PLAYBOOK = Path(__file__).parent / "demo.yml"
SETUP_PLAYBOOK = Path(__file__).parent / "setup.yml"
DEFAULT_DIR = "maint-demo"


@dataclass(frozen=True)
class Note:
    """One line about how the demo is set up; ``left_out`` marks steps it had to leave out."""

    text: str
    left_out: bool = False


@dataclass
class Demo:
    """A demo shop in ``root`` (created on first use, reused afterwards)."""

    root: Path
    use_php: bool = True
    use_database: bool = True
    use_composer: bool = True
    notes: list[Note] = field(default_factory=list)
    web: servers.WebFront | None = None
    tls_front: servers.TlsFront | None = None
    database: servers.Database | None = None

    def __post_init__(self) -> None:
        self.root = Path(self.root).absolute()

    # ---- paths ---------------------------------------------------------------------------
    @property
    def shop_path(self) -> Path:
        """The environment's path (releases/, shared/, current)."""
        return self.root / "shop"

    @property
    def repo(self) -> Path:
        """The bare git repository with v1 and v2."""
        return self.root / "repo.git"

    @property
    def inventory_path(self) -> Path:
        """The demo's inventory file."""
        return self.root / "inventory.yml"

    @property
    def state_dir(self) -> Path:
        """Where the demo's run folders go."""
        return self.root / ".maint"

    @property
    def cache_dir(self) -> Path:
        """The page cache cache.clear empties."""
        return self.shop_path / "shared" / "var" / "cache"

    @property
    def is_new(self) -> bool:
        """True until a release has been deployed."""
        return not (self.shop_path / "current").exists()

    def _settings_path(self) -> Path:
        return self.root / ".maint" / "demo.json"

    def _settings(self) -> dict[str, Any]:
        try:
            data = json.loads(self._settings_path().read_text())
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def _save_settings(self, data: dict[str, Any]) -> None:
        path = self._settings_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(".demo.json.tmp")
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        tmp.replace(path)

    # ---- lifecycle -----------------------------------------------------------------------
    def start(self) -> list[Note]:
        """Create what is missing, start the servers, write the inventory. Returns notes."""
        self.notes = []
        self.root.mkdir(parents=True, exist_ok=True)
        shop.make_repository(self.repo)
        self.shop_path.mkdir(exist_ok=True)
        shop.seed_cache(self.cache_dir)
        tls = servers.make_tls(self.root / "tls")
        settings = self._settings()
        self._clean_leftovers(settings)
        docroot = self.shop_path / "current" / "public"
        try:
            self.web = servers.start_web(docroot, self.root, settings.get("web_port"), use_php=self.use_php)
            self.tls_front = servers.start_tls(docroot, tls, settings.get("tls_port"))
            db_vars = self._start_database()
        except BaseException:
            self.stop()
            raise
        if self.web.kind == "php":
            self.notes.append(Note(f"web: PHP's built-in server on {self.web.url} (the cart page runs PHP)"))
        else:
            why = "disabled" if not self.use_php else "PHP is not installed"
            self.notes.append(
                Note(
                    f"web: Python's http.server on {self.web.url}; {why}, so the cart page is a built-in stand-in", True
                )
            )
        self.notes.append(Note(f"TLS: a certificate from a demo CA served on https://127.0.0.1:{self.tls_front.port}"))
        build = self._build_commands()
        vars_: dict[str, Any] = {
            "repo": str(self.repo),
            "release": "v2",
            "build": build,
            "tls_port": self.tls_front.port,
            "ca_bundle": str(tls.ca),
            **db_vars,
        }
        shop.write_inventory(self.inventory_path, self.shop_path, self.web.url, vars_)
        self._save_settings(
            {
                "web_port": self.web.port,
                "tls_port": self.tls_front.port,
                "pids": {k: v for k, v in (("web", self.web.pid), ("db", self.database and self.database.pid)) if v},
            }
        )
        return self.notes

    def _clean_leftovers(self, settings: dict[str, Any]) -> None:
        """Stop servers of an earlier demo run that was killed, and clear its stale lock."""
        for name, pid in (settings.get("pids") or {}).items():
            if isinstance(pid, int) and servers.stop_leftover(pid, str(self.root)):
                self.notes.append(Note(f"stopped the {name} server (pid {pid}) left by an earlier demo run"))
        lock = self.shop_path / ".maint" / "lock"
        try:
            holder = json.loads((lock / "holder.json").read_text())
        except (OSError, ValueError):
            return
        pid = holder.get("pid") if isinstance(holder, dict) else None
        if holder.get("controller") == socket.gethostname() and isinstance(pid, int) and not _alive(pid):
            shutil.rmtree(lock, ignore_errors=True)
            self.notes.append(Note(f"cleared the lock left by an interrupted demo run (process {pid} is gone)"))

    def _start_database(self) -> dict[str, Any]:
        if not self.use_database:
            self.notes.append(Note("database: left out of the backup (disabled)", True))
            return {"db_enabled": False}
        missing = servers.mariadb_missing()
        if missing:
            self.notes.append(Note(f"database: left out of the backup ({', '.join(missing)} not installed)", True))
            return {"db_enabled": False}
        try:
            self.database = servers.start_database(self.root / "db")
        except (servers.DemoServerError, OSError, KeyError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            self.notes.append(Note(f"database: left out of the backup (MariaDB did not start: {first})", True))
            return {"db_enabled": False}
        self.notes.append(Note(f"database: a private MariaDB (socket {self.database.socket}) with the shop's tables"))
        return {"db_enabled": True, "db_name": self.database.name, "db_defaults_file": str(self.database.my_cnf)}

    def _build_commands(self) -> list[str]:
        if not self.use_composer:
            self.notes.append(Note("build: composer install left out (disabled)", True))
            return []
        if shutil.which("composer") is None:
            self.notes.append(Note("build: composer install left out (composer is not installed)", True))
            return []
        if shutil.which("php") is None:
            self.notes.append(Note("build: composer install left out (PHP is not installed)", True))
            return []
        home = self.root / ".composer"
        home.mkdir(exist_ok=True)
        self.notes.append(Note("build: each release runs composer install (offline)"))
        env = f"COMPOSER_HOME={_q(str(home))} COMPOSER_ALLOW_SUPERUSER=1 COMPOSER_DISABLE_NETWORK=1"
        return [f"{env} composer install --no-interaction --no-progress --quiet"]

    def stop(self) -> None:
        """Stop every server the demo started."""
        for server in (self.web, self.tls_front, self.database):
            if server is not None:
                with contextlib.suppress(OSError):
                    server.stop()
        self.web = self.tls_front = None
        self.database = None

    def __enter__(self) -> Demo:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _q(text: str) -> str:
    from maintkit.transport.base import quote

    return quote(text)


def default_dir() -> Path:
    """``./maint-demo`` (or ``$MAINT_DEMO_DIR``)."""
    return Path(os.environ.get("MAINT_DEMO_DIR") or DEFAULT_DIR)


__all__ = ["DEFAULT_DIR", "PLAYBOOK", "SETUP_PLAYBOOK", "Demo", "Note", "default_dir"]
