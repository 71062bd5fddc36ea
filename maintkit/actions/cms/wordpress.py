"""The WordPress driver's old import path; the driver lives in :mod:`maintkit.actions.cms.drivers.wordpress`."""

from __future__ import annotations

from maintkit.actions.cms.drivers.wordpress import WordPressDriver
from maintkit.actions.cms.drivers.wordpress_state import WpState, read_zip_package

__all__ = ["WordPressDriver", "WpState", "read_zip_package"]
