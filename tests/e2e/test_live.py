"""The live view of `maint run` on a terminal (run under a pseudo-terminal)."""

from __future__ import annotations

import os
import re
import select
import subprocess
import time
from pathlib import Path

from tests.operator_helpers import SECRET_VALUE, clean_env, maint_argv, make_project, strip_ansi

COLOR_SGR = re.compile(r"\x1b\[(?:[0-9;]*;)?(?:3[0-9]|4[0-9]|9[0-7]|10[0-7])(?:;[0-9;]*)?m")


def run_in_pty(args: list[str], cwd: Path, env: dict[str, str], timeout: float = 60) -> tuple[int, str]:
    """Run a command with stdin/stdout/stderr on a pseudo-terminal; return (exit status, raw output)."""
    master, slave = os.openpty()
    os.set_blocking(master, False)
    import fcntl
    import struct
    import termios

    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    proc = subprocess.Popen(args, cwd=cwd, env=env, stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.1)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: the other side closed
                    data = b""
                if data:
                    chunks.append(data)
                    continue
                if proc.poll() is not None:
                    break
            elif proc.poll() is not None:
                # drain what is left
                try:
                    while data := os.read(master, 65536):
                        chunks.append(data)
                except (BlockingIOError, OSError):
                    pass
                break
        else:
            raise AssertionError("maint did not finish under the pty")
        return proc.wait(timeout=10), b"".join(chunks).decode("utf-8", "replace")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)


def tty_env(**extra: str) -> dict[str, str]:
    return clean_env(TERM="xterm-256color", COLUMNS="120", LINES="40", **extra)


def test_live_view_shows_site_rows_and_summary(tmp_path: Path) -> None:
    root = make_project(tmp_path / "proj")
    code, raw = run_in_pty(maint_argv("run", "ops", "-i", "inventory.yml"), root, tty_env())
    screen = strip_ansi(raw)
    assert code == 0, screen
    assert "\x1b[" in raw, "a terminal gets a live view (escape sequences)"
    assert re.search(r"site\s+stage\s+step\s+status\s+changed\s+elapsed", screen), screen
    for site in ("shop-a", "shop-b"):
        assert re.search(rf"{site}\s+production\s+ok\s+2\s+\d+\.\ds", screen), screen
    assert "2/2 sites" in screen
    assert "shop-a/production" in screen and "motd" in screen and "changed" in screen  # step lines above the view
    assert re.search(r"ok: 4 steps changed; run folder \S*\.maint/runs/\S+", screen), screen
    assert COLOR_SGR.search(raw), "colours on a terminal without NO_COLOR"


def test_no_color_removes_colour_codes(tmp_path: Path) -> None:
    root = make_project(tmp_path / "proj")
    code, raw = run_in_pty(maint_argv("run", "ops", "-i", "inventory.yml"), root, tty_env(NO_COLOR="1"))
    assert code == 0, strip_ansi(raw)
    assert not COLOR_SGR.search(raw), repr(COLOR_SGR.search(raw))
    assert "2/2 sites" in strip_ansi(raw)


def test_failure_ends_with_explanation_and_run_folder(tmp_path: Path) -> None:
    root = make_project(tmp_path / "proj", sites=("shop-a",), failing=True)
    code, raw = run_in_pty(maint_argv("run", "ops", "-i", "inventory.yml"), root, tty_env())
    screen = strip_ansi(raw)
    assert code == 1, screen
    assert re.search(r"shop-a\s+production\s+boom\s+rolled-back", screen), screen
    assert "shop-a: rolled-back at production step boom (command)" in screen
    assert "deploy hook failed" in screen
    assert "rolled back: motd, robots" in screen
    assert "the site is back where it was before this stage" in screen
    run_id = re.search(r"details: maint runs (\S+)\s+\(run folder (\S+)\)", screen)
    assert run_id, screen
    assert (root / run_id.group(2)).is_dir()
    assert screen.rstrip().splitlines()[-1].startswith("failed: 0 steps changed; run folder")
    assert SECRET_VALUE not in raw


def test_plain_lines_when_not_a_terminal(tmp_path: Path) -> None:
    root = make_project(tmp_path / "proj", sites=("shop-a",))
    res = subprocess.run(
        maint_argv("run", "ops", "-i", "inventory.yml"),
        cwd=root,
        env=tty_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0
    assert "\x1b[" not in res.stdout
    assert "elapsed" not in res.stdout  # no live table
    assert res.stdout.splitlines()[0].startswith("run ops: 1 site, run ")
