"""admins.audit on a real WordPress site (PHP helper over SSH) and a Magento admin_user table (MariaDB)."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from maintkit.inventory import load_inventory
from maintkit.results import RunResult, StepResult, StepStatus
from maintkit.state.index import series
from tests import runs
from tests.cms_helpers import WpSite, WpTemplate, chown_tree
from tests.lab.mariadb import MariaDB
from tests.lab.sshd import LabHost

pytestmark = pytest.mark.lab

PLAYBOOK = """\
name: watch-admins
stages:
  - env: production
    steps:
      - {id: admins, action: admins.audit}
"""
CAPS = 'a:1:{s:13:"administrator";b:1;}'


@dataclass
class World:
    host: LabHost
    tmp: Path
    env: dict[str, Any]
    platform: str
    site_vars: dict[str, Any]

    def run(self, **audit: Any) -> StepResult:
        site_vars = {**self.site_vars, "admins_audit": {**self.site_vars.get("admins_audit", {}), **audit}}
        sites = {"shop": {"platform": self.platform, "vars": site_vars, "environments": {"production": self.env}}}
        inventory = load_inventory(runs.write_inventory(self.tmp, sites, unique=True))
        result: RunResult = runs.run(PLAYBOOK, inventory, self.tmp / "state")
        (step,) = [s for site in result.sites for s in site.steps]
        step.data["run_dir"] = str(result.run_dir)
        return step

    def series(self, name: str) -> list[dict[str, Any]]:
        return series(self.tmp / "state", "shop", "production", name)


def text(step: StepResult) -> str:
    return step.error or step.reason


def add_wp_admin(site: WpSite, mariadb: MariaDB, login: str, email: str) -> None:
    """An administrator created with SQL, behind maintkit's back."""
    site.sql(
        mariadb,
        "INSERT INTO wp_users (user_login, user_pass, user_nicename, user_email, user_registered, display_name) "
        f"VALUES ('{login}', 'x', '{login}', '{email}', '2024-05-01 10:00:00', '{login}')",
    )
    uid = site.sql(mariadb, f"SELECT ID FROM wp_users WHERE user_login='{login}'").strip()
    site.sql(
        mariadb, f"INSERT INTO wp_usermeta (user_id, meta_key, meta_value) VALUES ({uid}, 'wp_capabilities', '{CAPS}')"
    )


@pytest.fixture()
def wp(wp_template: WpTemplate, ssh_hosts: list[tuple[LabHost, Path]], tmp_path: Path) -> tuple[World, WpSite]:  # noqa: F811
    site = wp_template.make_site(owner="deploy")
    host = ssh_hosts[0][0]
    return World(host, tmp_path, host.env(site.path, url=site.url), "wordpress", {}), site


def test_new_admin_is_reported_once_then_acknowledged_into_the_baseline(
    wp: tuple[World, WpSite], mariadb: MariaDB
) -> None:
    world, site = wp
    first = world.run()
    assert first.status is StepStatus.UNCHANGED and text(first) == "baseline recorded (1 administrators)"
    again = world.run()
    assert again.status is StepStatus.UNCHANGED and text(again) == "1 administrators match the baseline"
    assert not (site.path / ".maint" / "php-cache").exists()  # read-only: no compiled-code cache

    add_wp_admin(site, mariadb, "eve", "eve@evil.invalid")
    alert = world.run()
    assert alert.status is StepStatus.FAILED
    fp = alert.exception.details["fingerprint"]  # type: ignore[union-attr]
    new = "new administrator eve <eve@evil.invalid> (wordpress), roles administrator"
    assert text(alert) == (
        f"check: 1 administrator change(s) since the baseline: {new}. "
        f"If expected, acknowledge them with admins_audit: {{acknowledge: {fp}}}"
    )
    quiet = world.run()  # the same change: listed, not failing again
    assert quiet.status is StepStatus.UNCHANGED
    assert text(quiet).startswith(
        f"1 unacknowledged administrator change(s), already alerted: {new} (acknowledge: {fp})"
    )
    wrong = world.run(acknowledge="0123456789abcdef")
    assert wrong.status is StepStatus.UNCHANGED
    assert f"acknowledge 0123456789abcdef ignored: the current administrators have fingerprint {fp}" in text(wrong)

    acked = world.run(acknowledge=fp)
    assert acked.status is StepStatus.UNCHANGED
    assert text(acked) == "acknowledged 1 change(s): the 2 current administrators are the baseline"
    event = [e for e in runs.events(acked.data["run_dir"]) if e.get("event") == "admins.acknowledged"]
    assert len(event) == 1 and event[0]["changes"] == [new] and event[0]["fingerprint"] == fp
    after = world.run(acknowledge=fp)  # the value left in the inventory changes nothing
    assert after.status is StepStatus.UNCHANGED and text(after) == "2 administrators match the baseline"

    findings = [(p["count"], [i["severity"] for i in p["items"]]) for p in world.series("findings")]
    assert findings == [(0, []), (0, []), (1, ["high"]), (1, ["medium"]), (1, ["medium"]), (0, []), (0, [])]
    baseline = world.series("admins-baseline")
    assert [p["kind"] for p in baseline] == ["recorded", "alerted", "acknowledged"]
    assert sorted(a["login"] for a in baseline[-1]["admins"].values()) == ["admin", "eve"]

    # a later change is new: it fails once, and the old acknowledgement does not cover it
    site.sql(mariadb, "UPDATE wp_users SET user_email='eve@other.invalid' WHERE user_login='eve'")
    changed = world.run(acknowledge=fp)
    assert changed.status is StepStatus.FAILED
    assert "email eve@evil.invalid -> eve@other.invalid" in text(changed)


