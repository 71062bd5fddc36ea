"""backup.create's folders and verify's reads against real servers (MariaDB, sshd on h1).

The backup directory and the backup's ``.partial`` folder are made in front of the first command
that writes into them (for MariaDB/MySQL: the one round trip of the dump), and verify's size and
sha256 of every item are read in the round trip of the rename that completes the backup. These
tests count the round trips exactly, change a dump on the host where verify must notice it, make
the ``.partial`` name clash with a folder that exists, and use a hostile backup directory.
"""

from __future__ import annotations

import re
import shlex
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import maintkit.actions.backup.create as create_module
from maintkit.action import Context, RunOptions
from maintkit.actions.backup import new_backup_id
from maintkit.actions.backup.create import BackupCreate, BackupCreateParams, item_facts
from maintkit.errors import VerifyFailed
from maintkit.inventory import Environment, load_inventory
from maintkit.probes.backup import BackupListing
from maintkit.results import StepStatus
from maintkit.transport.factory import transport_for
from tests.lab import test_backup
from tests.lab.recording import Recorder, Recording
from tests.lab.sshd import SshLab
from tests.lab.test_backup import SECRET_VAR, Shop, give_to_deploy, sha256
from tests.runs import one_step

pytestmark = pytest.mark.lab
shop = test_backup.shop  # the fixture: a site on h1 with its database

MADE = r"echo '@@mk-[0-9a-f]{32} made'"


def defaults_file(shop: Shop) -> str:
    """An option file for the login user with the shop's credentials (no password parameter)."""
    path = shop.path.parent / "shop.cnf"
    path.write_text(shop.mariadb.my_cnf_text(shop.user, shop.password))
    path.chmod(0o600)
    give_to_deploy(path)
    return str(path)


def prepare_line(directory: str, part: str) -> str:
    """The folder preparation as it stands in front of the first command that writes."""
    q = shlex.quote
    return f"mkdir -p -- {q(directory)} && chmod 700 -- {q(directory)} && mkdir -m 700 -- {q(part)} || exit $?\n"


def step_commands(rec: Recorder, shop: Shop, ssh_lab: SshLab, run_id: str) -> list[str]:
    """What the step sent to h1, between the stage's lock (taken in its first round trip: a backup
    without max_age is always due) and the unlock."""
    h1 = ssh_lab.hosts[0]
    kinds = rec.kinds(h1, shop.path, run_id)
    assert kinds[:1] == ["lock+read"] and kinds[-1] == "unlock", kinds
    assert kinds[1:-1] == ["step"] * (len(kinds) - 2), kinds
    return [text for _, text in rec.by_host[h1.ip].sent[1:-1]]


def tree(root: Path) -> dict[str, tuple[int, bytes | None]]:
    """Every entry under ``root``: its mode and, for files, its bytes."""
    out: dict[str, tuple[int, bytes | None]] = {}
    for p in sorted([root, *root.rglob("*")]):
        st = p.lstat()
        out[str(p.relative_to(root))] = (st.st_mode, p.read_bytes() if stat.S_ISREG(st.st_mode) else None)
    return out


