"""``deploy.release`` and ``deploy.rollback``: git deploys into a release layout with an atomic switch.

Layout on the host (``P`` is the environment's path)::

    P/releases/<UTC time>-<sha7>/   one directory per release, with .maint-release.json once complete
    P/shared/                       files and directories linked into every release
    P/current -> releases/<name>    switched atomically (new symlink, then mv -T)
    P/.maint/releases.jsonl         the releases log: one JSON object per line
    P/.maint/repo                   cached bare clone (transfer: clone)

The ref is resolved to a commit on the controller (GitPython), once per run; that commit is
what is deployed and recorded. Code reaches the host either from a cached clone on the host
(``transfer: clone``) or, when the host cannot reach the repository, as ``git archive``
streamed from the controller over SSH into ``tar -x`` (``transfer: archive``, the default
for a repository that is a local path on the controller).

Releases log statuses: ``deployed`` (the release became current by a deploy),
``rolled-back`` (it became current again by a rollback) and ``bad`` (it was rolled back
from; it is never chosen again). A release's status is its latest entry. Rollback and
cleanup only read and change files: they never ask the application anything, so they work
when the application is fatally broken.

Modules: ``params`` (the parameter models), ``git`` (the controller's git: refs, mirrors),
``layout`` (paths, releases log, the switch of ``current``), ``host`` (commands on the host),
``build`` (filling a new release), ``release`` and ``rollback`` (the two actions). The
layout probe and its facts live in :mod:`maintkit.probes.deploy`.
"""

from maintkit.actions.deploy.git import GIT_ENV, display_url, local_repo_path, resolve_commit
from maintkit.actions.deploy.host import stop_requested
from maintkit.actions.deploy.layout import append_log, log_after_switch, run_after_switch, switch_current
from maintkit.actions.deploy.params import Command, DeployReleaseParams, DeployRollbackParams
from maintkit.actions.deploy.release import DeployRelease
from maintkit.actions.deploy.rollback import DeployRollback
from maintkit.probes.deploy import LOG, MARKER, DeployState, Release, ReleaseLayout

__all__ = [
    "GIT_ENV",
    "LOG",
    "MARKER",
    "Command",
    "DeployRelease",
    "DeployReleaseParams",
    "DeployRollback",
    "DeployRollbackParams",
    "DeployState",
    "Release",
    "ReleaseLayout",
    "append_log",
    "display_url",
    "local_repo_path",
    "log_after_switch",
    "resolve_commit",
    "run_after_switch",
    "stop_requested",
    "switch_current",
]
