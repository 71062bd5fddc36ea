"""``maint daemon``: start, stop and look at the start-up daemon (:mod:`.daemon_server`)."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time

import click

from maintkit.cli.common import die
from maintkit.results import ExitCode

#: the longest socket path a Unix socket takes (sun_path, less its final NUL)
MAX_SOCKET_PATH = 107
#: seconds ``stop`` waits for an idle daemon to exit
STOP_WAIT = 30.0


@click.group("daemon")
def command() -> None:
    """A warm start for maint: its code loaded once, each command a fresh fork of it.

    \b
    While it runs, every maint command of yours (of this installation) is handed to it and
    starts about 0.15 s sooner; the command runs as your own process would: your arguments,
    environment, folder, umask, terminal and signals, its exit status. It holds no connection,
    secret or state of a run: each command starts from a fork made before any ran. It stops
    when idle (--idle), when maintkit's files change, or on `maint daemon stop`.
    MAINT_DAEMON=0 runs a command without it. Its socket lives in
    $XDG_CACHE_HOME/maintkit/daemon (default ~/.cache/maintkit/daemon, 0700).
    Exit status: 0 done, 1 it failed to start, 2 bad input.
    """


@command.command("start")
@click.option(
    "--idle", type=click.FloatRange(min=0), default=600.0, show_default=True,
    help="Stop after this many seconds without a command (0: never).",
)  # fmt: skip
def start_command(idle: float) -> None:
    """Start the daemon (nothing happens when it already runs)."""
    from maintkit._private_dir import make_private_dir
    from maintkit.cli.daemon_client import request
    from maintkit.cli.daemon_wire import daemon_dir, socket_path

    running = request("status", os.environ)
    if running:
        click.echo(f"already running (pid {running.get('pid')})")
        return
    folder, path = daemon_dir(os.environ), socket_path(os.environ)
    problem = make_private_dir(folder)
    if problem:
        die(f"error: refusing the daemon folder {folder}: {problem}", ExitCode.FAILED)
    if len(os.fsencode(path)) > MAX_SOCKET_PATH:
        die(f"error: the socket path {path} is too long for a Unix socket; set XDG_CACHE_HOME shorter", ExitCode.INPUT)
    pid = _spawn(folder, path, idle)
    click.echo(f"started (pid {pid}, socket {path})")


def _spawn(folder: str, path: str, idle: float) -> int:
    """Start the daemon in a session of its own; its pid once it listens (it says so on a pipe)."""
    log_path = os.path.join(folder, "daemon.log")
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
    read_end, write_end = os.pipe()
    argv = [sys.executable, "-m", "maintkit.cli.daemon_server", "--socket", path, "--idle", str(idle)]
    try:
        proc = subprocess.Popen(
            [*argv, "--ready-fd", str(write_end)], stdin=subprocess.DEVNULL, stdout=log, stderr=log,
            pass_fds=(write_end,), start_new_session=True, cwd="/", env=_daemon_env(os.environ),
        )  # fmt: skip
    finally:
        os.close(write_end)
        os.close(log)
    with os.fdopen(read_end, "rb") as ready:
        said = ready.read().decode(errors="replace").strip()
    if said.isdigit():
        return int(said)
    code = proc.wait()
    with open(log_path, errors="replace") as f:
        tail = "".join(f.readlines()[-10:])
    die(f"error: the daemon did not start (exit {code}); the end of {log_path}:\n{tail}", ExitCode.FAILED)


#: what the daemon keeps of the environment it is started from: what finding and loading its
#: code needs, and what shapes Python's start-up (each command brings its own environment, and
#: is handed over only when its Python started the same way; secrets stay out of the daemon)
KEPT_ENV = ("PATH", "HOME", "LANG", "LANGUAGE", "TZ", "XDG_CACHE_HOME", "VIRTUAL_ENV")


def _daemon_env(environ: dict[str, str] | os._Environ[str]) -> dict[str, str]:
    """The daemon's own environment: :data:`KEPT_ENV`, the ``LC_*`` and ``PYTHON*`` variables."""
    return {k: v for k, v in environ.items() if k in KEPT_ENV or k.startswith(("LC_", "PYTHON"))}


@command.command("stop")
def stop_command() -> None:
    """Stop the daemon: it takes no more commands and exits once the runs under way have ended."""
    from maintkit.cli.daemon_client import request

    answer = request("stop", os.environ)
    if not answer:
        click.echo("not running")
        return
    running, pid = int(answer.get("running") or 0), int(answer.get("pid") or 0)
    if running:
        click.echo(f"stopping (pid {pid}): it exits after the {running} run(s) under way")
        return
    if pid:
        _wait_gone(pid)
    click.echo(f"stopped (pid {pid})")


def _wait_gone(pid: int) -> None:
    """Wait (at most :data:`STOP_WAIT`) until process ``pid`` has exited."""
    try:
        fd = os.pidfd_open(pid)
    except OSError:
        return
    try:
        select.select([fd], [], [], STOP_WAIT)
    finally:
        os.close(fd)


def _idle_text(answer: dict[str, object]) -> str:
    """``never``, ``in 412s`` or ``once the runs under way have ended``."""
    left = answer.get("idle_left")
    if isinstance(left, (int, float)):
        return f"in {left:.0f}s"
    return "once the runs under way have ended" if answer.get("idle") else "never"


@command.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
def status_command(as_json: bool) -> None:
    """Say whether the daemon runs, since when, and how many commands it has taken."""
    from maintkit.cli.daemon_client import request

    answer = request("status", os.environ)
    if as_json:
        click.echo(json.dumps(answer or {"ok": False}, indent=2, sort_keys=True))
        return
    if not answer:
        click.echo("not running")
        return
    up = time.time() - float(answer.get("started") or time.time())
    click.echo(f"running (pid {answer.get('pid')}), up {up:.0f}s, {answer.get('served')} command(s) taken")
    click.echo(f"  runs under way: {answer.get('running')}")
    last = answer.get("last_run")
    if isinstance(last, dict):
        click.echo(
            f"  last run: pid {last.get('pid')}, exit {last.get('exit')}, {last.get('cpu_s')} s CPU, "
            f"peak memory {last.get('max_rss_mb')} MB"
        )
    click.echo(f"  stops when idle: {_idle_text(answer)}")
    click.echo(f"  socket: {answer.get('socket')}")
    click.echo(f"  maintkit {answer.get('version')} in {answer.get('package')} (python {answer.get('python')})")
