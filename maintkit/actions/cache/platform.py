"""The application's own caches: WordPress object cache and rewrite rules, Magento, Laravel.

WordPress is flushed with wp-cli when the host has it, else through its PHP API from the
PHP CLI. These caches cannot be inspected from outside: when they are a target, the step
always runs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from maintkit._text import redact_text
from maintkit._text import tail as text_tail
from maintkit.action import Context
from maintkit.actions.cache.base import CacheTarget, Cleared, Item, TargetFailed
from maintkit.actions.cache.params import CacheClearParams, PlatformTarget
from maintkit.actions.maintenance import App, detect_app, layout_probe
from maintkit.probes import CommandProbe, Probe

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


def wp_cli_probe(pt: PlatformTarget) -> CommandProbe:
    """Is ``pt.wp_cli`` on the login's PATH (``command -v``, a builtin)? Declared by the target,
    so the read after an update's change answers it."""
    return CommandProbe(("command", "-v", "--", pt.wp_cli))


@dataclass(frozen=True)
class Flush:
    """What check found: the application, and (WordPress) whether wp-cli is installed."""

    app: App
    wp_cli: bool = False


def _platform_commands(ctx: Context, pt: PlatformTarget, found: Flush) -> list[tuple[list[str], str | None]]:
    """The commands clearing the application's caches: (argv, cwd)."""
    app = found.app
    if app.kind == "magento":
        return [([pt.php, "bin/magento", "cache:flush"], app.root)]
    if app.kind == "laravel":
        return [([pt.php, "artisan", "optimize:clear"], app.root)]
    url = ctx.env.url or ""
    if found.wp_cli:
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


def _platform_clear(ctx: Context, pt: PlatformTarget, found: Flush) -> list[str]:
    done: list[str] = []
    for argv, cwd in _platform_commands(ctx, pt, found):
        full = ["sudo", "-n", "-u", pt.run_as, "--", *argv] if pt.run_as else argv
        res = ctx.run(full, cwd=cwd, check=False, sudo=False, timeout=pt.timeout)
        label = "php -r <wordpress flush>" if "-r" in argv else " ".join(argv[:4])
        marker_missing = "-r" in argv and "MAINTKIT-FLUSHED" not in res.stdout
        if not res.ok or marker_missing:
            tail = _plain_tail(res.stderr + "\n" + res.stdout)
            raise TargetFailed(f"{label} failed (exit {res.exit_code}): {tail}")
        done.append(label)
    return done


class PlatformCache(CacheTarget[Flush]):
    """The application's caches: check finds the application, clear runs its flush commands."""

    kind = "platform"

    def __init__(self, block: PlatformTarget) -> None:
        self.block = block

    @classmethod
    def configured(cls, params: CacheClearParams, ctx: Context) -> list[CacheTarget[Any]]:
        """The one application of the environment."""
        return [cls(params.platform)]

    def probes(self, ctx: Context) -> list[Probe[Any]]:
        """Where the application is (see :func:`maintkit.actions.maintenance.detect_app`) and,
        unless it is Magento or Laravel, whether wp-cli is installed."""
        wordpress = self.block.platform not in ("magento", "laravel")
        return [layout_probe(ctx, self.block.root), *([wp_cli_probe(self.block)] if wordpress else [])]

    def check(self, ctx: Context) -> Item[Flush]:
        """Find the application (always needs flushing: its caches cannot be inspected), and for
        WordPress whether wp-cli is there (asked here: apply starts with the probe cache dropped)."""
        app = detect_app(ctx, self.block.platform, self.block.root)
        if app.kind == "generic":
            raise TargetFailed(f"no WordPress, Magento or Laravel application under {app.base} (set platform or root)")
        wp_cli = app.kind == "wordpress" and ctx.probe(wp_cli_probe(self.block)).exit_code == 0
        return Item(self, f"{app.kind} caches", True, f"{app.kind}: will flush application caches", Flush(app, wp_cli))

    def clear(self, ctx: Context, item: Item[Flush]) -> Cleared:
        """Run the application's flush commands."""
        done = _platform_clear(ctx, self.block, item.plan)
        return "flushed: " + ", ".join(done), {"commands": done}


__all__ = ["PlatformCache"]
