"""The ``maint`` command. The only part of maintkit that prints.

Heavy modules are imported inside the commands so that ``maint --help`` stays fast.
"""

from __future__ import annotations

from maintkit.cli.main import cli, main

__all__ = ["cli", "main"]
