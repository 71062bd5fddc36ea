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

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from maintkit._yaml import MAX_PROBLEMS, SourceMap, printable, pydantic_problems, read_yaml_file
from maintkit.errors import InventoryError, Problem

Platform = Literal["wordpress", "composer", "magento", "shopware", "laravel", "drupal", "bedrock", "generic"]
HostKeyPolicy = Literal["strict", "accept-new"]
ConnectionKind = Literal["ssh", "local"]

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
    "keepalive_interval",
    "keepalive_count_max",
    "lock_lease",
)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False)


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
    connection: ConnectionKind = Field("ssh", description="ssh, or local to run on this machine")
    connect_timeout: float = Field(10.0, gt=0, description="Seconds to connect")
    command_timeout: float = Field(600.0, gt=0, description="Default seconds a command may take")
    proxy_command: str | None = Field(None, description="ProxyCommand to reach the host (jump hosts)")
    keepalive_interval: float = Field(
        5.0, gt=0, description="Seconds of silence before an SSH keepalive asks the server for a reply"
    )
    keepalive_count_max: int = Field(
        3, ge=1, description="Silence of keepalive_interval x this many: the connection is lost"
    )
    lock_lease: int = Field(
        600, ge=1, description="Seconds a site lock's lease lasts; a run renews it while it holds the lock"
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
    keepalive_interval: float | None = Field(None, gt=0)
    keepalive_count_max: int | None = Field(None, ge=1)
    lock_lease: int | None = Field(None, ge=1)

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
                for field in _CONNECTION_FIELDS:
                    if getattr(env, field) is None:
                        setattr(env, field, getattr(self.defaults, field))
        return self

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


def parse_inventory(data: Any, source: SourceMap) -> Inventory:
    """Validate already-parsed inventory data."""
    if not isinstance(data, dict):
        raise InventoryError(source.problem((), "an inventory must be a mapping with a 'sites' key"))
    try:
        inv = Inventory.model_validate(data)
    except ValidationError as exc:
        raise InventoryError(pydantic_problems(exc, source)) from None
    problems = _check_groups(inv, source)
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
