"""Ctrl-C and SIGTERM during a run: the handler only reports the signal; the run stops between steps."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from typing import Any


def install_stop_handlers(on_signal: Callable[[str], None], enabled: bool = True) -> Callable[[], None]:
    """Route SIGINT and SIGTERM to ``on_signal(name)``; returns the function that restores the old handlers.

    Does nothing (and restores nothing) when not ``enabled`` or outside the main thread,
    where Python cannot install signal handlers.
    """
    if not enabled or threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous: dict[int, Any] = {}

    def handler(signum: int, frame: Any) -> None:
        on_signal(signal.Signals(signum).name)

    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.signal(sig, handler)

    def restore() -> None:
        for sig, old in previous.items():
            signal.signal(sig, old)

    return restore


__all__ = ["install_stop_handlers"]
