"""Inventory: sites, their environments (host, path, url, platform...) and groups.

Example::

    defaults: {user: deploy, port: 22, host_key_policy: strict}
    sites:
      shop-a:
        platform: wordpress
        vars: {php_fpm_service: php8.2-fpm}
        environments:
          staging:    {host: staging.example.net, path: /var/www/shop-a-staging, url: https://staging.shop-a.example}
          production: {host: web1.example.net, path: /var/www/shop-a, url: https://shop-a.example}
    groups:
      eu-clients: [shop-a]
"""

from __future__ import annotations

import difflib
import fnmatch
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from maintkit._yaml import MAX_PROBLEMS, SourceMap, printable, pydantic_problems, read_yaml_file
from maintkit.errors import ConfigError, InventoryError, Problem

Platform = Literal["wordpress", "composer", "magento", "shopware", "laravel", "drupal", "bedrock", "generic"]
HostKeyPolicy = Literal["strict", "accept-new"]
ConnectionKind = Literal["ssh", "openssh", "local"]

_CONNECTION_FIELDS = (
    "user",
    "port",
    "host_key_policy",
    "known_hosts",
    "key_file",
    "become",
    "connection",
    "connect_timeout",
    "command_timeout",
    "proxy_command",
    "proxy_jump",
    "ssh_config",
    "keepalive_interval",
    "keepalive_count_max",
    "lock_lease",
    "control_persist",
)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False)


class SecretSource(_Model):
    """Where one secret's value comes from: an environment variable, a file or a command."""

    env: str | None = Field(None, description="An environment variable of the controller")
    file: str | None = Field(None, description="A file readable by its owner only (0600), owned by you")
    command: list[str] | None = Field(
        None, min_length=1, description="A command's output, e.g. [pass, show, shop-a/db] (no shell)"
    )
    timeout: float = Field(30.0, gt=0, le=3600, description="Seconds the command may take")

    @model_validator(mode="after")
    def _one_source(self) -> SecretSource:
        given = [k for k in ("env", "file", "command") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"a secret comes from exactly one of env, file or command (got {len(given)})")
        return self


SecretSources = dict[str, SecretSource]
_SECRETS_HELP = "Secrets for templates (secrets.NAME): {file: PATH}, {command: [argv]} or {env: VAR}"
_SSH_CONFIG_HELP = "Read OpenSSH client config: true for ~/.ssh/config, or a path (default: never read)"
_PROXY_JUMP_HELP = "Jump hosts, OpenSSH's ProxyJump: [user@]host[:port], comma-separated"


class Defaults(_Model):
    """Connection settings and variables every environment inherits."""

    user: str | None = Field(None, description="SSH login user (default: the local user)")
    port: int = Field(22, ge=1, le=65535, description="SSH port")
    host_key_policy: HostKeyPolicy = Field(
        "strict", description="strict: refuse unknown keys; accept-new: trust on first use"
    )
    known_hosts: str | None = Field(None, description="Extra known_hosts file (besides ~/.ssh/known_hosts)")
    key_file: str | None = Field(None, description="SSH private key file")
    become: bool = Field(False, description="Run commands through sudo -n")
    connection: ConnectionKind = Field(
        "ssh", description="ssh; openssh (the system's ssh, connections reused across runs); local (this machine)"
    )
    connect_timeout: float = Field(10.0, gt=0, description="Seconds to connect")
    command_timeout: float = Field(600.0, gt=0, description="Default seconds a command may take")
    proxy_command: str | None = Field(None, description="ProxyCommand to reach the host (jump hosts)")
    proxy_jump: str | None = Field(None, description=_PROXY_JUMP_HELP)
    ssh_config: bool | str | None = Field(None, description=_SSH_CONFIG_HELP)
    keepalive_interval: float = Field(
        5.0, gt=0, description="Seconds of silence before an SSH keepalive asks the server for a reply"
    )
    keepalive_count_max: int = Field(
        3, ge=1, description="Silence of keepalive_interval x this many: the connection is lost"
    )
    lock_lease: int = Field(
        600, ge=1, description="Seconds a site lock's lease lasts; a run renews it while it holds the lock"
    )
    control_persist: int = Field(
        600, ge=0, description="connection: openssh: idle seconds a connection stays open for later runs (0: none)"
    )
    vars: dict[str, Any] = Field(default_factory=dict, description="Variables for every site")


