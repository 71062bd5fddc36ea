"""``staging.refresh``: staging as a fresh copy of production (database, files), with URLs rewritten
safely for PHP-serialized data, personal data anonymised, and the staging guards set."""

from maintkit.actions.staging.refresh import StagingRefresh

__all__ = ["StagingRefresh"]
