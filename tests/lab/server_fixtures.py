"""Pytest fixtures for the lab servers: nginx + php-fpm, MariaDB, Redis, ACME (pebble), git.

Registered as a plugin by ``tests/conftest.py``. The heavy servers are
session-scoped and start only when a test asks for them, so a unit-test-only
run starts nothing. Each server lives under its own directory in /tmp (mode
0755, so the www-data / mysql / deploy users can reach it) which is removed at
the end of the session; set ``MAINTKIT_LAB_KEEP=1`` to keep it for debugging.
A server that cannot start raises, so the tests that need it fail.

Session fixtures: ``web_stack``, ``mariadb``, ``redis_server``, ``acme_ca``
(its http-01 webroot is already served by ``web_stack``: ``acme_ca.webroot``).
Function fixtures: ``web_site_dir`` (a fresh world-readable site directory),
``certbot`` (fresh certbot dirs for ``acme_ca``), ``bare_repo`` (a bare git
repository with a working clone), ``bare_repo_factory`` (several, or owned by a login user).
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.lab.acme import AcmeServer, Certbot, serve_http01
from tests.lab.gitrepo import BareRepo
from tests.lab.labdirs import lab_tmpdir
from tests.lab.mariadb import MariaDB
from tests.lab.redisd import RedisServer
from tests.lab.web import WebStack


def _lab_dir(prefix: str) -> Path:
    return lab_tmpdir(f"maintkit-lab-{prefix}-", mode=0o755)


def _remove(path: Path) -> None:
    if os.environ.get("MAINTKIT_LAB_KEEP") != "1":
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def web_stack() -> Iterator[WebStack]:
    """nginx + php-fpm (workers and pool run as www-data); add sites with ``add_site``."""
    base = _lab_dir("web")
    try:
        with WebStack(base) as stack:
            yield stack
    finally:
        _remove(base)


@pytest.fixture()
def web_site_dir(web_stack: WebStack) -> Path:
    """A fresh, empty, world-readable directory for one test's site (under the web stack's base)."""
    return web_stack.make_site_dir(f"site-{uuid.uuid4().hex[:10]}")


@pytest.fixture(scope="session")
def mariadb() -> Iterator[MariaDB]:
    """A MariaDB server on 127.0.0.1; give each test its own database with ``create_database``."""
    base = _lab_dir("mariadb")
    try:
        with MariaDB(base) as server:
            yield server
    finally:
        _remove(base)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A password-protected Redis server on 127.0.0.1."""
    base = _lab_dir("redis")
    try:
        with RedisServer(base) as server:
            yield server
    finally:
        _remove(base)


@pytest.fixture(scope="session")
def acme_ca(web_stack: WebStack) -> Iterator[AcmeServer]:
    """pebble issuing one-day certificates; ``acme_ca.webroot`` is served on its http-01 port.

    The webroot is world-writable (sticky, like /tmp) so certbot may also run as a login user.
    """
    base = _lab_dir("acme")
    try:
        with AcmeServer(base, cert_validity=86400) as server:
            serve_http01(server, web_stack, mode=0o1777)
            yield server
    finally:
        _remove(base)


@pytest.fixture()
def certbot(acme_ca: AcmeServer, tmp_path: Path) -> Certbot:
    """certbot with fresh config/work/logs dirs, pointed at ``acme_ca``."""
    return acme_ca.certbot(tmp_path / "certbot")


@pytest.fixture()
def bare_repo_factory() -> Iterator[Callable[..., BareRepo]]:
    """Make bare repositories in a fresh world-searchable directory: ``factory(name, owner=None)``.

    With ``owner="deploy"`` the login user can clone it (git refuses repositories of other users).
    """
    base = _lab_dir("git")

    def make(name: str = "repo.git", owner: str | None = None) -> BareRepo:
        return BareRepo(base / name, owner=owner)

    try:
        yield make
    finally:
        _remove(base)


@pytest.fixture()
def bare_repo(bare_repo_factory: Callable[..., BareRepo]) -> BareRepo:
    """An empty bare repository owned by root; make commits with ``commit(files, message, tag=None)``."""
    return bare_repo_factory()
