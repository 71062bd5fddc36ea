"""The switch of a package folder (``switch_script``) and the restore of a snapshot
(``restore_script``) put the new tree in place with one atomic ``renameat2(RENAME_EXCHANGE)``
where the host can, so a request never finds the live folder missing; elsewhere with two
renames. Run for real with ``sh``, ``perl`` and ``mv``: a wrapper around ``mv`` records, each
time it is called, what the live path holds at that moment (the contents of its ``marker``,
or ``missing``), which is what a request arriving then would see.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from maintkit.actions.cms.drivers.wordpress_switch import sibling, switch_script
from maintkit.actions.cms.snapshots import RENAMED_MARK, restore_script
from tests.hostile_names import hostile_names

#: how the host answers the exchange: it swaps, it has no perl, or its file system refuses
MODES = ("exchange", "no-perl", "refused")
_MV = shutil.which("mv") or "/bin/mv"


def tools(where: Path, mode: str, *, fail_into_dest: bool = False) -> dict[str, str]:
    """A PATH of only the tools the scripts use; ``mv`` wrapped (see the module docstring).
    ``fail_into_dest``: the wrapper fails the first rename whose target is the live path."""
    bin_dir = where / "bin"
    bin_dir.mkdir()
    for tool in ("rm", "cp", "cat"):
        (bin_dir / tool).symlink_to(shutil.which(tool) or f"/bin/{tool}")
    if mode == "exchange":
        (bin_dir / "perl").symlink_to(shutil.which("perl") or "/usr/bin/perl")
    elif mode == "refused":  # as perl does when renameat2 answers EINVAL (NFS, old overlayfs)
        (bin_dir / "perl").write_text("#!/bin/sh\nexit 9\n")
        (bin_dir / "perl").chmod(0o755)
    fail = '[ "$4" = "$DEST" ] && [ ! -e "$LOG.failed" ] && : > "$LOG.failed" && exit 1\n' if fail_into_dest else ""
    (bin_dir / "mv").write_text(
        "#!/bin/sh\n"
        'if [ -e "$DEST" ]; then cat "$DEST/marker" >> "$LOG"; else echo missing >> "$LOG"; fi\n'
        f'{fail}exec {_MV} "$@"\n'
    )
    (bin_dir / "mv").chmod(0o755)
    return {"PATH": str(bin_dir), "LOG": str(where / "log"), "LC_ALL": "C"}


def package(root: Path, marker: str) -> None:
    root.mkdir(parents=True)
    (root / "marker").write_text(marker + "\n")
    (root / "includes").mkdir()
    (root / "includes" / f"{marker}.php").write_text(f"<?php // {marker}\n")


def switch_case(parent: Path, name: str) -> tuple[str, Path]:
    """The script switching a staged ``new`` package over an ``old`` one at ``parent/name``."""
    side = sibling(str(parent / name))
    package(Path(side.new), "new")
    return switch_script(side), Path(side.dest)


def restore_case(parent: Path, name: str) -> tuple[str, Path]:
    """The script restoring a ``new`` snapshot over an ``old`` tree at ``parent/name``."""
    snap = parent.parent / "snapshots" / "tree"
    package(snap, "new")
    return restore_script(str(snap), str(parent / name)), parent / name


CASES: dict[str, Callable[[Path, str], tuple[str, Path]]] = {"switch": switch_case, "restore": restore_case}


def run_case(
    where: Path, case: str, mode: str, name: str, login_env: dict[str, str] | None = None, **kw: bool
) -> tuple[subprocess.CompletedProcess[str], Path]:
    """``login_env``: more of the login's environment (the host user's own settings)."""
    parent = where / "plugins"
    parent.mkdir(parents=True)
    package(parent / name, "old")
    script, dest = CASES[case](parent, name)
    env = tools(where, mode, **kw) | {"DEST": str(dest)} | (login_env or {})
    done = subprocess.run(["/bin/sh", "-c", script], capture_output=True, text=True, env=env, check=False)
    return done, dest


def tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): p.read_text() for p in sorted(root.rglob("*")) if p.is_file()}


NEW = {"marker": "new\n", "includes/new.php": "<?php // new\n"}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("mode", MODES)
def test_the_live_folder_is_missing_only_where_the_host_cannot_exchange(tmp_path: Path, case: str, mode: str) -> None:
    done, dest = run_case(tmp_path, case, mode, "shop-cart")

    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == ("" if mode == "exchange" else f"{RENAMED_MARK}\n")  # the fallback says so
    assert tree(dest) == NEW
    assert sorted(os.listdir(dest.parent)) == ["shop-cart"]  # no sibling left
    seen = (tmp_path / "log").read_text().split()
    # exchanged: the one mv (the old tree, out of the way) finds the new tree live already;
    # two renames: the second finds the live path missing, as a request arriving then would
    assert seen == (["new"] if mode == "exchange" else ["old", "missing"])


def hostile_perl_env(where: Path, variable: str) -> dict[str, str]:
    """A login whose perl setting ``variable`` would break the exchange if perl read it: a module
    that does not exist in PERL5OPT, a ``Config.pm`` that fails first in PERL5LIB or PERLLIB."""
    if variable == "PERL5OPT":
        return {variable: "-MNoSuchModule::Anywhere"}
    lib = where / "perl-lib"
    lib.mkdir()
    (lib / "Config.pm").write_text("package Config; exit 9;\n")
    return {variable: str(lib)}


@pytest.mark.parametrize("variable", ["PERL5OPT", "PERL5LIB", "PERLLIB"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_the_logins_perl_settings_do_not_stop_the_exchange(tmp_path: Path, case: str, variable: str) -> None:
    login_env = hostile_perl_env(tmp_path, variable)
    perl = shutil.which("perl") or "/usr/bin/perl"
    probe = subprocess.run([perl, "-e", "use Config; exit 0"], env=login_env, capture_output=True, check=False)
    assert probe.returncode != 0  # it does break a perl that reads it

    done, dest = run_case(tmp_path, case, "exchange", "shop-cart", login_env)

    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")  # exchanged: no fallback marker
    assert tree(dest) == NEW
    assert (tmp_path / "log").read_text().split() == ["new"]


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_fresh_install_is_one_rename(tmp_path: Path, case: str) -> None:
    parent = tmp_path / "plugins"
    parent.mkdir()
    script, dest = CASES[case](parent, "shop-cart")
    env = tools(tmp_path, "exchange") | {"DEST": str(dest)}
    done = subprocess.run(["/bin/sh", "-c", script], capture_output=True, text=True, env=env, check=False)
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")  # nothing was live: no window
    assert tree(dest) == NEW and sorted(os.listdir(parent)) == ["shop-cart"]
    assert (tmp_path / "log").read_text().split() == ["missing"]


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_failed_second_rename_puts_the_old_tree_back(tmp_path: Path, case: str) -> None:
    done, dest = run_case(tmp_path, case, "no-perl", "shop-cart", fail_into_dest=True)
    assert done.returncode == 6
    assert tree(dest) == {"marker": "old\n", "includes/old.php": "<?php // old\n"}
    assert (tmp_path / "log").read_text().split() == ["old", "missing", "missing"]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=hostile_names())
@pytest.mark.parametrize("mode", ["exchange", "refused"])
def test_hostile_names_are_switched_exactly(tmp_path_factory: pytest.TempPathFactory, mode: str, name: str) -> None:
    where = tmp_path_factory.mktemp("swap")
    done, dest = run_case(where, "switch", mode, name)
    assert (done.returncode, done.stderr) == (0, "")
    assert tree(dest) == NEW
    assert os.listdir(dest.parent) == [name]
