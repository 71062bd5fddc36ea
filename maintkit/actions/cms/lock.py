"""Version locks: what a stage validated, so a later stage installs exactly that.

The staging stage's ``cms.update`` writes ``<run_dir>/locks/<site>.json`` (mode 0600,
atomically): every package in scope with its exact version and checksums. A production
stage with ``promote: staging`` reads it (or the lock of an earlier run given with
``--promote-from RUN_ID``) and refuses anything else.

Example::

    {"format": 1, "site": "shop-a", "env": "staging", "run_id": "...", "platform": "wordpress",
     "driver": "wordpress", "status": "validated",
     "packages": {"plugin:shop-cart": {"name": "shop-cart", "type": "plugin", "version": "1.1.0",
                  "tree": "<sha256>", "sha256": "<zip sha256>", "source": "repository:/srv/zips",
                  "updated": true, "from": "1.0.0"}}}
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from maintkit._fs import write_text_atomic
from maintkit.action import Context
from maintkit.errors import CheckFailed
from maintkit.state import index

LOCK_FORMAT = 1


class LockedPackage(BaseModel):
    """One package of a lock."""

    model_config = ConfigDict(extra="allow")

    name: str
    type: str
    version: str
    tree: str | None = Field(None, description="Tree hash of the installed package (see snapshots.tree_hash_script)")
    sha256: str | None = Field(None, description="sha256 of the package zip it was installed from")
    reference: str | None = Field(None, description="composer: dist/source reference")
    shasum: str | None = Field(None, description="composer: dist shasum from composer.lock")
    source: str | None = None
    updated: bool = False
    from_: str | None = Field(None, alias="from")

    @property
    def key(self) -> str:
        """``type:name``."""
        return f"{self.type}:{self.name}"


class HeldPackage(BaseModel):
    """A package version held back: it failed a check after the update, and is not retried until a newer one."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    name: str
    type: str
    version: str = Field(..., description="The version held back")
    from_: str | None = Field(None, alias="from", description="The version that stays installed")
    reason: str = Field("", description="Why: the failing check's message")
    run_id: str = Field("", description="The run that held it back")


class VersionLock(BaseModel):
    """A validated set of package versions for one site."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    format: int = LOCK_FORMAT
    site: str
    env: str
    run_id: str
    created: str = Field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    platform: str
    driver: str
    status: Literal["validated", "rolled-back"] = "validated"
    packages: dict[str, LockedPackage] = Field(default_factory=dict)
    #: versions held back (``type:name`` -> why); the packages themselves stay at their ``packages`` version
    held: dict[str, HeldPackage] = Field(default_factory=dict)
    schema_changed: bool | None = Field(
        default=None, description="Did the update change the database schema (tables, schema options)? None: unknown"
    )
    schema_changes: list[str] = Field(default_factory=list, description="The tables and schema options that changed")

    def to_json(self) -> str:
        """Stable JSON text."""
        return json.dumps(self.model_dump(by_alias=True), indent=2, sort_keys=True) + "\n"


def lock_path(run_dir: Path, site: str) -> Path:
    """``<run_dir>/locks/<site>.json``."""
    return Path(run_dir) / "locks" / f"{site}.json"


def read_lock(path: Path) -> VersionLock:
    """Read and validate a lock file; CheckFailed when missing or invalid."""
    try:
        return VersionLock.model_validate_json(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckFailed(f"no version lock at {path}") from None
    except (ValidationError, ValueError) as exc:
        raise CheckFailed(f"invalid version lock {path}: {exc}") from None


def write_lock(ctx: Context, lock: VersionLock) -> Path | None:
    """Write ``lock`` into this run's folder (merged with an earlier lock of the same env)."""
    if ctx.options.run_dir is None:
        return None
    path = lock_path(ctx.options.run_dir, ctx.site.name)
    if path.exists():
        try:
            old = read_lock(path)
        except CheckFailed:
            old = None
        if old is not None and old.env == lock.env and old.run_id == lock.run_id and old.status == "validated":
            merged = dict(old.packages)
            merged.update(lock.packages)
            lock = lock.model_copy(update={"packages": merged, **merge_schema(old, lock)})
    write_text_atomic(path, lock.to_json(), make_parents=True)
    _index_lock(ctx, lock)
    return path


