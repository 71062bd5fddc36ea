"""How ``maint`` shows a run: plain lines, JSON lines, a live view, or GitHub Actions output.

:func:`choose_reporter` is the one place that decides which.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

import click

from maintkit.cli.reporters.base import Reporter, use_color
from maintkit.cli.reporters.github import GitHubReporter, in_github_actions
from maintkit.cli.reporters.jsonlines import JsonReporter
from maintkit.cli.reporters.live import LiveReporter
from maintkit.cli.reporters.plain import PlainReporter


def choose_reporter(
    *,
    as_json: bool,
    check: bool,
    diff: bool,
    environ: Mapping[str, str] | None = None,
    tty: bool | None = None,
    verbosity: int = 0,
    no_color: bool = False,
) -> Reporter:
    """The reporter that suits this process's stdout.

    - In GitHub Actions (``GITHUB_ACTIONS=true``): log groups, annotations, job summary and
      outputs, around plain lines (or JSON lines with ``as_json``).
    - ``as_json``: JSON lines.
    - A terminal (``tty``, default: stdout is one) without ``MAINT_PLAIN``, ``-q`` or ``-v``: a
      live view, when rich can be imported.
    - Otherwise plain lines (``verbosity`` -1 to 2; colours by :func:`use_color`).
    """
    env = os.environ if environ is None else environ
    terminal = sys.stdout.isatty() if tty is None else tty
    color = use_color(no_color, env, terminal)
    ctx = click.get_current_context(silent=True)
    if ctx is not None:  # click.echo keeps (or strips) colours by this, also when stdout is a pipe
        ctx.color = color
    if in_github_actions(env):
        inner: Reporter = (
            JsonReporter(check=check, diff=diff)
            if as_json
            else PlainReporter(check=check, diff=diff, verbosity=verbosity, color=color)
        )
        return GitHubReporter(inner, environ=env)
    if as_json:
        return JsonReporter(check=check, diff=diff)
    if terminal and env.get("MAINT_PLAIN") is None and verbosity == 0:
        try:
            return LiveReporter(check=check, diff=diff, verbosity=verbosity, color=color)
        except ImportError:  # rich is not installed
            pass
    return PlainReporter(check=check, diff=diff, verbosity=verbosity, color=color)


__all__ = ["GitHubReporter", "JsonReporter", "LiveReporter", "PlainReporter", "Reporter", "choose_reporter"]
