"""Secrets from files and commands (maintkit.secret_sources), and how templates see them."""

from __future__ import annotations

import os
import pwd
import shlex
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from maintkit._text import known_secrets, mask_known
from maintkit.inventory import SecretSource
from maintkit.secret_sources import Resolver, SecretError, read_secret_file, run_secret_command
from maintkit.templating import Secrets, TemplateError, render_string
from tests.gates import wait_until
from tests.lab.procs import is_alive
from tests.secret_scan import assert_no_secret, new_secret

PY = sys.executable


def secret_file(tmp_path: Path, text: str, mode: int = 0o600, name: str = "db") -> Path:
    path = tmp_path / name
    path.write_text(text)
    path.chmod(mode)
    return path


# ---------------------------------------------------------------- files
def test_a_file_secret_is_read_with_its_trailing_newline_dropped(tmp_path: Path) -> None:
    value = new_secret()
    path = secret_file(tmp_path, value + "\n")
    assert read_secret_file("DB", str(path)) == value
    assert read_secret_file("DB", str(secret_file(tmp_path, value + "\r\n", name="crlf"))) == value
    assert read_secret_file("DB", str(secret_file(tmp_path, "a b\n\n", name="two"))) == "a b\n", "one newline only"


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660, 0o620, 0o610])
def test_a_file_others_may_read_or_change_is_refused_naming_file_and_mode(tmp_path: Path, mode: int) -> None:
    value = new_secret()
    path = secret_file(tmp_path, value, mode)
    with pytest.raises(SecretError) as info:
        read_secret_file("DB_PASSWORD", str(path))
    assert str(info.value) == (
        f"secret DB_PASSWORD from file {path} is refused: its mode {mode:04o} lets others read or change it; "
        f"only its owner may (chmod 600 {path})"
    )
    assert value not in str(info.value)


def test_0400_is_accepted(tmp_path: Path) -> None:
    assert read_secret_file("DB", str(secret_file(tmp_path, "s3cret-value", 0o400))) == "s3cret-value"


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")
def test_a_file_owned_by_someone_else_is_refused(tmp_path: Path) -> None:
    path = secret_file(tmp_path, "s3cret-value")
    nobody = pwd.getpwnam("nobody")
    os.chown(path, nobody.pw_uid, nobody.pw_gid)
    with pytest.raises(SecretError) as info:
        read_secret_file("DB", str(path))
    assert str(info.value) == (
        f"secret DB from file {path} is refused: it is owned by nobody (uid {nobody.pw_uid}), not by root (uid 0)"
    )


def test_missing_empty_and_non_regular_files(tmp_path: Path) -> None:
    with pytest.raises(SecretError) as info:
        read_secret_file("DB", str(tmp_path / "nope"))
    assert str(info.value) == f"secret DB from file {tmp_path / 'nope'} cannot be opened (No such file or directory)"
    with pytest.raises(SecretError) as info:
        read_secret_file("DB", str(secret_file(tmp_path, "\n", name="empty")))
    assert str(info.value) == f"secret DB from file {tmp_path / 'empty'} is refused: the file is empty"
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo, 0o600)
    with pytest.raises(SecretError) as info:
        read_secret_file("DB", str(fifo))  # never blocks waiting for a writer
    assert str(info.value) == f"secret DB from file {fifo} is refused: not a regular file"


# ---------------------------------------------------------------- commands
def test_a_command_secret_is_its_stdout_without_a_shell(tmp_path: Path) -> None:
    value = new_secret()
    argv = [PY, "-c", "import sys; print(sys.argv[1])", value + "; touch " + str(tmp_path / "injected")]
    assert run_secret_command("TOKEN", argv, 10, None) == value + "; touch " + str(tmp_path / "injected")
    assert not (tmp_path / "injected").exists(), "no shell ever sees the arguments"


def test_a_failing_command_names_the_secret_and_redacts_what_it_printed() -> None:
    value = new_secret()
    script = (
        "import os, sys; v = os.environ['V']; print(v); "
        "print('Error: shop-a/db is not in the password store. ' + v, file=sys.stderr); sys.exit(1)"
    )
    with pytest.raises(SecretError) as info:
        run_secret_command("DB_PASSWORD", [PY, "-c", script], 10, {**os.environ, "V": value})
    text = str(info.value)
    assert text == (
        f"secret DB_PASSWORD from command {PY} -c {shlex.quote(script)} exited with status 1 "
        "(stderr: Error: shop-a/db is not in the password store. ***)"
    )
    assert_no_secret([("error", text)], value)


