"""The report as a PDF: the HTML page printed by headless Chromium (Playwright for Python).

Needs the ``browser`` extra (``pip install 'maintkit[browser]'``) and a Chromium on this
machine: ``MAINT_CHROMIUM`` names its executable, else the first of
:data:`maintkit._browser.CANDIDATES` (Playwright's own browser download is not needed). The
page is loaded with JavaScript off and every network request refused: the report is
self-contained, and a custom template cannot make the printer fetch anything.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from maintkit._browser import CANDIDATES, CHROMIUM_ARGS, INSTALL_HINT, NoChromium, chromium_executable
from maintkit.report.model import ReportError

_CANDIDATES = CANDIDATES  # a module attribute, so tests can point it elsewhere

__all__ = ["PdfError", "chromium_path", "html_to_pdf"]


class PdfError(ReportError):
    """The PDF cannot be made on this machine (no Playwright, no Chromium) or printing failed."""


def chromium_path() -> str:
    """The Chromium executable to print with; :class:`PdfError` naming what to install when there is none."""
    try:
        return chromium_executable(candidates=_CANDIDATES)
    except NoChromium as exc:
        raise PdfError(str(exc) or f"--pdf needs Chromium: {INSTALL_HINT}") from None


def _playwright() -> Any:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        raise PdfError(
            "--pdf needs the browser extra: pip install 'maintkit[browser]' (Playwright for Python)"
        ) from None
    return sync_playwright


def html_to_pdf(html: str, out: str | Path, *, timeout_s: float = 60.0) -> int:
    """Print ``html`` to the PDF file ``out`` (A4, backgrounds on); returns its size in bytes."""
    sync_playwright = _playwright()
    executable = chromium_path()
    target = Path(out)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, timeout=timeout_s * 1000)
            try:
                context = browser.new_context(java_script_enabled=False, offline=True)
                page = context.new_page()
                page.route("**/*", lambda route: route.abort())
                page.set_content(html, wait_until="load", timeout=timeout_s * 1000)
                page.pdf(path=str(tmp), format="A4", print_background=True, prefer_css_page_size=True)
            finally:
                browser.close()
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except PdfError:
        raise
    except Exception as exc:  # Playwright's errors (launch, timeout) are not maintkit's
        raise PdfError(f"--pdf: printing with {executable} failed: {type(exc).__name__}: {exc}") from None
    finally:
        tmp.unlink(missing_ok=True)
    return target.stat().st_size
