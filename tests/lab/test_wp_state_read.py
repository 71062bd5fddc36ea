"""The read of the installed WordPress (one boot of the PHP helper) is a probe cms.update declares.

So the monthly-update never sends it in a round trip of its own: on a changing run it comes with
the backup's last round trip (after the backup's change, which drops what was read before), on a
run that changes nothing with the stage's first read. compat.check's precheck, the maintenance
window's ``will_change('update')`` and cms.update share that one read; the update's own change
never reads it again (its verify takes what the re-activation reported). Counted on the lab's
sshd through the real SSH transport, every helper start by a ``php`` shim on the host.
"""

from __future__ import annotations

import json

import pytest

from maintkit.results import StepStatus
from tests.cms_helpers import make_shop_cart_zip, wp_plugin_version
from tests.lab.recording import Recorder
from tests.lab.wp_fixtures import Shop, run, steps, write_inventory

pytestmark = pytest.mark.lab

LIST = ' list \'{"readonly":true'  # the state read's arguments, in the command that carries it


def commands(rec: Recorder, host_ip: str) -> list[str]:
    return [text for _, text in rec.by_host[host_ip].sent]


def test_the_state_read_rides_with_the_backup_then_with_the_first_read(shop: Shop) -> None:
    make_shop_cart_zip(shop.repo, "1.1.0")
    inv = write_inventory(shop)
    rec = Recorder()
    result = run(shop, inv, transport_factory=rec)
    assert result.ok, json.dumps(result.to_dict(), indent=1)[-3000:]
    assert wp_plugin_version(shop.production.path, "shop-cart") == "1.1.0"
    for env, host in (("staging", shop.staging_host), ("production", shop.production_host)):
        st = steps(result, env)
        assert st["backup"].status is StepStatus.CHANGED and st["update"].status is StepStatus.CHANGED
        sent = commands(rec, host.ip)
        reads = [i for i, c in enumerate(sent) if LIST in c]
        assert len(reads) == 1, (env, [c[:120] for c in sent])  # one state read per stage
        carrier = sent[reads[0]]
        # the backup's rename, then the reads after it: the state read among them
        assert "mv -T" in carrier and carrier.index("mv -T") < carrier.index(LIST), env
        assert "@@mk-" in carrier and carrier.count("$?") >= 2, env

    rec = Recorder()
    again = run(shop, inv, transport_factory=rec)
    assert again.ok
    for env, host in (("staging", shop.staging_host), ("production", shop.production_host)):
        assert steps(again, env)["update"].status is StepStatus.UNCHANGED
        sent = commands(rec, host.ip)
        # nothing changes: the stage's first read carries the state read, and nothing else is sent
        # for it (staging: that read alone; production adds the packages' tree hashes)
        assert LIST in sent[0] and "MAINT-LOCK-SEEN" in sent[0], env
        assert sum(LIST in c for c in sent) == 1, env
    # staging's other two: the packages' tree hashes (the version lock) and compat's error-log read
    later = commands(rec, shop.staging_host.ip)[1:]
    assert len(later) == 2 and later[0].startswith("mk_trees=$(") and "tail -n 5000" in later[1]
