"""Screenshots for ``visual.check``: Playwright for Python driving this machine's Chromium.

Playwright is imported only when a screenshot is taken (the ``browser`` extra); its own browser
download is never used: ``MAINT_CHROMIUM`` names the executable, else ``/usr/bin/chromium`` or
the first of ``chromium``, ``chromium-browser``, ``google-chrome`` on ``PATH``. Every page is
captured full-page with animations disabled, the caret hidden and web fonts loaded; masked
regions are painted over in one flat colour, so both sides of a comparison hide them alike.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from maintkit._browser import CANDIDATES, CHROMIUM_ARGS, INSTALL_HINT, NoChromium, chromium_executable
from maintkit.actions.http.outcome import join_url
from maintkit.actions.visual.params import Page, PageStep, Size
from maintkit.errors import CheckFailed

_CANDIDATES = CANDIDATES  # a module attribute, so tests can point it elsewhere

__all__ = ["MASK_COLOR", "Shot", "browser_executable", "capture"]

MASK_COLOR = "#FF00FF"
_EXTRA = "visual.check needs the browser extra: pip install 'maintkit[browser]' (Playwright for Python and Pillow)"


@dataclass
class Shot:
    """One screenshot written: which page at which size, where, and what the browser saw."""

    page: str
    size: Size
    path: Path
    url: str
    status: int | None


def browser_executable() -> str:
    """The Chromium to drive, after checking the extra is installed; CheckFailed naming what is missing."""
    for module in ("playwright", "PIL"):
        if importlib.util.find_spec(module) is None:
            raise CheckFailed(_EXTRA)
    try:
        return chromium_executable(candidates=_CANDIDATES)
    except NoChromium as exc:
        raise CheckFailed(
            f"visual.check: {exc}" if str(exc) else f"visual.check needs Chromium: {INSTALL_HINT}"
        ) from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


class _Capture:
    """One browser for every page and size of one step."""

    def __init__(self, base: str, out_dir: Path, masks: Sequence[str], timeout: float, verify: bool) -> None:
        self.base, self.out_dir, self.masks = base, out_dir, list(masks)
        self.timeout_ms, self.verify = timeout * 1000, verify

    def size(self, browser: Any, size: Size, pages: Sequence[Page]) -> list[Shot]:
        """Every page at ``size``, in order, in one browser context (cookies carry from page to page)."""
        context = browser.new_context(
            viewport={"width": size.width, "height": size.height},
            device_scale_factor=1,
            is_mobile=size.mobile,
            has_touch=size.mobile,
            ignore_https_errors=not self.verify,
            reduced_motion="reduce",
            service_workers="block",
        )
        try:
            tab = context.new_page()
            tab.set_default_timeout(self.timeout_ms)
            return [self.page(tab, page, size) for page in pages]
        finally:
            context.close()

    def page(self, tab: Any, page: Page, size: Size) -> Shot:
        """Run the page's steps, open its path, wait for fonts, take the full-page screenshot."""
        status: int | None = None
        current = "start"
        try:
            for step in page.steps:
                current = step.describe()
                status = self._step(tab, step) or status
            if page.path is not None:
                current = f"goto {page.path}"
                status = self._goto(tab, page.path)
            current = "screenshot"
            tab.evaluate("() => document.fonts.ready.then(() => true)")
            target = self.out_dir / f"{page.name}-{size.name}.png"
            tmp = target.with_name(f".{target.stem}.tmp.png")
            tab.screenshot(
                path=str(tmp),
                type="png",
                full_page=True,
                animations="disabled",
                caret="hide",
                mask=[tab.locator(selector) for selector in [*self.masks, *page.mask]],
                mask_color=MASK_COLOR,
            )
            os.replace(tmp, target)
        except CheckFailed:
            raise
        except Exception as exc:  # Playwright's errors (timeouts, no element) are not maintkit's
            raise CheckFailed(f"page {page.name} at {size.label}: {current}: {_first_line(exc)}") from None
        return Shot(page.name, size, target, str(tab.url), status)

    def _goto(self, tab: Any, where: str) -> int | None:
        response = tab.goto(join_url(self.base, where), wait_until="load")
        return None if response is None else int(response.status)

    def _step(self, tab: Any, step: PageStep) -> int | None:
        if step.goto:
            return self._goto(tab, step.goto)
        if step.click:
            tab.locator(step.click).first.click()
            tab.wait_for_load_state("load")
        elif step.fill:
            tab.locator(step.fill).first.fill(step.value)
        elif step.wait_for:
            tab.locator(step.wait_for).first.wait_for(state="visible")
        return None


def capture(
    base: str,
    pages: Sequence[Page],
    sizes: Sequence[Size],
    out_dir: Path,
    *,
    masks: Sequence[str] = (),
    timeout: float = 30.0,
    verify: bool = True,
) -> list[Shot]:
    """Screenshot every page at every size into ``out_dir`` as ``<page>-<size>.png``.

    Raises CheckFailed naming the page, the size and the browser step that failed, or what to
    install when there is no browser.
    """
    executable = browser_executable()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        raise CheckFailed(_EXTRA) from None
    out_dir.mkdir(parents=True, exist_ok=True)
    work = _Capture(base, out_dir, masks, timeout, verify)
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, timeout=timeout * 1000)
            try:
                return [shot for size in sizes for shot in work.size(browser, size, pages)]
            finally:
                browser.close()
    except CheckFailed:
        raise
    except Exception as exc:
        raise CheckFailed(f"visual.check: the browser ({executable}) failed: {_first_line(exc)}") from None
