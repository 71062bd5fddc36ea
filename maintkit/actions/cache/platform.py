"""The application's own caches: WordPress object cache and rewrite rules, Magento, Laravel.

WordPress is flushed with wp-cli when the host has it, else through its PHP API from the
PHP CLI: the ``flush`` command of cms.update's PHP helper (read from stdin), through the
compiled-code cache under ``<path>/.maint/php-cache`` (see
:mod:`maintkit.actions.cms.drivers.php_cache`). These caches cannot be inspected from
outside: when they are a target, the step always runs, except when an earlier step of the
stage already flushed them after its last change and nothing changed since
(:func:`flushed_by`: ``cms.update`` with ``flush_caches``).
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
from maintkit.actions.cms.drivers.php_cache import cache_dir, helper_command
from maintkit.actions.cms.drivers.wordpress_state import parse_marked_json, wp_helper_source
from maintkit.actions.maintenance import App, detect_app, layout_probe
from maintkit.probes import CommandProbe, Probe
from maintkit.results import StepStatus


def wp_cli_probe(pt: PlatformTarget) -> CommandProbe:
    """Is ``pt.wp_cli`` on the login's PATH (``command -v``, a builtin)? Declared by the target,
    so the read after an update's change answers it."""
    return CommandProbe(("command", "-v", "--", pt.wp_cli))


def flushed_by(ctx: Context, pt: PlatformTarget, root: str) -> str | None:
    """The earlier step of this stage whose last PHP process flushed WordPress's object cache
    and rewrite rules at ``root`` after every change it made (``platform_flushed`` in its data),
    when every step after it changed nothing; None: the flush must run here.

    Never for a flush asked to run as another user (``run_as``): the step's process ran as the
    login user."""
    if pt.run_as:
        return None
    for res in reversed(ctx.prior):
        if res.env != ctx.env.name:  # the stage before this one
            return None
        if res.status is StepStatus.CHANGED:
            done = res.data.get("platform_flushed")
            if isinstance(done, dict) and str(done.get("root", "")).rstrip("/") == root.rstrip("/"):
                return res.step if done.get("rewrite") or not pt.rewrite else None
            return None
        if res.status not in (StepStatus.UNCHANGED, StepStatus.SKIPPED):
            return None
    return None


@dataclass(frozen=True)
class Flush:
    """What check found: the application, and (WordPress) whether wp-cli is installed."""

    app: App
    wp_cli: bool = False


@dataclass(frozen=True)
class FlushCommand:
    """One flush command: its argv, where it runs, its stdin and how the step data names it."""

    argv: list[str]
    cwd: str | None
    label: str
    stdin: bytes | None = None


def _platform_commands(ctx: Context, pt: PlatformTarget, found: Flush) -> list[FlushCommand]:
    """The commands clearing the application's caches."""
    app = found.app
    if app.kind == "magento":
        return [_plain([pt.php, "bin/magento", "cache:flush"], app.root)]
    if app.kind == "laravel":
        return [_plain([pt.php, "artisan", "optimize:clear"], app.root)]
    url = ctx.env.url or ""
    if found.wp_cli:
        common = [f"--path={app.root}", *([f"--url={url}"] if url else []), "--skip-themes"]
        cmds = [_plain([pt.wp_cli, "cache", "flush", *common], app.root)]
        if pt.rewrite:
            cmds.append(_plain([pt.wp_cli, "rewrite", "flush", *common], app.root))
        return cmds
    return [_helper_flush(ctx, pt, app.root, url)]


def _plain(argv: list[str], cwd: str | None) -> FlushCommand:
    return FlushCommand(argv, cwd, " ".join(argv[:4]))


def _helper_flush(ctx: Context, pt: PlatformTarget, root: str, url: str) -> FlushCommand:
    """WordPress without wp-cli: the PHP helper's ``flush`` (read from stdin, nothing on disk),
    through the compiled-code cache cms.update keeps when there is one (never made here; not when
    the flush runs as another user)."""
    cache = cache_dir(ctx) if pt.php_cache and not pt.run_as else None
    argv = helper_command(pt.php, root, "flush", {"url": url, "rewrite": pt.rewrite}, cache, create=False)
    return FlushCommand(argv, root, "php <wordpress flush>", wp_helper_source())


def _plain_tail(text: str, limit: int = 300) -> str:
    """The end of a command's output as plain text (HTML error pages reduced to their words)."""
    text = re.sub(r"(?is)<(style|script)\b.*?</\1>", " ", redact_text(text))
    text = re.sub(r"<[^>]+>", " ", text)
    return text_tail(" ".join(text.split()), limit)


def _platform_clear(ctx: Context, pt: PlatformTarget, found: Flush) -> list[str]:
    done: list[str] = []
    for cmd in _platform_commands(ctx, pt, found):
        full = ["sudo", "-n", "-u", pt.run_as, "--", *cmd.argv] if pt.run_as else cmd.argv
        res = ctx.run(full, cwd=cmd.cwd, check=False, sudo=False, timeout=pt.timeout, stdin=cmd.stdin)
        answer = parse_marked_json(res.stdout) if cmd.stdin is not None else None
        unanswered = cmd.stdin is not None and not (answer and answer.get("ok"))
        if not res.ok or unanswered:
            said = str(answer.get("error")) if answer else res.stderr + "\n" + res.stdout
            raise TargetFailed(f"{cmd.label} failed ({res.why}): {_plain_tail(said)}")
        done.append(cmd.label)
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
        by = flushed_by(ctx, self.block, app.root) if app.kind == "wordpress" else None
        if by is not None:
            what = f"wordpress: caches flushed by step {by} after its last change"
            return Item(self, "wordpress caches", False, what, Flush(app), {"flushed_by": by})
        wp_cli = app.kind == "wordpress" and ctx.probe(wp_cli_probe(self.block)).exit_code == 0
        return Item(self, f"{app.kind} caches", True, f"{app.kind}: will flush application caches", Flush(app, wp_cli))

    def clear(self, ctx: Context, item: Item[Flush]) -> Cleared:
        """Run the application's flush commands."""
        done = _platform_clear(ctx, self.block, item.plan)
        return "flushed: " + ", ".join(done), {"commands": done}


__all__ = ["PlatformCache", "flushed_by"]
