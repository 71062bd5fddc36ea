"""Output maintkit reads is never translated: the host's language cannot hide a difference or fail a clear.

A host whose login sets another language (``LANG`` from ``/etc/default/locale``, ``LANGUAGE``)
gets translated messages from GNU tools. Where maintkit reads a tool's messages it runs the tool
with ``LC_ALL=C``. Each test first shows that the environment really translates (so it can fail).
"""

from __future__ import annotations

import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from maintkit.actions.backup.files import compare_script, content_differences
from maintkit.actions.cache import _dir_clear
from maintkit.testing import make_context
from maintkit.transport.local import LocalTransport

GERMAN = {"LANGUAGE": "de", "LANG": "C.UTF-8", "LC_ALL": ""}


@pytest.fixture
def german(monkeypatch: pytest.MonkeyPatch) -> None:
    """The host's processes speak German (coreutils, tar and find ship German messages)."""
    for k, v in GERMAN.items():
        monkeypatch.setenv(k, v)
    probe = subprocess.run(["ls", "--", "/nonexistent-maintkit"], capture_output=True, text=True)
    assert "nicht gefunden" in probe.stderr  # the test can only fail when messages really are German


def _archive(tmp_path: Path) -> tuple[Path, Path]:
    base = tmp_path / "site"
    base.mkdir()
    (base / "kept.txt").write_text("same\n")
    (base / "changed.txt").write_text("before\n")
    (base / "gone.txt").write_text("here\n")
    archive = tmp_path / "files.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(base, arcname=".")
    (base / "changed.txt").write_text("after, and longer\n")
    (base / "gone.txt").unlink()
    return archive, base


def test_backup_compare_finds_every_difference_under_a_translated_locale(german: None, tmp_path: Path) -> None:
    archive, base = _archive(tmp_path)
    raw = subprocess.run(
        f"gzip -dc -- {archive} | tar --no-unquote -C {base} -df -", shell=True, capture_output=True, text=True
    )
    assert "unterschiedlich" in raw.stdout + raw.stderr  # plain tar: German, which content_differences cannot read
    out = LocalTransport().run_shell(compare_script(str(archive), "gzip", str(base)), check=False).stdout
    assert content_differences(out) == [
        "./changed.txt: Size differs",
        "tar: ./gone.txt: Warning: Cannot stat: No such file or directory",
    ]


def test_cache_clear_tolerates_vanished_files_under_a_translated_locale(
    german: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """find reports a file nginx removed meanwhile; in C it is the tolerated message, not an error."""
    cache = tmp_path / "cache"
    (cache / "a").mkdir(parents=True)
    (cache / "a" / "f").write_text("x")
    fake = tmp_path / "bin"
    fake.mkdir()
    real = subprocess.run(["sh", "-c", "command -v find"], capture_output=True, text=True).stdout.strip()
    # the real find does the work; then the message of a file that vanished, in the language it was given
    (fake / "find").write_text(
        "#!/bin/sh\n"
        f'{real} "$@"; rc=$?\n'
        'case " $* " in *" -delete "*) ;; *) exit $rc;; esac\n'
        'if [ "${LC_ALL-}" = C ]; then echo "find: \'./x\': No such file or directory" >&2\n'
        "else echo \"find: './x': Datei oder Verzeichnis nicht gefunden\" >&2; fi\n"
        "exit 1\n"
    )
    (fake / "find").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}{os.pathsep}{os.environ['PATH']}")
    untranslated = subprocess.run(
        [str(fake / "find"), str(tmp_path / "nothing"), "-delete"], capture_output=True, text=True
    )
    assert "nicht gefunden" in untranslated.stderr
    ctx = make_context(LocalTransport(), path=str(tmp_path))
    _dir_clear(ctx, str(cache), None)  # raised TargetFailed when find spoke German
    assert list(cache.iterdir()) == []
