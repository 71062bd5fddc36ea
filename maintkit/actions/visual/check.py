"""``visual.check``: the action (``phase: before`` takes the baseline, ``phase: after`` compares with it)."""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

from maintkit.action import Action, Context
from maintkit.actions.visual.diff import compare
from maintkit.actions.visual.pages import default_pages
from maintkit.actions.visual.params import Page, VisualCheckParams
from maintkit.actions.visual.shots import Shot, browser_executable, capture
from maintkit.errors import CheckFailed
from maintkit.results import Change, Check

__all__ = ["VisualCheck", "percent", "visual_folder"]

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def percent(ratio: float) -> str:
    """A ratio as a percentage that never rounds a real difference to zero: ``0.0123`` -> ``1.23%``."""
    value = ratio * 100
    return f"{value:.2f}%" if value == 0 or value >= 0.01 else f"{value:.4f}%"


def visual_folder(ctx: Context) -> tuple[Path, str]:
    """This site environment's screenshot folder and its path relative to the run folder."""
    rel = f"visual/{_UNSAFE.sub('_', ctx.site.name)}/{_UNSAFE.sub('_', ctx.env.name)}"
    root = ctx.options.run_dir
    if root is None:  # a library run without a run folder: one temporary folder for the whole run
        memo = ctx.options.memo
        with memo.lock(("visual.check", "folder")):
            found = memo.get(("visual.check", "folder"))
            if found is None:
                found = tempfile.mkdtemp(prefix="maint-visual-")
                memo.put(("visual.check", "folder"), found)
        root = Path(found)
    return Path(root) / rel, rel


class VisualCheck(Action[VisualCheckParams]):
    """Screenshots before and after an update; CheckFailed naming page, size and ratio when they differ."""

    check_only = True
    name = "visual.check"
    Params = VisualCheckParams
    summary = "Screenshots of the shop's pages before and after an update (Chromium); a visual change rolls back."
    depends_on_previous = True
    rollback_kind = "noop"
    rollback_reason = "a check changes nothing (its screenshots stay in the run folder)"

    def _pages(self, ctx: Context) -> list[Page]:
        return self.params.pages or default_pages(ctx.env.platform or ctx.site.platform)

    def check(self, ctx: Context) -> Check:
        p = self.params
        base = p.url or ctx.env.url
        if not base:
            raise CheckFailed("visual.check: no URL to open: set `url` or the environment's url")
        pages = self._pages(ctx)
        browser_executable()  # what is missing is said in plan mode too
        if ctx.check_mode:
            return Check.unknown(self._plan(pages))
        folder, rel = visual_folder(ctx)
        with ctx.options.memo.lock(("visual.check", "browser")):  # one browser at a time per run
            shots = capture(base, pages, p.sizes, folder / p.phase, masks=p.mask, timeout=p.timeout, verify=p.verify)
        if p.phase == "before":
            return self._baseline(ctx, folder, rel, base, shots)
        return self._compare(ctx, folder, rel, pages, shots)

    def _plan(self, pages: list[Page]) -> str:
        sizes = ", ".join(s.label for s in self.params.sizes)
        names = ", ".join(page.name for page in pages)
        what = "as the baseline" if self.params.phase == "before" else "and compare them with the before screenshots"
        return (
            f"would capture {len(pages)} page{'' if len(pages) == 1 else 's'} ({names}) at {sizes} {what}; "
            "nothing is captured in plan mode"
        )

    def _baseline(self, ctx: Context, folder: Path, rel: str, base: str, shots: list[Shot]) -> Check:
        entries = [_entry(s, rel, "before") for s in shots]
        manifest = {"url": base, "step": ctx.step_id, "shots": entries}
        tmp = folder / ".before.json.tmp"
        tmp.write_text(json.dumps(manifest, indent=1) + "\n")
        os.replace(tmp, folder / "before.json")
        ctx.record(visual={"phase": "before", "folder": rel, "shots": entries})
        pages = len({s.page for s in shots})
        return Check.ok(f"baseline: {len(shots)} screenshots of {pages} pages in {rel}/before")

    def _compare(self, ctx: Context, folder: Path, rel: str, pages: list[Page], shots: list[Shot]) -> Check:
        p = self.params
        if not (folder / "before.json").is_file():
            raise CheckFailed(
                f"visual.check: no before screenshots of {ctx.site.name}/{ctx.env.name} in this run: "
                "add a visual.check with phase: before earlier in the stage"
            )
        limits = {page.name: page.threshold if page.threshold is not None else p.threshold for page in pages}
        (folder / "diff").mkdir(exist_ok=True)
        entries: list[dict[str, Any]] = []
        failures: list[str] = []
        for shot in shots:
            entry = _entry(shot, rel, "after")
            before = folder / "before" / shot.path.name
            if not before.is_file():
                failures.append(f"{shot.page} at {shot.size.label}: no before screenshot")
                entry.update(ok=False, ratio=None)
                entries.append(entry)
                continue
            result = compare(before, shot.path, p.tolerance, folder / "diff" / shot.path.name)
            limit = limits[shot.page]
            ok = result.ratio <= limit
            ratio = round(result.ratio, 6)  # as recorded: the message says what the data and reports say
            entry.update(
                before=f"{rel}/before/{shot.path.name}",
                diff=f"{rel}/diff/{shot.path.name}",
                ratio=ratio,
                differing=result.differing,
                pixels=result.total,
                threshold=limit,
                ok=ok,
            )
            entries.append(entry)
            if not ok:
                failures.append(
                    f"{shot.page} at {shot.size.label}: {percent(ratio)} of pixels differ (threshold {percent(limit)})"
                )
        ctx.record(visual={"phase": "after", "folder": rel, "shots": entries})
        if failures:
            raise CheckFailed(
                f"{len(failures)} of {len(shots)} screenshots differ from before: " + " | ".join(failures),
                details={"visual": {"phase": "after", "folder": rel, "shots": entries}},
            )
        return Check.ok(f"{len(shots)} screenshots match the before screenshots")

    def apply(self, ctx: Context, check: Check) -> list[Change]:
        """Never called: check() never reports a change."""
        return []

    def rollback(self, ctx: Context, changes: list[Change]) -> None:
        """Nothing to undo: visual.check changes nothing on the host."""


def _entry(shot: Shot, rel: str, phase: str) -> dict[str, Any]:
    return {
        "page": shot.page,
        "size": shot.size.name,
        "viewport": f"{shot.size.width}x{shot.size.height}",
        "url": shot.url,
        "status": shot.status,
        phase: f"{rel}/{phase}/{shot.path.name}",
    }
