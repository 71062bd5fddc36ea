"""Helpers for the operator-experience tests: a small local project and running ``maint``.

:func:`make_project` writes ``inventory.yml`` (sites with ``connection: local``, each in its
own directory under the project) and ``playbooks/ops.yml`` (file.content steps; with
``failing=True`` a last ``command`` step that fails and prints a secret).
:func:`maint` runs the ``maint`` CLI in a subprocess (:func:`tests.runs.maint_cli`) with
:func:`clean_env`.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from tests.runs import maint_argv, maint_cli, maint_env

SECRET_NAME = "SHOP_API_TOKEN"
SECRET_VALUE = "tok-9f8e7d6c5b4a3210"
ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[()][A-Za-z0-9]|\x1b[=>]|\r")


def make_project(
    root: Path, sites: tuple[str, ...] = ("shop-a", "shop-b"), *, failing: bool = False, notify: str = ""
) -> Path:
    """Write an inventory and the ``ops`` playbook into ``root``; return ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    lines = ["sites:"]
    for site in sites:
        path = root / "srv" / site
        path.mkdir(parents=True, exist_ok=True)
        lines += [
            f"  {site}:",
            "    environments:",
            f"      production: {{connection: local, path: {path}}}",
        ]
    (root / "inventory.yml").write_text("\n".join(lines) + "\n")
    steps = [
        "      - id: motd",
        "        action: file.content",
        "        with:",
        '          path: "{{ env.path }}/motd.txt"',
        '          content: "maintained by maint\\n"',
        "      - id: robots",
        "        action: file.content",
        "        with:",
        '          path: "{{ env.path }}/robots.txt"',
        '          content: "User-agent: *\\nDisallow: /admin/\\n"',
    ]
    if failing:
        steps += [
            "      - id: boom",
            "        action: command",
            "        with:",
            '          shell: "echo deploy hook failed with key {{ secrets.' + SECRET_NAME + ' }} >&2; exit 3"',
        ]
    pb = ["name: ops", "description: test playbook", "targets: all", "concurrency: 2"]
    if notify:
        pb += ["notify:", *["  " + line for line in notify.strip("\n").split("\n")]]
    pb += ["stages:", "  - env: production", "    steps:", *steps]
    (root / "playbooks").mkdir(exist_ok=True)
    (root / "playbooks" / "ops.yml").write_text("\n".join(pb) + "\n")
    return root


def step_line(root: Path, step_id: str) -> int:
    """1-based line of ``- id: STEP`` in the ops playbook."""
    for n, line in enumerate((root / "playbooks" / "ops.yml").read_text().splitlines(), start=1):
        if line.strip() == f"- id: {step_id}":
            return n
    raise AssertionError(f"no step {step_id}")


def clean_env(**extra: str) -> dict[str, str]:
    """The environment for a ``maint`` subprocess: no CI/GitHub variables unless given, the
    project's secret exported, the output left to the terminal (no ``MAINT_PLAIN``)."""
    return maint_env({SECRET_NAME: SECRET_VALUE, **extra}, plain=False)


def maint(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run ``maint ARGS`` in ``cwd`` with ``env`` (default :func:`clean_env`); the completed process."""
    return maint_cli(*args, cwd=cwd, env=env or clean_env(), timeout=timeout)


def strip_ansi(text: str) -> str:
    """Text without terminal escape sequences."""
    return ANSI.sub("", text)


__all__ = ["SECRET_NAME", "SECRET_VALUE", "clean_env", "maint", "maint_argv", "make_project", "step_line", "strip_ansi"]
