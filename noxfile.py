"""Developer sessions: ``nox -s tests``, ``nox -s lint``, ``nox -s typecheck``."""

from __future__ import annotations

import nox

nox.options.sessions = ["lint", "typecheck", "tests"]


@nox.session(venv_backend="none")
def tests(session: nox.Session) -> None:
    """The whole suite against the real lab (needs root and the lab packages: scripts/lab-packages.sh)."""
    session.run("python3", "-m", "pytest", "-q", *session.posargs)


@nox.session(venv_backend="none")
def lint(session: nox.Session) -> None:
    """ruff and the import-linter layer contract."""
    session.run("ruff", "check", "maintkit", "tests", "benchmarks")
    session.run("ruff", "format", "--check", "maintkit", "tests", "benchmarks")
    session.run("lint-imports")


@nox.session(venv_backend="none")
def typecheck(session: nox.Session) -> None:
    """mypy --strict on the package."""
    session.run("mypy", "maintkit")
