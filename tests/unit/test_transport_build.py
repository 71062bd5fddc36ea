"""build_command quoting: whatever the arguments contain, a POSIX shell sees them literally.

Each line is run by ``/bin/sh -c`` in an empty directory; ``printf '%s\\0'`` echoes the
arguments back NUL-separated, and the directory must still be empty afterwards (no
redirection, glob or command substitution was interpreted).
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from maintkit.transport.base import build_command, chain, join, quote
from maintkit.transport.local import atomic_put_script

NASTY = [
    "$(touch pwned)",
    "`touch pwned`",
    "; touch pwned",
    "a && touch pwned",
    "| tee pwned",
    "> pwned",
    "*",
    "?",
    "[a-z]*",
    "~",
    "'",
    '"',
    "\\",
    "\n",
    "line1\nline2",
    "$HOME",
    "${IFS}",
    "-n",
    "--",
    "",
    " ",
    "#comment",
    "!",
    "{a,b}",
    "é ü 中文 🙂",
    "a'b\"c$d`e\\f",
]

# argv strings cannot hold NUL; surrogates cannot be encoded for exec
arg_text = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\x00"), max_size=40)
args_strategy = st.lists(st.one_of(st.sampled_from(NASTY), arg_text), max_size=8)
env_value = st.one_of(st.sampled_from(NASTY), arg_text)


def _sh(line: str, cwd: Path) -> bytes:
    proc = subprocess.run(["/bin/sh", "-c", line], cwd=cwd, capture_output=True, timeout=20, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _echoed(out: bytes) -> list[str]:
    """Split printf's NUL-terminated output; the first item is the START marker."""
    assert out.startswith(b"START\0") and out.endswith(b"\0")
    return [part.decode("utf-8") for part in out.split(b"\0")[1:-1]]


@given(args=args_strategy)
@settings(max_examples=150, deadline=None)
def test_arguments_reach_the_command_literally(args: list[str]) -> None:
    with tempfile.TemporaryDirectory() as d:
        out = _sh(build_command(["printf", "%s\\0", "START", *args]), Path(d))
        assert os.listdir(d) == []
    assert _echoed(out) == args


@given(args=args_strategy, value=env_value, sub=arg_text)
@settings(max_examples=75, deadline=None)
def test_cwd_and_env_values_are_literal(args: list[str], value: str, sub: str) -> None:
    with tempfile.TemporaryDirectory() as d:
        # a working directory whose name is itself hostile
        name = "".join(c for c in sub if c not in "/") or "x"
        name = name if name not in (".", "..") else "x"
        work = Path(d) / name
        work.mkdir()
        line = build_command(
            ["sh", "-c", 'printf "%s\\0" START "$MK_VALUE" "$PWD" "$@"', "sh", *args],
            cwd=str(work),
            env={"MK_VALUE": value},
        )
        out = _sh(line, Path(d))
        assert sorted(os.listdir(d)) == [name]
        assert os.listdir(work) == []
    assert _echoed(out) == [value, str(work), *args]


@given(args=st.lists(st.one_of(st.sampled_from(NASTY), arg_text), max_size=5))
@settings(max_examples=25, deadline=None)
def test_sudo_wrapper_keeps_arguments_literal(args: list[str]) -> None:
    if os.geteuid() != 0:
        pytest.fail("this test runs as root (sudo -n without a password)")
    with tempfile.TemporaryDirectory() as d:
        out = _sh(build_command(["printf", "%s\\0", "START", *args], sudo=True, cwd=d), Path(d))
        assert os.listdir(d) == []
    assert _echoed(out) == args


@given(first=args_strategy, second=args_strategy)
@settings(max_examples=75, deadline=None)
def test_chained_commands_each_keep_their_arguments_literal(first: list[str], second: list[str]) -> None:
    with tempfile.TemporaryDirectory() as d:
        out = _sh(chain(["printf", "%s\\0", "START", *first], ["printf", "%s\\0", "NEXT", *second]), Path(d))
        assert os.listdir(d) == []
    echoed = _echoed(out)
    assert echoed == [*first, "NEXT", *second]


def test_a_chain_stops_at_the_first_failure() -> None:
    with tempfile.TemporaryDirectory() as d:
        line = chain(["touch", "--", f"{d}/one"], ["false"], ["touch", "--", f"{d}/two"])
        proc = subprocess.run(["/bin/sh", "-c", line], capture_output=True, check=False)
        assert proc.returncode == 1 and sorted(os.listdir(d)) == ["one"]
    with pytest.raises(ValueError):
        chain()
    with pytest.raises(ValueError):
        chain(["true"], [])


def test_script_mode_and_its_cwd() -> None:
    with tempfile.TemporaryDirectory() as d:
        line = build_command(script='echo "$MK_A" && pwd', cwd=d, env={"MK_A": "$(touch pwned)"})
        assert _sh(line, Path("/")) == f"$(touch pwned)\n{d}\n".encode()
        assert os.listdir(d) == []
    missing = build_command(script="echo never", cwd="/nonexistent/dir")
    proc = subprocess.run(["/bin/sh", "-c", missing], capture_output=True, check=False)
    assert proc.returncode == 97 and b"never" not in proc.stdout


def test_shape_of_the_sudo_line() -> None:
    line = build_command(["id", "-u"], sudo=True, sudo_user="www-data")
    assert line.startswith("sudo -n -u www-data -- sh -c ")


def test_invalid_input_is_refused() -> None:
    with pytest.raises(ValueError):
        build_command([])
    with pytest.raises(ValueError):
        build_command(["true"], script="true")
    with pytest.raises(ValueError):
        build_command(["true"], env={"BAD NAME": "x"})
    with pytest.raises(ValueError):
        build_command(["true"], env={"1X": "x"})
    with pytest.raises(ValueError):
        join([])


def test_quote_is_idempotent_for_plain_words() -> None:
    assert quote("abc") == "abc"
    assert quote("a b") == "'a b'"


@given(
    content=st.binary(max_size=2000), name=st.sampled_from(["plain.txt", "sp ace.txt", "q'uote", "$(x)", "-dash", "ü"])
)
@settings(max_examples=40, deadline=None)
def test_atomic_put_script_writes_exact_bytes(content: bytes, name: str) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / name
        proc = subprocess.run(
            ["/bin/sh", "-c", atomic_put_script(str(path), 0o640)], input=content, capture_output=True, check=False
        )
        assert proc.returncode == 0, proc.stderr
        assert path.read_bytes() == content
        assert path.stat().st_mode & 0o7777 == 0o640
        assert os.listdir(d) == [name], "no temp file is left behind"


def test_atomic_put_script_keeps_the_existing_mode_and_defaults_to_0644() -> None:
    with tempfile.TemporaryDirectory() as d:
        old = Path(d) / "old"
        old.write_bytes(b"1")
        old.chmod(0o600)
        new = Path(d) / "new"
        for p in (old, new):
            subprocess.run(["/bin/sh", "-c", atomic_put_script(str(p), None)], input=b"2", check=True)
        assert old.read_bytes() == b"2" and old.stat().st_mode & 0o777 == 0o600
        assert new.stat().st_mode & 0o777 == 0o644


def test_atomic_put_script_fails_cleanly_in_a_missing_directory() -> None:
    with tempfile.TemporaryDirectory() as d:
        target = Path(d) / "missing" / "f"
        proc = subprocess.run(["/bin/sh", "-c", atomic_put_script(str(target), None)], input=b"x", capture_output=True)
        assert proc.returncode != 0
        assert os.listdir(d) == []
