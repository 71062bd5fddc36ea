"""``cache.clear``: clear a shop's caches (nginx cache directories, Redis, OPcache, platform, CDN).

Targets (``targets: [directory, redis, opcache, platform, cdn]``), each configured by its own
parameter block, typically from inventory variables::

    - action: cache.clear
      with:
        targets: [directory, redis, opcache, platform]
        directory: /var/cache/nginx/shop-a          # or {paths: [...], sudo: true}
        redis: {port: 6379, db: 1}                  # or {pattern: "shop-a:*"}; a list for several
        redis_password: "{{ secrets.get('REDIS_PASSWORD') }}"
        opcache: {service: php8.2-fpm}              # default: vars.php_fpm_service

check() is read-only and says what is there to clear: files and bytes of cache
directories, keys in Redis. It says "unchanged" when those are empty. OPcache, platform
and CDN caches cannot be inspected from outside: when they are targets, the step always
runs. Clearing a cache is harmless, so the action is "reversible" with a rollback that does
nothing: a cache clear never blocks rolling back the steps before it.
"""

from __future__ import annotations

import posixpath
import re
import secrets as _secrets
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import quote as url_quote
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from maintkit._text import head as text_head
from maintkit._text import redact_text
from maintkit._text import tail as text_tail
from maintkit.action import Action, Context, Params
from maintkit.actions.maintenance import App, PlatformChoice, detect_app, layout_probe
from maintkit.actions.service import InitSystem, Manager, Operation, ServiceSpec, plan_operation, run_operation
from maintkit.errors import ApplyFailed, CheckFailed
from maintkit.probes import Probe
from maintkit.results import Change, Check, CommandResult
from maintkit.transport.base import quote

CacheTarget = Literal["directory", "redis", "opcache", "platform", "cdn"]
CLOUDFLARE_API = "https://api.cloudflare.com/client/v4"
CLOUDFLARE_MAX_FILES = 30
REDIS_SCAN_ROUNDS = 100
REDIS_MAX_CALLS = 1000
_REDIS_ERROR = re.compile(r"^[A-Z]{3,}\b")  # ERR, WRONGPASS, NOAUTH, WRONGTYPE, BUSY...

#: One SCAN pass (or up to ARGV[3] passes) from cursor ARGV[1] over keys matching ARGV[2];
#: unlinks them when ARGV[4] == "1". Returns {next cursor, number of keys seen}.
_SCAN_LUA = (
    "local cursor = ARGV[1] local n = 0 "
    "for i = 1, tonumber(ARGV[3]) do "
    "local r = redis.call('SCAN', cursor, 'MATCH', ARGV[2], 'COUNT', 1000) "
    "cursor = r[1] local keys = r[2] "
    "if #keys > 0 then n = n + #keys "
    "if ARGV[4] == '1' then for j = 1, #keys, 500 do "
    "redis.call('UNLINK', unpack(keys, j, math.min(j + 499, #keys))) end end end "
    "if cursor == '0' then break end end "
    "return {cursor, n}"
)

#: Flushes WordPress's object cache and (optionally) its rewrite rules from the PHP CLI.
#: argv: ABSPATH, site URL, "1" to flush rewrite rules. Maintenance mode is bypassed for
#: this process only (the enable_maintenance_mode filter, pre-registered before WordPress loads).
_WP_FLUSH_PHP = r"""
error_reporting(E_ERROR | E_PARSE);
ini_set('display_errors', 'stderr');
$GLOBALS['wp_filter'] = ['enable_maintenance_mode' => [10 => [[
    'function' => function () { return false; }, 'accepted_args' => 1]]]];
$u = parse_url($argv[2]);
if (!empty($u['host'])) {
    $_SERVER['HTTP_HOST'] = $u['host'] . (isset($u['port']) ? ':' . $u['port'] : '');
    $_SERVER['SERVER_NAME'] = $u['host'];
    if (($u['scheme'] ?? '') === 'https') { $_SERVER['HTTPS'] = 'on'; }
}
$_SERVER['REQUEST_URI'] = '/';
$_SERVER['REQUEST_METHOD'] = 'GET';
define('WP_USE_THEMES', false);
require $argv[1] . '/wp-load.php';
$ok = wp_cache_flush();
if ($argv[3] === '1') { flush_rewrite_rules(false); }
echo "\nMAINTKIT-FLUSHED " . ($ok ? '1' : '0') . "\n";
"""