class Environment(_Model):
    """One environment of a site (staging, production...) on one host."""

    name: str = Field("", description="Filled from the mapping key")
    host: str = Field("localhost", description="Host name or address")
    path: str = Field(..., description="Absolute path of the site on the host")
    url: str | None = Field(None, description="Public URL, used by http checks")
    platform: Platform | None = Field(None, description="Overrides the site's platform")
    vars: dict[str, Any] = Field(default_factory=dict, description="Variables of this environment")
    protected: bool = Field(False, description="Never a target of staging.refresh (production-like data)")
    user: str | None = None
    port: int | None = Field(None, ge=1, le=65535)
    host_key_policy: HostKeyPolicy | None = None
    known_hosts: str | None = None
    key_file: str | None = None
    become: bool | None = None
    connection: ConnectionKind | None = None
    connect_timeout: float | None = Field(None, gt=0)
    command_timeout: float | None = Field(None, gt=0)
    proxy_command: str | None = None
    proxy_jump: str | None = Field(None, description=_PROXY_JUMP_HELP)
    ssh_config: bool | str | None = Field(None, description=_SSH_CONFIG_HELP)
    keepalive_interval: float | None = Field(None, gt=0)
    keepalive_count_max: int | None = Field(None, ge=1)
    lock_lease: int | None = Field(None, ge=1)
    control_persist: int | None = Field(None, ge=0)
    secrets: SecretSources = Field(default_factory=dict, description=_SECRETS_HELP)
    _explicit: frozenset[str] = PrivateAttr(default_factory=frozenset)

    def set_in_inventory(self, field: str) -> bool:
        """True when the inventory itself sets ``field`` for this environment (here or in
        ``defaults``): such a value wins over ``~/.ssh/config``."""
        return field in self._explicit

    @model_validator(mode="after")
    def _absolute_path(self) -> Environment:
        if not self.path.startswith("/"):
            raise ValueError("path must be absolute")
        return self

    @property
    def display_host(self) -> str:
        """``host`` or ``host:port`` for messages."""
        return self.host if self.port in (None, 22) else f"{self.host}:{self.port}"


class Site(_Model):
    """One shop with its environments."""

    name: str = Field("", description="Filled from the mapping key")
    platform: Platform = Field("generic", description="wordpress, composer (Magento 2, Shopware, Laravel...), generic")
    vars: dict[str, Any] = Field(default_factory=dict)
    environments: dict[str, Environment] = Field(..., min_length=1)
    secrets: SecretSources = Field(default_factory=dict, description=_SECRETS_HELP)
    direct_updates: bool = Field(
        False,
        description="No staging: a playbook stage that promotes from an environment the site lacks "
        "updates this one directly (backup, maintenance window, checks, automatic rollback)",
    )

    def env(self, name: str) -> Environment:
        """The environment called ``name`` (KeyError if missing)."""
        return self.environments[name]

    def vars_for(self, env: Environment) -> dict[str, Any]:
        """Site vars overlaid by the environment's vars."""
        return {**self.vars, **env.vars}


class StateConfig(BaseModel):
    """Where run history is kept (docs/state.md): a backend and its options."""

    model_config = ConfigDict(extra="allow")

    backend: str = Field("local", description="local (default), git, or a plugin's name")
    remote: str | None = Field(None, description="git: the remote URL (SSH, HTTPS or a path)")
    branch: str | None = Field(None, description="git: the branch holding the state (default maint-state)")


class Inventory(_Model):
    """All sites and groups the user maintains."""

    defaults: Defaults = Field(default_factory=Defaults)  # type: ignore[arg-type]
    state: StateConfig | None = Field(None, description="The state store shared by every controller")
    sites: dict[str, Site] = Field(..., min_length=1)
    groups: dict[str, list[str]] = Field(default_factory=dict)
    secrets: SecretSources = Field(default_factory=dict, description=_SECRETS_HELP)
    path: str | None = Field(None, exclude=True, description="Where it was loaded from")

    @model_validator(mode="after")
    def _resolve(self) -> Inventory:
        for site_name, site in self.sites.items():
            site.name = site_name
            site.vars = {**self.defaults.vars, **site.vars}
            for env_name, env in site.environments.items():
                env.name = env_name
                if env.platform is None:
                    env.platform = site.platform
                _inherit(env, self.defaults)
        return self

    def secret_sources(self, site: Site, env: Environment) -> SecretSources:
        """The secrets an environment's templates see: the inventory's, its site's, its own (nearest wins)."""
        return {**self.secrets, **site.secrets, **env.secrets}

    def resolve_targets(self, targets: list[str] | str) -> list[Site]:
        """Sites named by site names, group names or ``all``, in inventory order, without duplicates."""
        names = [targets] if isinstance(targets, str) else list(targets)
        wanted: set[str] = set()
        for name in names:
            if name == "all":
                wanted.update(self.sites)
            elif name in self.sites:
                wanted.add(name)
            elif name in self.groups:
                wanted.update(self.groups[name])
            else:
                raise InventoryError(
                    Problem(
                        self.path or "<inventory>",
                        None,
                        "targets",
                        f"unknown site or group {printable(repr(name), 120)}",
                    )
                )
        return [site for name, site in self.sites.items() if name in wanted]


