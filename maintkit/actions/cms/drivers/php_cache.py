"""The WordPress helper's compiled-code cache (OPcache's file cache) under ``<path>/.maint/php-cache``.

Every helper run boots WordPress, and PHP's command line compiles every file of it afresh:
about half of a boot. A real run (never plan mode, which writes nothing) starts PHP with
OPcache's file cache in a directory of maint's own, so the next boot on that site, in this
run or a later one, loads the compiled files instead.

Only a directory of plain characters is used (PHP's ini parser reads it). A shell in front of
PHP creates the directory (mode 0700) when it is missing and starts PHP with the cache only when
the directory is a real directory owned by the user running PHP; otherwise PHP starts without
it, as in plan mode. Inside, the helper keeps a manifest of every cached source's device, inode,
size, mtime and ctime and deletes a compiled file whose source differs in any of them before
WordPress loads (``maintkit_cache_scan`` in ``wp_helper.php``).
"""

from __future__ import annotations

import json
import re
from typing import Any

from maintkit.action import Context

#: the directory under the environment's ``.maint``
CACHE_NAME = "php-cache"

#: ``sh -c`` body: $1 the directory, then the PHP argv with the cache's ``-d`` pairs right after
#: the binary. Without a usable directory the pairs are dropped.
_MAKE = '[ -d "$d" ] || mkdir -p -m 700 -- "$d" 2>/dev/null; '
_LAUNCH = (
    'd=$1; shift; {make}if [ -d "$d" ] && [ ! -L "$d" ] && [ -O "$d" ]; then exec "$@"; fi; '
    'p=$1; shift; while [ "$1" = -d ]; do shift 2; done; exec "$p" "$@"'
)


#: what a directory given to PHP's ini parser (``-d``) may contain: anything else (``;`` starts a
#: comment, ``"`` and ``$`` are syntax) could make PHP read another path than the one maint made
_SAFE = re.compile(r"/[A-Za-z0-9._/+@-]+")


def cache_dir(ctx: Context) -> str | None:
    """``<path>/.maint/php-cache``, or None (no cache) when the path has other characters than
    letters, digits and ``._/+@-``."""
    directory = ctx.path.rstrip("/") + "/.maint/" + CACHE_NAME
    return directory if _SAFE.fullmatch(directory) else None


def ini_settings(directory: str) -> list[str]:
    """PHP's ``-d`` pairs: the file cache only, no optimizer and no JIT, timestamps checked."""
    settings = {
        "opcache.enable_cli": "1",
        "opcache.file_cache": directory,
        "opcache.file_cache_only": "1",
        "opcache.file_cache_consistency_checks": "1",
        "opcache.validate_timestamps": "1",
        "opcache.file_update_protection": "2",
        "opcache.optimization_level": "0",
        "opcache.jit": "disable",
        "opcache.preload": "",
    }
    out: list[str] = []
    for key, value in settings.items():
        out += ["-d", f"{key}={value}"]
    return out


def php_command(php: str, rest: list[str], directory: str | None, *, create: bool = True) -> list[str]:
    """The argv that runs ``php rest...``, through the cache in ``directory`` when given (made
    when missing, unless ``create`` is false: then only an existing one is used)."""
    if directory is None:
        return [php, *rest]
    script = _LAUNCH.format(make=_MAKE if create else "")
    return ["sh", "-c", script, "sh", directory, php, *ini_settings(directory), *rest]


def helper_command(
    php: str,
    root: str,
    command: str,
    args: dict[str, Any],
    directory: str | None,
    *,
    script: str | None = None,
    create: bool = True,
) -> list[str]:
    """The argv of one PHP helper command: the helper uploaded at ``script``, else read from
    stdin (``--``), with its JSON arguments (naming ``directory`` as ``php_cache`` when given),
    started through :func:`php_command`."""
    payload = json.dumps({**args, **({"php_cache": directory} if directory else {})}, separators=(",", ":"))
    return php_command(php, [script or "--", root, command, payload], directory, create=create)
