"""cms.update with the composer driver over SSH: update, promote, refuse, roll back.

A composer shop project (staging on lab host 1, production on lab host 2) uses an offline
artifact repository (``COMPOSER_DISABLE_NETWORK=1``); composer runs as ``deploy``.
"""

from __future__ import annotations

import json
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from maintkit.inventory import Inventory, load_inventory
from maintkit.results import RunResult, StepResult, StepStatus
from tests import runs
from tests.cms_helpers import (
    chown_tree,
    composer_locked_versions,
    maintkit_tree_hash,
    make_composer_package,
    make_composer_project,
    tree_digest,
)
from tests.lab.mariadb import MariaDB
from tests.lab.sshd import LabHost

pytestmark = pytest.mark.lab

PLAYBOOK = """\
name: composer-update
stages:
  - env: staging
    steps:
      - {id: precheck, action: compat.check}
      - {id: update, action: cms.update}
      - {id: compat, action: compat.check, with: {update_step: update}}
  - env: production
    promote: staging
    steps:
      - {id: precheck, action: compat.check}
      - {id: update, action: cms.update}
"""


@dataclass
class Project:
    """A staging/production pair of one composer shop."""

    staging: Path
    production: Path
    staging_host: LabHost
    production_host: LabHost
    artifacts: Path
    home: Path
    tmp: Path

    def path(self, env: str) -> Path:
        return self.staging if env == "staging" else self.production


@pytest.fixture()
def project(ssh_hosts: list[tuple[LabHost, Path]], tmp_path: Path) -> Project:
    (h1, scratch1), (h2, scratch2) = ssh_hosts[0], ssh_hosts[1]
    artifacts = scratch1 / "artifacts"
    for version in ("1.0.0", "1.0.1", "1.1.0", "2.0.0"):
        make_composer_package(artifacts, "acme/plugin", version)
    for version in ("1.0.0", "1.2.0"):
        make_composer_package(artifacts, "acme/lib", version)
    require = {"acme/plugin": "^1.0", "acme/lib": "^1.0"}
    initial = {"acme/plugin": "1.0.0", "acme/lib": "1.0.0"}
    staging, production = scratch1 / "shop", scratch2 / "shop"
    make_composer_project(staging, artifacts, require, initial=initial)
    shutil.copytree(staging, production, symlinks=True)
    home = scratch1 / "composer-home"
    home.mkdir()
    for path in (artifacts, staging, production, home):
        chown_tree(path, "deploy")
    return Project(staging, production, h1, h2, artifacts, home, tmp_path)


def write_inventory(project: Project, cms_update: dict[str, Any] | None = None, **env_vars: Any) -> Inventory:
    settings = {
        "composer_env": {
            "COMPOSER_HOME": str(project.home),
            "COMPOSER_DISABLE_NETWORK": "1",
        },
        **(cms_update or {}),
    }
    envs = {
        env: host.env(project.path(env), vars=dict(env_vars))
        for env, host in (("staging", project.staging_host), ("production", project.production_host))
    }
    sites = {"shop": {"platform": "composer", "vars": {"cms_update": settings}, "environments": envs}}
    return load_inventory(runs.write_inventory(project.tmp, sites, unique=True))


def run(project: Project, inv: Inventory, text: str = PLAYBOOK, **kwargs: Any) -> RunResult:
    return runs.run(text, inv, project.tmp / "state", **kwargs)


def steps(result: RunResult, env: str) -> dict[str, StepResult]:
    return {s.step: s for site in result.sites for s in site.steps if s.env == env}


def locked_dists(path: Path) -> dict[str, tuple[str, str | None]]:
    """name -> (version, dist shasum) from composer.lock."""
    lock = json.loads((path / "composer.lock").read_text())
    return {p["name"]: (p["version"], (p.get("dist") or {}).get("shasum")) for p in lock["packages"]}


def code_tree(path: Path) -> str:
    """composer.json, composer.lock and vendor/ of a project."""
    return tree_digest(path, exclude=(".maint", "public"))


def test_composer_update_promotes_identical_packages_and_is_idempotent(project: Project) -> None:
    inv = write_inventory(project)

    result = run(project, inv)

    assert result.ok, json.dumps(result.to_dict(), indent=1)[-3000:]
    update = steps(result, "staging")["update"]
    assert sorted((u["name"], u["from"], u["to"]) for u in update.data["updates"]) == [
        ("acme/lib", "1.0.0", "1.2.0"),
        ("acme/plugin", "1.0.0", "1.1.0"),
    ]
    assert any(s["name"] == "acme/plugin" and "2.0.0" in s["reason"] for s in update.data["skipped"])
    expected = {"acme/plugin": "1.1.0", "acme/lib": "1.2.0"}
    assert composer_locked_versions(project.staging) == expected
    assert composer_locked_versions(project.production) == expected
    assert locked_dists(project.staging) == locked_dists(project.production)
    lock = json.loads((Path(str(result.run_dir)) / "locks" / "shop.json").read_text())
    for name in expected:
        tree = lock["packages"][f"composer:{name}"]["tree"]
        assert tree == maintkit_tree_hash(project.staging / "vendor" / name)
        assert tree == maintkit_tree_hash(project.production / "vendor" / name)
    assert steps(result, "production")["update"].status is StepStatus.CHANGED

    trees = {env: code_tree(project.path(env)) for env in ("staging", "production")}
    again = run(project, inv)
    assert again.ok, json.dumps(again.to_dict(), indent=1)[-3000:]
    for env in ("staging", "production"):
        assert steps(again, env)["update"].status is StepStatus.UNCHANGED
        assert code_tree(project.path(env)) == trees[env]


