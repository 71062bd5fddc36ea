"""The preparation's upload from a here-document (``prepare_script(..., upload=(path, text))``), run by a
real ``sh`` and ``bash`` inside a round trip whose stdin another part reads: the file holds the
text to the byte (mode 0600), the folders are made, the stdin reaches the other part untouched,
and a text holding the end line is refused before anything is sent. Then several zips on one
stdin (``snapshot_script(..., size=...)``): each part takes exactly its own bytes, and a stdin
that ends early writes no file."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from maintkit.actions.cms.snapshots import prepare_script, prepared, snapshot_result, snapshot_script
from maintkit.actions.cms.trip import Part, Trip, trip_results, trip_script
from maintkit.probes.cms import HELPER_EOF, helper_source
from maintkit.results import CommandResult

MARK = "@@mk-" + "1" * 32
SHELLS = [s for s in ("sh", "bash") if shutil.which(s)]


def run(shell: str, parts: list[Part], stdin: bytes) -> Trip:
    proc = subprocess.run([shell, "-c", trip_script(MARK, parts)], input=stdin, capture_output=True, check=False)
    res = CommandResult("h", "trip", proc.returncode, proc.stdout.decode(), proc.stderr.decode())
    return trip_results(res, MARK, parts)


def scene(tmp: Path, text: str, shell: str, stdin: bytes = b"zip bytes\x00\xff\n") -> tuple[Path, Trip]:
    """The preparation writing ``text`` to ``.maint/helper.php`` from a here-document, then a
    part that copies the round trip's stdin to ``got.bin``."""
    parent, private = tmp / ".maint", tmp / ".maint" / "snapshots" / "run"
    target = parent / "helper.php"
    prep = prepare_script(
        str(private), parent=str(parent), dirs=[f"{private}/packages"], exists=[str(tmp / "upgrade")],
        upload=(str(target), text),
    )  # fmt: skip
    trip = run(shell, [Part(prep), Part(f"cat > '{tmp}/got.bin'", stdin=True)], stdin)
    return target, trip


@pytest.mark.parametrize("shell", SHELLS)
def test_the_helper_arrives_to_the_byte_and_stdin_stays_for_the_zip(tmp_path: Path, shell: str) -> None:
    text = helper_source().decode("utf-8")
    (tmp_path / "upgrade").mkdir()
    target, trip = scene(tmp_path, text, shell)
    assert [r.exit_code for r in trip.results] == [0, 0], trip.results
    assert target.read_bytes() == helper_source()
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / ".maint" / "snapshots" / "run").stat().st_mode) == 0o700
    assert (tmp_path / ".maint" / "snapshots" / "run" / "packages").is_dir()
    assert prepared(trip[0].stdout, exists=[str(tmp_path / "upgrade")]).existing == {str(tmp_path / "upgrade")}
    assert (tmp_path / "got.bin").read_bytes() == b"zip bytes\x00\xff\n"  # the here-document took none of it
    assert sorted(os.listdir(tmp_path / ".maint")) == ["helper.php", "snapshots"]  # no temporary file left


#: lines a shell might read as something: expansions, quotes, another here-document's end
HOSTILE = st.lists(
    st.one_of(
        st.sampled_from(["$HOME", "`id`", "$(touch pwned)", "'", '"', "\\", "EOF", "<<'X'", "X", " ", "", "\t-"]),
        st.text(st.characters(max_codepoint=127, blacklist_characters="\x00\r"), max_size=20),
        st.sampled_from(["M", "MA", "MAINTKIT_WP_HELPER_SOURCE_EN", f"{HELPER_EOF} ", f" {HELPER_EOF}"]),
    ),
    max_size=12,
)


@pytest.mark.parametrize("shell", SHELLS)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=HOSTILE, newline=st.booleans())
def test_any_text_but_the_end_line_is_written_as_it_is(
    tmp_path: Path, shell: str, lines: list[str], newline: bool
) -> None:
    text = "\n".join(lines) + ("\n" if newline and lines else "")
    if HELPER_EOF in text.split("\n"):
        return
    work = Path(tempfile.mkdtemp(dir=tmp_path))  # one per example: the fixture's folder is shared
    target, trip = scene(work, text, shell)
    assert trip[0].exit_code == 0, trip[0]
    body = text if text.endswith("\n") or not text else text + "\n"  # a here-document's lines end with one
    assert target.read_text() == body
    assert not (work / "pwned").exists() and not (Path.cwd() / "pwned").exists()


def test_a_text_that_is_not_ascii_is_refused(tmp_path: Path) -> None:
    """dash drops a byte >= 0x80 that follows the start of a line matching the end line's start
    (``MA\\xc3\\xa9`` arrives as ``MA\\xa9``): the here-document carries ASCII only, as the
    helper's source is."""
    broken = subprocess.run(["sh", "-c", "cat <<'MAINT'\nMA\u00e9\nMAINT\n"], capture_output=True, check=True).stdout
    assert helper_source().isascii()
    with pytest.raises(ValueError, match="must be ASCII"):
        prepare_script(str(tmp_path / "p"), parent=str(tmp_path), upload=(str(tmp_path / "h"), "MA\u00e9"), end="MAINT")
    if Path(os.path.realpath(shutil.which("sh") or "sh")).name == "dash":  # Debian's sh: the reason
        assert broken == b"MA\xa9\n"


def test_a_text_holding_the_end_line_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=HELPER_EOF):
        prepare_script(
            str(tmp_path / "p"),
            parent=str(tmp_path),
            upload=(str(tmp_path / "h"), f"a\n{HELPER_EOF}\nb"),
        )


@pytest.mark.parametrize("shell", SHELLS)
def test_zips_one_after_the_other_on_stdin_each_arrive_whole(tmp_path: Path, shell: str) -> None:
    zips = [os.urandom(70_000) + b"\n", b"", os.urandom(3) + b"'$(x)`"]  # one of them empty
    srcs = [tmp_path / f"pkg{i}" for i in range(3)]
    for src in srcs:
        src.mkdir()
        (src / "f.php").write_text("<?php\n")
    parts = [
        Part(snapshot_script(str(src), f"{tmp_path}/snap/{i}", upload=f"{tmp_path}/z{i}.zip", size=len(z)), stdin=True)
        for i, (src, z) in enumerate(zip(srcs, zips, strict=True))
    ]
    trip = run(shell, [*parts, Part(f"cat > '{tmp_path}/rest'", stdin=True)], b"".join(zips) + b"tail")
    assert [snapshot_result(r, str(s), upload="x") for r, s in zip(trip.results, srcs, strict=False)] == [True] * 3
    assert [(tmp_path / f"z{i}.zip").read_bytes() for i in range(3)] == zips
    assert all(stat.S_IMODE((tmp_path / f"z{i}.zip").stat().st_mode) == 0o600 for i in range(3))
    assert (tmp_path / "rest").read_bytes() == b"tail"  # nothing of the next reader's was taken


@pytest.mark.parametrize("shell", SHELLS)
def test_a_stdin_that_ends_early_writes_no_zip_and_copies_nothing(tmp_path: Path, shell: str) -> None:
    src = tmp_path / "pkg"
    src.mkdir()
    script = snapshot_script(str(src), f"{tmp_path}/snap/pkg", upload=f"{tmp_path}/z.zip", size=10)
    trip = run(shell, [Part(script, stdin=True)], b"short")
    assert trip[0].exit_code == 81 and f"cannot write {tmp_path}/z.zip" in trip[0].stderr
    assert sorted(os.listdir(tmp_path)) == ["pkg"]  # no zip, no temporary file, no snapshot