def test_command_not_found_timeout_and_empty_output(tmp_path: Path) -> None:
    with pytest.raises(SecretError) as info:
        run_secret_command("DB", ["/nonexistent/pass", "show", "x"], 10, None)
    assert (
        str(info.value) == "secret DB from command /nonexistent/pass show x cannot start (/nonexistent/pass not found)"
    )
    pidfile = tmp_path / "child.pid"
    child = tmp_path / "child.py"
    child.write_text(f"import os, time\nopen({str(pidfile)!r}, 'w').write(str(os.getpid()))\ntime.sleep(60)\n")
    parent = tmp_path / "parent.py"
    parent.write_text(
        "import os, subprocess, sys, time\n"
        f"subprocess.Popen([sys.executable, {str(child)!r}])\n"
        f"while not os.path.exists({str(pidfile)!r}):\n    time.sleep(0.01)\n"
        "time.sleep(60)\n"
    )  # starts a child, waits until it runs, then hangs: on timeout the whole group dies
    with pytest.raises(SecretError) as info:
        run_secret_command("DB", [PY, str(parent)], 3, None)
    assert str(info.value).endswith(" timed out after 3 s")
    child_pid = int(pidfile.read_text())
    wait_until(lambda: not is_alive(child_pid), "the command's child is killed with its group", 10)
    with pytest.raises(SecretError) as info:
        run_secret_command("DB", ["true"], 10, None)
    assert str(info.value) == "secret DB from command true printed nothing"


# ---------------------------------------------------------------- templates
def test_templates_read_inventory_sources_once_and_register_them(tmp_path: Path) -> None:
    file_value, cmd_value = new_secret(), new_secret()
    path = secret_file(tmp_path, file_value + "\n")
    counter = tmp_path / "runs"
    script = f"open({str(counter)!r}, 'a').write('x'); print({cmd_value!r})"
    sources = {
        "DB": SecretSource(file=str(path)),
        "TOKEN": SecretSource(command=[PY, "-c", script]),
        "SMTP": SecretSource(env="MY_SMTP"),
    }
    seen: list[str] = []
    base = Secrets({"MY_SMTP": "smtp-pass-123", "PLAIN": "plain-env-1"}, on_read=seen.append)
    for _ in range(3):  # three site environments using the same sources
        view = base.scoped(sources)
        ctx = {"secrets": view}
        assert render_string("{{ secrets.DB }}:{{ secrets.TOKEN }}", ctx) == f"{file_value}:{cmd_value}"
        assert render_string("{{ secrets.SMTP }}/{{ secrets.PLAIN }}", ctx) == "smtp-pass-123/plain-env-1"
        assert view.used == {"DB": file_value, "TOKEN": cmd_value, "SMTP": "smtp-pass-123", "PLAIN": "plain-env-1"}
    assert counter.read_text() == "x", "the command ran once for the whole run"
    assert {file_value, cmd_value, "smtp-pass-123"} <= known_secrets()
    assert set(seen) == {file_value, cmd_value, "smtp-pass-123", "plain-env-1"}
    assert mask_known(f"x {file_value} y {cmd_value}") == "x *** y ***"


def test_a_source_error_is_a_template_error_naming_the_key(tmp_path: Path) -> None:
    path = secret_file(tmp_path, "s3cret-value", 0o644)
    view = Secrets({}).scoped({"DB": SecretSource(file=str(path))})
    with pytest.raises(TemplateError) as info:
        render_string("{{ secrets.DB }}", {"secrets": view})
    assert str(info.value).endswith(
        f"secret DB from file {path} is refused: its mode 0644 lets others read or change it; only its owner may (chmod 600 {path})"
    )
    with pytest.raises(TemplateError) as info:
        render_string("{{ secrets.NOPE }}", {"secrets": view})
    assert (
        "secret 'NOPE' is not set (export it as an environment variable, or give it a source under secrets: in the inventory)"
        in str(info.value)
    )


def test_placeholders_run_no_command_but_still_check_files(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    resolver = Resolver({}, placeholders=True)
    cmd = SecretSource(command=[PY, "-c", f"open({str(marker)!r}, 'w')"])
    assert resolver.value("TOKEN", cmd) == "<unset>"
    assert resolver.value("SMTP", SecretSource(env="NOT_SET_ANYWHERE")) == "<unset>"
    assert not marker.exists()
    with pytest.raises(SecretError):
        resolver.value("DB", SecretSource(file=str(secret_file(tmp_path, "s3cret-value", 0o660))))
    assert "<unset>" not in known_secrets()


def test_a_source_names_exactly_one_origin() -> None:
    with pytest.raises(ValueError, match="exactly one of env, file or command"):
        SecretSource(file="/a", env="B")
    with pytest.raises(ValueError, match="exactly one of env, file or command"):
        SecretSource()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.text(
        alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00\r"), min_size=1, max_size=200
    )
)
def test_any_file_content_comes_back_as_written_less_one_newline(tmp_path: Path, text: str) -> None:
    path = secret_file(tmp_path, "")
    path.write_bytes((text + "\n").encode())
    assert read_secret_file("X", str(path)) == text
