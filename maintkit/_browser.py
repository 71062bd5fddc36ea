"""This machine's Chromium for headless work (the report's PDF, visual.check's screenshots).

Playwright's own browser download is never used: ``MAINT_CHROMIUM`` names the executable, else
the first of :data:`CANDIDATES` found. :data:`CHROMIUM_ARGS` are the flags every launch uses.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping

#: the flags of every headless launch (no sandbox as root, no GPU, nothing fetched in the background)
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: where Chromium is looked for when ``MAINT_CHROMIUM`` is not set (paths, then names on PATH)
CANDIDATES = ("/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome")
#: what to do when there is none
INSTALL_HINT = "install it (Debian: apt-get install chromium) or set MAINT_CHROMIUM to its executable"


class NoChromium(LookupError):
    """No usable Chromium: the message says why (``MAINT_CHROMIUM`` wrong, or none installed)."""


def chromium_executable(environ: Mapping[str, str] | None = None, candidates: tuple[str, ...] = CANDIDATES) -> str:
    """The Chromium executable to launch; :class:`NoChromium` when there is none.

    The message is ``MAINT_CHROMIUM=X is not an executable file`` or ``""`` (none found: callers say
    who needs it, followed by :data:`INSTALL_HINT`).
    """
    named = (os.environ if environ is None else environ).get("MAINT_CHROMIUM")
    if named:
        if not (os.path.isfile(named) and os.access(named, os.X_OK)):
            raise NoChromium(f"MAINT_CHROMIUM={named} is not an executable file")
        return named
    for name in candidates:
        found = shutil.which(name)
        if found:
            return found
    raise NoChromium("")


__all__ = ["CANDIDATES", "CHROMIUM_ARGS", "INSTALL_HINT", "NoChromium", "chromium_executable"]