def test_mariadb_prepare_and_dump_are_one_round_trip(shop: Shop, ssh_lab: SshLab) -> None:
    """No password parameter (an option file): the step is TWO round trips, the folders and the
    dump in one, the manifest, the rename and verify's reads in the other."""
    database = {"name": shop.db, "defaults_file": defaults_file(shop)}
    rec = Recorder()
    result = shop.run(text=one_step("backup.create", database=database), transport_factory=rec)
    assert result.ok, result.sites[0].error
    [manifest] = shop.manifests()
    folder, final = str(shop.backup_dir), f"{shop.backup_dir}/{manifest['id']}"
    dump, finish = step_commands(rec, shop, ssh_lab, result.run_id)
    assert dump.startswith(prepare_line(folder, final + ".partial"))
    lines = dump.split("\n")
    assert re.fullmatch(MADE, lines[1]) and dump.count("mkdir") == 2  # the folders made, said so
    assert re.fullmatch(r"echo '(@@mk-[0-9a-f]{32}) before'; echo '\1 before' >&2", lines[2])  # then the dump
    assert dump.count("mariadb-dump --defaults-file=") == 1 and f".partial/db-{shop.db}.sql.zst" in dump
    assert "mv -T" in finish and f"sha256sum < {final}/db-{shop.db}.sql.zst" in finish
    assert finish.index("mv -T") < finish.index(f"sha256sum < {final}/")
    assert rec.sessions(ssh_lab.hosts[0]) == 4  # lock+read (a backup is due), the dump, the rename, unlock
    # the folders as before: the backup directory 0700, the backup renamed, its dump as the manifest says
    assert stat.S_IMODE(shop.backup_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE((shop.backup_dir / manifest["id"]).stat().st_mode) == 0o700
    assert sorted(p.name for p in shop.backup_dir.iterdir()) == [manifest["id"]]
    [item] = manifest["items"]
    dumped = shop.backup_dir / manifest["id"] / item["file"]
    assert dumped.stat().st_size == item["size"] and sha256(dumped) == item["sha256"]
    assert item["tables"]["orders"] == {"type": "table", "rows": 600}


class Tampering(Recording):
    """A recording transport that changes one byte of the dump in the ``.partial`` folder (its
    size kept) just before the round trip of the rename goes out."""

    def __init__(self, inner: Any, backups: Path) -> None:
        super().__init__(inner)
        self.backups = backups
        self.changed: list[Path] = []

    def run_shell(self, script: str, **kwargs: Any) -> Any:
        if "mv -T" in script and not self.changed:
            [dump] = self.backups.glob("*.partial/db-*.sql.zst")
            data = bytearray(dump.read_bytes())
            data[len(data) // 2] ^= 0xFF
            dump.write_bytes(bytes(data))
            self.changed.append(dump)
        return super().run_shell(script, **kwargs)


def test_verify_takes_the_facts_from_the_rename_and_still_fails_on_a_changed_dump(shop: Shop, ssh_lab: SshLab) -> None:
    """The dump changed on the host after its own size and sha256 were taken: verify, reading the
    files as the rename's round trip found them, fails with the manifest's message, and sends no
    sha256 command of its own."""
    rec = Recorder()
    tampering: list[Tampering] = []

    def factory(env: Environment) -> Any:
        wrapped = Tampering(transport_for(env, {}), shop.backup_dir)
        rec.by_host[env.host or ""] = wrapped
        tampering.append(wrapped)
        return wrapped

    database = {"name": shop.db, "defaults_file": defaults_file(shop)}
    result = shop.run(text=one_step("backup.create", database=database), transport_factory=factory)
    assert not result.ok
    [changed] = tampering[0].changed
    [step] = result.sites[0].steps
    assert step.status is StepStatus.FAILED
    bid = changed.parent.name.removesuffix(".partial")
    assert step.error == f"verify: backup {bid}: db-{shop.db}.sql.zst does not match its manifest"
    dump, finish = step_commands(rec, shop, ssh_lab, result.run_id)
    assert "mv -T" in finish and finish.count("sha256sum <") == 1  # verify's read; nothing after it
    assert rec.sessions(ssh_lab.hosts[0]) == 4


def test_verify_reads_afresh_once_the_cache_is_dropped(shop: Shop) -> None:
    """What the runner does after any change on the host (drop the probe cache): verify then
    reads the listing and the files again, and a dump changed meanwhile fails it."""
    database = {"name": shop.db, "defaults_file": defaults_file(shop)}
    created = shop.run(text=one_step("backup.create", database=database))
    assert created.ok, created.sites[0].error
    record = created.sites[0].steps[0].data["backup"]
    site = load_inventory(shop.inventory).sites["shop"]
    env = site.environments["production"]
    transport = transport_for(env, {})
    try:
        ctx = Context(site, env, transport, RunOptions(), data={"backup": record})
        action = BackupCreate(BackupCreateParams(database=database))
        manifest = ctx.probe(BackupListing(record["dir"])).get(record["id"])
        assert manifest is not None
        assert ctx.probe(item_facts(manifest))  # cached, as the rename's round trip leaves it
        action.verify(ctx)
        [item] = manifest.items
        dumped = shop.backup_dir / manifest.id / item["file"]
        data = bytearray(dumped.read_bytes())
        data[-5] ^= 0x01  # same size, another sha256
        dumped.write_bytes(bytes(data))
        ctx.invalidate()
        sent = transport.round_trips
        with pytest.raises(VerifyFailed, match=f"backup {manifest.id}: {item['file']} does not match its manifest"):
            action.verify(ctx)
        assert transport.round_trips == sent + 2  # the listing and the files, read again
    finally:
        transport.close()


VARIANTS: dict[str, Callable[[Shop], dict[str, Any]]] = {
    "dump": lambda shop: {"database": {"name": shop.db, "defaults_file": defaults_file(shop)}},
    "password": lambda shop: {"database": True, "password": "{{ secrets." + SECRET_VAR + " }}"},
    "files": lambda shop: {"files": ["wp-config.php"]},
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_a_clash_of_the_partial_folder_fails_and_leaves_it_untouched(
    shop: Shop, ssh_lab: SshLab, monkeypatch: pytest.MonkeyPatch, variant: str
) -> None:
    """A ``.partial`` folder of the new backup's name already exists: whichever command carries
    the preparation (the dump, the option file, the archive), the step fails with the
    preparation's own error, nothing else is written, and that folder is left as it was."""
    bid = new_backup_id()
    monkeypatch.setattr(create_module, "new_backup_id", lambda now=None: bid)
    clash = shop.backup_dir / f"{bid}.partial"
    clash.mkdir(parents=True)
    (clash / f"db-{shop.db}.sql.zst").write_bytes(b"not ours\n")
    (clash / "files.tar.zst").write_bytes(b"not ours either\n")
    give_to_deploy(shop.path / ".maint")
    clash.chmod(0o750)
    shop.backup_dir.chmod(0o700)  # as an earlier backup left it (the preparation makes it 0700 first)
    before = tree(shop.backup_dir)
    rec = Recorder()

    result = shop.run(text=one_step("backup.create", **VARIANTS[variant](shop)), transport_factory=rec)

    assert not result.ok
    folder, part = str(shop.backup_dir), str(clash)
    [step] = result.sites[0].steps
    command = prepare_line(folder, part).removesuffix(" || exit $?\n")
    # word for word what the preparation reported when it was a round trip of its own
    host = ssh_lab.hosts[0].ip
    assert step.error == (
        f"step: {host}: command failed with exit 1: {command}\nmkdir: cannot create directory '{part}': File exists"
    ), step.error
    assert tree(shop.backup_dir) == before  # the folder, its files and modes as they were; nothing added
    sent = step_commands(rec, shop, ssh_lab, result.run_id)
    assert sent[0].startswith(prepare_line(folder, part))  # the one command that carried the preparation
    if variant == "password":  # the option file was never written; removing it is all that follows
        assert len(sent) == 2 and sent[1].startswith(f"rm -f -- {folder}/.cred-")
    else:
        assert len(sent) == 1


HOSTILE = "-b 'q\"uo\\te'\n$(id) *?[ab] ünï日本 --"


def test_a_hostile_backup_directory(shop: Shop, ssh_lab: SshLab) -> None:
    """Quotes, a backslash, a newline, spaces, globs and a leading dash in the backup directory:
    made 0700, the backup complete and verified, nothing made beside it."""
    parent = shop.path.parent / "backups"
    parent.mkdir()
    give_to_deploy(parent)
    directory = parent / HOSTILE
    database = {"name": shop.db, "defaults_file": defaults_file(shop)}
    text = one_step("backup.create", database=database, files=["wp-config.php"], backup_dir=str(directory))
    rec = Recorder()

    result = shop.run(text=text, transport_factory=rec)

    assert result.ok, result.sites[0].error
    assert [p.name for p in parent.iterdir()] == [HOSTILE]
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    [manifest] = shop.manifests(directory)
    assert sorted(p.name for p in directory.iterdir()) == [manifest["id"]]
    for item in manifest["items"]:
        f = directory / manifest["id"] / item["file"]
        assert f.stat().st_size == item["size"] and sha256(f) == item["sha256"]
    sent = step_commands(rec, shop, ssh_lab, result.run_id)
    assert sent[0].startswith(prepare_line(str(directory), f"{directory}/{manifest['id']}.partial"))
    assert len(sent) == 5  # the dump, the archive, its count, its facts, the rename with verify's reads
    assert not shop.backup_dir.exists()  # the default folder was never made

    # the folder exists now; with a password the preparation goes with the option file into it
    password = "{{ secrets." + SECRET_VAR + " }}"
    again = shop.run(text=one_step("backup.create", database=True, password=password, backup_dir=str(directory)))
    assert again.ok, again.sites[0].error
    second = next(m for m in shop.manifests(directory) if m["id"] != manifest["id"])
    assert sorted(p.name for p in directory.iterdir()) == sorted([manifest["id"], second["id"]])
    [item] = second["items"]
    f = directory / second["id"] / item["file"]
    assert f.stat().st_size == item["size"] and sha256(f) == item["sha256"]
