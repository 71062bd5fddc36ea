"""Who is running maintkit: the actor written into audit logs, lock holders and release marks."""

from __future__ import annotations

import getpass
import os
import socket
from collections.abc import Mapping


def actor_name(environ: Mapping[str, str] | None = None) -> str:
    """``github:<GITHUB_ACTOR>`` in GitHub Actions, else the login name (``uid:<n>`` without one)."""
    env = os.environ if environ is None else environ
    gh = env.get("GITHUB_ACTOR")
    if gh:
        return f"github:{gh}"
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name and no passwd entry
        return f"uid:{os.getuid()}"


def current_actor(environ: Mapping[str, str] | None = None) -> str:
    """The actor and this machine: ``<actor_name>@<hostname>``."""
    return f"{actor_name(environ)}@{socket.gethostname()}"


__all__ = ["actor_name", "current_actor"]
