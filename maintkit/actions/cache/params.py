"""The parameters of ``cache.clear``: which targets, and one block per target."""

from __future__ import annotations

import posixpath
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from maintkit.action import Params
from maintkit.actions.maintenance import PlatformChoice
from maintkit.actions.service import Manager

TargetName = Literal["directory", "redis", "opcache", "platform", "cdn"]
CLOUDFLARE_API = "https://api.cloudflare.com/client/v4"


class _Block(BaseModel):
    model_config = ConfigDict(extra="forbid")


def safe_dir(value: str) -> str:
    """``value`` normalized, if it is an absolute cache directory at least two levels deep (ValueError otherwise)."""
    if not value.startswith("/"):
        raise ValueError(f"cache directory must be absolute: {value!r}")
    norm = posixpath.normpath(value)
    if ".." in value.split("/") or norm.count("/") < 2:
        raise ValueError(f"refusing to empty {value!r}: give a dedicated cache directory at least two levels deep")
    return norm


class DirectoryTarget(_Block):
    """Cache directories emptied with ``find DIR -mindepth 1 -delete`` while nginx runs."""

    paths: list[str] = Field(..., min_length=1, description="Absolute cache directories (fastcgi_cache_path...)")
    sudo: bool | None = Field(None, description="Run through sudo (the files belong to the nginx user)")

    @field_validator("paths")
    @classmethod
    def _check_paths(cls, v: list[str]) -> list[str]:
        return [safe_dir(p) for p in v]


class RedisTarget(_Block):
    """One Redis database to flush, or the keys matching a pattern (SCAN + UNLINK)."""

    host: str = Field("127.0.0.1", description="Redis host, as seen from the site's host")
    port: int = Field(6379, ge=1, le=65535)
    socket: str | None = Field(None, description="Unix socket path (instead of host/port)")
    db: int | None = Field(None, ge=0, description="Database number: FLUSHDB (or the database to scan with pattern)")
    pattern: str | None = Field(None, min_length=1, description="Only delete keys matching this glob (SCAN + UNLINK)")
    username: str | None = Field(None, description="ACL user name")
    password: SecretStr | None = Field(None, description="Password (sent to redis-cli on stdin, never in argv)")
    cli: str = Field("redis-cli", description="redis-cli binary on the host")
    timeout: float = Field(120.0, gt=0)

    @model_validator(mode="after")
    def _db_or_pattern(self) -> RedisTarget:
        if self.db is None and self.pattern is None:
            raise ValueError("give `db` (flush that database) or `pattern` (delete matching keys)")
        return self

    @property
    def label(self) -> str:
        """Where, without secrets."""
        where = self.socket or f"{self.host}:{self.port}"
        what = f"/{self.db or 0} keys {self.pattern}" if self.pattern else f"/{self.db}"
        return f"redis {where}{what}"


#: a php-fpm pool's FastCGI address: an absolute unix socket path, or HOST:PORT
_FASTCGI_TCP = re.compile(r"^(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\]):[0-9]{1,5}$")


def fastcgi_address(value: str) -> str:
    """``value`` if it is an absolute socket path or ``HOST:PORT`` (ValueError otherwise)."""
    if value.startswith("/"):
        if "\0" in value or "\n" in value:
            raise ValueError(f"invalid FastCGI socket path: {value!r}")
        return value
    if not _FASTCGI_TCP.match(value) or not 0 < int(value.rsplit(":", 1)[1]) < 65536:
        raise ValueError(f"FastCGI address must be an absolute socket path or HOST:PORT: {value!r}")
    return value


class OpcacheTarget(_Block):
    """How to reset OPcache: a FastCGI request to the pool calling ``opcache_reset()``, or a php-fpm reload."""

    method: Literal["fastcgi", "reload"] | None = Field(
        None, description="fastcgi (default when `fastcgi` is given) | reload (the php-fpm service)"
    )
    fastcgi: str | None = Field(None, description="The pool's FastCGI socket (/run/php/php8.2-fpm.sock or HOST:PORT)")
    user: str | None = Field(None, description="fastcgi: the pool's user, owner of the reset script (default: login)")
    tmpdir: str | None = Field(None, description="fastcgi: where the reset script is written (default: <path>/.maint)")
    client: Literal["auto", "cgi-fcgi", "controller"] = Field(
        "auto", description="fastcgi: cgi-fcgi on the host, or the controller's client relayed by the host's PHP CLI"
    )
    php: str = Field("php", description="fastcgi: PHP CLI on the host (relays the controller's client)")
    timeout: float = Field(30.0, gt=0, description="fastcgi: seconds per request")
    settle: float = Field(10.0, gt=0, description="fastcgi: seconds to wait until php-fpm has performed the reset")
    service: str | None = Field(None, description="php-fpm service name (default: vars.php_fpm_service)")
    manager: Manager = Field("auto", description="auto | systemd | command | signal | sysv")
    command: list[str] | None = Field(None, min_length=1, description="Argument list that reloads php-fpm")
    pidfile: str | None = Field(None, description="php-fpm master pid file (signal mode)")
    signal: str = Field("USR2", description="Signal for the pid file mode (USR2: graceful reload)")
    sudo: bool | None = Field(None, description="Run through sudo (default: the environment's `become`)")

    @field_validator("signal")
    @classmethod
    def _valid_signal(cls, v: str) -> str:
        v = v.upper().removeprefix("SIG")
        if not re.fullmatch(r"[A-Z0-9]{2,8}", v):
            raise ValueError(f"invalid signal {v!r} (use a name such as USR2)")
        return v

    @field_validator("fastcgi")
    @classmethod
    def _valid_fastcgi(cls, v: str | None) -> str | None:
        return None if v is None else fastcgi_address(v)

    @field_validator("tmpdir")
    @classmethod
    def _valid_tmpdir(cls, v: str | None) -> str | None:
        if v is not None and (not v.startswith("/") or ".." in v.split("/")):
            raise ValueError(f"tmpdir must be an absolute path without `..`: {v!r}")
        return v

    @model_validator(mode="after")
    def _fastcgi_needs_socket(self) -> OpcacheTarget:
        if self.method == "fastcgi" and self.fastcgi is None:
            raise ValueError("method `fastcgi` needs `fastcgi:` (the pool's socket, e.g. /run/php/php8.2-fpm.sock)")
        return self

    @property
    def resolved_method(self) -> Literal["fastcgi", "reload"]:
        """fastcgi when asked, or when a socket is given without a method; reload otherwise."""
        if self.method is not None:
            return self.method
        return "fastcgi" if self.fastcgi is not None else "reload"


