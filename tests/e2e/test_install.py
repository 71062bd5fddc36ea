"""Installing as docs/getting-started.md says: a wheel built from the source, installed into a fresh
virtual environment, runs ``maint`` with its package data; and the package metadata an index shows."""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from maintkit.notify import NotifyError, send_apprise

REPO = Path(__file__).resolve().parents[2]
SKIP = {".git", ".venv", "tests", "benchmarks", "maint-demo", ".maint", "build", "dist"}


def _copy_source(dest: Path) -> Path:
    """The source tree without the checkout's own build products (the build writes into its tree)."""

    def ignore(folder: str, names: list[str]) -> set[str]:
        top = Path(folder) == REPO
        return {
            n for n in names if (top and n in SKIP) or n.endswith(".egg-info") or n.startswith((".", "__pycache__"))
        }

    shutil.copytree(REPO, dest, ignore=ignore)
    return dest


def _run(*argv: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHON"))}
    return subprocess.run([str(a) for a in argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("wheel")
    src = _copy_source(root / "src")
    res = _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--disable-pip-version-check", "-q",
               "-w", root / "dist", src)  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr
    (built,) = (root / "dist").glob("maintkit-*.whl")
    return built


def test_the_wheel_carries_the_package_data_and_the_license(wheel: Path) -> None:
    assert wheel.name == "maintkit-0.1.0-py3-none-any.whl"
    names = set(zipfile.ZipFile(wheel).namelist())
    for data in ("maintkit/py.typed", "maintkit/php/wp_helper.php", "maintkit/report/templates/report.html.j2",
                 "maintkit/playbooks/monthly-update.yml", "maintkit/actions/cms/constraints.py",
                 "maintkit-0.1.0.dist-info/licenses/LICENSE"):  # fmt: skip
        assert data in names, data
    meta = zipfile.ZipFile(wheel).read("maintkit-0.1.0.dist-info/METADATA").decode()
    assert "License-Expression: MIT" in meta
    assert 'Requires-Dist: apprise>=1.9; extra == "notify"' in meta
    assert "invoke" not in meta.split("\n\n", 1)[0]
    # the long description (README) links absolutely: relative links break on an index page
    readme = meta.split("\n\n", 1)[1]
    assert (
        "](docs/" not in readme
        and "](https://github.com/maintkit/maintkit/blob/main/docs/getting-started.md)" in readme
    )


def test_a_fresh_venv_runs_maint_from_the_wheel(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    res = _run(sys.executable, "-m", "venv", venv)
    assert res.returncode == 0, res.stderr
    res = _run(venv / "bin" / "pip", "install", "--disable-pip-version-check", "-q", wheel)
    assert res.returncode == 0, res.stdout + res.stderr
    res = _run(venv / "bin" / "maint", "--version")
    assert (res.returncode, res.stdout) == (0, "maint, version 0.1.0\n")
    # a built-in playbook, read from the installed package (not from this checkout): package data works
    work = tmp_path / "work"
    work.mkdir()
    where = _run(venv / "bin" / "python", "-c", "import maintkit, json; print(json.dumps(maintkit.__file__))", cwd=work)
    package = Path(json.loads(where.stdout)).parent
    assert package.is_relative_to(venv)
    res = _run(venv / "bin" / "maint", "validate", "monthly-update", cwd=work)
    assert (res.returncode, res.stdout) == (0, f"ok: {package}/playbooks/monthly-update.yml\n"), res.stderr
    # apprise is an extra: not installed by default, and the message names the extra
    res = _run(venv / "bin" / "python", "-c", "import importlib.util as u; print(u.find_spec('apprise') is None)")
    assert res.stdout == "True\n"


def test_installed_metadata() -> None:
    meta = importlib.metadata.metadata("maintkit")
    assert meta["License-Expression"] == "MIT"
    urls = dict(u.split(", ", 1) for u in meta.get_all("Project-URL") or [])
    assert urls == {
        "Homepage": "https://github.com/maintkit/maintkit",
        "Documentation": "https://github.com/maintkit/maintkit/tree/main/docs",
        "Issues": "https://github.com/maintkit/maintkit/issues",
        "Changelog": "https://github.com/maintkit/maintkit/releases",
        "Source": "https://github.com/maintkit/maintkit",
    }
    classifiers = meta.get_all("Classifier") or []
    assert "Programming Language :: Python :: 3.11" in classifiers
    assert "Topic :: System :: Systems Administration" in classifiers
    assert not any(c.startswith("License ::") for c in classifiers)  # the SPDX expression says it
    assert set(meta.get_all("Provides-Extra") or []) == {"notify", "browser", "test", "dev"}
    requires = importlib.metadata.requires("maintkit") or []
    base = sorted(r.split(">")[0].split(";")[0].strip() for r in requires if "extra ==" not in r)
    assert "invoke" not in base and "apprise" not in base and "fabric" in base
    extra = {r.split(";")[0].strip(): r.split('extra == "')[1].rstrip('"') for r in requires if "extra ==" in r}
    assert extra["apprise>=1.9"] in ("notify", "test")
    dev = {r.split(";")[0].strip() for r in requires if r.endswith('extra == "dev"')}
    assert {"ruff>=0.5", "mypy>=1.10", "import-linter>=2.0", "nox>=2024.3"} <= dev
    test = {r.split(";")[0].strip() for r in requires if r.endswith('extra == "test"')}
    assert {"pytest>=8", "hypothesis>=6.100", "jsonschema>=4.20", "playwright>=1.40"} <= test
    assert not test & dev
    assert "maintenance" in (meta["Keywords"] or "")


def test_an_apprise_url_without_apprise_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "apprise", None)  # import apprise -> ImportError
    with pytest.raises(NotifyError) as err:
        send_apprise("tgram://123456789:AAbbCCdd/42", "t", "b", True)
    assert str(err.value) == (
        "tgram://…: this kind of URL needs apprise, maintkit's 'notify' extra "
        "(pip install 'maintkit[notify]', or pip install apprise)"
    )
