"""How ``maint`` shows a run: plain lines, JSON lines, a live view, or GitHub Actions output.

:func:`choose_reporter` is the one place that decides which.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

from maintkit.cli.reporters.base import Reporter
from maintkit.cli.reporters.github import GitHubReporter, in_github_actions
from maintkit.cli.reporters.jsonlines import JsonReporter
from maintkit.cli.reporters.live import LiveReporter
from maintkit.cli.reporters.plain import PlainReporter


def choose_reporter(
    *, as_json: bool, check: bool, diff: bool, environ: Mapping[str, str] | None = None, tty: bool | None = None
) -> Reporter:
    """The reporter that suits this process's stdout.

    - In GitHub Actions (``GITHUB_ACTIONS=true``): log groups, annotations, job summary and
      outputs, around plain lines (or JSON lines with ``as_json``).
    - ``as_json``: JSON lines.
    - A terminal (``tty``, default: stdout is one) without ``MAINT_PLAIN``: a live view, when
      rich can be imported.
    - Otherwise plain lines.
    """
    env = os.environ if environ is None else environ
    if in_github_actions(env):
        inner: Reporter = JsonReporter(check=check, diff=diff) if as_json else PlainReporter(check=check, diff=diff)
        return GitHubReporter(inner, environ=env)
    if as_json:
        return JsonReporter(check=check, diff=diff)
    if (sys.stdout.isatty() if tty is None else tty) and env.get("MAINT_PLAIN") is None:
        try:
            return LiveReporter(check=check, diff=diff)
        except ImportError:  # rich is not installed
            pass
    return PlainReporter(check=check, diff=diff)


__all__ = ["GitHubReporter", "JsonReporter", "LiveReporter", "PlainReporter", "Reporter", "choose_reporter"]
