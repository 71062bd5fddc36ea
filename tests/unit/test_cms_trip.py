"""Several commands in one round trip (maintkit.actions.cms.trip), run by a real ``sh``: each part
read back with its own stdout, stderr and exit status, the parts after a failed one never run,
and a part cut off (the shell killed) told from one that ended (``Trip.ended``)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from maintkit.actions.cms.trip import NOT_RUN, Part, Trip, trip_results, trip_script
from maintkit.results import CommandResult

MARK = "@@mk-" + "0" * 32


def run(parts: list[Part], stdin: bytes = b"") -> tuple[Trip, int]:
    """Run the round trip's script with sh; what each part did, and the shell's exit status."""
    proc = subprocess.run(["sh", "-c", trip_script(MARK, parts)], input=stdin, capture_output=True, check=False)
    res = CommandResult("h", "trip", proc.returncode, proc.stdout.decode(), proc.stderr.decode())
    return trip_results(res, MARK, parts), proc.returncode


def test_each_part_has_its_own_output_and_status_and_only_one_reads_stdin() -> None:
    parts = [
        Part("echo first; printf 'no newline' >&2"),
        Part("cat; printf 'x\\ny'", stdin=True),
        Part("cat; echo 'err' >&2; exit 3", then="true"),  # an exit ends the part, not the shell
        Part(":"),
    ]
    trip, code = run(parts, b"the bytes\n")
    assert code == 0 and trip.ran == trip.ended == 4
    got = [(r.exit_code, r.stdout, r.stderr) for r in trip.results]
    assert got == [(0, "first\n", "no newline"), (0, "the bytes\nx\ny", ""), (3, "", "err\n"), (0, "", "")]
    assert [r.command for r in trip.results] == [p.script for p in parts]


def test_a_failed_part_stops_the_shell_and_the_rest_never_runs(tmp_path: Path) -> None:
    mark = tmp_path / "ran"
    parts = [Part("echo ok"), Part("echo 'cannot' >&2; exit 4"), Part(f"touch '{mark}'")]
    trip, code = run(parts)
    assert code == 4 and trip.ran == trip.ended == 2 and not trip.started(2) and not mark.exists()
    assert (trip[1].exit_code, trip[1].stderr) == (4, "cannot\n")
    assert (trip[2].exit_code, trip[2].stdout, trip[2].stderr) == (1, "", NOT_RUN)


def test_a_test_that_fails_after_success_stops_the_shell_too(tmp_path: Path) -> None:
    written = tmp_path / "written"
    parts = [Part("echo answered", then=f"[ -f '{written}' ]"), Part("echo never")]
    trip, code = run(parts)
    assert code == 1 and trip.ran == trip.ended == 1 and trip[0].stdout == "answered\n" and trip[1].stderr == NOT_RUN
    written.touch()
    trip, code = run(parts)
    assert code == 0 and trip.ran == 2 and trip[1].stdout == "never\n"


def test_the_part_running_when_the_round_trip_ended_gets_what_was_left() -> None:
    parts = [Part("echo one"), Part("echo partial; echo 'dying' >&2; kill -9 $$"), Part("echo never")]
    trip, code = run(parts)
    assert code == -9 and trip.ran == 2 and trip.ended == 1  # the second part was cut off
    assert (trip[0].exit_code, trip[0].stdout) == (0, "one\n")
    assert (trip[1].exit_code, trip[1].stdout, trip[1].stderr) == (-9, "partial\n", "dying\n")
    assert trip[2].stderr == NOT_RUN


def test_output_that_looks_like_a_frame_without_the_marker_is_the_part_s_own() -> None:
    parts = [Part("printf '\\n@@mk-%s 0 0\\n' other; echo done")]
    trip, _ = run(parts)
    assert trip[0].stdout == "\n@@mk-other 0 0\ndone\n" and trip[0].exit_code == 0
