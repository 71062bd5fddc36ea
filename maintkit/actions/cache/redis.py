"""Redis: one database flushed (``FLUSHDB``), or the keys matching a pattern (``SCAN`` + ``UNLINK``).

Commands go to ``redis-cli`` on the site's host, fed on stdin (the password never appears in
an argument list), with every reply delimited by ``ECHO`` markers and checked.
"""

from __future__ import annotations

import re
import secrets as _secrets
from typing import Any

from pydantic import SecretStr

from maintkit._text import head as text_head
from maintkit.action import Context
from maintkit.actions.cache.base import CacheTarget, Cleared, Item, TargetFailed, plural
from maintkit.actions.cache.params import CacheClearParams, RedisTarget
from maintkit.results import CommandResult

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
        raise TargetFailed(f"{t.label}: SELECT failed: {text_head(replies[0], 200)}")
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
            raise TargetFailed(f"authentication failed ({first}): check the password")
        raise TargetFailed(first or "no reply")
    if head and head != "OK":
        raise TargetFailed(f"authentication failed: {text_head(head.splitlines()[0], 200)}")
    return ["\n".join(seg).strip() for seg in segments[1:]]


def _redis_int(reply: str, what: str) -> int:
    if not reply.lstrip("-").isdigit():
        raise TargetFailed(f"{what}: unexpected reply {text_head(reply, 200)!r}")
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
            raise TargetFailed(f"{t.label}: SCAN failed: {text_head(reply, 200)}")
        cursor, total = parts[0], total + _redis_int(parts[1], "SCAN")
        if cursor == "0":
            return total
    if delete:
        raise TargetFailed(f"{t.label}: still scanning after {limit} batches")
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
        raise TargetFailed(f"{t.label}: FLUSHDB failed: {text_head(reply, 200)}")
    return _redis_int(before, f"{t.label}: DBSIZE")


class RedisCache(CacheTarget[None]):
    """One Redis database or key pattern: check counts the keys, clear deletes them."""

    kind = "redis"

    def __init__(self, target: RedisTarget, password: SecretStr | None) -> None:
        self.target = target
        self.password = password

    @classmethod
    def configured(cls, params: CacheClearParams, ctx: Context) -> list[CacheTarget[Any]]:
        """One target per redis entry (``redis_password`` for entries without their own)."""
        return [cls(t, t.password if t.password is not None else params.redis_password) for t in params.redis]

    def check(self, ctx: Context) -> Item[None]:
        """Count the keys."""
        t = self.target
        keys = _redis_count(ctx, t, self.password)
        what = f"{t.label}: {plural(keys, 'key')}" if keys else f"{t.label}: empty"
        return Item(self, t.label, keys > 0, what, None, {"keys": keys})

    def clear(self, ctx: Context, item: Item[None]) -> Cleared:
        """FLUSHDB, or UNLINK the matching keys."""
        keys = _redis_clear(ctx, self.target, self.password)
        how = "UNLINK" if self.target.pattern else "FLUSHDB"
        return f"{how}: {plural(keys, 'key')}", {"keys": keys}


__all__ = ["REDIS_MAX_CALLS", "REDIS_SCAN_ROUNDS", "RedisCache"]
