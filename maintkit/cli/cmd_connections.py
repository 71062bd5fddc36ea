"""``maint connections``: the OpenSSH connections (``connection: openssh``) left open for later runs."""

from __future__ import annotations

import click

from maintkit.cli.common import die
from maintkit.results import ExitCode


@click.group("connections")
def command() -> None:
    """The connections that `connection: openssh` keeps open between runs.

    \b
    A live connection is already authenticated: anyone who can open its socket as your user
    can run commands on the host until it closes (control_persist idle seconds after its last
    command). They live in $XDG_CACHE_HOME/maintkit/ssh (default ~/.cache/maintkit/ssh, 0700).
    Exit status: 0 done, 2 bad input.
    """


@command.command("list")
def list_command() -> None:
    """Show the open connections: host, where it connects, age, master pid."""
    from maintkit.transport.openssh_control import control_dir, live_masters

    masters = live_masters(control_dir())
    if not masters:
        click.echo("no open connections")
        return
    for m in masters:
        click.echo(f"{m.host}  {m.target}  up {_age(m.age())}  pid {m.pid}")


@command.command("close")
@click.argument("host", required=False)
@click.option("--all", "close_all", is_flag=True, help="Close every open connection.")
def close_command(host: str | None, close_all: bool) -> None:
    """Close the open connections to HOST (as the inventory names it, or its address), or --all."""
    from maintkit.transport.openssh_control import close_master, control_dir, live_masters

    if close_all == (host is not None):
        die("error: give a HOST or --all (not both)", ExitCode.INPUT)
    masters = [m for m in live_masters(control_dir()) if close_all or host in (m.host, _address(m.target))]
    if not masters:
        click.echo("no open connections" if close_all else f"no open connection to {host}")
        return
    for m in masters:
        close_master(m.socket)
        click.echo(f"closed {m.host} ({m.target})")


def _address(target: str) -> str:
    """``user@host:port`` -> ``host``."""
    return target.rsplit("@", 1)[-1].rsplit(":", 1)[0]


def _age(seconds: float) -> str:
    """``42s``, ``3m05s``, ``2h07m``."""
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"