def limit_patterns(items: list[str] | str) -> list[str]:
    """The patterns of ``--limit`` values: comma-separated, repeated, surrounding spaces and empty ones left out."""
    values = [items] if isinstance(items, str) else items
    return [p.strip() for value in values for p in value.split(",") if p.strip()]


def _matches(inv: Inventory, pattern: str) -> list[str] | None:
    """The site names ``pattern`` names (a site, a group, ``all``, or a glob over both), or None."""
    if pattern == "all" or pattern == "*":
        return list(inv.sites)
    if pattern in inv.sites:
        return [pattern]
    if pattern in inv.groups:
        return list(inv.groups[pattern])
    if not any(c in pattern for c in "*?["):
        return None
    names: dict[str, None] = {}
    for site in inv.sites:
        if fnmatch.fnmatchcase(site, pattern):
            names[site] = None
    for group, members in inv.groups.items():
        if fnmatch.fnmatchcase(group, pattern):
            names.update(dict.fromkeys(members))
    return list(names) or None


def _no_match(inv: Inventory, flag: str, pattern: str) -> Problem:
    """``--limit: no site or group matches 'x' (did you mean 'y'?)``."""
    shown = printable(repr(pattern), 120)
    known = [*inv.sites, *inv.groups]
    close = difflib.get_close_matches(pattern.strip("*?[]!"), known, n=3, cutoff=0.6)
    hint = f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""
    return Problem(flag, None, "", f"no site or group matches {shown}{hint}")


def select_sites(inv: Inventory, items: list[str] | str, flag: str = "--limit") -> list[str]:
    """The site names a ``--limit`` selects, in inventory order (docs/cli.md, "Choosing sites").

    Patterns are site names, group names, ``all`` or fnmatch globs (``shop-*``) over site and
    group names; ``!pattern`` excludes what it matches; with only exclusions, every site is the
    start. A pattern (also an exclusion) that matches nothing is an error naming ``flag``, with
    the closest names: a typo never runs (or spares) a site by accident.
    """
    include: dict[str, None] = {}
    exclude: set[str] = set()
    problems: list[Problem] = []
    patterns = limit_patterns(items)
    for pattern in patterns:
        negate = pattern.startswith("!")
        body = pattern[1:].strip() if negate else pattern
        found = _matches(inv, body) if body else None
        if found is None:
            problems.append(_no_match(inv, flag, pattern) if body else Problem(flag, None, "", "an empty '!' pattern"))
        elif negate:
            exclude.update(found)
        else:
            include.update(dict.fromkeys(found))
    if problems:
        raise InventoryError(problems[:MAX_PROBLEMS])
    if not any(not p.startswith("!") for p in patterns):
        include = dict.fromkeys(inv.sites)
    return [name for name in inv.sites if name in include and name not in exclude]


def _inherit(env: Environment, defaults: Defaults) -> None:
    """Fill the connection fields ``env`` leaves out from ``defaults`` (an environment that sets
    one way through a proxy, ``proxy_command`` or ``proxy_jump``, inherits neither)."""
    own = {f for f in _CONNECTION_FIELDS if getattr(env, f) is not None}
    if "host" in env.model_fields_set:
        own.add("host")
    proxies = {"proxy_command", "proxy_jump"}
    inherited = set(defaults.model_fields_set) & set(_CONNECTION_FIELDS)
    explicit = own | (inherited - proxies if own & proxies else inherited)
    for field in _CONNECTION_FIELDS:
        if getattr(env, field) is None and not (field in proxies and own & proxies):
            setattr(env, field, getattr(defaults, field))
    if env.proxy_command and env.proxy_jump:
        raise ValueError(f"environment {env.name!r}: set proxy_command or proxy_jump, not both")
    env._explicit = frozenset(explicit)


def _check_groups(inv: Inventory, source: SourceMap) -> list[Problem]:
    problems = []
    for group, members in inv.groups.items():
        if group in inv.sites:
            problems.append(source.problem(("groups", group), "a group cannot have the name of a site"))
        for i, member in enumerate(members):
            if member not in inv.sites and member not in inv.groups:
                problems.append(source.problem(("groups", group, i), f"unknown site {printable(repr(member), 120)}"))
        if len(problems) >= MAX_PROBLEMS:
            break
    return problems[:MAX_PROBLEMS]


