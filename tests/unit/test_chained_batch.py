"""Several changes in one round trip (maintkit.probes.chained), run by real shells on this machine.

What is proven: a guard built from what the batch read (the bulk ``stat`` block, split per
path) passes on an unchanged tree of every kind of path, in dash and in bash; it stops the
round trip when anything it read differs (a content, a mode, a link target, a path that
appeared); a failing change ends the round trip with its status, and what comes after it is
not run; the probes are read once, after every change that ran (after a failing one too, and
after a guard stopped the round trip); stdin reaches the one segment that reads it; each
segment gets its own stdout and stderr. The runner's use of it over SSH is proven in tests/lab/test_chained_changes.py.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from maintkit.probes import FileState, MissingDirs, RawOutput, run_batch
from maintkit.probes.chained import Segment, run_chain
from maintkit.probes.files import ancestors
from maintkit.transport.base import quote
from maintkit.transport.local import LocalTransport

SHELLS = ["/bin/dash", "/bin/bash"]  # both on every Debian


class _Shell(LocalTransport):
    """The local transport with the script run by ``shell`` (dash or bash)."""

    def __init__(self, shell: str) -> None:
        super().__init__()
        self.shell = shell

    def run_shell(self, script: str, **kwargs):  # type: ignore[no-untyped-def]
        return super().run_shell(f"exec {self.shell} -c {quote(script)}", **kwargs)


def _tree(root: Path) -> list[FileState]:
    (root / "d").mkdir()
    (root / "d" / "f").write_text("content\n")
    (root / "d" / "empty").write_text("")
    (root / "odd name\n'x'").write_text("x")
    (root / "link").symlink_to("d/f")
    (root / "dangling").symlink_to("nowhere")
    names = ["d", "d/f", "d/empty", "odd name\n'x'", "link", "dangling", "missing"]
    return [FileState(str(root / n)) for n in names]


def _read(t: LocalTransport, probes: list[Any]) -> dict[str, RawOutput]:
    raw, _ = run_batch(t, probes)
    assert set(raw) == {p.key for p in probes}
    return raw


@pytest.mark.parametrize("shell", SHELLS)
def test_a_guard_from_the_bulk_read_passes_on_an_unchanged_tree_of_every_kind(tmp_path: Path, shell: str) -> None:
    t = _Shell(shell)
    probes: list[Any] = [*_tree(tmp_path), MissingDirs(str(tmp_path / "d/x/y"))]
    raw = _read(t, probes)
    guard = [(p, raw[p.key]) for p in probes]
    mark = tmp_path / "ran"
    segs = [Segment("true", []), Segment(f"touch -- {quote(str(mark))}", [probes[1]], guard)]
    first, second = run_chain(t, segs)
    assert (first.outcome, second.outcome) == ("done", "done")
    assert mark.exists()
    assert second.raw == {probes[1].key: raw[probes[1].key]}


@pytest.mark.parametrize(
    "change",
    [
        "printf 'other\\n' > d/f",  # a content
        "chmod 600 d/f",  # a mode
        "ln -sfn d/empty link",  # a link's target
        "echo new > missing",  # a path that appeared
        "rm -r d",  # a path that went
    ],
)
def test_a_guard_stops_the_round_trip_when_anything_it_read_differs(tmp_path: Path, change: str) -> None:
    t = LocalTransport()
    probes = _tree(tmp_path)
    raw = _read(t, probes)
    mark = tmp_path / "ran"
    segs = [
        Segment(f"cd -- {quote(str(tmp_path))} && {change}", probes),
        Segment(f"touch -- {quote(str(mark))}", [], [(p, raw[p.key]) for p in probes]),
        Segment(f"touch -- {quote(str(mark))}2", []),
    ]
    first, second, third = run_chain(t, segs)
    assert (first.outcome, second.outcome, third.outcome) == ("done", "skipped", "unreached")
    assert not mark.exists() and not Path(f"{mark}2").exists()
    assert first.raw.keys() == {p.key for p in probes}  # the first change's read is there for the runner


def test_a_failing_change_ends_the_round_trip_with_its_status_and_its_own_output(tmp_path: Path) -> None:
    t = LocalTransport()
    f = FileState(str(tmp_path / "a"))
    segs = [
        Segment("echo one; echo err-one >&2", [f]),
        Segment("echo two; echo err-two >&2; exit 7", [f]),
        Segment(f"touch -- {quote(str(tmp_path / 'never'))}", []),
    ]
    first, second, third = run_chain(t, segs)
    assert (first.outcome, second.outcome, third.outcome) == ("done", "failed", "unreached")
    assert (first.head, first.result.stdout, first.result.stderr, first.result.exit_code) == (
        "one\n",
        "one\n",
        "err-one\n",
        0,
    )
    assert first.raw == {f.key: RawOutput("MISSING\n", 0)}
    assert second.head == "__preamble_failed__:7\ntwo\n"
    assert (second.result.exit_code, second.result.stderr, second.raw) == (7, "err-two\n", {})
    assert not (tmp_path / "never").exists()


def test_stdin_reaches_the_one_segment_that_reads_it(tmp_path: Path) -> None:
    t = LocalTransport()
    out = tmp_path / "out"
    segs = [
        Segment(f"cat > {quote(str(tmp_path / 'first'))}", []),  # reads /dev/null
        Segment(f"cat > {quote(str(out))}", [FileState(str(out))], stdin=True),
    ]
    first, second = run_chain(t, segs, stdin=b"payload\n")
    assert (first.outcome, second.outcome) == ("done", "done")
    assert (tmp_path / "first").read_bytes() == b""
    assert out.read_bytes() == b"payload\n"
    with pytest.raises(ValueError, match="at most one segment"):
        run_chain(t, [Segment("true", [], stdin=True), Segment("true", [], stdin=True)])


def test_the_probes_are_read_once_after_every_change_that_ran(tmp_path: Path) -> None:
    t = LocalTransport()
    a, b = FileState(str(tmp_path / "a")), FileState(str(tmp_path / "b"))
    missing = RawOutput("MISSING\n", 0)
    segs = [
        Segment(f"echo one > {quote(a.path)}", [a, b]),
        Segment(f"echo two > {quote(b.path)}", [b], [(b, missing)]),
    ]
    first, second = run_chain(t, segs)
    assert (first.outcome, second.outcome) == ("done", "done")
    after = _read(t, [a, b])
    assert after[b.key] != missing
    assert first.raw == second.raw == after  # the first change's read comes after the second change too


def test_a_failing_change_still_leaves_the_read_of_what_ran_before_it(tmp_path: Path) -> None:
    t = LocalTransport()
    a = FileState(str(tmp_path / "a"))
    segs = [Segment(f"echo one > {quote(a.path)}", [a]), Segment(f"rm -- {quote(a.path)}; exit 7", [a])]
    first, second = run_chain(t, segs)
    assert (first.outcome, second.outcome) == ("done", "failed")
    assert first.raw == {a.key: RawOutput("MISSING\n", 0)}  # read after the failing change: it removed a
    assert (second.result.exit_code, second.raw) == (7, {})


@pytest.mark.parametrize("shell", SHELLS)
def test_a_guard_of_missing_dirs_stops_the_round_trip_when_a_folder_appeared(tmp_path: Path, shell: str) -> None:
    t = _Shell(shell)
    dirs = MissingDirs(str(tmp_path / "d" / "x" / "y"))
    (tmp_path / "d").mkdir()
    raw = _read(t, [dirs])
    mark = tmp_path / "ran"
    segs = [
        Segment(f"mkdir -- {quote(str(tmp_path / 'd' / 'x'))}", [dirs]),
        Segment(f"touch -- {quote(str(mark))}", [], [(dirs, raw[dirs.key])]),
    ]
    first, second = run_chain(t, segs)
    assert (first.outcome, second.outcome) == ("done", "skipped")
    assert not mark.exists()
    existing = len(ancestors(str(tmp_path / "d" / "x")))  # read after the change: d/x is there now
    assert first.raw == {dirs.key: RawOutput("".join(f"{i} " for i in range(existing)) + "END\n", 0)}


@pytest.mark.parametrize("shell", SHELLS)
def test_a_file_s_own_read_starts_one_stat(tmp_path: Path, shell: str) -> None:
    """A guard runs a present path's own script: one ``stat`` (the size to compare is its last
    field), then the hash; the output is the bulk read's, byte for byte."""
    shims, log = tmp_path / "bin", tmp_path / "calls"
    shims.mkdir()
    for name in ("stat", "sha256sum", "readlink"):
        (shims / name).write_text(f'#!/bin/sh\necho {name} >> {quote(str(log))}\nexec /usr/bin/{name} "$@"\n')
        (shims / name).chmod(0o755)
    (tmp_path / "f").write_text("content\n")
    probe = FileState(str(tmp_path / "f"))
    env = {"PATH": f"{shims}:/usr/bin:/bin"}
    done = subprocess.run([shell, "-c", probe.script()], capture_output=True, env=env, check=True)
    assert log.read_text().split() == ["stat", "sha256sum"]
    assert RawOutput(done.stdout.decode(), done.returncode) == _read(LocalTransport(), [probe])[probe.key]