def merge_schema(first: VersionLock, second: VersionLock) -> dict[str, Any]:
    """``schema_changed``/``schema_changes`` of two locks of one stage: changed when either changed, unknown
    when either is unknown and neither changed."""
    flags = (first.schema_changed, second.schema_changed)
    changed = True if True in flags else (None if None in flags else False)
    names = sorted(set(first.schema_changes) | set(second.schema_changes))
    return {"schema_changed": changed, "schema_changes": names}


def _index_lock(ctx: Context, lock: VersionLock) -> None:
    """Note the lock in the store's index (which run validated which versions); the file itself is in the run folder."""
    packages = {key: pkg.version for key, pkg in sorted(lock.packages.items())}
    record = {"run_id": lock.run_id, "status": lock.status, "driver": lock.driver, "packages": packages}
    if lock.held:
        record["held"] = {key: held.model_dump(by_alias=True) for key, held in sorted(lock.held.items())}
    ctx.write_index(index.record_lock, {**record, "file": f"runs/{lock.run_id}/locks/{lock.site}.json"})


def mark_rolled_back(ctx: Context) -> None:
    """Mark this run's lock of the site as rolled back (it must never be promoted)."""
    if ctx.options.run_dir is None:
        return
    path = lock_path(ctx.options.run_dir, ctx.site.name)
    if not path.exists():
        return
    try:
        lock = read_lock(path)
    except CheckFailed:
        return
    if lock.env == ctx.env.name and lock.run_id == ctx.run_id:
        marked = lock.model_copy(update={"status": "rolled-back"})
        write_text_atomic(path, marked.to_json(), make_parents=True)
        _index_lock(ctx, marked)


def _site_status(run_dir: Path, site: str) -> str | None:
    summary = run_dir / "summary.json"
    if not summary.is_file():
        return None
    try:
        data: dict[str, Any] = json.loads(summary.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    for entry in data.get("sites", []):
        if entry.get("site") == site:
            return str(entry.get("status"))
    return None


def promotion_lock(ctx: Context, driver: str) -> tuple[VersionLock | None, Path | None]:
    """The lock this stage must install, or ``(None, None)`` when the stage does not promote.

    ``--promote-from RUN`` (``ctx.options.promote_from``) wins over this run's own lock. Raises
    CheckFailed when the stage promotes but no usable lock exists (missing, rolled back, from
    a run where the site failed, from another environment or platform). In plan mode a lock
    this run has not written yet returns ``(None, path)``: the caller predicts from the
    source stage's plan instead.
    """
    source_env = ctx.stage_promote
    if not source_env:
        return None, None
    from_run = ctx.options.promote_from
    run_dir = Path(from_run) if from_run else ctx.options.run_dir
    if run_dir is None:
        raise CheckFailed("promotion needs a run folder")
    path = lock_path(run_dir, ctx.site.name)
    if not path.exists():
        if from_run is None and ctx.check_mode:
            return None, path
        where = f"run {Path(from_run).name}" if from_run else "this run"
        raise CheckFailed(
            f"no version lock for {ctx.site.name} from {source_env} in {where} ({path}): "
            f"the {source_env} stage must run cms.update first"
        )
    lock = read_lock(path)
    if from_run:
        status = _site_status(run_dir, ctx.site.name)
        if status is not None and status != "ok":
            raise CheckFailed(
                f"run {run_dir.name} did not validate {ctx.site.name} (site status {status}): refusing to promote"
            )
    if lock.status != "validated":
        raise CheckFailed(f"the version lock {path} was {lock.status}: refusing to promote")
    if lock.env != source_env:
        raise CheckFailed(f"the version lock {path} comes from {lock.env!r}, but this stage promotes {source_env!r}")
    if lock.driver != driver:
        raise CheckFailed(f"the version lock {path} is for {lock.driver}, this environment uses {driver}")
    return lock, path


__all__ = [
    "HeldPackage",
    "LockedPackage",
    "VersionLock",
    "lock_path",
    "mark_rolled_back",
    "merge_schema",
    "promotion_lock",
    "read_lock",
    "write_lock",
]
