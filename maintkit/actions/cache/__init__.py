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

from maintkit.actions.cache.base import CacheTarget, Cleared, Item, TargetFailed
from maintkit.actions.cache.cdn import CdnCache
from maintkit.actions.cache.clear import TARGET_TYPES, CacheClear
from maintkit.actions.cache.directory import DirectoryCache, dir_clear, dir_stats, dir_stats_script
from maintkit.actions.cache.opcache import OpcacheCache
from maintkit.actions.cache.params import (
    CacheClearParams,
    CdnTarget,
    DirectoryTarget,
    OpcacheTarget,
    PlatformTarget,
    RedisTarget,
    TargetName,
)
from maintkit.actions.cache.platform import PlatformCache
from maintkit.actions.cache.redis import RedisCache

# the names these helpers had when cache.clear was one module
_dir_clear = dir_clear
_dir_stats_script = dir_stats_script

__all__ = [
    "TARGET_TYPES",
    "CacheClear",
    "CacheClearParams",
    "CacheTarget",
    "CdnCache",
    "CdnTarget",
    "Cleared",
    "DirectoryCache",
    "DirectoryTarget",
    "Item",
    "OpcacheCache",
    "OpcacheTarget",
    "PlatformCache",
    "PlatformTarget",
    "RedisCache",
    "RedisTarget",
    "TargetFailed",
    "TargetName",
    "dir_clear",
    "dir_stats",
    "dir_stats_script",
]
