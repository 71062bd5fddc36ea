"""Probes of the cms family (``cms.update``).

:data:`WP_CLI_PROBE` reads whether wp-cli is installed on the host and its version line
(empty output when it is not); ``cms.update`` reports it with the WordPress facts. It is a
:class:`~maintkit.probes.CommandProbe`, so its raw output is the fact.
"""

from __future__ import annotations

from maintkit.probes import CommandProbe

WP_CLI_PROBE = CommandProbe(("sh", "-c", "command -v wp >/dev/null 2>&1 && wp --version 2>/dev/null || true"))

__all__ = ["WP_CLI_PROBE"]