def test_check_mode_lists_exact_operations_and_changes_nothing(project: Project) -> None:
    inv = write_inventory(project)
    before = {env: tree_digest(project.path(env)) for env in ("staging", "production")}

    result = run(project, inv, check=True)

    update = steps(result, "staging")["update"]
    assert update.status is StepStatus.WOULD_CHANGE
    assert update.diff is not None and "composer acme/plugin: 1.0.0 -> 1.1.0" in update.diff
    assert steps(result, "production")["update"].status is StepStatus.WOULD_CHANGE
    for env in ("staging", "production"):
        assert tree_digest(project.path(env)) == before[env]


def test_broken_package_is_rolled_back_with_the_database_and_production_is_untouched(
    project: Project, mariadb: MariaDB
) -> None:
    broken = "<?php\nnamespace Acme\\Plugin;\n\nclass Info\n{\n    const VERSION = '1.1.0'\n}\n"  # missing ;
    make_composer_package(project.artifacts, "acme/plugin", "1.1.0", php_code=broken)
    chown_tree(project.artifacts, "deploy")
    db = f"shop_{uuid.uuid4().hex[:8]}"
    user, password = mariadb.create_database(db)
    cnf = project.staging.parent / "db.cnf"
    cnf.write_text(mariadb.my_cnf_text(user, password))
    cnf.chmod(0o600)
    chown_tree(cnf, "deploy")
    mariadb.sql("CREATE TABLE orders (id INT PRIMARY KEY); INSERT INTO orders VALUES (1), (2)", db)
    migrate = [
        "mariadb",
        f"--defaults-file={cnf}",
        "-e",
        "CREATE TABLE migrated (id INT); DELETE FROM orders",
        db,
    ]
    inv = write_inventory(project, {"post_update": [migrate]}, db_name=db, db_defaults_file=str(cnf))
    staging_before, production_before = code_tree(project.staging), tree_digest(project.production)

    result = run(project, inv)

    assert result.exit_code == 1
    st = steps(result, "staging")
    assert st["update"].status is StepStatus.ROLLED_BACK
    assert st["compat"].status is StepStatus.FAILED
    assert "composer acme/plugin 1.1.0: src/Info.php" in str(st["compat"].error)
    assert code_tree(project.staging) == staging_before
    assert composer_locked_versions(project.staging) == {"acme/plugin": "1.0.0", "acme/lib": "1.0.0"}
    assert mariadb.sql("SHOW TABLES", db).split() == ["orders"]
    assert mariadb.sql("SELECT COUNT(*) FROM orders", db).strip() == "2"
    assert tree_digest(project.production) == production_before
    assert not steps(result, "production")


def test_promotion_refuses_a_rebuilt_artifact_then_installs_the_validated_one(project: Project) -> None:
    inv = write_inventory(project)
    monday = run(project, inv, env="staging")
    assert monday.ok, json.dumps(monday.to_dict(), indent=1)[-2000:]

    original = (project.artifacts / "acme-plugin-1.1.0.zip").read_bytes()
    make_composer_package(project.artifacts, "acme/plugin", "1.1.0", php_code="<?php\n// rebuilt\n")
    chown_tree(project.artifacts, "deploy")
    before = tree_digest(project.production, exclude=(".maint",))
    refused = run(project, inv, env="production", promote_from=monday.run_id)
    assert refused.exit_code == 1
    error = str(steps(refused, "production")["precheck"].error)
    assert "acme/plugin 1.1.0" in error and "refusing" in error
    assert tree_digest(project.production, exclude=(".maint",)) == before

    (project.artifacts / "acme-plugin-1.1.0.zip").write_bytes(original)
    wednesday = run(project, inv, env="production", promote_from=monday.run_id)
    assert wednesday.ok, json.dumps(wednesday.to_dict(), indent=1)[-2000:]
    assert locked_dists(project.production) == locked_dists(project.staging)
    assert code_tree(project.production) == code_tree(project.staging)


def test_php_requirement_above_the_host_is_refused_before_anything_is_installed(project: Project) -> None:
    make_composer_package(project.artifacts, "acme/lib", "1.3.0", require={"php": ">=9.0"})
    chown_tree(project.artifacts, "deploy")
    inv = write_inventory(project)
    before = code_tree(project.staging)

    result = run(project, inv)

    assert result.exit_code == 1
    precheck = steps(result, "staging")["precheck"]
    assert precheck.status is StepStatus.FAILED
    assert "acme/lib 1.3.0" in str(precheck.error) and "php" in str(precheck.error)
    assert "update" not in steps(result, "staging")
    assert code_tree(project.staging) == before
