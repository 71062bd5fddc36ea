"""A guard's shell-builtin tests (``Probe.same_test``), run by real shells on this machine.

What is proven: for a path that was missing (FileState) and for the ancestors of a path
(MissingDirs), the test a chained round trip's guard runs instead of the probe's script is true
exactly when the script prints again what it printed, for hostile names, in dash and in bash,
whatever appeared or went meanwhile (a file, a directory, a dangling link); and a probe output it
cannot decide by builtins gets no test (the guard runs the script then).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from maintkit.probes import FileState, MissingDirs, RawOutput
from maintkit.probes.base import Probe
from tests.hostile_names import hostile_names

SHELLS = ["/bin/dash", "/bin/bash"]


def _script_output(probe: Probe[object], shell: str) -> RawOutput:
    done = subprocess.run([shell, "-c", probe.script()], capture_output=True, check=False)
    return RawOutput(done.stdout.decode("utf-8", "surrogateescape"), done.returncode)


def _holds(test: str, shell: str) -> bool:
    return subprocess.run([shell, "-c", test], capture_output=True, check=False).returncode == 0


def _make(path: Path, kind: str) -> None:
    if kind == "file":
        path.write_text("x")
    elif kind == "dir":
        path.mkdir()
    elif kind == "dangling link":
        path.symlink_to("nowhere at all")


KINDS = ["missing", "file", "dir", "dangling link"]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=hostile_names(), before=st.sampled_from(KINDS), after=st.sampled_from(KINDS))
def test_a_missing_path_s_test_holds_exactly_when_the_script_prints_the_same(
    tmp_path: Path, name: str, before: str, after: str
) -> None:
    root = tmp_path / "t"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir()
    path = root / name
    probe = FileState(str(path))
    for shell in SHELLS:
        _make(path, before)
        raw = _script_output(probe, shell)
        test = probe.same_test(raw)
        assert (test is not None) == (before == "missing")  # only a missing path is decided by builtins
        if test is not None:
            shutil.rmtree(root)
            root.mkdir()
            _make(path, after)
            assert _holds(test, shell) == (_script_output(probe, shell) == raw) == (after == "missing")
        shutil.rmtree(root)
        root.mkdir()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    names=st.lists(hostile_names(), min_size=1, max_size=3),
    before=st.integers(min_value=0, max_value=3),
    after=st.integers(min_value=0, max_value=3),
    last=st.sampled_from(["dir", "file", "dangling link"]),
)
def test_missing_dirs_test_holds_exactly_when_the_script_prints_the_same(
    tmp_path: Path, names: list[str], before: int, after: int, last: str
) -> None:
    root = tmp_path / "t"
    target = root.joinpath(*names)
    probe = MissingDirs(str(target))
    chain = [root.joinpath(*names[: i + 1]) for i in range(len(names))]

    def build(depth: int) -> None:  # the first ``depth`` components exist (the deepest may be `last`)
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir()
        for i, p in enumerate(chain[:depth]):
            _make(p, last if i == depth - 1 and i == len(chain) - 1 else "dir")

    for shell in SHELLS:
        build(before)
        raw = _script_output(probe, shell)
        test = probe.same_test(raw)
        assert test is not None
        build(after)
        assert _holds(test, shell) == (_script_output(probe, shell) == raw)
        assert _holds(test, shell) == (min(after, len(chain)) == min(before, len(chain)))


def test_outputs_the_builtins_cannot_decide_get_no_test(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    f = FileState(str(tmp_path / "f"))
    assert f.same_test(_script_output(f, "/bin/bash")) is None  # an existing file: its stat and hash
    assert f.same_test(RawOutput("MISSING\n", 1)) is None
    d = MissingDirs(str(tmp_path / "a" / "b"))
    assert d.same_test(RawOutput("0 1 END\n", 1)) is None  # the script failed
    assert d.same_test(RawOutput("0 9 END\n", 0)) is None  # an index it never prints
    assert d.same_test(RawOutput("garbage", 0)) is None


@pytest.mark.parametrize("shell", SHELLS)
def test_a_root_path_s_missing_dirs_test(shell: str) -> None:
    probe = MissingDirs("/")
    raw = _script_output(probe, shell)
    test = probe.same_test(raw)
    assert raw == RawOutput("0 END\n", 0) and test is not None and _holds(test, shell)
