"""Operands that start with ``-`` never reach a command as options: every command the actions
build puts ``--`` before its operands (or, for tools without ``--`` such as ``find``, only
ever gets absolute paths).

These are command-construction tests (FakeTransport records the quoted command lines); the
file actions are also run for real with such names in tests/lab/test_file_properties.py.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import pytest
from pydantic import ValidationError

from maintkit.actions.backup.files import create_script
from maintkit.actions.cache import CacheClearParams, _dir_clear, _dir_stats_script
from maintkit.actions.deploy import DeployRelease, DeployReleaseParams
from maintkit.actions.file import (
    FileContent,
    FileContentParams,
    FileDirectory,
    FileDirectoryParams,
    FileSymlink,
    FileSymlinkParams,
    _DirPlan,
    switch_script,
)
from maintkit.actions.maintenance import ExistingPaths
from maintkit.actions.service import ServiceParams, ServiceSpec, plan_operation, signal_script
from maintkit.probes import FileInfo, RawOutput
from maintkit.results import Change, Check
from maintkit.testing import FakeTransport, make_context
from maintkit.transport.local import LocalTransport, atomic_put_script

_SEPARATORS = set(";&|(){}\n")
_ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=")
_KEYWORDS = {"if", "then", "else", "elif", "fi", "do", "done", "while", "until", "for", "!", "exec"}


def simple_commands(line: str) -> list[list[str]]:
    """The simple commands of a shell line as word lists (quotes removed, keywords dropped)."""
    lex = shlex.shlex(line, posix=True, punctuation_chars="".join(_SEPARATORS))
    lex.whitespace = " \t"
    lex.whitespace_split = True
    out: list[list[str]] = [[]]
    inner: list[list[str]] = []
    for token in lex:
        if set(token) <= _SEPARATORS:
            out.append([])
        elif not out[-1] and _ASSIGNMENT.match(token):  # `LC_ALL=C find ...`: the command is find
            pass
        elif out[-1] or token not in _KEYWORDS:
            out[-1].append(token)
        if "$(" in token and ")" in token:  # a command substitution inside double quotes
            inner += simple_commands(token[token.index("$(") + 2 : token.rindex(")")])
    return [c for c in out if c] + inner


_REDIRECTS = {">", ">>", "<", "2>"}  # `cat > FILE`: a redirection target is never an option
_TESTS = {"[", "test"}  # `[ -e X ]`, `[ X = Y ]`: operands in fixed positions, no options after them


def assert_operand_after_dashdash(lines: list[str], operand: str) -> int:
    """Every simple command that has ``operand`` as a word has ``--`` before it; returns how many."""
    seen = 0
    for line in lines:
        for cmd in simple_commands(line):
            for i, word in enumerate(cmd):
                redirected = i > 0 and cmd[i - 1] in _REDIRECTS
                if word == operand and cmd[0] not in _TESTS and not redirected:
                    seen += 1
                    assert "--" in cmd[:i], f"{operand!r} without -- in: {shlex.join(cmd)}"
    return seen


def test_the_checker_itself_catches_a_missing_dashdash() -> None:
    with pytest.raises(AssertionError, match="without --"):
        assert_operand_after_dashdash(["ln -sfn '-rf' /x/tmp && mv -T /x/tmp /x/y"], "-rf")
    assert assert_operand_after_dashdash(["if a; then ln -s -- -rf /x; fi\n{ rm -f -- -rf; }"], "-rf") == 2


def _apply(action: FileSymlink | FileContent | FileDirectory, snapshot: object) -> FakeTransport:
    t = FakeTransport()
    ctx = make_context(t)
    action.apply(ctx, Check.change("test", snapshot=snapshot))
    return t


def test_symlink_target_starting_with_dash() -> None:
    act = FileSymlink(FileSymlinkParams(path="/srv/-site/current", target="-rf"))
    t = _apply(act, FileInfo(False))
    assert assert_operand_after_dashdash(t.commands, "-rf") == 1
    assert assert_operand_after_dashdash(t.commands, "/srv/-site/current") == 1
    # rollback to a previous target that starts with "-"
    t2 = FakeTransport()
    before = FileInfo(True, "symlink", "777", "root", "root", 3, target="-old")
    act.rollback(make_context(t2), [Change("/srv/-site/current", "switched", undo=(before, "-rf"))])
    assert assert_operand_after_dashdash(t2.commands, "-old") == 1
    assert assert_operand_after_dashdash(t2.commands, "root:root") == 1  # chown -h -- root:root PATH


def test_switch_script_used_by_deploy_has_dashdash() -> None:
    script = switch_script("/srv/x/current", "-n")
    assert assert_operand_after_dashdash([script], "-n") == 1
    assert assert_operand_after_dashdash([script], "/srv/x/current") == 1


def test_content_owner_and_group_starting_with_dash() -> None:
    act = FileContent(FileContentParams(path="/srv/-c.txt", content="x", owner="-o", group="-g", mode="0600"))
    t = _apply(act, FileInfo(False))
    assert assert_operand_after_dashdash(t.commands, "-o:-g") == 1
    assert assert_operand_after_dashdash(t.commands, "/srv/-c.txt") >= 2  # chmod/chown of the temp, mv, chown


def test_directory_creates_each_missing_dir_with_dashdash() -> None:
    act = FileDirectory(FileDirectoryParams(path="/srv/-a/-b", owner="-o", mode="0750"))
    t = _apply(act, _DirPlan(FileInfo(False), ("/srv/-a", "/srv/-a/-b")))
    assert assert_operand_after_dashdash(t.commands, "/srv/-a") >= 1
    assert assert_operand_after_dashdash(t.commands, "/srv/-a/-b") >= 3  # mkdir, chown, chmod (+ cleanups)
    assert assert_operand_after_dashdash(t.commands, "-o") == 1
    # exactly the recorded directories are created, with plain mkdir (never -p, never parsed output)
    words = [c for line in t.commands for c in simple_commands(line) if c[0] == "mkdir"]
    assert words == [["mkdir", "--", "/srv/-a"], ["mkdir", "--", "/srv/-a/-b"]]


def test_atomic_put_script_of_the_transports() -> None:
    script = atomic_put_script("-relative-name", 0o600)
    assert assert_operand_after_dashdash([script], "$tmp") >= 2  # chmod, mv
    assert assert_operand_after_dashdash([script], "-relative-name") >= 1


def test_deploy_shared_dirs_and_files_starting_with_dash() -> None:
    params = DeployReleaseParams(repo="/srv/repo.git", shared_dirs=["-uploads"], shared_files=["-env"])
    t = FakeTransport()
    ctx = make_context(t, path="/srv/-shop")
    DeployRelease(params)._link_shared(ctx, "/srv/-shop/releases/r1")
    for operand in ("/srv/-shop/shared/-uploads", "/srv/-shop/releases/r1/-uploads", "/srv/-shop/releases/r1/-env"):
        assert assert_operand_after_dashdash(t.commands, operand) >= 1, operand


def test_backup_paths_starting_with_dash() -> None:
    script = create_script("/srv/site", ["-wp-content", "-x"], ["-cache"], "gzip", "/srv/b/files.tar.gz")
    assert assert_operand_after_dashdash([script], "-wp-content") == 1
    assert assert_operand_after_dashdash([script], "-x") == 1


def test_cache_directory_is_absolute_so_find_never_sees_an_option(tmp_path: Path) -> None:
    # find takes no `--`: the validator only lets absolute paths through
    with pytest.raises(ValidationError, match="must be absolute"):
        CacheClearParams.model_validate({"directory": "-cache/x", "targets": ["directory"]})
    cache = tmp_path / "-nginx" / "-cache"
    params = CacheClearParams.model_validate({"directory": str(cache), "targets": ["directory"]})
    assert params.directory is not None and params.directory.paths == [str(cache)]
    for cmd in simple_commands(_dir_stats_script(str(cache))):
        if cmd[0] == "find":
            assert cmd[1] == str(cache)
    # and it really empties that directory, not a sibling that looks like an option
    (cache / "a").mkdir(parents=True)
    (cache / "a" / "f").write_text("x")
    sibling = tmp_path / "-nginx" / "-keep"
    sibling.mkdir()
    (sibling / "f").write_text("y")
    ctx = make_context(LocalTransport(), path=str(tmp_path))
    _dir_clear(ctx, str(cache), None)
    assert list(cache.iterdir()) == []
    assert (sibling / "f").read_text() == "y"


def test_service_names_never_start_with_dash_and_systemctl_gets_dashdash() -> None:
    with pytest.raises(ValidationError, match="invalid service name"):
        ServiceParams(name="-x")
    assert assert_operand_after_dashdash([signal_script("HUP", "/run/-php.pid")], "/run/-php.pid") == 1
    op = plan_operation(make_context(FakeTransport()), ServiceSpec(name="php-fpm", manager="systemd"), "reload")
    assert op.argv == ("systemctl", "reload", "--", "php-fpm")
    assert op.label == "systemctl reload php-fpm"


def test_existing_paths_probe_reads_back_any_name(tmp_path: Path) -> None:
    odd = tmp_path / "a\nb"
    odd.write_text("")
    probe = ExistingPaths((str(odd), str(tmp_path / "a"), str(tmp_path / "b")))
    (tmp_path / "b").write_text("")
    out = subprocess.run(["sh", "-c", probe.script()], capture_output=True, text=True, check=True)
    assert probe.parse(RawOutput(out.stdout, 0)) == frozenset({str(odd), str(tmp_path / "b")})
