"""Cache directories (nginx ``fastcgi_cache_path``...) emptied with ``find -delete`` while nginx runs."""

from __future__ import annotations

from typing import Any

from maintkit._text import tail as text_tail
from maintkit.action import Context
from maintkit.actions.cache.base import CacheTarget, Cleared, Item, TargetFailed, human_bytes, plural
from maintkit.actions.cache.params import CacheClearParams
from maintkit.transport.base import quote


def dir_stats_script(path: str) -> str:
    """Shell snippet printing ``FILES BYTES OK`` for a cache directory (``MISSING`` when it is not there)."""
    d = quote(path)
    return (
        f"if [ ! -d {d} ]; then echo MISSING; exit 0; fi\n"
        # every entry that is not a directory counts (files, symlinks, sockets...): names never
        # appear in the output, so no name can confuse the count
        f"{{ LC_ALL=C find {d} -mindepth 1 -xdev ! -type d -printf '%s\\n' || echo FINDFAIL; }} | "
        'awk \'$0=="FINDFAIL"{f=1; next} {n++; s+=$1} END {printf "%d %.0f %s\\n", n, s, (f ? "FAIL" : "OK")}\''
    )


def dir_stats(ctx: Context, path: str, sudo: bool | None) -> tuple[int, int]:
    """Files (every entry that is not a directory) and bytes under ``path``."""
    res = ctx.run_shell(dir_stats_script(path), sudo=sudo, check=False)
    out = res.stdout.strip().splitlines()
    if out and out[-1] == "MISSING":
        raise TargetFailed(f"cache directory {path} does not exist")
    parts = out[-1].split() if out else []
    if not res.ok or len(parts) != 3 or parts[2] != "OK":
        tail = text_tail(res.stderr, 300) or text_tail(res.stdout, 300)
        hint = " (set `sudo: true` in the directory block?)" if "ermission denied" in tail else ""
        raise TargetFailed(f"cannot read cache directory {path}: {tail}{hint}")
    return int(parts[0]), int(parts[1])


def dir_clear(ctx: Context, path: str, sudo: bool | None) -> None:
    """Empty ``path`` (its files, then its empty subdirectories), keeping ``path`` itself.

    ``find`` runs with ``LC_ALL=C``: its messages are read below (a file nginx removed meanwhile
    is not an error), and a host's own language would translate them.
    """
    d = quote(path)
    script = (
        f"LC_ALL=C find {d} -mindepth 1 -xdev ! -type d -delete\nrc=$?\n"
        f"LC_ALL=C find {d} -mindepth 1 -xdev -depth -type d -empty -delete 2>/dev/null\n"
        "exit $rc"
    )
    res = ctx.run_shell(script, sudo=sudo, check=False)
    if res.ok:
        return
    # nginx may add or remove cache files while we delete: vanished files are not an error
    errors = [line for line in res.stderr.splitlines() if line.strip() and "No such file or directory" not in line]
    if errors or res.timed_out:
        hint = " (set `sudo: true` in the directory block?)" if any("ermission denied" in e for e in errors) else ""
        raise TargetFailed(f"cannot empty {path}: {text_tail(' '.join(errors), 300) or 'timed out'}{hint}")


class DirectoryCache(CacheTarget[None]):
    """One cache directory: check counts its files and bytes, clear empties it."""

    kind = "directory"

    def __init__(self, path: str, sudo: bool | None) -> None:
        self.path = path
        self.sudo = sudo

    @classmethod
    def configured(cls, params: CacheClearParams, ctx: Context) -> list[CacheTarget[Any]]:
        """One target per configured directory."""
        block = params.directory
        assert block is not None
        return [cls(path, block.sudo) for path in block.paths]

    def check(self, ctx: Context) -> Item[None]:
        """Count the files and bytes in the directory."""
        files, size = dir_stats(ctx, self.path, self.sudo)
        what = f"{self.path}: {plural(files, 'file')}, {human_bytes(size)}" if files else f"{self.path}: empty"
        return Item(self, self.path, files > 0, what, None, {"files": files, "bytes": size})

    def clear(self, ctx: Context, item: Item[None]) -> Cleared:
        """Empty the directory."""
        dir_clear(ctx, self.path, self.sudo)
        return f"removed {plural(item.data['files'], 'file')} ({human_bytes(item.data['bytes'])})", dict(item.data)


__all__ = ["DirectoryCache", "dir_clear", "dir_stats", "dir_stats_script"]
