"""The ``maint`` console script: a running start-up daemon takes the command, else it runs here.

Before click or any command is imported, :func:`maintkit.cli.daemon_path.offered_socket` looks
for this user's ``maint daemon`` of this installation (one ``stat``; it imports only ``os`` and
``zlib``) and, when one is there, :func:`maintkit.cli.daemon_client.hand_over` offers it the
command. ``MAINT_DAEMON=0`` skips it. The commands themselves are
:func:`maintkit.cli.main.main`.
"""

from __future__ import annotations

import os
import sys

__all__ = ["main"]


def main() -> None:
    """Entry point of the ``maint`` console script."""
    from maintkit.cli.daemon_path import offered_socket

    path = offered_socket(sys.argv, os.environ)
    if path is not None:
        from maintkit.cli.daemon_client import LOST, hand_over

        try:
            status = hand_over(sys.argv, os.environ, path)
        except KeyboardInterrupt:  # before the run could take the signals: the daemon stops it (its caller is gone)
            sys.stderr.write("interrupted\n")
            sys.exit(LOST)
        if status is not None:
            sys.exit(status)
    from maintkit.cli.main import main as run_here

    run_here()
