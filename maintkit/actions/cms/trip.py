"""Several commands of ``cms.update`` (and compat.check's host reads) in ONE round trip, each
read back as if it had run alone.

Every round trip opens an SSH session (sshd and the login shell cost the host several ms of
CPU), so commands an update sends one after the other go in one shell where nothing has to be
decided on the controller between them. Each :class:`Part` runs in a subshell of its own (it may
``exit``), reading the round trip's stdin only when it says so (else ``/dev/null``). After it,
a line holding a random marker (:func:`~maintkit.transport.base.output_marker`) ends its stdout,
with its exit status, and another ends its stderr. The next part runs only when the part's
``then`` (a shell test of ``$rc``, its exit status) holds; otherwise the shell says so on
stdout and stops there, with that status (1 when the test failed after status 0).

:func:`trip_results` cuts the output back into one :class:`~maintkit.results.CommandResult` per
part, holding the part's own stdout, stderr and exit status: each part is read by the same code
as when it ran alone, and the caller reads them in order, stopping at the first that failed.
A part without its line that was running when the round trip ended (a timeout, a lost
connection) gets what was left of the output and the round trip's exit status; a part after it,
or after a ``then`` that stopped the shell, never ran: exit status 1 and :data:`NOT_RUN` on
stderr (:attr:`Trip.ran` counts the parts that started).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from maintkit.action import Context
from maintkit.results import CommandResult
from maintkit.transport.base import output_marker

#: what a part that never ran answers on stderr (exit status 1, nothing on stdout)
NOT_RUN = "not run: the round trip ended before it"


@dataclass(frozen=True)
class Part:
    """One command of a round trip: its shell script, when the next part may run (a test of
    ``$rc``, this part's exit status), and whether it reads the round trip's stdin."""

    script: str
    then: str = '[ "$rc" -eq 0 ]'
    stdin: bool = False


@dataclass(frozen=True)
class Trip:
    """What a round trip of parts did: one result per part, how many of them started (the first
    ``ran``; a part after them never ran and answers :data:`NOT_RUN`) and how many reported their
    end (the first ``ended``; a part after them that started was cut off: a timeout, a lost
    connection, a shell that was killed)."""

    results: list[CommandResult]
    ran: int
    ended: int

    def __getitem__(self, index: int) -> CommandResult:
        return self.results[index]

    def started(self, index: int) -> bool:
        """Whether part ``index`` ran (or was running when the round trip ended)."""
        return index < self.ran


def trip_script(marker: str, parts: Sequence[Part]) -> str:
    """The shell running ``parts`` in order, each framed by ``marker`` (see :func:`trip_results`)."""
    out = []
    for i, part in enumerate(parts):
        feed = "" if part.stdin else " </dev/null"
        out.append(
            f"( {part.script}\n){feed}\nrc=$?\n"
            f"printf '\\n%s %s %s\\n' {marker} {i} \"$rc\"; printf '\\n%s %s\\n' {marker} {i} >&2\n"
        )
        if i < len(parts) - 1:
            stop = f'[ "$rc" -eq 0 ] && rc=1; echo {marker} stop; exit "$rc"'
            out.append(f"{{ {part.then}\n}} || {{ {stop}; }}\n")
    return "".join(out)


def trip_results(result: CommandResult, marker: str, parts: Sequence[Part], stdout: str | None = None) -> Trip:
    """Each part's result out of the round trip's ``result`` (``stdout``: the script's own
    stdout when the round trip printed more after it; see the module's docstring)."""
    out_rest, err_rest = result.stdout if stdout is None else stdout, result.stderr
    results: list[CommandResult] = []
    for i, part in enumerate(parts):
        chunk, sep, after = out_rest.partition(f"\n{marker} {i} ")
        status, _, after = after.partition("\n")
        if not sep or not status.isdigit():
            break
        err, _, err_rest = err_rest.partition(f"\n{marker} {i}\n")
        results.append(CommandResult(result.host, part.script, int(status), chunk, err))
        out_rest = after
    ended = len(results)
    stopped = out_rest.startswith(f"{marker} stop\n")
    for part in parts[len(results) : len(results) + (0 if stopped else 1)]:  # running when the round trip ended
        code, timed_out = result.exit_code, result.timed_out
        results.append(CommandResult(result.host, part.script, code, out_rest, err_rest, timed_out=timed_out))
    ran = len(results)
    results += [CommandResult(result.host, part.script, 1, "", NOT_RUN) for part in parts[ran:]]
    return Trip(results, ran, ended)


def command_timeout(ctx: Context) -> float:
    """Seconds one command may take on the environment's host (its transport's default)."""
    return ctx.env.command_timeout or 600.0


def run_trip(ctx: Context, parts: Sequence[Part], *, timeout: float, stdin: bytes | None = None) -> Trip:
    """Run ``parts`` in ONE round trip (at most ``timeout`` seconds in all)."""
    marker = output_marker()
    res = ctx.run_shell(trip_script(marker, parts), check=False, stdin=stdin, timeout=timeout)
    return trip_results(res, marker, parts)


__all__ = ["NOT_RUN", "Part", "Trip", "command_timeout", "run_trip", "trip_results", "trip_script"]