class _Block(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _safe_dir(value: str) -> str:
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
        return [_safe_dir(p) for p in v]


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


class OpcacheTarget(_Block):
    """How to reset OPcache: reload php-fpm (service, command, or a signal to its master)."""

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


class PlatformTarget(_Block):
    """The application's own caches: WordPress object cache + rewrite rules, Magento, Laravel."""

    platform: PlatformChoice = Field("auto", description="auto (from the environment) | wordpress | magento | laravel")
    root: str | None = Field(None, description="Application root (default: <path>/current, else <path>)")
    php: str = Field("php", description="PHP CLI binary")
    wp_cli: str = Field("wp", description="wp-cli binary, used when present on the host")
    rewrite: bool = Field(True, description="WordPress: flush rewrite rules too")
    run_as: str | None = Field(None, description="Run the commands as this user (sudo -n -u USER)")
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

    targets: list[CacheTarget] = Field(..., min_length=1, description="Which caches to clear")
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
            v = {**v, "paths": [_safe_dir(p) if isinstance(p, str) else p for p in v["paths"]]}
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
    def _unique(cls, v: list[CacheTarget]) -> list[CacheTarget]:
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


# ---------------------------------------------------------------------------- plan items


@dataclass
class Item:
    """One thing cache.clear looked at: what is there, and whether it needs clearing."""

    kind: CacheTarget
    target: str
    needed: bool
    what: str
    data: dict[str, Any] = field(default_factory=dict)
    payload: Any = field(default=None, repr=False)

    def public(self) -> dict[str, Any]:
        """Secret-free summary for the audit log."""
        return {"target": self.target, "needed": self.needed, **self.data}


class _Failure(Exception):
    """A target could not be inspected or cleared (message is secret-free)."""


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


# ---------------------------------------------------------------------------- directory


def _dir_stats_script(path: str) -> str:
    d = quote(path)
    return (
        f"if [ ! -d {d} ]; then echo MISSING; exit 0; fi\n"
        # every entry that is not a directory counts (files, symlinks, sockets...): names never
        # appear in the output, so no name can confuse the count
        f"{{ find {d} -mindepth 1 -xdev ! -type d -printf '%s\\n' || echo FINDFAIL; }} | "
        'awk \'$0=="FINDFAIL"{f=1; next} {n++; s+=$1} END {printf "%d %.0f %s\\n", n, s, (f ? "FAIL" : "OK")}\''
    )


def _dir_stats(ctx: Context, path: str, sudo: bool | None) -> tuple[int, int]:
    res = ctx.run_shell(_dir_stats_script(path), sudo=sudo, check=False)
    out = res.stdout.strip().splitlines()
    if out and out[-1] == "MISSING":
        raise _Failure(f"cache directory {path} does not exist")
    parts = out[-1].split() if out else []
    if not res.ok or len(parts) != 3 or parts[2] != "OK":
        tail = text_tail(res.stderr, 300) or text_tail(res.stdout, 300)
        hint = " (set `sudo: true` in the directory block?)" if "ermission denied" in tail else ""
        raise _Failure(f"cannot read cache directory {path}: {tail}{hint}")
    return int(parts[0]), int(parts[1])


def _dir_clear(ctx: Context, path: str, sudo: bool | None) -> None:
    d = quote(path)
    script = (
        f"find {d} -mindepth 1 -xdev ! -type d -delete\nrc=$?\n"
        f"find {d} -mindepth 1 -xdev -depth -type d -empty -delete 2>/dev/null\n"
        "exit $rc"
    )
    res = ctx.run_shell(script, sudo=sudo, check=False)
    if res.ok:
        return
    # nginx may add or remove cache files while we delete: vanished files are not an error
    errors = [line for line in res.stderr.splitlines() if line.strip() and "No such file or directory" not in line]
    if errors or res.timed_out:
        hint = " (set `sudo: true` in the directory block?)" if any("ermission denied" in e for e in errors) else ""
        raise _Failure(f"cannot empty {path}: {text_tail(' '.join(errors), 300) or 'timed out'}{hint}")


# ---------------------------------------------------------------------------- redis


def _redis_arg(value: str) -> str:
    """A redis-cli argument as a double-quoted string of \\xHH escapes (any byte is safe)."""
    return '"' + "".join(f"\\x{b:02x}" for b in value.encode("utf-8")) + '"'


def _redis_session(ctx: Context, t: RedisTarget, password: SecretStr | None, commands: list[list[str]]) -> list[str]:
    """Run ``commands`` in one redis-cli session fed on stdin (AUTH first); return each reply.

    redis-cli exits 0 on error replies such as WRONGPASS or NOAUTH and on connection errors,
    so every reply is delimited with ECHO markers and checked.
    """
    tag = "@@mk-" + _secrets.token_hex(4)
    lines: list[str] = []
    if password is not None:
        auth = ["AUTH", *([t.username] if t.username else []), password.get_secret_value()]
        lines.append(" ".join(_redis_arg(a) for a in auth))
    for i, cmd in enumerate([["SELECT", str(t.db or 0)], *commands]):
        lines.append(f"ECHO {tag}-{i}")
        lines.append(" ".join(_redis_arg(a) for a in cmd))
    argv = [t.cli, *(["-s", t.socket] if t.socket else ["-h", t.host, "-p", str(t.port)])]
    res = ctx.run(argv, stdin=("\n".join(lines) + "\n").encode(), check=False, sudo=False, timeout=t.timeout)
    replies = _split_replies(res, tag, len(commands) + 1)
    if replies[0] != "OK":
        raise _Failure(f"{t.label}: SELECT failed: {text_head(replies[0], 200)}")
    return replies[1:]


def _split_replies(res: CommandResult, tag: str, count: int) -> list[str]:
    segments: list[list[str]] = [[]]
    index = 0
    for line in res.stdout.splitlines():
        if line == f"{tag}-{index}":
            segments.append([])
            index += 1
        else:
            segments[-1].append(line)
    head = "\n".join(segments[0]).strip()
    if index != count:
        problem = head or res.stderr.strip() or f"redis-cli exited {res.exit_code} without output"
        first = text_head(problem.splitlines()[0], 200) if problem else ""
        if first.startswith(("WRONGPASS", "ERR invalid password", "NOAUTH")):
            raise _Failure(f"authentication failed ({first}): check the password")
        raise _Failure(first or "no reply")
    if head and head != "OK":
        raise _Failure(f"authentication failed: {text_head(head.splitlines()[0], 200)}")
    return ["\n".join(seg).strip() for seg in segments[1:]]


def _redis_int(reply: str, what: str) -> int:
    if not reply.lstrip("-").isdigit():
        raise _Failure(f"{what}: unexpected reply {text_head(reply, 200)!r}")
    return int(reply)


def _redis_scan(ctx: Context, t: RedisTarget, password: SecretStr | None, delete: bool, limit: int) -> int:
    """Count (or unlink) keys matching the pattern, in bounded server-side batches."""
    cursor, total = "0", 0
    assert t.pattern is not None
    for _ in range(limit):
        cmd = ["EVAL", _SCAN_LUA, "0", cursor, t.pattern, str(REDIS_SCAN_ROUNDS), "1" if delete else "0"]
        (reply,) = _redis_session(ctx, t, password, [cmd])
        parts = reply.split("\n")
        if len(parts) != 2 or _REDIS_ERROR.match(parts[0]):
            raise _Failure(f"{t.label}: SCAN failed: {text_head(reply, 200)}")
        cursor, total = parts[0], total + _redis_int(parts[1], "SCAN")
        if cursor == "0":
            return total
    if delete:
        raise _Failure(f"{t.label}: still scanning after {limit} batches")
    return total


def _redis_count(ctx: Context, t: RedisTarget, password: SecretStr | None) -> int:
    if t.pattern is not None:
        return _redis_scan(ctx, t, password, delete=False, limit=REDIS_MAX_CALLS)
    (reply,) = _redis_session(ctx, t, password, [["DBSIZE"]])
    return _redis_int(reply, f"{t.label}: DBSIZE")


def _redis_clear(ctx: Context, t: RedisTarget, password: SecretStr | None) -> int:
    if t.pattern is not None:
        return _redis_scan(ctx, t, password, delete=True, limit=REDIS_MAX_CALLS)
    before, reply = _redis_session(ctx, t, password, [["DBSIZE"], ["FLUSHDB"]])
    if reply != "OK":
        raise _Failure(f"{t.label}: FLUSHDB failed: {text_head(reply, 200)}")
    return _redis_int(before, f"{t.label}: DBSIZE")


# ---------------------------------------------------------------------------- platform


def _platform_commands(ctx: Context, pt: PlatformTarget, app: App) -> list[tuple[list[str], str | None]]:
    """The commands clearing the application's caches: (argv, cwd)."""
    if app.kind == "magento":
        return [([pt.php, "bin/magento", "cache:flush"], app.root)]
    if app.kind == "laravel":
        return [([pt.php, "artisan", "optimize:clear"], app.root)]
    url = ctx.env.url or ""
    has_wp_cli = ctx.run(["sh", "-c", 'command -v "$1"', "sh", pt.wp_cli], check=False, sudo=False).ok
    if has_wp_cli:
        common = [f"--path={app.root}", *([f"--url={url}"] if url else []), "--skip-themes"]
        cmds: list[tuple[list[str], str | None]] = [([pt.wp_cli, "cache", "flush", *common], app.root)]
        if pt.rewrite:
            cmds.append(([pt.wp_cli, "rewrite", "flush", *common], app.root))
        return cmds
    return [([pt.php, "-r", _WP_FLUSH_PHP, "--", app.root, url, "1" if pt.rewrite else "0"], app.root)]


def _plain_tail(text: str, limit: int = 300) -> str:
    """The end of a command's output as plain text (HTML error pages reduced to their words)."""
    text = re.sub(r"(?is)<(style|script)\b.*?</\1>", " ", redact_text(text))
    text = re.sub(r"<[^>]+>", " ", text)
    return text_tail(" ".join(text.split()), limit)


def _platform_clear(ctx: Context, pt: PlatformTarget, app: App) -> list[str]:
    done: list[str] = []
    for argv, cwd in _platform_commands(ctx, pt, app):
        full = ["sudo", "-n", "-u", pt.run_as, "--", *argv] if pt.run_as else argv
        res = ctx.run(full, cwd=cwd, check=False, sudo=False, timeout=pt.timeout)
        label = "php -r <wordpress flush>" if "-r" in argv else " ".join(argv[:4])
        marker_missing = "-r" in argv and "MAINTKIT-FLUSHED" not in res.stdout
        if not res.ok or marker_missing:
            tail = _plain_tail(res.stderr + "\n" + res.stdout)
            raise _Failure(f"{label} failed (exit {res.exit_code}): {tail}")
        done.append(label)
    return done


# ---------------------------------------------------------------------------- cdn


def _cdn_urls(ctx: Context, cdn: CdnTarget) -> list[str]:
    base = (ctx.env.url or "").rstrip("/")
    out = []
    for url in cdn.urls:
        if urlsplit(url).scheme:
            out.append(url)
        elif base:
            out.append(base + ("" if url.startswith("/") else "/") + url)
        else:
            raise _Failure(f"relative CDN URL {url!r} but the environment has no url")
    return out


def _cdn_purge(ctx: Context, cdn: CdnTarget) -> int:
    """Purge through the Cloudflare API; return the number of API calls. Messages never carry secrets."""
    import requests

    assert cdn.zone_id is not None and cdn.token is not None
    endpoint = f"{cdn.api_base.rstrip('/')}/zones/{url_quote(cdn.zone_id.get_secret_value(), safe='')}/purge_cache"
    headers = {"Authorization": f"Bearer {cdn.token.get_secret_value()}", "Content-Type": "application/json"}
    urls = _cdn_urls(ctx, cdn)
    bodies: list[dict[str, Any]] = (
        [{"files": urls[i : i + CLOUDFLARE_MAX_FILES]} for i in range(0, len(urls), CLOUDFLARE_MAX_FILES)]
        if urls
        else [{"purge_everything": True}]
    )
    api_host = urlsplit(cdn.api_base).netloc
    for body in bodies:
        try:
            resp = requests.post(endpoint, json=body, headers=headers, timeout=cdn.timeout, verify=cdn.verify)
        except requests.RequestException as exc:
            raise _Failure(f"CDN API {api_host} unreachable ({type(exc).__name__})") from None
        try:
            answer = resp.json()
        except ValueError:
            answer = {}
        if resp.status_code != 200 or not isinstance(answer, dict) or answer.get("success") is not True:
            errors = answer.get("errors") if isinstance(answer, dict) else None
            detail = "; ".join(f"{e.get('code')}: {e.get('message')}" for e in (errors or []) if isinstance(e, dict))[
                :300
            ]
            raise _Failure(
                f"CDN purge refused by {api_host} (HTTP {resp.status_code}){': ' + detail if detail else ''}"
            )
    return len(bodies)


# ---------------------------------------------------------------------------- the action


class CacheClear(Action[CacheClearParams]):
    """Clear caches: nginx cache directories, Redis, OPcache (php-fpm reload), platform caches, CDN."""

    name = "cache.clear"
    Params = CacheClearParams
    summary = "Clear caches: nginx cache dirs, Redis, OPcache, WordPress/Magento/Laravel, Cloudflare."
    #: Clearing a cache is harmless and cannot be undone: rollback succeeds doing nothing, so a
    #: cache clear never blocks rolling back the steps before it.
    rollback_kind = "noop"
    rollback_reason = "a cleared cache refills itself"

    def probes(self, ctx: Context) -> list[Probe[Any]]:
        out: list[Probe[Any]] = []
        if "platform" in self.params.targets:
            out.append(layout_probe(ctx, self.params.platform.root))
        if "opcache" in self.params.targets:
            name = self._opcache_spec(ctx).name
            if name:
                out.append(InitSystem(name))
        return out

    def _opcache_spec(self, ctx: Context) -> ServiceSpec:
        o = self.params.opcache
        service = o.service
        if service is None and not o.command and not o.pidfile:
            var = ctx.vars.get("php_fpm_service")
            service = str(var) if var else None
        return ServiceSpec(
            name=service,
            manager=o.manager,
            command=tuple(o.command) if o.command else None,
            signal=o.signal if o.pidfile else None,
            pidfile=o.pidfile,
            sudo=o.sudo,
        )

    def _password(self, t: RedisTarget) -> SecretStr | None:
        return t.password if t.password is not None else self.params.redis_password

    # ---- check ---------------------------------------------------------------
    def check(self, ctx: Context) -> Check:
        items: list[Item] = []
        for kind in self.params.targets:
            try:
                items += self._inspect(ctx, kind)
            except (_Failure, CheckFailed) as exc:
                message = exc.message if isinstance(exc, CheckFailed) else str(exc)
                raise CheckFailed(f"{kind}: {message}", action=self.name) from None
        found = [i.public() for i in items]
        reason = "; ".join(i.what for i in items)
        if any(i.needed for i in items):
            return Check.change(reason, snapshot=items, found=found)
        return Check.ok(reason, found=found)

    def _inspect(self, ctx: Context, kind: CacheTarget) -> list[Item]:
        inspect = {
            "directory": self._inspect_directory,
            "redis": self._inspect_redis,
            "opcache": self._inspect_opcache,
            "platform": self._inspect_platform,
            "cdn": self._inspect_cdn,
        }[kind]
        return inspect(ctx)

    def _inspect_directory(self, ctx: Context) -> list[Item]:
        assert self.params.directory is not None
        items = []
        for path in self.params.directory.paths:
            files, size = _dir_stats(ctx, path, self.params.directory.sudo)
            what = f"{path}: {_plural(files, 'file')}, {_human_bytes(size)}" if files else f"{path}: empty"
            items.append(Item("directory", path, files > 0, what, {"files": files, "bytes": size}, path))
        return items

    def _inspect_redis(self, ctx: Context) -> list[Item]:
        items = []
        for t in self.params.redis:
            keys = _redis_count(ctx, t, self._password(t))
            what = f"{t.label}: {_plural(keys, 'key')}" if keys else f"{t.label}: empty"
            items.append(Item("redis", t.label, keys > 0, what, {"keys": keys}, t))
        return items

    def _inspect_opcache(self, ctx: Context) -> list[Item]:
        spec = self._opcache_spec(ctx)
        if not (spec.name or spec.command or spec.pidfile):
            raise _Failure("set opcache.service (or vars.php_fpm_service), opcache.command or opcache.pidfile")
        op = plan_operation(ctx, spec, "reload")
        what = f"OPcache: will reload {spec.label} ({op.label})"
        return [Item("opcache", f"opcache ({spec.label})", True, what, {}, op)]

    def _inspect_platform(self, ctx: Context) -> list[Item]:
        pt = self.params.platform
        app = detect_app(ctx, pt.platform, pt.root)
        if app.kind == "generic":
            raise _Failure(f"no WordPress, Magento or Laravel application under {app.base} (set platform or root)")
        return [Item("platform", f"{app.kind} caches", True, f"{app.kind}: will flush application caches", {}, app)]

    def _inspect_cdn(self, ctx: Context) -> list[Item]:
        cdn = self.params.cdn
        assert cdn is not None
        scope = _plural(len(cdn.urls), "URL") if cdn.urls else "everything"
        return [Item("cdn", f"cdn {cdn.provider}", True, f"CDN: will purge {scope}", {"urls": len(cdn.urls)}, cdn)]

    # ---- apply ---------------------------------------------------------------
    def apply(self, ctx: Context, check: Check) -> list[Change]:
        changes: list[Change] = []
        cleared: list[dict[str, Any]] = []
        for item in check.snapshot:
            if not item.needed:
                continue
            try:
                summary, data = self._clear(ctx, item)
            except (_Failure, ApplyFailed) as exc:
                message = exc.message if isinstance(exc, ApplyFailed) else str(exc)
                ctx.record(cleared=cleared)
                raise ApplyFailed(f"{item.kind}: {message}", action=self.name, details={"cleared": cleared}) from None
            cleared.append({"target": item.target, **data})
            changes.append(Change(item.target, summary, before=item.data or None))
        ctx.record(cleared=cleared)
        return changes

    def _clear(self, ctx: Context, item: Item) -> tuple[str, dict[str, Any]]:
        if item.kind == "directory":
            assert self.params.directory is not None
            _dir_clear(ctx, item.payload, self.params.directory.sudo)
            return f"removed {_plural(item.data['files'], 'file')} ({_human_bytes(item.data['bytes'])})", dict(
                item.data
            )
        if item.kind == "redis":
            t: RedisTarget = item.payload
            keys = _redis_clear(ctx, t, self._password(t))
            how = "UNLINK" if t.pattern else "FLUSHDB"
            return f"{how}: {_plural(keys, 'key')}", {"keys": keys}
        if item.kind == "opcache":
            op: Operation = item.payload
            run_operation(ctx, self._opcache_spec(ctx), op)
            return f"reloaded ({op.label})", {"via": op.label}
        if item.kind == "platform":
            done = _platform_clear(ctx, self.params.platform, item.payload)
            return "flushed: " + ", ".join(done), {"commands": done}
        calls = _cdn_purge(ctx, item.payload)
        return f"purged ({_plural(calls, 'API call')})", {"api_calls": calls}

    def verify(self, ctx: Context) -> None:
        """Nothing to re-check: a live site refills its caches at once, so a fresh count would race
        with traffic. Each clearing command's own result was checked in apply()."""

    def rollback(self, ctx: Context, changes: list[Change]) -> None:
        """Nothing to undo (a cleared cache refills itself); succeeds so earlier steps can roll back."""


__all__ = [
    "CacheClear",
    "CacheClearParams",
    "CdnTarget",
    "DirectoryTarget",
    "OpcacheTarget",
    "PlatformTarget",
    "RedisTarget",
]
