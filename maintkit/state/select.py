"""Choosing and opening the state store: ``--state``, then ``MAINT_STATE``, then the inventory's
``state:``, else ``local``.

The text form is ``BACKEND[:REMOTE][#BRANCH]``: ``local``, ``git:git@github.com:acme/maint.git``,
``git:/srv/maint-state.git#maint-state``, ``s3:bucket/prefix`` (a plugin). A JSON object
(``{"backend": "git", "remote": "...", "branch": "..."}``) is accepted too.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from maintkit.errors import ConfigError, Problem
from maintkit.state.base import GROUP, StateSpec, StateStore

#: the environment variable that selects the store
ENV_VAR = "MAINT_STATE"


def parse_spec(text: str, origin: str) -> StateSpec:
    """A spec from its text form or JSON; ConfigError naming ``origin`` when it is not one."""
    text = text.strip()
    if not text:
        raise ConfigError(Problem(origin, None, "state", "empty state store (use local, or git:REMOTE[#BRANCH])"))
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(Problem(origin, None, "state", f"not valid JSON: {exc.msg}")) from None
        return spec_from_mapping(data, origin)
    backend, _, rest = text.partition(":")
    options: dict[str, Any] = {}
    if rest:
        remote, hash_, branch = rest.rpartition("#") if "#" in rest else (rest, "", "")
        options["remote"] = remote
        if hash_ and branch:
            options["branch"] = branch
    return _checked(StateSpec(backend.strip(), options, origin))


def spec_from_mapping(data: Any, origin: str) -> StateSpec:
    """A spec from a mapping (the inventory's ``state:`` or JSON): ``backend`` plus options."""
    if not isinstance(data, Mapping):
        raise ConfigError(Problem(origin, None, "state", "must be a mapping with a backend"))
    options = {str(k): v for k, v in data.items() if k != "backend" and v is not None}
    backend = data.get("backend", "local")
    if not isinstance(backend, str):
        raise ConfigError(Problem(origin, None, "state.backend", "must be a name such as local or git"))
    return _checked(StateSpec(backend, options, origin))


def _checked(spec: StateSpec) -> StateSpec:
    if not spec.backend or not spec.backend.replace("-", "").replace("_", "").isalnum():
        raise ConfigError(Problem(spec.origin, None, "state.backend", f"invalid backend name {spec.backend!r}"))
    return spec


def choose_spec(
    flag: str | None, environ: Mapping[str, str], inventory_state: Mapping[str, Any] | None, inventory_origin: str = ""
) -> StateSpec:
    """The spec in force: the ``--state`` flag, ``MAINT_STATE``, the inventory's ``state:``, or local."""
    if flag:
        return parse_spec(flag, "--state")
    if environ.get(ENV_VAR):
        return parse_spec(environ[ENV_VAR], ENV_VAR)
    if inventory_state is not None:
        return spec_from_mapping(inventory_state, inventory_origin or "inventory")
    return StateSpec()


def backend_names() -> list[str]:
    """Every backend name that can be opened (built-ins and installed plugins)."""
    return sorted({"local", "git", *(ep.name for ep in entry_points(group=GROUP))})


def _backend_class(name: str, origin: str) -> Any:
    if name == "local":
        from maintkit.state.local import LocalStore

        return LocalStore
    if name == "git":
        from maintkit.state.git import GitStore

        return GitStore
    found = [ep for ep in entry_points(group=GROUP) if ep.name == name]
    if not found:
        known = ", ".join(backend_names())
        raise ConfigError(Problem(origin, None, "state.backend", f"unknown state backend {name!r} (known: {known})"))
    return found[0].load()


def open_store(spec: StateSpec, *, state_dir: Path, environ: Mapping[str, str]) -> StateStore:
    """Open the store ``spec`` names; ConfigError (exit 2) for an unknown backend or bad options.

    A backend reports bad options by raising ValueError (or ConfigError): the error is given
    the spec's origin (``--state``, ``MAINT_STATE``, the inventory file).
    """
    cls = _backend_class(spec.backend, spec.origin)
    try:
        store = cls(dict(spec.options), state_dir=Path(state_dir), environ=environ)
    except ConfigError as exc:
        raise ConfigError([Problem(spec.origin, None, p.field or "state", p.message) for p in exc.problems]) from None
    except ValueError as exc:
        raise ConfigError(Problem(spec.origin, None, "state", str(exc))) from None
    if not isinstance(store, StateStore):
        raise ConfigError(Problem(spec.origin, None, "state.backend", f"{spec.backend!r} is not a state store"))
    return store


__all__ = ["ENV_VAR", "backend_names", "choose_spec", "open_store", "parse_spec", "spec_from_mapping"]
