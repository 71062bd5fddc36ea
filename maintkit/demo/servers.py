"""Local servers of the demo shop: the web front (PHP's built-in server or Python's), a TLS
endpoint with a self-signed certificate, and optionally a private MariaDB.

Everything listens on 127.0.0.1 only and is stopped by :meth:`stop` (by pid for processes).
The parts: :mod:`~maintkit.demo.common` (ports, waiting, stopping), :mod:`~maintkit.demo.web`,
:mod:`~maintkit.demo.tls`, :mod:`~maintkit.demo.database`; this module gathers their names.
"""

from maintkit.demo.common import DemoServerError, free_port, stop_leftover, wait_http
from maintkit.demo.database import MARIADB_TOOLS, Database, mariadb_missing, start_database
from maintkit.demo.tls import TlsFiles, TlsFront, make_tls, start_tls
from maintkit.demo.web import ROUTER_PHP, WebFront, start_web

__all__ = [
    "MARIADB_TOOLS",
    "ROUTER_PHP",
    "Database",
    "DemoServerError",
    "TlsFiles",
    "TlsFront",
    "WebFront",
    "free_port",
    "make_tls",
    "mariadb_missing",
    "start_database",
    "start_tls",
    "start_web",
    "stop_leftover",
    "wait_http",
]
