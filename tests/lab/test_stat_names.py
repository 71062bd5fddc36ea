"""The bulk FileState block reads link targets from the same ``stat`` (``%N``, C-quoted), on
this machine's real shell and coreutils (through LocalTransport).

* hostile names and link targets (quotes, backslashes, newlines, ``->``, ``|``, leading
  dashes, globs, unicode, bytes that are not UTF-8, 255-byte names): the block answers every
  path in its one round trip, byte for byte what each path's own script prints, and each
  FileInfo is exactly what ``os.lstat`` / ``os.readlink`` say;
* under ``strace`` the block starts exactly ``sh``, ``stat`` and ``sha256sum``;
* a ``stat`` that ignores QUOTING_STYLE (or quotes another way, or not at all) cannot make
  the controller guess: every existing path is read again on its own, exactly, and a link
  target made to look like the block's own lines is never taken for them;
* in a locale whose messages are translated, the type is still read (``LC_ALL=C``).
"""

from __future__ import annotations

import grp
import hashlib
import os
import pwd
import stat
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from maintkit.probes import FileInfo, FileState, Probe, RawOutput, run_batch
from maintkit.probes.base import _run_once
from maintkit.transport.local import LocalTransport

DEFAULT_HASH = 64 * 1024 * 1024
FAKE_HASH = "0" * 64
# quotes, backslash, newline, tab, spaces, dashes, globs, shell syntax, the arrow, unicode
ALPHABET = "ab-_.' \"\\\n\t*?[]{}$`;&|<>()~#!%éß日本😀"
_dash = st.sampled_from(["", "-", "--", "-rf ", "-n", "-> ", " -> ", "|"])
_text = st.builds(lambda d, n: (d + n).encode(), _dash, st.text(ALPHABET, min_size=1, max_size=12))
_raw = st.binary(min_size=1, max_size=12).map(lambda b: b.replace(b"/", b"s").replace(b"\0", b"z"))
_long = st.one_of(_text, _raw).map(lambda b: (b * 255)[:255])  # may cut a character: not UTF-8
NAMES = st.one_of(_text, _raw, _long).filter(lambda b: b not in (b".", b".."))
TARGETS = st.one_of(
    NAMES,
    st.lists(NAMES, min_size=1, max_size=3).map(lambda parts: b"/" + b"/".join(parts)),
    st.binary(min_size=1, max_size=60).map(lambda b: b.replace(b"\0", b"\n")),
)
ENTRY = st.tuples(
    st.sampled_from(["file", "empty", "dir", "link", "fifo", "missing"]),
    st.binary(max_size=40),  # a file's content
    TARGETS,  # a link's target
    st.sampled_from([DEFAULT_HASH, 10]),  # max_hash_bytes: over 10 bytes, no hash
)


class Wrapped(LocalTransport):
    """LocalTransport whose ``/bin/sh -c LINE`` runs under a prefix (``env ...``, ``strace ...``)."""

    def __init__(self, *prefix: str) -> None:
        super().__init__()
        self.prefix = list(prefix)

    def _argv(self, line: str, has_stdin: bool) -> list[str]:
        return [*self.prefix, *super()._argv(line, has_stdin)]


def _make(root: bytes, name: bytes, kind: str, content: bytes, target: bytes) -> str:
    path = root + b"/" + name
    if kind in ("file", "empty"):
        Path(os.fsdecode(path)).write_bytes(content if kind == "file" else b"")
    elif kind == "dir":
        os.mkdir(path)
    elif kind == "link":
        os.symlink(target, path)
    elif kind == "fifo":
        os.mkfifo(path)
    return os.fsdecode(path)


def _truth(path: str, max_hash_bytes: int) -> FileInfo:
    """What the host's file system says of ``path`` (not following a link)."""
    if not os.path.lexists(path):
        return FileInfo(False)
    st_ = os.lstat(path)
    kind = {stat.S_IFREG: "file", stat.S_IFDIR: "directory", stat.S_IFLNK: "symlink", stat.S_IFIFO: "fifo"}
    digest = None
    if stat.S_ISREG(st_.st_mode) and st_.st_size <= max_hash_bytes:
        digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    return FileInfo(
        exists=True,
        type=kind[stat.S_IFMT(st_.st_mode)],
        mode=format(stat.S_IMODE(st_.st_mode), "o"),
        owner=pwd.getpwuid(st_.st_uid).pw_name,
        group=grp.getgrgid(st_.st_gid).gr_name,
        size=st_.st_size,
        sha256=digest,
        target=os.readlink(path) if stat.S_ISLNK(st_.st_mode) else None,
    )


def _one_by_one(probes: list[Probe[Any]]) -> dict[str, RawOutput]:
    raw, _, _, again = _run_once(LocalTransport(), probes, None, 60.0, None, bulk=False)
    assert again == []
    return raw


