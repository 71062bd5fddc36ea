"""The probe batch on this machine's real shell (``/bin/sh``, through LocalTransport).

* every FileState of a batch is read in one block (one ``stat``, link targets included, one
  ``sha256sum``) and each probe gets exactly the output its own script prints, whatever the
  names (property test against the one-by-one scripts);
* a file the login cannot read is read again on its own, with the one-by-one answer;
* the probes run as functions of the batch's shell, except commands that would change or end
  that shell: those keep a subshell, and the probes after them still answer.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from maintkit.probes import CommandProbe, FileState, Probe, RawOutput, run_batch
from maintkit.probes.base import _run_once
from maintkit.transport.local import LocalTransport

NAMES = st.text(
    alphabet=st.characters(blacklist_characters="/\0", blacklist_categories=("Cs",)), min_size=1, max_size=12
).filter(lambda n: n not in (".", ".."))
ENTRY = st.tuples(
    st.sampled_from(["file", "empty", "dir", "link", "missing"]),
    st.binary(max_size=40),
    NAMES,  # a link's target
    st.sampled_from([64 * 1024 * 1024, 10]),  # max_hash_bytes: over 10 bytes, no hash
)


def _one_by_one(transport: LocalTransport, probes: list[Probe[Any]]) -> dict[str, RawOutput]:
    raw, _, _, again = _run_once(transport, probes, None, 60.0, None, bulk=False)
    assert again == []
    return raw


def _make(root: Path, name: str, entry: tuple[str, bytes, str, int]) -> Path:
    kind, content, target, _ = entry
    path = root / name
    if kind in ("file", "empty"):
        path.write_bytes(content if kind == "file" else b"")
    elif kind == "dir":
        path.mkdir()
    elif kind == "link":
        os.symlink(target, path)
    return path


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.dictionaries(NAMES, ENTRY, min_size=1, max_size=8))
def test_one_block_reads_every_path_exactly_as_each_script_would(tree: dict[str, tuple[str, bytes, str, int]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        probes: list[Probe[Any]] = []
        for name, entry in tree.items():
            path = _make(root, name, entry)
            probes.append(FileState(str(path), max_hash_bytes=entry[3]))
            probes.append(FileState(str(path)))  # the same path with the default limit
        transport = LocalTransport()
        raw, _ = run_batch(transport, probes)
        assert transport.round_trips == 1
        assert raw == _one_by_one(transport, probes)
        for p in probes:
            info = p.parse(raw[p.key])
            assert info.exists == os.path.lexists(p.path)  # type: ignore[attr-defined]


def test_a_file_the_login_cannot_read_is_read_again_on_its_own() -> None:
    root = Path(tempfile.mkdtemp(prefix="maint-batch-"))  # a place the deploy user can reach
    try:
        root.chmod(0o755)
        secret, plain = root / "secret", root / "plain"
        secret.write_text("root only\n")
        secret.chmod(0o600)
        plain.write_text("anyone\n")
        probes: list[Probe[Any]] = [FileState(str(secret)), FileState(str(plain))]
        transport = LocalTransport(become=True, sudo_user="deploy")
        raw, _ = run_batch(transport, probes)
        assert transport.round_trips == 2  # the block, then the unreadable one on its own
        assert raw == _one_by_one(LocalTransport(become=True, sudo_user="deploy"), probes)
        assert raw[probes[0].key].exit_code != 0  # as its own script says: it cannot be read
        assert probes[1].parse(raw[probes[1].key]).sha256 is not None
    finally:
        shutil.rmtree(root)


def test_commands_that_would_change_the_batch_shell_keep_a_subshell() -> None:
    probes: list[Probe[Any]] = [
        CommandProbe(("exit", "3")),
        CommandProbe(("cd", "/proc")),
        CommandProbe(("set", "-e")),
        CommandProbe(("false",)),
        CommandProbe(("pwd",)),
        CommandProbe(("echo", "after")),
    ]
    assert [p.inline() for p in probes] == [False, False, False, True, True, True]
    transport = LocalTransport()
    raw, _ = run_batch(transport, probes)
    assert transport.round_trips == 1
    assert [(raw[p.key].stdout, raw[p.key].exit_code) for p in probes] == [
        ("", 3),
        ("", 0),
        ("", 0),
        ("", 1),
        (os.getcwd() + "\n", 0),  # the cd ran in its own subshell
        ("after\n", 0),
    ]
