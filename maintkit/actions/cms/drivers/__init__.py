"""The drivers of ``cms.update``: one per kind of platform, typed by the :class:`Driver` protocol.

``wordpress`` (:class:`WordPressDriver`) and ``composer`` (:class:`ComposerDriver`, for
composer, magento, shopware, laravel, drupal and bedrock). Shared plumbing is in
:mod:`~maintkit.actions.cms.drivers.base`.
"""

from __future__ import annotations

from maintkit.actions.cms.drivers.base import Driver, DriverBase
from maintkit.actions.cms.drivers.composer import ComposerDriver
from maintkit.actions.cms.drivers.wordpress import WordPressDriver

__all__ = ["ComposerDriver", "Driver", "DriverBase", "WordPressDriver"]
