"""Every fenced example in docs/*.md and README.md is checked or run, so the docs cannot drift.

- ``yaml`` blocks: a playbook (has ``stages``), an inventory (has ``sites``) or a list of steps
  (items with ``action``; wrapped in a one-stage playbook) goes through the real loader (what
  ``maint validate`` does) and the JSON Schema of ``maint schema``. GitHub Actions workflows and
  their steps (``jobs``, ``uses``/``run`` items) are only parsed. A block that is a piece of a
  file is marked with ``<!-- fragment -->`` on the line before it (docs/testing.md); it must
  still parse. Any other block fails the test.
- ``console``/``sh`` blocks: each ``maint`` command (``$ `` lines when the block has prompts)
  whose subcommand is in :data:`RUNNABLE` runs in a project made of the page's own examples
  (``maint init``, then the page's inventory with every environment switched to
  ``connection: local`` under the project, and the page's playbooks in ``./playbooks``); its
  exit code is asserted. Other subcommands are listed in :data:`SKIPPED`, each with a reason.
"""

from __future__ import annotations

import re
import shlex
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from maintkit.inventory import load_inventory
from maintkit.playbook import BUILTIN_DIR, playbook_from_text
from tests.runs import maint_cli
from tests.schema_helpers import describe, schema_errors

ROOT = Path(__file__).resolve().parents[2]
PAGES = sorted([*(ROOT / "docs").glob("*.md"), ROOT / "README.md"])
FENCE = re.compile(r"^(\s*)(`{3,})(\S*)(.*)$")
MARKER = re.compile(r"^<!--\s*fragment\b.*-->\s*$")

#: subcommands run against the page's project, and the exit codes expected. ``plan`` may end 1:
#: the example's sites are empty local directories here, so checks that need a real shop (a
#: WordPress install, a database, a reachable URL) fail; 2 (invalid input) is what it catches.
RUNNABLE = {
    "validate": {0},
    "plan": {0, 1},
    "schema": {0},
    "actions": {0},
    "playbooks": {0},
    "inventory": {0},
    "init": {0},
}
#: whole commands whose exit code differs from their subcommand's
EXACT = {"maint schema": {2}}  # no kind: says which to pick, a usage error
#: subcommands not run here, and why (every one is covered by its own end-to-end tests)
SKIPPED = {
    "run": "changes the example's hosts (tests/e2e/test_core_local.py runs playbooks locally)",
    "runs": "reads the run history of earlier runs, which this project has not made",
    "audit": "verifies the audit log of an earlier run, which this project has not made",
    "report": "reports on earlier runs, which this project has not made",
    "rollback": "switches releases on the example's hosts",
    "demo": "takes up to a minute; tests/e2e/test_demo.py runs it",
    "daemon": "starts a process that outlives the example; tests/e2e/test_daemon.py runs it",
}


