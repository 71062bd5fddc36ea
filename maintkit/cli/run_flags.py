"""The flags users bring from Ansible and Terraform: ``-e``, ``--steps``, ``-v``/``-q``, ``--no-color``.

``-v``, ``-q`` and ``--no-color`` are accepted on the ``maint`` group and on ``run``/``plan``
(``maint -v run`` and ``maint run -v`` do the same; counts add up). ``-e`` values are read
through the same safe YAML loader as playbooks (size, depth and alias limits).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from maintkit.cli.common import config_error

#: a variable name ``-e`` accepts (templates read it as ``vars.NAME`` or ``vars['NAME']``)
_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


@dataclass
class OutputFlags:
    """How much a run shows: ``verbosity`` -1 (``-q``), 0, 1 (``-v``), 2 (``-vv``); colour off or automatic."""

    verbose: int = 0
    quiet: bool = False
    no_color: bool = False

    @property
    def verbosity(self) -> int:
        """-1 with ``-q`` (which wins over ``-v``), else the number of ``-v`` (at most 2)."""
        return -1 if self.quiet else min(self.verbose, 2)

    def merged(self, other: OutputFlags) -> OutputFlags:
        """These flags and ``other``'s together (the group's and the command's)."""
        return OutputFlags(self.verbose + other.verbose, self.quiet or other.quiet, self.no_color or other.no_color)


def output_options(f: Any) -> Any:
    """``-v/--verbose`` (repeatable), ``-q/--quiet`` and ``--no-color``."""
    for opt in reversed(
        [
            click.option(
                "-v", "--verbose", count=True, help="More detail: -v step timings and stages, -vv every command run."
            ),
            click.option("-q", "--quiet", is_flag=True, help="Only errors and the final verdict."),
            click.option("--no-color", is_flag=True, help="No colours (also: NO_COLOR set; FORCE_COLOR forces them)."),
        ]
    ):
        f = opt(f)
    return f


def group_flags() -> OutputFlags:
    """The output flags given on the ``maint`` group (``maint -v run``), or none."""
    ctx = click.get_current_context(silent=True)
    while ctx is not None:
        if isinstance(ctx.obj, OutputFlags):
            return ctx.obj
        ctx = ctx.parent
    return OutputFlags()


def selection_options(f: Any) -> Any:
    """``-e/--extra-vars``, ``--steps``, ``--skip-steps`` and ``--start-at``."""
    for opt in reversed(
        [
            click.option(
                "-e",
                "--extra-vars",
                "extra_vars",
                multiple=True,
                metavar="KEY=VALUE|@FILE",
                help="Set a variable over playbook and inventory vars (value read as YAML: -e keep=5 is a number); "
                "@FILE reads a YAML mapping. Repeatable.",
            ),
            click.option("--steps", multiple=True, metavar="ID,...", help="Run only these step ids (others skipped)."),
            click.option("--skip-steps", multiple=True, metavar="ID,...", help="Skip these step ids."),
            click.option(
                "--start-at",
                default=None,
                metavar="STEP",
                help="Resume: skip what comes before STEP in the first stage that has it (and earlier stages).",
            ),
        ]
    ):
        f = opt(f)
    return f


def _problem(message: str) -> Any:
    from maintkit.errors import Problem

    return Problem("-e", None, "", message)


def _one_value(key: str, text: str) -> Any:
    """``text`` read as one YAML value (scalar or flow); empty text is the empty string."""
    from maintkit._yaml import load_yaml
    from maintkit.errors import ConfigError

    if text == "":
        return ""
    data, _source = load_yaml(text, f"-e {key}", ConfigError)
    return data


def _from_file(name: str) -> dict[str, Any]:
    """The variables of ``-e @FILE``: a YAML mapping, read with the playbook loader's limits."""
    from maintkit._yaml import read_yaml_file
    from maintkit.errors import ConfigError

    path = Path(name)
    if not path.is_file():
        raise ConfigError(_problem(f"@{name}: no such file"))
    data, _source = read_yaml_file(path, ConfigError)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(_problem(f"@{name}: must be a mapping of variables (KEY: VALUE), not {type(data).__name__}"))
    return _checked(data, f"@{name}")


def _checked(data: dict[Any, Any], where: str) -> dict[str, Any]:
    bad = [k for k in data if not isinstance(k, str) or not _KEY.match(k)]
    if bad:
        raise _bad(f"{where}: invalid variable name {bad[0]!r} (letters, digits, _ and -)")
    return {str(k): v for k, v in data.items()}


def _bad(message: str) -> Exception:
    """A ConfigError naming ``-e``."""
    from maintkit.errors import ConfigError

    return ConfigError(_problem(message))


def parse_one(item: str) -> dict[str, Any]:
    """The variables one ``-e`` value sets: ``KEY=VALUE``, ``@FILE`` or an inline mapping ``{a: 1}``."""
    if item.startswith("@"):
        return _from_file(item[1:])
    if item.lstrip().startswith("{"):
        value = _one_value("{...}", item)
        if not isinstance(value, dict):
            raise _bad(f"{item!r}: not a mapping")
        return _checked(value, "-e {...}")
    key, sep, text = item.partition("=")
    key = key.strip()
    if not sep:
        raise _bad(f"{item!r}: expected KEY=VALUE, @FILE or a {{...}} mapping")
    if not key:
        raise _bad(f"{item!r}: the variable name before '=' is empty")
    if not _KEY.match(key):
        raise _bad(f"{item!r}: invalid variable name {key!r} (letters, digits, _ and -)")
    return {key: _one_value(key, text)}


def parse_extra_vars(items: tuple[str, ...]) -> dict[str, Any]:
    """Every ``-e`` in order, later ones winning; exit 2 naming ``-e`` (and FILE:LINE) on a bad one."""
    from maintkit.errors import ConfigError

    out: dict[str, Any] = {}
    try:
        for item in items:
            out.update(parse_one(item))
    except ConfigError as exc:
        config_error(exc)
    return out


def parse_selection(steps: tuple[str, ...], skip_steps: tuple[str, ...], start_at: str | None) -> Any:
    """The runner's StepSelection from ``--steps``, ``--skip-steps`` and ``--start-at``."""
    from maintkit.runner.select import StepSelection

    def ids(values: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(dict.fromkeys(x.strip() for v in values for x in v.split(",") if x.strip()))

    return StepSelection(ids(steps), ids(skip_steps), (start_at or "").strip() or None)


__all__ = [
    "OutputFlags",
    "group_flags",
    "output_options",
    "parse_extra_vars",
    "parse_one",
    "parse_selection",
    "selection_options",
]