def _check_ssh(inv: Inventory, source: SourceMap) -> list[Problem]:
    """Every ``proxy_jump`` parses and every ``ssh_config`` file named reads (file:line errors)."""
    from maintkit.transport.ssh_config import parse_jumps
    from maintkit.transport.ssh_settings import load_config

    problems: list[Problem] = []
    for site in inv.sites.values():
        for env in site.environments.values():
            where = ("sites", site.name, "environments", env.name)
            try:
                parse_jumps(env.proxy_jump or "")
            except ValueError as exc:
                problems.append(source.problem((*where, "proxy_jump"), str(exc)))
            try:
                load_config(env.ssh_config)
            except ConfigError as exc:
                problems.extend(p for p in exc.problems if p not in problems)
    return problems[:MAX_PROBLEMS]


def parse_inventory(data: Any, source: SourceMap) -> Inventory:
    """Validate already-parsed inventory data."""
    if not isinstance(data, dict):
        raise InventoryError(source.problem((), "an inventory must be a mapping with a 'sites' key"))
    try:
        inv = Inventory.model_validate(data)
    except ValidationError as exc:
        raise InventoryError(pydantic_problems(exc, source)) from None
    problems = _check_groups(inv, source) or _check_ssh(inv, source)
    if problems:
        raise InventoryError(problems)
    inv.path = source.file
    # groups may contain groups: flatten them
    inv.groups.update(_flatten_groups(inv, source))
    return inv


#: most work (site names copied) flattening nested groups may take
MAX_GROUP_EXPANSION = 1_000_000


def _flatten_groups(inv: Inventory, source: SourceMap) -> dict[str, list[str]]:
    """Every group as the sites it contains, directly or through other groups (no repeats).

    Groups are finished children first (iteratively, each once); a group on a cycle is then
    walked on its own, reusing every finished group.
    """
    done: dict[str, list[str]] = {}
    started: set[str] = set()
    work = 0
    for root in inv.groups:
        if root in started:
            continue
        started.add(root)
        stack = [(root, iter(inv.groups[root]))]
        while stack:
            group, members = stack[-1]
            member = next(members, None)
            if member is None:
                stack.pop()
                work += _finish(inv, group, done)
            elif member in inv.groups and member not in started:
                started.add(member)
                stack.append((member, iter(inv.groups[member])))
            if work > MAX_GROUP_EXPANSION:
                msg = f"groups nest too much: expanding them takes more than {MAX_GROUP_EXPANSION} steps"
                raise InventoryError(source.problem(("groups", group), msg))
    for group in inv.groups:
        if group not in done:  # on a cycle
            done[group], cost = _flatten(inv, group, done)
            work += cost
            if work > MAX_GROUP_EXPANSION:
                msg = f"groups nest too much: expanding them takes more than {MAX_GROUP_EXPANSION} steps"
                raise InventoryError(source.problem(("groups", group), msg))
    return {group: done[group] for group in inv.groups}


def _finish(inv: Inventory, group: str, done: dict[str, list[str]]) -> int:
    """Record the sites of ``group`` when every member group is done (else it is on a cycle)."""
    members = inv.groups[group]
    if any(m not in inv.sites and m not in done for m in members):
        return len(members)
    out: dict[str, None] = {}
    work = len(members)
    for m in members:
        if m in inv.sites:
            out[m] = None
        else:
            out.update(dict.fromkeys(done[m]))
            work += len(done[m])
    done[group] = list(out)
    return work


def _flatten(inv: Inventory, group: str, done: dict[str, list[str]]) -> tuple[list[str], int]:
    """The sites of ``group`` (iteratively; ``done`` holds groups already flattened) and the work spent."""
    out: dict[str, None] = {}
    seen = {group}
    stack = [iter(inv.groups[group])]
    work = 0
    while stack:
        member = next(stack[-1], None)
        work += 1
        if member is None:
            stack.pop()
        elif member in inv.sites:
            out[member] = None
        elif member in done:
            out.update(dict.fromkeys(done[member]))
            work += len(done[member])
        elif member not in seen:
            seen.add(member)
            stack.append(iter(inv.groups[member]))
    return list(out), work


def load_inventory(path: str | Path) -> Inventory:
    """Load and validate an inventory file.

    The file goes through the same limits as playbooks (size, nesting, aliases, encoding:
    see :mod:`maintkit._yaml`). Raises :class:`~maintkit.errors.InventoryError` naming file,
    line and field of every problem.
    """
    p = Path(path)
    data, source = read_yaml_file(p, InventoryError)
    inv = parse_inventory(data, source)
    inv.path = str(p)
    return inv