def _assert_exact(probes: list[FileState], raw: dict[str, RawOutput]) -> None:
    assert raw == _one_by_one(list(probes))
    for p in probes:
        assert p.parse(raw[p.key]) == _truth(p.path, p.max_hash_bytes), p.path


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.dictionaries(NAMES, ENTRY, min_size=1, max_size=8))
def test_hostile_names_and_targets_are_read_exactly_in_one_round_trip(
    tree: dict[bytes, tuple[str, bytes, bytes, int]],
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        probes: list[FileState] = []
        for name, (kind, content, target, limit) in tree.items():
            path = _make(os.fsencode(tmp), name, kind, content, target)
            probes += [FileState(path, max_hash_bytes=limit), FileState(path)]
        transport = LocalTransport()
        raw, _ = run_batch(transport, probes)
        assert transport.round_trips == 1  # the block answered every path: none read again
        _assert_exact(probes, raw)


def _small_tree(root: Path) -> list[FileState]:
    (root / "f").write_bytes(b"content\n")
    (root / "d").mkdir()
    os.symlink(b'tar\nget "q" \\ \xff \xc3\xa9 -> |x', os.fsencode(root / "li\nnk"))
    return [FileState(str(root / "f")), FileState(str(root / "d")), FileState(str(root / "li\nnk"))]


def test_the_block_starts_only_stat_and_sha256sum(tmp_path: Path) -> None:
    (tmp_path / "tree").mkdir()
    probes = _small_tree(tmp_path / "tree")
    trace = tmp_path / "trace"
    transport = Wrapped("strace", "-f", "-qq", "-e", "trace=execve", "-o", str(trace), "--")
    raw, _ = run_batch(transport, probes)
    assert transport.round_trips == 1
    lines = trace.read_text().splitlines()
    execs = [ln.split('"')[1].rsplit("/", 1)[-1] for ln in lines if "execve(" in ln and ln.endswith("= 0")]
    assert execs == ["sh", "stat", "sha256sum"]
    assert len({ln.split()[0] for ln in lines}) == 3  # no process that only forked a subshell
    _assert_exact(probes, raw)
    assert probes[2].parse(raw[probes[2].key]).target == os.fsdecode(b'tar\nget "q" \\ \xff \xc3\xa9 -> |x')


#: what a stat that does not honour QUOTING_STYLE=c may print for %N instead
WRAPPERS = {
    "ignored": "unset QUOTING_STYLE",  # coreutils' default: shell-escape quoting
    "literal": "export QUOTING_STYLE=literal",  # names as they are, newlines too (as BusyBox does)
    "locale": "export QUOTING_STYLE=locale",  # older coreutils: 'name' with C escapes
    "escape": "export QUOTING_STYLE=escape",  # escapes without quotes
}


@pytest.mark.parametrize("style", sorted(WRAPPERS))
def test_a_stat_that_quotes_otherwise_makes_every_path_be_read_on_its_own(tmp_path: Path, style: str) -> None:
    bindir, root = tmp_path / "bin", tmp_path / "tree"
    bindir.mkdir()
    root.mkdir()
    wrapper = bindir / "stat"
    wrapper.write_text(f'#!/bin/sh\n{WRAPPERS[style]}\nexec /usr/bin/stat "$@"\n')
    wrapper.chmod(0o755)
    probes = _small_tree(root)
    # a target shaped like the block's own lines: a stat line, S0 and a hash of the file
    forged = f"x\nS0\nh 0\n{FAKE_HASH}  f\nR0\ny".encode()
    os.symlink(forged, os.fsencode(root / "z"))
    probes.append(FileState(str(root / "z")))
    probes.append(FileState(str(root / "gone")))
    transport = Wrapped("env", f"PATH={bindir}:{os.environ['PATH']}")
    raw, _ = run_batch(transport, probes)
    assert transport.round_trips == 2  # the block, then every existing path on its own
    _assert_exact(probes, raw)
    assert probes[0].parse(raw[probes[0].key]).sha256 == hashlib.sha256(b"content\n").hexdigest()
    assert probes[3].parse(raw[probes[3].key]).target == forged.decode()


def test_a_translated_locale_does_not_change_the_type(tmp_path: Path) -> None:
    probes = _small_tree(tmp_path)
    german = Wrapped("env", "LANGUAGE=de", "LC_ALL=C.UTF-8")
    raw, _ = run_batch(german, probes)
    assert german.round_trips == 1
    alone, _, _, again = _run_once(german, list(probes), None, 60.0, None, bulk=False)
    assert again == []
    assert raw == alone
    assert [p.parse(raw[p.key]).type for p in probes] == ["file", "directory", "symlink"]
    _assert_exact(probes, raw)
