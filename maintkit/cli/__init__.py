"""The ``maint`` command. The only part of maintkit that prints.

Heavy modules are imported inside the commands so that ``maint --help`` stays fast. This
package's own import is free: ``cli`` (the click group) and ``main`` (its entry point) are
loaded when first asked for, so the console script (:mod:`maintkit.cli.console`) can hand a
command to a running start-up daemon before click or any command is imported.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from maintkit.cli.main import cli, main

__all__ = ["cli", "main"]


def __getattr__(name: str) -> Any:
    """``cli`` and ``main``, from :mod:`maintkit.cli.main` (imported on first use)."""
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = importlib.import_module("maintkit.cli.main")
    # importing the submodule bound the name ``main`` here to it: bind the function, as before
    globals().update(cli=module.cli, main=module.main)
    return globals()[name]
