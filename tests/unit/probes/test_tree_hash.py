"""The tree hash of package folders (:mod:`maintkit.probes.tree_hash`) on the real shell, perl,
openssl and coreutils of this machine: the one-process perl reader and the portable shell loop
print the same values as a reference computed here from the files (the definition), for trees
of hostile names, symlinks, empty folders and files; each is shown to be the one answering (the
other's programs are taken off the ``PATH``); and whatever the perl reader cannot answer
exactly (a file it cannot read, a digest program that fails, a relative path, a hostile
``PERL5OPT`` or ``OPENSSL_CONF``) is answered by the loop, with the loop's values.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from maintkit.probes.tree_hash import tree_hash_loop, tree_hash_script, tree_lines
from tests.hostile_names import distinct_names

EMPTY = hashlib.sha256(b"").hexdigest()


def reference(path: Path) -> str:
    """The definition: sha256 over ``<sha256 of the file>  ./<name>\\n`` of every regular file
    (not through symlinks), sorted bytewise by name; a single file as ``./<its name>``."""
    if path.is_dir():
        names = []
        for dirpath, dirs, files in os.walk(path):
            for n in files + dirs:
                full = Path(dirpath) / n
                if stat.S_ISREG(full.lstat().st_mode):
                    names.append(b"./" + os.fsencode(full.relative_to(path)))
        base = os.fsencode(path)
    elif path.is_file():
        names, base = [b"./" + os.fsencode(path.name)], os.fsencode(path.parent)
    else:
        return "missing"
    text = b"".join(
        hashlib.sha256(Path(os.fsdecode(base + n[1:])).read_bytes()).hexdigest().encode() + b"  " + n + b"\n"
        for n in sorted(names)
    )
    return hashlib.sha256(text).hexdigest()


def tools_only(tmp: Path, names: list[str]) -> str:
    """A PATH with only ``names`` (and sh) in it."""
    bin_dir = tmp / f"bin-{'-'.join(names)}"
    bin_dir.mkdir(exist_ok=True)
    for n in [*names, "sh"]:
        target = shutil.which(n)
        assert target, n
        if not (bin_dir / n).exists():
            (bin_dir / n).symlink_to(target)
    return str(bin_dir)


PERL_TOOLS = ["perl", "openssl", "sha256sum"]
LOOP_TOOLS = ["find", "sort", "xargs", "sha256sum", "tr"]


def run(script: str, env: dict[str, str] | None = None, user: str | None = None) -> str:
    argv = ["sh", "-c", script]
    if user:
        pw = pwd.getpwnam(user)
        argv = ["setpriv", f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}", "--clear-groups", "--", *argv]
    out = subprocess.run(argv, capture_output=True, env={**os.environ, **(env or {})}, cwd="/", check=True)
    return out.stdout.decode()


def make_tree(root: Path, names: list[str], payloads: list[bytes]) -> None:
    """Files and folders under ``root`` named ``names`` (every third a folder holding the next)."""
    root.mkdir()
    here = root
    for i, (name, data) in enumerate(zip(names, payloads, strict=True)):
        if i % 3 == 1:
            here = here / name
            here.mkdir()
            (here / "in.txt").write_bytes(data)
        else:
            (here / name).write_bytes(data)
    (root / "empty-dir").mkdir()
    (root / "link-to-file").symlink_to(root / "empty-dir")
    (root / "dangling").symlink_to(root / "nowhere")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(names=distinct_names(6), payloads=st.lists(st.binary(max_size=300), min_size=6, max_size=6))
def test_perl_and_the_loop_print_the_definition_for_hostile_trees(
    tmp_path_factory: pytest.TempPathFactory, names: list[str], payloads: list[bytes]
) -> None:
    tmp = tmp_path_factory.mktemp("trees")
    pkg = tmp / names[0]
    make_tree(pkg, names, payloads)
    single = next(p for p in pkg.iterdir() if p.is_file() and not p.is_symlink())
    empty = tmp / "empty"
    empty.mkdir()
    paths = [str(pkg), str(single), str(empty), str(tmp / "absent"), str(tmp)]
    want = [reference(Path(p)) for p in paths]
    assert want[2] == EMPTY and want[3] == "missing"

    by_perl = run(tree_hash_script(paths), {"PATH": tools_only(tmp, PERL_TOOLS)})
    by_loop = run(tree_hash_script(paths), {"PATH": tools_only(tmp, LOOP_TOOLS)})

    assert by_perl.splitlines() == want
    assert by_loop.splitlines() == want
    assert run(tree_hash_loop(paths)) == by_perl
    assert tree_lines(paths, by_perl) == {p: (None if w == "missing" else w) for p, w in zip(paths, want, strict=True)}


def package(tmp: Path) -> Path:
    pkg = tmp / "shop-cart"
    make_tree(pkg, ["a.php", "inc", "b\\c.txt", "d\ne", "sub", "f.txt"], [b"1", b"2", b"3", b"4", b"5", b"6"])
    return pkg


def test_without_perl_or_openssl_the_loop_answers(tmp_path: Path) -> None:
    pkg = package(tmp_path)
    want = [reference(pkg), "missing"]
    paths = [str(pkg), str(tmp_path / "absent")]
    for tools in (LOOP_TOOLS, [*LOOP_TOOLS, "perl"], [*LOOP_TOOLS, "openssl"]):
        assert run(tree_hash_script(paths), {"PATH": tools_only(tmp_path, tools)}).splitlines() == want


def test_a_failing_digest_program_leaves_the_answer_to_the_loop(tmp_path: Path) -> None:
    pkg = package(tmp_path)
    bin_dir = Path(tools_only(tmp_path, [*PERL_TOOLS, *LOOP_TOOLS]))
    fake = tmp_path / "fake-openssl"
    fake.write_text("#!/bin/sh\necho 'not a digest'\nexit 1\n")
    fake.chmod(0o755)
    (bin_dir / "openssl").unlink()
    (bin_dir / "openssl").symlink_to(fake)

    assert run(tree_hash_script([str(pkg)]), {"PATH": str(bin_dir)}).splitlines() == [reference(pkg)]


def test_a_relative_path_is_answered_by_the_loop(tmp_path: Path) -> None:
    pkg = package(tmp_path)
    out = subprocess.run(["sh", "-c", tree_hash_script(["shop-cart"])], cwd=tmp_path, capture_output=True, check=True)
    assert out.stdout.decode().splitlines() == [reference(pkg)]


def test_a_hostile_perl5opt_or_openssl_conf_changes_nothing(tmp_path: Path) -> None:
    pkg = package(tmp_path)
    conf = tmp_path / "openssl.cnf"
    conf.write_text("openssl_conf = init\n[init]\nproviders = p\n[p]\nnone = none_sect\n[none_sect]\nactivate = 1\n")
    lib = tmp_path / "lib"
    (lib / "Digest").mkdir(parents=True)
    (lib / "Digest" / "SHA.pm").write_text("package Digest::SHA; sub sha256_hex { 'f' x 64 } 1;\n")
    env = {"PERL5OPT": "-Mwarnings=FATAL,all -d:NoSuchDebugger", "PERL5LIB": str(lib), "OPENSSL_CONF": str(conf)}
    env["PATH"] = tools_only(tmp_path, PERL_TOOLS)  # only perl can answer

    assert run(tree_hash_script([str(pkg)]), env).splitlines() == [reference(pkg)]


def test_files_the_login_cannot_read_are_left_out_as_the_loop_leaves_them() -> None:
    base = Path(tempfile.mkdtemp(prefix="maintkit-trees-"))  # nobody can reach it (pytest's is 0700)
    try:
        base.chmod(0o755)
        pkg = package(base)
        for p in [pkg, *pkg.rglob("*")]:
            if not p.is_symlink():
                p.chmod(0o755 if p.is_dir() else 0o644)
        (pkg / "a.php").chmod(0o600)  # unreadable for nobody
        (pkg / "inc" / "sub").chmod(0o700)  # cannot be entered
        paths = [str(pkg), str(pkg / "inc" / "sub"), str(pkg / "a.php")]

        loop = run(tree_hash_loop(paths), user="nobody")
        script = run(tree_hash_script(paths), user="nobody")

        assert script == loop
        lines = loop.splitlines()
        assert lines[0] != reference(pkg) and len(lines[0]) == 64  # hashed without what it cannot read
        assert lines[1] == ""  # a folder it cannot enter: no value
        assert lines[2] == EMPTY  # a file it cannot read: nothing hashed
    finally:
        shutil.rmtree(base)
