"""Parameters of ``cms.update`` (shared with ``compat.check``, which computes the same candidates).

Every field may also come from the site's or environment's ``cms_update`` variable (a
mapping with the same keys): step parameters override it, so a per-site policy lives in
the inventory and the playbook stays generic.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from maintkit.action import Context, Params
from maintkit.actions.cms.policy import Level, Security, VersionPolicy
from maintkit.actions.watch.feed import FeedConfig
from maintkit.errors import CheckFailed

Location = Literal["controller", "host"]
DatabaseMode = Literal["auto", "always", "never"]
VARS_KEY = "cms_update"


class PackageSource(BaseModel):
    """Where one package comes from: a URL (fetched by the controller) or a zip file path."""

    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(None, description="https URL of the package zip (downloaded by the controller)")
    path: str | None = Field(None, description="Path of the package zip")
    on: Location = Field("controller", description="Whether path is on the controller or on the host")
    sha256: str | None = Field(None, description="Expected sha256 of the zip (refused when it differs)")

    @model_validator(mode="after")
    def _one(self) -> PackageSource:
        if (self.url is None) == (self.path is None):
            raise ValueError("give exactly one of url and path")
        return self


class Repository(BaseModel):
    """A directory of zips named ``<slug>-<version>.zip`` (``wordpress-<version>.zip`` for core)."""

    model_config = ConfigDict(extra="forbid")

    path: str = Field(..., description="Directory of package zips")
    on: Location = Field("controller", description="controller (uploaded when used) or host")


class CmsUpdateParams(Params):
    """Parameters of ``cms.update``."""

    # -- version policy
    core: Level | None = Field(None, description="WordPress core: how far updates go (default minor)")
    plugins: Level | None = Field(None, description="Plugins and composer packages: how far updates go (default minor)")
    themes: Level | None = Field(None, description="Themes: how far updates go (default minor)")
    include: list[str] | None = Field(None, description="Only these packages (shell patterns)")
    exclude: list[str] | None = Field(None, description="Never these packages (shell patterns)")
    pins: dict[str, str] | None = Field(None, description="Version pins, e.g. {woocommerce: '8.4.*'}")
    allow_prerelease: bool = Field(False, description="Also take -beta/-rc versions")
    security: Security = Field("off", description="Known vulnerabilities: off | report | force (take the fix)")
    security_feed: FeedConfig | None = Field(None, description="Vulnerability feed (default: the vuln_feed variable)")
    # -- sources (WordPress)
    repository: Repository | None = Field(None, description="Directory of <slug>-<version>.zip packages")
    sources: dict[str, PackageSource] = Field(default_factory=dict, description="Per-package sources (premium plugins)")
    api_url: str | None = Field(
        "https://api.wordpress.org", description="WordPress.org update API base URL; null disables it"
    )
    api_timeout: float = Field(20.0, gt=0, description="Seconds per request to the update API or a package URL")
    # -- where
    root: str | None = Field(None, description="WordPress root / composer project dir (relative to the env path)")
    php: str = Field("php", description="PHP CLI binary on the host (match the site's PHP-FPM version)")
    php_cache: bool = Field(
        True,
        description=(
            "WordPress: keep the helper's compiled PHP between its runs in <path>/.maint/php-cache "
            "(OPcache file cache; a source whose inode, size or times changed is compiled again)"
        ),
    )
    flush_caches: bool = Field(
        False,
        description=(
            "WordPress: the process that re-activates the updated plugin or theme (or upgrades the "
            "database after a core update) also flushes the object cache and the rewrite rules, last; "
            "a cache.clear of the platform's caches right after it then needs no PHP run of its own"
        ),
    )
    snapshot_dir: str | None = Field(None, description="Where snapshots go (default <path>/.maint/snapshots)")
    keep_snapshots: int = Field(3, ge=1, description="Snapshots of earlier runs to keep")
    # -- database
    database: DatabaseMode = Field(
        "auto",
        description=(
            "auto: dump before, restore on rollback when the schema changed; always: restore on rollback; never"
        ),
    )
    schema_options: list[str] = Field(
        default_factory=list, description="WordPress options that mark schema versions (e.g. woocommerce_db_version)"
    )
    db_name: str | None = Field(None, description="composer platforms: database to dump (credentials from ~/.my.cnf)")
    db_defaults_file: str | None = Field(None, description="composer platforms: MariaDB option file on the host")
    schema_changed_if: list[str] | None = Field(
        None, description="composer: argv run in the project at rollback; exit 0 means the schema changed"
    )
    # -- composer
    composer: list[str] = Field(default_factory=lambda: ["composer"], description="composer command (argv prefix)")
    composer_env: dict[str, str] = Field(default_factory=dict, description="Extra environment for composer")
    update_args: list[str] = Field(default_factory=list, description="Extra arguments for composer update")
    platform_steps: bool = Field(True, description="Run the platform's own steps after an update (bin/magento...)")
    # -- commands
    post_update: list[list[str]] = Field(default_factory=list, description="Commands (argv) after the update")
    post_rollback: list[list[str]] = Field(default_factory=list, description="Commands (argv) after a rollback")
    # -- behaviour
    on_incompatible: Literal["skip", "fail"] = Field(
        "skip", description="A candidate the host cannot run (Requires PHP/WP): skip it (compat.check fails) or fail"
    )
    allow_downgrade: bool = Field(False, description="Promotion may install an older version than installed")
    error_logs: list[str] | None = Field(None, description="PHP error logs whose size is recorded for compat.check")
    timeout: float | None = Field(
        None, gt=0, description="Seconds for one update command (default: env command_timeout)"
    )
    isolate: Literal["bisect", "one-by-one", "none"] | None = Field(
        None,
        description=(
            "When a later check fails after several updates: find the bad ones (bisect: halves; one-by-one: "
            "each alone), keep the good ones and hold the bad ones; none: roll back all of them "
            "(default: bisect on WordPress, none on composer platforms, whose packages share one composer.lock)"
        ),
    )
    retry_held: bool = Field(
        False, description="Try again the versions an earlier run held back (default: only a newer version is tried)"
    )

    @field_validator("post_update", "post_rollback")
    @classmethod
    def _non_empty(cls, value: list[list[str]]) -> list[list[str]]:
        if any(not argv for argv in value):
            raise ValueError("empty command")
        return value

    @field_validator("repository", mode="before", json_schema_input_type=Repository | str | None)
    @classmethod
    def _repo_string(cls, value: Any) -> Any:
        return {"path": value} if isinstance(value, str) else value

    def policy(self) -> VersionPolicy:
        """The version policy these parameters describe."""
        data: dict[str, Any] = {
            "core": self.core,
            "plugins": self.plugins,
            "themes": self.themes,
            "include": self.include,
            "exclude": self.exclude,
            "pins": self.pins,
            "allow_prerelease": self.allow_prerelease,
            "security": self.security,
        }
        return VersionPolicy.model_validate({k: v for k, v in data.items() if v is not None})


def effective_params(ctx: Context, params: CmsUpdateParams | dict[str, Any] | None) -> CmsUpdateParams:
    """Merge the ``cms_update`` variable of the site/environment under the step's explicit parameters."""
    base = ctx.vars.get(VARS_KEY) or {}
    if not isinstance(base, dict):
        raise CheckFailed(f"variable {VARS_KEY} must be a mapping of cms.update parameters")
    explicit = params.model_dump(exclude_unset=True) if isinstance(params, CmsUpdateParams) else dict(params or {})
    merged = {**base, **explicit}
    if "error_logs" not in merged and isinstance(ctx.vars.get("error_logs"), list):
        merged["error_logs"] = ctx.vars["error_logs"]
    for key in ("db_name", "db_defaults_file"):  # the same variables backup.create reads
        if key not in merged and isinstance(ctx.vars.get(key), str):
            merged[key] = ctx.vars[key]
    try:
        return CmsUpdateParams.model_validate(merged)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise CheckFailed(f"invalid cms.update settings ({VARS_KEY} variable and step): {problems}") from None


__all__ = ["CmsUpdateParams", "DatabaseMode", "Location", "PackageSource", "Repository", "effective_params"]
