"""backup.create's programs at low priority, on this machine's shell with the real ``nice`` and
``ionice``: what a program started through ``$mk_low`` runs at (niceness 10 above the caller's,
the lowest best-effort I/O class), without ionice or with an ionice that cannot set a class (nice
alone, the program still runs), a hostile ``mk_low`` in the environment (never used), and at
normal priority (no prefix at all)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from maintkit.actions.backup.db import LOW_PRIORITY_SETUP, low, pipeline
from maintkit.actions.backup.files import create_script
from maintkit.transport.base import join

#: a stage that reports the niceness and I/O class it runs at, then copies its stdin
REPORT = join(["sh", "-c", 'printf "nice %s\\n" "$(nice)"; ionice -p $$ 2>/dev/null || echo "no ionice"; cat'])


def _run(script: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=30, env=env, input="data\n")


def _bin_without_ionice(tmp_path: Path, ionice: str | None) -> str:
    """A PATH of links to the programs the stages use, with ``ionice`` absent or a stand-in."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("sh", "nice", "cat", "mktemp", "rm", "basename"):
        found = subprocess.run(["sh", "-c", f"command -v {name}"], capture_output=True, text=True, check=True)
        (bin_dir / name).symlink_to(found.stdout.strip())
    if ionice is not None:
        (bin_dir / "ionice").write_text(ionice)
        (bin_dir / "ionice").chmod(0o755)
    return str(bin_dir)


BASE = os.nice(0)


def test_a_low_stage_runs_nice_10_and_in_the_lowest_best_effort_class(tmp_path: Path) -> None:
    out = tmp_path / "out"
    script = pipeline(low(REPORT), low("cat"), out=str(out), low_priority=True)
    assert script.startswith(LOW_PRIORITY_SETUP)

    res = _run(script)

    assert res.returncode == 0, res.stderr
    assert out.read_text() == f"nice {min(BASE + 10, 19)}\nbest-effort: prio 7\ndata\n"


@pytest.mark.parametrize(
    "ionice", [None, "#!/bin/sh\necho 'ioprio_set failed: Function not implemented' >&2\nexit 1\n"]
)
def test_without_a_working_ionice_the_stage_runs_nice_alone(tmp_path: Path, ionice: str | None) -> None:
    out = tmp_path / "out"
    script = pipeline(low(REPORT), low("cat"), out=str(out), low_priority=True)

    res = _run(script, env={"PATH": _bin_without_ionice(tmp_path, ionice)})

    assert res.returncode == 0, res.stderr
    assert out.read_text() == f"nice {min(BASE + 10, 19)}\nno ionice\ndata\n"


def test_a_hostile_mk_low_in_the_environment_is_never_used(tmp_path: Path) -> None:
    hostile = {**os.environ, "mk_low": f"touch {tmp_path}/pwned"}
    low_out, normal_out = tmp_path / "low", tmp_path / "normal"

    low_run = _run(pipeline(low(REPORT), low("cat"), out=str(low_out), low_priority=True), hostile)
    normal_run = _run(pipeline(REPORT, "cat", out=str(normal_out)), hostile)

    assert low_run.returncode == 0 and normal_run.returncode == 0, (low_run.stderr, normal_run.stderr)
    assert low_out.read_text().startswith(f"nice {min(BASE + 10, 19)}\n")
    assert normal_out.read_text().startswith(f"nice {BASE}\n")
    assert not (tmp_path / "pwned").exists()


def test_normal_priority_adds_nothing_and_low_archives_the_same_tree(tmp_path: Path) -> None:
    site = tmp_path / "site"
    (site / "wp-content").mkdir(parents=True)
    (site / "wp-content" / "a.txt").write_text("a\n")
    normal = create_script(str(site), ["wp-content"], [], "gzip", str(tmp_path / "n.tar.gz"))
    lowered = create_script(str(site), ["wp-content"], [], "gzip", str(tmp_path / "l.tar.gz"), low_priority=True)
    assert "mk_low" not in normal and "mk_low" not in pipeline("a", "b")
    assert lowered.startswith(LOW_PRIORITY_SETUP)
    assert lowered[len(LOW_PRIORITY_SETUP) :].count("$mk_low ") == 2  # tar and gzip

    for script in (normal, lowered):
        assert _run(script).returncode == 0
    listed = [
        subprocess.run(["tar", "-tzf", str(tmp_path / name)], capture_output=True, text=True, check=True).stdout
        for name in ("n.tar.gz", "l.tar.gz")
    ]
    assert listed[0] == listed[1] == "wp-content/\nwp-content/a.txt\n"
