"""The console script's collector settings: fewer young collections while it runs, a frozen heap at exit."""

from __future__ import annotations

import gc
import importlib
import subprocess
import sys
from collections.abc import Iterator

import pytest

cli_main = importlib.import_module("maintkit.cli.main")  # the module (maintkit.cli.main is also the function)


@pytest.fixture()
def restore_gc() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


@pytest.mark.usefixtures("restore_gc")
def test_main_raises_the_young_threshold_and_freezes_what_is_alive(monkeypatch: pytest.MonkeyPatch) -> None:
    gc.unfreeze()
    monkeypatch.setattr(sys, "argv", ["maint", "--version"])
    with pytest.raises(SystemExit) as exc:
        cli_main.main()
    assert exc.value.code == 0
    assert gc.get_threshold()[0] == cli_main._GC_YOUNG == 50_000
    assert gc.get_freeze_count() > 1000  # every imported module's objects


@pytest.mark.usefixtures("restore_gc")
def test_main_freezes_even_when_the_command_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    gc.unfreeze()
    monkeypatch.setattr(sys, "argv", ["maint", "run", "/nonexistent/playbook.yml"])
    with pytest.raises(SystemExit) as exc:
        cli_main.main()
    assert exc.value.code == 2
    assert gc.get_freeze_count() > 1000


def test_console_script_still_runs_atexit_and_flushes() -> None:
    """The interpreter's usual exit work still happens: atexit handlers run, buffered output arrives."""
    code = (
        "import atexit, sys\n"
        "atexit.register(lambda: sys.stdout.write('atexit ran\\n'))\n"
        "sys.stdout.write('x' * 100000)\n"
        "sys.argv = ['maint', '--version']\n"
        "from maintkit.cli.main import main\n"
        "main()\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.returncode == 0
    assert proc.stdout.startswith("x" * 100000)
    assert proc.stdout.endswith("atexit ran\n")
    assert "maint, version " in proc.stdout
