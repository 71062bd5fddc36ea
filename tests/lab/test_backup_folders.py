"""backup.create's verify against real servers (MariaDB, sshd on h1).

Verify's size and sha256 of every item are read in the round trip of the rename that completes
the backup. These tests change a dump on the host where verify must notice it: before that
round trip, and after the probe cache was dropped (as after any change on the host).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from maintkit.action import Context, RunOptions
from maintkit.actions.backup.create import BackupCreate, BackupCreateParams, item_facts
from maintkit.errors import VerifyFailed
from maintkit.inventory import Environment, load_inventory
from maintkit.probes.backup import BackupListing
from maintkit.results import StepStatus
from maintkit.transport.factory import transport_for
from tests.lab import test_backup
from tests.lab.recording import Recorder, Recording
from tests.lab.sshd import SshLab
from tests.lab.test_backup import Shop, give_to_deploy, one_step

pytestmark = pytest.mark.lab
shop = test_backup.shop  # the fixture: a site on h1 with its database


def defaults_file(shop: Shop) -> str:
    """An option file for the login user with the shop's credentials (no password parameter)."""
    path = shop.path.parent / "shop.cnf"
    path.write_text(shop.mariadb.my_cnf_text(shop.user, shop.password))
    path.chmod(0o600)
    give_to_deploy(path)
    return str(path)


def step_commands(rec: Recorder, shop: Shop, ssh_lab: SshLab, run_id: str) -> list[str]:
    """What the step sent to h1, between the stage's read and lock and the unlock."""
    h1 = ssh_lab.hosts[0]
    kinds = rec.kinds(h1, shop.path, run_id)
    assert kinds[:2] == ["read", "lock+read"] and kinds[-1] == "unlock", kinds
    assert kinds[2:-1] == ["step"] * (len(kinds) - 3), kinds
    return [text for _, text in rec.by_host[h1.ip].sent[2:-1]]


class Tampering(Recording):
    """A recording transport that changes one byte of the dump in the ``.partial`` folder (its
    size kept) just before the round trip of the rename goes out."""

    def __init__(self, inner: Any, backups: Path) -> None:
        super().__init__(inner)
        self.backups = backups
        self.changed: list[Path] = []

    def run_shell(self, script: str, **kwargs: Any) -> Any:
        if "mv -T" in script and not self.changed:
            [dump] = self.backups.glob("*.partial/db-*.sql.gz")
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
    assert step.error == f"verify: backup {bid}: db-{shop.db}.sql.gz does not match its manifest"
    folders, dump, finish = step_commands(rec, shop, ssh_lab, result.run_id)
    assert "mv -T" in finish and finish.count("sha256sum <") == 1  # verify's read; nothing after it
    assert rec.sessions(ssh_lab.hosts[0]) == 6


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