@dataclass(frozen=True)
class Block:
    """One fenced block: where it is, its language, whether it is marked a fragment, its text."""

    page: Path
    line: int
    lang: str
    fragment: bool
    text: str

    @property
    def where(self) -> str:
        """``docs/x.md:12`` for messages and test ids."""
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def blocks(page: Path) -> list[Block]:
    """The fenced blocks of a Markdown page."""
    lines = page.read_text(encoding="utf-8").splitlines()
    found, i = [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        end = next(j for j in range(i + 1, len(lines)) if lines[j].strip() == m.group(2))
        before = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
        marked = bool(MARKER.match(before.strip())) or "fragment" in m.group(4)
        text = textwrap.dedent("\n".join(lines[i + 1 : end])) + "\n"
        found.append(Block(page, i + 1, m.group(3), marked, text))
        i = end + 1
    return found


ALL = [b for page in PAGES for b in blocks(page)]
YAML_BLOCKS = [b for b in ALL if b.lang == "yaml"]
SHELL_BLOCKS = [b for b in ALL if b.lang in ("console", "sh")]


def kind_of(data: Any) -> str:
    """playbook, inventory, steps, workflow, or unknown."""
    if isinstance(data, dict):
        if "stages" in data:
            return "playbook"
        if "sites" in data:
            return "inventory"
        if "jobs" in data:
            return "workflow"
    if isinstance(data, list) and data and all(isinstance(d, dict) for d in data):
        if all("action" in d for d in data):
            return "steps"
        if all("uses" in d or "run" in d for d in data):
            return "workflow"
    return "unknown"


def check_yaml(block: Block, tmp_path: Path) -> str:
    """Validate one yaml block as what it is; its kind."""
    data = yaml.safe_load(block.text)
    if block.fragment:
        return "fragment"
    kind = kind_of(data)
    if kind == "steps":
        data = {"name": "example", "stages": [{"env": "production", "steps": data}]}
        text = yaml.safe_dump(data, sort_keys=False)
    else:
        text = block.text
    if kind in ("playbook", "steps"):
        playbook_from_text(text, block.where)
        assert schema_errors("playbook", data) == [], describe("playbook", data)
    elif kind == "inventory":
        path = tmp_path / "inventory.yml"
        path.write_text(block.text, encoding="utf-8")
        load_inventory(path)
        assert schema_errors("inventory", data) == [], describe("inventory", data)
    else:
        assert kind == "workflow", f"{block.where}: not a playbook, inventory or steps: mark it <!-- fragment -->"
    return kind


@pytest.mark.parametrize("block", YAML_BLOCKS, ids=[b.where for b in YAML_BLOCKS])
def test_yaml_example(block: Block, tmp_path: Path) -> None:
    check_yaml(block, tmp_path)


def test_every_kind_is_seen() -> None:
    """The classification is not silently skipping everything."""
    kinds = [kind_of(yaml.safe_load(b.text)) for b in YAML_BLOCKS if not b.fragment]
    assert {"playbook", "inventory", "steps", "workflow"} <= set(kinds)
    assert kinds.count("steps") >= 10 and kinds.count("inventory") >= 5


def commands(block: Block) -> list[list[str]]:
    """The ``maint`` command lines of a shell block, as argument lists (``VAR=x`` prefixes dropped)."""
    lines = block.text.replace("\\\n", " ").splitlines()
    if any(line.startswith("$ ") for line in lines):
        lines = [line[2:] for line in lines if line.startswith("$ ")]
    out = []
    for line in lines:
        argv = shlex.split(line, comments=True)
        while argv and re.match(r"^[A-Z_][A-Z0-9_]*=", argv[0]):
            argv = argv[1:]
        if argv and Path(argv[0]).name == "maint":  # also ~/.venvs/maint/bin/maint
            out.append(["maint", *argv[1:]])
    return out


COMMANDS = [(b, argv) for b in SHELL_BLOCKS for argv in commands(b)]


def localize(inventory: dict[str, Any], root: Path) -> dict[str, Any]:
    """The inventory with every environment on this machine, under ``root``."""
    for site, spec in inventory.get("sites", {}).items():
        for env, env_spec in (spec.get("environments") or {}).items():
            path = root / "sites" / site / env
            path.mkdir(parents=True, exist_ok=True)
            env_spec.update({"connection": "local", "path": str(path), "become": False})
            env_spec.pop("host", None)
    return inventory


def project(page: Path, tmp_path: Path) -> Path:
    """``maint init``, then the page's own inventory (made local) and playbooks."""
    res = maint_cli("init", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    page_blocks = [b for b in blocks(page) if b.lang == "yaml" and not b.fragment]
    inventories = [yaml.safe_load(b.text) for b in page_blocks if kind_of(yaml.safe_load(b.text)) == "inventory"]
    inventory = inventories[0] if inventories else yaml.safe_load((tmp_path / "inventory.yml").read_text())
    (tmp_path / "inventory.yml").write_text(yaml.safe_dump(localize(inventory, tmp_path)), encoding="utf-8")
    for b in page_blocks:
        data = yaml.safe_load(b.text)
        # a page's excerpt of a built-in playbook must not hide the real one
        if kind_of(data) == "playbook" and not (BUILTIN_DIR / f"{data['name']}.yml").exists():
            (tmp_path / "playbooks" / f"{data['name']}.yml").write_text(b.text, encoding="utf-8")
    return tmp_path


def test_every_maint_command_is_run_or_skipped_with_a_reason() -> None:
    subs = {argv[1] for _b, argv in COMMANDS if len(argv) > 1 and not argv[1].startswith("-")}
    assert subs - set(RUNNABLE) - set(SKIPPED) == set()
    assert set(SKIPPED) - subs == set(), "a skip entry no example needs any more: remove it"


RUN = [(b, argv) for b, argv in COMMANDS if len(argv) == 1 or argv[1].startswith("-") or argv[1] in RUNNABLE]


@pytest.mark.parametrize(("block", "argv"), RUN, ids=[f"{b.where}:{' '.join(a)}" for b, a in RUN])
def test_shell_example(block: Block, argv: list[str], tmp_path: Path) -> None:
    where = project(block.page, tmp_path)
    res = maint_cli(*argv[1:], cwd=where, timeout=180)
    expected = EXACT.get(" ".join(argv)) or (RUNNABLE.get(argv[1], {0}) if len(argv) > 1 else {0})
    assert res.returncode in expected, f"{block.where}: {' '.join(argv)}\n{res.stdout}\n{res.stderr}"
    if argv[1:2] == ["plan"]:
        assert f"plan {argv[2]}: " in res.stdout, res.stdout