class PlatformTarget(_Block):
    """The application's own caches: WordPress object cache + rewrite rules, Magento, Laravel."""

    platform: PlatformChoice = Field("auto", description="auto (from the environment) | wordpress | magento | laravel")
    root: str | None = Field(None, description="Application root (default: <path>/current, else <path>)")
    php: str = Field("php", description="PHP CLI binary")
    wp_cli: str = Field("wp", description="wp-cli binary, used when present on the host")
    rewrite: bool = Field(True, description="WordPress: flush rewrite rules too")
    run_as: str | None = Field(None, description="Run the commands as this user (sudo -n -u USER)")
    php_cache: bool = Field(
        True, description="WordPress without wp-cli: boot through cms.update's compiled-PHP cache (.maint/php-cache)"
    )
    timeout: float = Field(600.0, gt=0)


class CdnTarget(_Block):
    """Cloudflare cache purge: everything, or the listed URLs."""

    provider: Literal["cloudflare"] = "cloudflare"
    zone_id: SecretStr | None = Field(None, description="Zone id")
    token: SecretStr | None = Field(None, description="API token with Cache Purge permission")
    urls: list[str] = Field(default_factory=list, description="URLs (or paths under env.url); empty: purge everything")
    api_base: str = Field(CLOUDFLARE_API, description="API base URL")
    timeout: float = Field(30.0, gt=0)
    verify: bool | str = Field(True, description="TLS verification: true, false or a CA bundle path")


class CacheClearParams(Params):
    """Parameters of ``cache.clear``."""

    targets: list[TargetName] = Field(..., min_length=1, description="Which caches to clear")
    directory: DirectoryTarget | None = Field(None, description="Cache directories (a path, a list, or a block)")
    redis: list[RedisTarget] = Field(default_factory=list, description="Redis databases/patterns (a block or a list)")
    redis_password: SecretStr | None = Field(None, description="Password for redis entries without their own")
    opcache: OpcacheTarget = Field(default_factory=OpcacheTarget)  # type: ignore[arg-type]
    platform: PlatformTarget = Field(default_factory=PlatformTarget)  # type: ignore[arg-type]
    cdn: CdnTarget | None = Field(None, description="CDN purge settings")

    @field_validator("directory", mode="before", json_schema_input_type=DirectoryTarget | str | list[str] | None)
    @classmethod
    def _directory_shorthand(cls, v: Any) -> Any:
        # a path or a list of paths; validated here so that errors point at `directory`
        # itself (a templated value is validated again once rendered)
        if isinstance(v, str):
            v = {"paths": [v]}
        elif isinstance(v, list):
            v = {"paths": v}
        if isinstance(v, dict) and isinstance(v.get("paths"), list):
            v = {**v, "paths": [safe_dir(p) if isinstance(p, str) else p for p in v["paths"]]}
        return v

    @field_validator("redis", mode="before", json_schema_input_type=list[RedisTarget] | RedisTarget | None)
    @classmethod
    def _redis_list(cls, v: Any) -> Any:
        if v is None:
            return []
        return [v] if isinstance(v, dict) else v

    @field_validator("opcache", "platform", mode="before", json_schema_input_type=dict[str, Any] | None)
    @classmethod
    def _none_is_default(cls, v: Any) -> Any:
        return {} if v is None else v

    @field_validator("targets")
    @classmethod
    def _unique(cls, v: list[TargetName]) -> list[TargetName]:
        return list(dict.fromkeys(v))

    @model_validator(mode="after")
    def _configured(self) -> CacheClearParams:
        if "directory" in self.targets and self.directory is None:
            raise ValueError("target `directory` needs `directory:` (the cache directory path)")
        if "redis" in self.targets and not self.redis:
            raise ValueError("target `redis` needs `redis:` (a {db: N} or {pattern: ...} block)")
        if "cdn" in self.targets and (self.cdn is None or self.cdn.zone_id is None or self.cdn.token is None):
            raise ValueError("target `cdn` needs `cdn:` with `zone_id` and `token`")
        return self


__all__ = [
    "CLOUDFLARE_API",
    "CacheClearParams",
    "CdnTarget",
    "DirectoryTarget",
    "OpcacheTarget",
    "PlatformTarget",
    "RedisTarget",
    "TargetName",
    "fastcgi_address",
    "safe_dir",
]
