"""The composer driver's old import path; the driver lives in :mod:`maintkit.actions.cms.drivers.composer`."""

from __future__ import annotations

from maintkit.actions.cms.drivers.composer import PLATFORM_STEPS, ComposerDriver
from maintkit.actions.cms.drivers.composer_plan import parse_operations

__all__ = ["PLATFORM_STEPS", "ComposerDriver", "parse_operations"]