def test_an_unacknowledged_change_alerts_again_after_realert_hours(wp: tuple[World, WpSite], mariadb: MariaDB) -> None:
    world, site = wp
    world.run()
    add_wp_admin(site, mariadb, "mallory", "m@evil.invalid")
    assert world.run().status is StepStatus.FAILED
    assert world.run().status is StepStatus.UNCHANGED
    # the alert was 8 days ago (the baseline point rewritten with that time, as the store would hold it)
    path = next((world.tmp / "state" / "index" / "shop" / "production" / "series" / "admins-baseline").glob("*.jsonl"))
    last = json.loads(path.read_text().splitlines()[-1])
    last["alerted"] = {k: "2000-01-01T00:00:00+00:00" for k in last["alerted"]}
    with path.open("a") as fh:
        fh.write(json.dumps(last) + "\n")
    assert world.run().status is StepStatus.FAILED
    assert world.run().status is StepStatus.UNCHANGED
    assert world.run(realert_hours=0).status is StepStatus.UNCHANGED


def test_two_factor_status_is_reported(wp: tuple[World, WpSite], mariadb: MariaDB) -> None:
    world, site = wp
    step = world.run(two_factor="two-factor")
    assert step.status is StepStatus.UNCHANGED
    assert text(step) == (
        "baseline recorded (1 administrators); warning: administrator admin <admin@lab.invalid> (wordpress) "
        "has no two-factor authentication (two-factor)"
    )
    site.sql(
        mariadb,
        "INSERT INTO wp_usermeta (user_id, meta_key, meta_value) VALUES "
        "(1, '_two_factor_enabled_providers', 'a:1:{i:0;s:15:\"Two_Factor_Totp\";}')",
    )
    assert text(world.run(two_factor="two-factor")) == "1 administrators match the baseline"
    strict = world.run(two_factor={"plugin": "wordfence"}, missing_2fa="high")
    assert strict.status is StepStatus.FAILED
    assert "has no two-factor authentication (wordfence)" in text(strict)


MAGENTO_SCHEMA = """
CREATE TABLE admin_user (user_id INT PRIMARY KEY AUTO_INCREMENT, username VARCHAR(40), email VARCHAR(128),
  is_active SMALLINT DEFAULT 1);
CREATE TABLE authorization_role (role_id INT PRIMARY KEY AUTO_INCREMENT, parent_id INT DEFAULT 0,
  role_type VARCHAR(1), user_id INT DEFAULT 0, user_type VARCHAR(16), role_name VARCHAR(50));
INSERT INTO authorization_role (role_id, parent_id, role_type, user_id, user_type, role_name)
  VALUES (1, 0, 'G', 0, '2', 'Administrators');
INSERT INTO admin_user (username, email) VALUES ('owner', 'owner@shop.invalid'), ('ops', 'ops@shop.invalid');
INSERT INTO authorization_role (parent_id, role_type, user_id, user_type, role_name)
  VALUES (1, 'U', 1, '2', 'owner'), (1, 'U', 2, '2', 'ops');
"""


def test_magento_admin_users_over_ssh(mariadb: MariaDB, ssh_hosts: list[tuple[LabHost, Path]], tmp_path: Path) -> None:
    host, scratch = ssh_hosts[0]
    db = f"mage_{uuid.uuid4().hex[:8]}"
    user, password = mariadb.create_database(db)
    mariadb.sql(MAGENTO_SCHEMA, db)
    cnf = scratch / "mage.cnf"
    cnf.write_text(mariadb.my_cnf_text(user, password))
    cnf.chmod(0o600)
    chown_tree(cnf, "deploy")
    site_vars = {"db_name": db, "db_defaults_file": str(cnf)}
    world = World(host, tmp_path, host.env(scratch), "magento", site_vars)

    assert text(world.run()) == "baseline recorded (2 administrators)"
    mariadb.sql("INSERT INTO admin_user (username, email) VALUES ('intruder', 'x@evil.invalid')", db)
    mariadb.sql("UPDATE admin_user SET is_active = 0 WHERE username = 'ops'", db)
    alert = world.run()
    assert alert.status is StepStatus.FAILED
    assert "administrator ops <ops@shop.invalid> (magento) changed: active True -> False" in text(alert)
    assert "new administrator intruder <x@evil.invalid> (magento), roles -" in text(alert)
    assert world.run().status is StepStatus.UNCHANGED
    mariadb.drop_database(db)
