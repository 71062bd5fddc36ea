"""The one way the suites write an inventory and run a playbook in-process.

Both layers use it: ``tests/e2e`` with local environments (:func:`local_env`), ``tests/lab``
with lab hosts (``LabHost.env(...)`` gives the environment fields). Test files keep only what
is specific to them (the shape of their sites) and call these.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from maintkit.inventory import Inventory, load_inventory
from maintkit.playbook import LoadedPlaybook, Playbook, playbook_from_text
from maintkit.registry import Registry
from maintkit.results import RunResult
from maintkit.runner import Runner


def local_env(path: str | Path, **extra: Any) -> dict[str, Any]:
    """Inventory fields of an environment on this machine (``connection: local``)."""
    return {"connection": "local", "path": str(path), **extra}


def one_site(
    env: Mapping[str, Any], *, name: str = "shop", env_name: str = "production", **site: Any
) -> dict[str, Any]:
    """The ``sites`` mapping of one site with one environment (``site`` adds platform, vars...)."""
    return {name: {**site, "environments": {env_name: dict(env)}}}


def sites_of(envs: Mapping[str, Mapping[str, Any]], env_name: str = "production") -> dict[str, Any]:
    """The ``sites`` mapping of one site per entry of ``envs`` (site name -> environment fields)."""
    return {name: {"environments": {env_name: dict(env)}} for name, env in envs.items()}


def write_inventory(
    directory: Path,
    sites: Mapping[str, Mapping[str, Any]],
    *,
    groups: Mapping[str, list[str]] | None = None,
    unique: bool = False,
) -> Path:
    """Write ``{"sites": sites, "groups": groups}`` as YAML into ``directory`` and return its path.

    The file is ``inventory.yml``, or ``inventory-XXXXXX.yml`` with ``unique`` (several per test).
    """
    data: dict[str, Any] = {"sites": {name: dict(fields) for name, fields in sites.items()}}
    if groups:
        data["groups"] = {name: list(members) for name, members in groups.items()}
    path = directory / (f"inventory-{uuid.uuid4().hex[:6]}.yml" if unique else "inventory.yml")
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    return path


def run(
    playbook: str | Playbook | LoadedPlaybook,
    inventory: Path | Inventory,
    state_dir: Path,
    *,
    registry: Registry | None = None,
    **runner: Any,
) -> RunResult:
    """Run ``playbook`` (YAML text or a parsed playbook) in-process, signals left alone.

    ``inventory`` is a file (loaded here) or a loaded inventory; ``runner`` goes to
    :class:`~maintkit.runner.Runner` (``check``, ``environ``, ``on_event``, ``extra``...).
    """
    pb = playbook_from_text(playbook, registry=registry) if isinstance(playbook, str) else playbook
    inv = load_inventory(inventory) if isinstance(inventory, Path) else inventory
    return Runner(pb, inv, state_dir=state_dir, registry=registry, handle_signals=False, **runner).run()


def events(run_dir: str | Path | None) -> list[dict[str, Any]]:
    """The audit events of a run folder, in order."""
    text = (Path(str(run_dir)) / "events.jsonl").read_text()
    return [json.loads(line) for line in text.splitlines() if line.strip()]
