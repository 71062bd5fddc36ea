"""``maintenance.enable`` / ``maintenance.disable``: put a shop into maintenance mode and out again.

Markers (a marker "is on" while its file exists):

- ``flag``: a generic flag file, by default ``<path>/.maint/maintenance.flag``; nginx answers
  ``503`` with ``Retry-After`` while it exists (see the snippet in docs/actions-site.md);
- ``wordpress``: ``<ABSPATH>/.maintenance`` containing ``<?php $upgrading = time(); ?>``;
- ``magento``: ``<root>/var/.maintenance.flag``;
- ``laravel``: ``php artisan down`` / ``php artisan up`` (state: ``storage/framework/down``).

The application is found under ``root`` when given, else under ``<path>/current`` when that
exists (release layouts), else under ``<path>``. ``platform: auto`` uses the environment's
platform and, for ``composer``/``generic`` sites, the files it finds (``bin/magento``,
``artisan``, ``wp-load.php``).

``maintenance.enable`` switches maintenance off again in ``rollback`` and in ``finalize``
(at the end of the stage, also after a failure or an interrupt), so a run never leaves a
shop in maintenance; ``keep: true`` keeps it on after a successful stage only.

Ownership: ``maintenance.enable`` records which run switched maintenance on in
``<path>/.maint/maintenance.json`` (run id, controller, pid and its start time, the markers,
and ``kept`` once ``keep: true`` left it on on purpose). A run that was killed cannot switch
maintenance off; the next run that finds such a record, from a run that is known to be gone
(see :func:`maintkit.locks.liveness`: it no longer holds the lock, its summary exists, or its
process on this controller is gone), takes the markers over (``maintenance.enable``: switched
off at the end of its stage) or switches them off (``maintenance.disable``), and says so in
the step reason and a ``maintenance.leftover`` audit event.
"""

from __future__ import annotations

from maintkit.actions.maintenance.actions import (
    MaintenanceDisable,
    MaintenanceDisableParams,
    MaintenanceEnable,
    MaintenanceEnableParams,
)
from maintkit.actions.maintenance.markers import (
    DEFAULT_FLAG,
    WP_MAINTENANCE,
    MaintenanceParams,
    Marker,
    MarkerKind,
    flag_path,
    maintenance_snippet,
    markers_for,
    site_probe,
    switch_off,
    switch_on,
)
from maintkit.actions.maintenance.ownership import (
    OWNER_FILE,
    Leftover,
    find_leftover,
    owner_path,
    recorded_markers,
    switch_off_leftover,
)
from maintkit.actions.maintenance.platforms import APP_MARKERS, App, AppKind, PlatformChoice, detect_app, layout_probe
from maintkit.probes.maintenance import ExistingPaths, Ownership, OwnershipProbe

__all__ = [
    "APP_MARKERS",
    "DEFAULT_FLAG",
    "OWNER_FILE",
    "WP_MAINTENANCE",
    "App",
    "AppKind",
    "ExistingPaths",
    "Leftover",
    "MaintenanceDisable",
    "MaintenanceDisableParams",
    "MaintenanceEnable",
    "MaintenanceEnableParams",
    "MaintenanceParams",
    "Marker",
    "MarkerKind",
    "Ownership",
    "OwnershipProbe",
    "PlatformChoice",
    "detect_app",
    "find_leftover",
    "flag_path",
    "layout_probe",
    "maintenance_snippet",
    "markers_for",
    "owner_path",
    "recorded_markers",
    "site_probe",
    "switch_off",
    "switch_off_leftover",
    "switch_on",
]
