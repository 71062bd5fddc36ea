"""The demo shop behind ``maint demo``: everything on this machine, with the real actions.

:class:`Demo` creates (once) a shop with two environments, ``staging`` and ``production``
(each a release layout served by its own local web server), a git repository with releases
v1, v2 (breaks the cart) and v3 (good), page caches, a TLS certificate from a demo CA and,
when MariaDB is installed, a private database server with one database per environment; it
starts the servers and writes an inventory (``connection: local``). The CLI then runs the
built-in playbooks ``setup.yml`` (v1 on both, the first time only) and ``demo.yml`` (an update:
staging first, then production) with the normal runner and reporter.

Nothing here prints: :meth:`Demo.start` returns :class:`Note` objects for the CLI to show.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from maintkit.demo import servers, shop
from maintkit.demo.releases import BROKEN, GOOD

PLAYBOOK = Path(__file__).parent / "demo.yml"
SETUP_PLAYBOOK = Path(__file__).parent / "setup.yml"
DEFAULT_DIR = "maint-demo"
ENVS = shop.ENVS


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
    webs: dict[str, servers.WebFront] = field(default_factory=dict)
    tls_front: servers.TlsFront | None = None
    database: servers.Database | None = None

    def __post_init__(self) -> None:
        self.root = Path(self.root).absolute()

    # ---- paths ---------------------------------------------------------------------------
    def env_path(self, env: str) -> Path:
        """An environment's path (releases/, shared/, current)."""
        return self.root / env

    def cache_dir(self, env: str) -> Path:
        """An environment's page cache, which cache.clear empties."""
        return self.env_path(env) / "shared" / "var" / "cache"

    def url(self, env: str) -> str:
        """An environment's base URL (its web server must be running)."""
        return self.webs[env].url

    @property
    def repo(self) -> Path:
        """The bare git repository with the releases."""
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
    def is_new(self) -> bool:
        """True until a release has been deployed on both environments."""
        return not all((self.env_path(env) / "current").exists() for env in ENVS)

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
        settings = self._settings()
        self._clean_leftovers(settings)
        database = _Background(self._start_database)  # MariaDB starts while the rest is set up
        try:
            shop.make_repository(self.repo)
            for env in ENVS:
                self.env_path(env).mkdir(exist_ok=True)
                shop.seed_cache(self.cache_dir(env))
            tls = servers.make_tls(self.root / "tls")
            ports: dict[str, Any] = settings.get("web_ports") or {}
            for env in ENVS:
                docroot = self.env_path(env) / "current" / "public"
                workdir = self.root / "web" / env
                workdir.mkdir(parents=True, exist_ok=True)
                self.webs[env] = servers.start_web(docroot, workdir, ports.get(env), use_php=self.use_php)
            docroot = self.env_path("production") / "current" / "public"
            self.tls_front = servers.start_tls(docroot, tls, settings.get("tls_port"))
            db_vars, db_note = database.result()
        except BaseException:
            with contextlib.suppress(BaseException):
                database.result()
            self.stop()
            raise
        self._web_notes()
        self.notes.append(db_note)
        self.notes.append(Note(f"TLS: production also on https://127.0.0.1:{self.tls_front.port} (a demo CA)"))
        self._write_inventory(tls.ca, db_vars)
        self._save_settings(
            {
                "web_ports": {env: web.port for env, web in self.webs.items()},
                "tls_port": self.tls_front.port,
                "pids": self._pids(),
            }
        )
        return self.notes

    def _pids(self) -> dict[str, int]:
        found = {f"web-{env}": web.pid for env, web in self.webs.items()}
        found["db"] = self.database.pid if self.database else None
        return {k: v for k, v in found.items() if v}

    def _web_notes(self) -> None:
        kind = next(iter(self.webs.values())).kind
        server = "PHP's built-in server" if kind == "php" else "Python's http.server"
        urls = ", ".join(f"{env} {web.url}" for env, web in self.webs.items())
        self.notes.append(Note(f"web: {urls} ({server}, one per environment)"))
        if kind != "php":
            why = "disabled" if not self.use_php else "PHP is not installed"
            self.notes.append(Note(f"PHP: left out ({why}): a Python stand-in serves the cart page", True))

    def _write_inventory(self, ca_bundle: Path, db_vars: dict[str, Any]) -> None:
        build = self._build_commands()
        site_vars: dict[str, Any] = {"repo": str(self.repo), "release": GOOD, "broken_release": BROKEN, "build": build}
        site_vars.update({k: v for k, v in db_vars.items() if k != "names"})
        envs: dict[str, dict[str, Any]] = {}
        for env in ENVS:
            env_vars: dict[str, Any] = {}
            settings = {"DB_DEFAULTS_FILE": "", "DB_NAME": ""}
            if db_vars.get("db_enabled"):
                env_vars["db_name"] = db_vars["names"][env]
                settings = {"DB_DEFAULTS_FILE": str(db_vars["db_defaults_file"]), "DB_NAME": env_vars["db_name"]}
            if env == "production" and self.tls_front is not None:
                env_vars.update({"tls_port": self.tls_front.port, "ca_bundle": str(ca_bundle)})
            shop.write_env_file(self.env_path(env) / "shared", settings)
            envs[env] = {"path": self.env_path(env), "url": self.url(env), "vars": env_vars}
        shop.write_inventory(self.inventory_path, envs, site_vars)

    def _clean_leftovers(self, settings: dict[str, Any]) -> None:
        """Stop servers of an earlier demo run that was killed, and clear its stale locks."""
        for name, pid in (settings.get("pids") or {}).items():
            if isinstance(pid, int) and servers.stop_leftover(pid, str(self.root)):
                self.notes.append(Note(f"stopped the {name} server (pid {pid}) left by an earlier demo run"))
        for env in ENVS:
            lock = self.env_path(env) / ".maint" / "lock"
            try:
                holder = json.loads((lock / "holder.json").read_text())
            except (OSError, ValueError):
                continue
            pid = holder.get("pid") if isinstance(holder, dict) else None
            if holder.get("controller") == socket.gethostname() and isinstance(pid, int) and not _alive(pid):
                shutil.rmtree(lock, ignore_errors=True)
                self.notes.append(Note(f"cleared {env}'s lock left by an interrupted demo run (process {pid} is gone)"))

    def _start_database(self) -> tuple[dict[str, Any], Note]:
        """Start the private MariaDB (in a thread): the inventory's database variables and a note."""
        if not self.use_database:
            return {"db_enabled": False}, Note("database: left out (disabled): no database backup or migration", True)
        missing = servers.mariadb_missing()
        if missing:
            why = f"{', '.join(missing)} not installed"
            return {"db_enabled": False}, Note(f"database: left out ({why}): no database backup or migration", True)
        names = {env: f"demo_shop_{env}" for env in ENVS}
        try:
            self.database = servers.start_database(self.root / "db", tuple(names.values()))
        except (servers.DemoServerError, OSError, KeyError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            return {"db_enabled": False}, Note(f"database: left out (MariaDB did not start: {first})", True)
        note = Note(f"database: a private MariaDB, one database per environment: {', '.join(names.values())}")
        return {"db_enabled": True, "names": names, "db_defaults_file": str(self.database.my_cnf)}, note

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
        for server in (*self.webs.values(), self.tls_front, self.database):
            if server is not None:
                with contextlib.suppress(OSError):
                    server.stop()
        self.webs = {}
        self.tls_front = None
        self.database = None

    def __enter__(self) -> Demo:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _Background:
    """A function run in a thread; :meth:`result` joins it and returns its value or raises its error."""

    def __init__(self, fn: Any) -> None:
        self._fn: Any = fn
        self._value: Any = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="maint-demo-setup", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._value = self._fn()
        except BaseException as exc:  # handed to the caller by result()
            self._error = exc

    def result(self) -> Any:
        """Wait for the function; its return value (or its exception, raised here)."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._value


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


__all__ = ["DEFAULT_DIR", "ENVS", "PLAYBOOK", "SETUP_PLAYBOOK", "Demo", "Note", "default_dir"]
