"""The two sides of a refresh: the source (production) and the target (staging), and how to reach them.

The source environment is found in the same site; its transport is the run's shared one
(:attr:`~maintkit.action.RunOptions.transport_for`), so a source on the target's host uses
the same connection. The databases come from the step (``source_db`` / ``target_db``) or
from each environment's ``db_name`` / ``db_defaults_file`` variables.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from maintkit._text import tail
from maintkit.action import Context
from maintkit.actions.compression import HAS_ZSTD
from maintkit.actions.staging.params import DbRef, StagingRefreshParams
from maintkit.errors import ApplyFailed, CheckFailed
from maintkit.inventory import Environment
from maintkit.results import CommandResult
from maintkit.transport.base import Transport, join
from maintkit.transport.factory import TransportPool, transport_for


@dataclass
class Side:
    """One side of the refresh: its environment, transport and database."""

    env: Environment
    transport: Transport
    db: DbRef | None

    @property
    def path(self) -> str:
        """The environment's path, without a trailing slash."""
        return self.env.path.rstrip("/") or "/"

    def run(self, argv: list[str], timeout: float, **kwargs: Any) -> CommandResult:
        """Run an argument list on this side's host."""
        return self.transport.run(argv, timeout=timeout, **kwargs)

    def shell(self, script: str, timeout: float, **kwargs: Any) -> CommandResult:
        """Run a shell script on this side's host."""
        return self.transport.run_shell(script, timeout=timeout, **kwargs)


#: the first line of :meth:`Sides.prepare_target`'s answer
_ZSTD_YES, _ZSTD_NO = "mk-zstd-yes", "mk-zstd-no"


@dataclass
class Sides:
    """Source and target of one refresh, and whether the target's host reads the source directly."""

    source: Side
    target: Side
    via_host: bool
    platform: str
    owned: Transport | None = None  # a source transport this refresh opened itself
    target_zstd: bool | None = None  # whether the target's host has zstd (read once, when needed)

    def target_has_zstd(self, timeout: float) -> bool:
        """Whether the target's host has ``zstd`` (one read the first time; a failed read: no)."""
        if self.target_zstd is None:
            found = self.target.shell(HAS_ZSTD, timeout, check=False)
            self.target_zstd = found.ok
        return self.target_zstd

    def prepare_target(self, parent: str, work: str, marker: str, timeout: float) -> bytes | None:
        """In ONE round trip on the target: create the snapshot folder ``work`` inside ``parent``,
        both mode 0700, read whether the host has zstd (kept for :meth:`target_has_zstd`), and
        read the last refresh's record ``marker``; returns the record's bytes (None when there is
        none). Raises ApplyFailed when the folders cannot be made or made private."""
        script = (
            f"{join(['mkdir', '-p', '-m', '700', '--', work])} && {join(['chmod', '700', '--', parent, work])}"
            " || exit 3\n"
            f"if {HAS_ZSTD}; then echo {_ZSTD_YES}; else echo {_ZSTD_NO}; fi\n"
            f"exec {join(['cat', '--', marker])} 2>/dev/null"
        )
        res = self.target.shell(script, timeout, check=False)
        head, _, record = res.stdout.partition("\n")
        if res.exit_code == 3 or head not in (_ZSTD_YES, _ZSTD_NO):
            raise ApplyFailed(f"cannot prepare the snapshot folder {work}: {tail(res.stderr or res.stdout)}")
        self.target_zstd = head == _ZSTD_YES
        return record.encode() if res.ok else None

    def close(self) -> None:
        """Close a transport this refresh opened (the run's shared ones stay open)."""
        if self.owned is not None:
            self.owned.close()
            self.owned = None


def same_connection(a: Environment, b: Environment) -> bool:
    """True when both environments are reached through one connection (the same host)."""
    return TransportPool.key(a) == TransportPool.key(b)


def db_ref(explicit: DbRef | None, env_vars: dict[str, Any]) -> DbRef | None:
    """The step's database, else the environment's ``db_name`` / ``db_defaults_file`` variables."""
    if explicit is not None:
        return explicit
    name = env_vars.get("db_name")
    if not isinstance(name, str) or not name:
        return None
    cnf = env_vars.get("db_defaults_file")
    return DbRef(name=name, defaults_file=cnf if isinstance(cnf, str) and cnf else None)


def resolve(ctx: Context, p: StagingRefreshParams) -> Sides:
    """Both sides of the refresh (the source's transport is opened or taken from the run)."""
    site, target_env = ctx.site, ctx.env
    if p.source not in site.environments:
        raise CheckFailed(f"staging.refresh: site {site.name} has no environment {p.source!r} to copy from")
    source_env = site.environments[p.source]
    owned: Transport | None = None
    if same_connection(source_env, target_env):
        src_t = ctx.transport
    elif ctx.options.transport_for is not None:
        src_t = ctx.options.transport_for(source_env)
    else:
        src_t = owned = transport_for(source_env)
    src_db = db_ref(p.source_db, site.vars_for(source_env))
    dst_db = db_ref(p.target_db, ctx.vars)
    if p.database and (src_db is None or dst_db is None):
        missing = p.source if src_db is None else target_env.name
        raise CheckFailed(
            f"staging.refresh: no database for {missing}: set the db_name variable (and db_defaults_file) "
            "of that environment, or source_db/target_db"
        )
    via_host = p.via == "host" or (p.via == "auto" and same_connection(source_env, target_env))
    platform = str(target_env.platform or site.platform)
    return Sides(Side(source_env, src_t, src_db), Side(target_env, ctx.transport, dst_db), via_host, platform, owned)


__all__ = ["Side", "Sides", "db_ref", "resolve", "same_connection"]
