"""The one way the suites write an inventory, run a playbook in-process and run the ``maint`` CLI.

Both layers use it: ``tests/e2e`` with local environments (:func:`local_env`), ``tests/lab``
with lab hosts (``LabHost.env(...)`` gives the environment fields). Test files keep only what
is specific to them (the shape of their sites, the arguments they always pass) and call these.

The CLI runs as ``python -m maintkit`` in a subprocess (:func:`maint_cli`, or in the background
:func:`spawn_maint`) with :func:`maint_env`, or in this process through click
(:func:`maint_in_process`) where a test times the command or runs it many times.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import yaml
from click.testing import CliRunner

from maintkit.cli.main import cli
from maintkit.inventory import Inventory, load_inventory
from maintkit.playbook import LoadedPlaybook, Playbook, playbook_from_text
from maintkit.registry import Registry
from maintkit.results import RunResult
from maintkit.runner import Runner


def local_env(path: str | Path, **extra: Any) -> dict[str, Any]:
    """Inventory fields of an environment on this machine (``connection: local``)."""
    return {"connection": "local", "path": str(path), **extra}


def one_step(action: str, *, step_id: str | None = None, **with_: Any) -> str:
    """A playbook of one step on production (``step_id``: its id, else the action's name)."""
    step = {**({"id": step_id} if step_id else {}), "action": action, "with": with_}
    return yaml.safe_dump({"name": f"t-{action}", "stages": [{"env": "production", "steps": [step]}]})


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
    # non-ASCII escaped: PyYAML writes NEL (U+0085) raw in a folded scalar and reads it back as a space
    path.write_text(yaml.safe_dump(data, allow_unicode=False))
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


# ---------------------------------------------------------------------------- the maint CLI
#: argv of the ``maint`` command with this interpreter (the installed console script may be another one)
MAINT = (sys.executable, "-m", "maintkit")
#: variables of the calling shell that change what ``maint`` shows or defaults to (CI, GitHub
#: Actions, ``MAINT_*`` settings, ``NO_COLOR``): a test sets the ones it means
HOST_PREFIXES = ("GITHUB_", "RUNNER_", "MAINT_", "NO_COLOR")
#: plain, colourless output whatever the terminal
PLAIN = {"MAINT_PLAIN": "1", "NO_COLOR": "1"}


def maint_argv(*args: str) -> list[str]:
    """argv that runs ``maint ARGS`` with this interpreter."""
    return [*MAINT, *args]


def maint_env(extra_env: Mapping[str, str] | None = None, *, plain: bool = True) -> dict[str, str]:
    """This process's environment without :data:`HOST_PREFIXES` variables and ``CI``, then
    :data:`PLAIN` (unless ``plain`` is false), then ``extra_env``.

    Read at call time, so variables a test sets with ``monkeypatch.setenv`` reach ``maint``.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(HOST_PREFIXES) and k != "CI"}
    if plain:
        env.update(PLAIN)
    env.update(extra_env or {})
    return env


def maint_cli(
    *args: str,
    cwd: str | Path,
    env: Mapping[str, str] | None = None,
    extra_env: Mapping[str, str] | None = None,
    timeout: float = 120,
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``maint ARGS`` in ``cwd`` and wait for it: the completed process (text output).

    The environment is ``env`` (default :func:`maint_env`) plus ``extra_env``; the exit code is
    the caller's to check.
    """
    return subprocess.run(
        maint_argv(*args),
        cwd=cwd,
        env=_environment(env, extra_env),
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def spawn_maint(
    *args: str,
    cwd: str | Path,
    env: Mapping[str, str] | None = None,
    extra_env: Mapping[str, str] | None = None,
    stderr: int | IO[str] = subprocess.PIPE,
) -> subprocess.Popen[str]:
    """Start ``maint ARGS`` in ``cwd`` in the background, stdout piped (``stderr``: a pipe of
    its own, or ``subprocess.STDOUT``). The environment is as for :func:`maint_cli`."""
    return subprocess.Popen(
        maint_argv(*args), cwd=cwd, env=_environment(env, extra_env), stdout=subprocess.PIPE, stderr=stderr, text=True
    )


def _environment(env: Mapping[str, str] | None, extra_env: Mapping[str, str] | None) -> dict[str, str]:
    return {**(maint_env() if env is None else env), **(extra_env or {})}


@dataclass(frozen=True)
class CliResult:
    """What an in-process ``maint`` printed and how it ended."""

    exit_code: int
    stdout: str
    stderr: str
    #: stdout and stderr interleaved as printed
    output: str
    #: this process's CPU time during the command (user + system, every thread): unlike the wall
    #: clock, not stretched by other processes on a shared machine
    cpu_seconds: float


def watched_cli(setup: str, *, at_exit: str = "") -> str:
    """A ``python -c`` script running the ``maint`` CLI in a fresh interpreter with ``setup`` done
    first (it patches what the test watches and records into ``seen``, a dict or a list it
    defines). At exit, after ``at_exit``, ``seen`` is written as JSON to the file named by the
    script's first argument (the CLI's arguments follow it)."""
    return (
        "import atexit, json, sys\nout = sys.argv.pop(1)\n"
        + textwrap.dedent(setup)
        + "\n@atexit.register\ndef dump():\n"
        + textwrap.indent(textwrap.dedent(at_exit), "    ")
        + "    with open(out, 'w') as f:\n        json.dump(seen, f)\n\n"
        "from maintkit.cli.main import main\nsys.argv[0] = 'maint'\nmain()\n"
    )


def maint_in_process(*args: str, input: str | None = None) -> CliResult:
    """Invoke ``maint ARGS`` in this process (click's test runner, no terminal).

    An exception other than the command's own exit fails the test: the CLI must turn every
    error into a message and an exit code.
    """
    started = time.process_time()
    result = CliRunner().invoke(cli, list(args), input=input)
    seconds = time.process_time() - started
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return CliResult(result.exit_code, result.stdout, result.stderr, result.output, seconds)
