"""Inventory secrets from a file and a command reach a real command on a lab host over SSH,
and never show in the run folder, the summary, ``--json`` output or errors."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import yaml

from tests.lab.sshd import LabHost
from tests.runs import maint_cli
from tests.secret_scan import assert_no_secret, new_secret

pytestmark = pytest.mark.lab

PLAYBOOK = """\
name: secrets
stages:
  - env: production
    steps:
      - id: write
        action: command
        with:
          argv: [sh, -c, 'printf %s "$1" > "$3/db"; printf %s "$2" > "$3/token"', sh,
                 "{{ secrets.DB_PASSWORD }}", "{{ secrets.API_TOKEN }}", "{{ env.path }}"]
          creates: "{{ env.path }}/token"
"""


def setup(tmp_path: Path, host: LabHost, scratch: Path, secrets: dict[str, object]) -> None:
    env = host.env(scratch)
    inventory = {"secrets": secrets, "sites": {"shop": {"environments": {"production": env}}}}
    (tmp_path / "inventory.yml").write_text(yaml.safe_dump(inventory))
    (tmp_path / "secrets.yml").write_text(PLAYBOOK)


def maint(tmp_path: Path, *extra: str) -> tuple[int, str, str]:
    args = ("run", "secrets.yml", "-i", "inventory.yml", "--state-dir", str(tmp_path / "state"), *extra)
    proc = maint_cli(*args, cwd=tmp_path)
    return proc.returncode, proc.stdout, proc.stderr


def test_file_and_command_secrets_reach_the_host_and_never_show(
    ssh_hosts: list[tuple[LabHost, Path]], tmp_path: Path
) -> None:
    host, scratch = ssh_hosts[0]
    db, token = new_secret(), new_secret()
    secret_file = tmp_path / "db-password"
    secret_file.write_text(db + "\n")
    secret_file.chmod(0o600)
    store = tmp_path / "store"
    store.write_text(token + "\n")
    command = [sys.executable, "-c", "import sys; print(open(sys.argv[1]).read().strip())", str(store)]
    setup(tmp_path, host, scratch, {"DB_PASSWORD": {"file": str(secret_file)}, "API_TOKEN": {"command": command}})
    code, out, err = maint(tmp_path)
    assert code == 0, out + err
    assert (scratch / "db").read_text() == db
    assert (scratch / "token").read_text() == token
    code2, out2, err2 = maint(tmp_path, "--json")
    assert code2 == 0, out2 + err2
    assert '"changed": 0' in out2.splitlines()[-1], "the second run changes nothing"
    texts = [("stdout", out), ("stderr", err), ("json", out2), ("json-stderr", err2)]
    for secret in (db, token):
        assert assert_no_secret([tmp_path / "state", *texts], secret) > 4


def test_a_world_readable_secret_file_is_refused_before_anything_runs(
    ssh_hosts: list[tuple[LabHost, Path]], tmp_path: Path
) -> None:
    host, scratch = ssh_hosts[0]
    db = new_secret()
    secret_file = tmp_path / "db-password"
    secret_file.write_text(db)
    secret_file.chmod(0o644)
    setup(tmp_path, host, scratch, {"DB_PASSWORD": {"file": str(secret_file)}, "API_TOKEN": {"env": "NOT_USED_X"}})
    code, out, err = maint(tmp_path)
    assert code == 2
    expected = (
        f"site shop: secret DB_PASSWORD from file {secret_file} is refused: its mode 0644 lets others read or change it; "
        f"only its owner may (chmod 600 {secret_file})"
    )
    assert expected in err
    assert not (scratch / "db").exists()
    assert_no_secret([("stdout", out), ("stderr", err)], db)


def test_a_failing_secret_command_names_the_key_and_hides_its_output(
    ssh_hosts: list[tuple[LabHost, Path]], tmp_path: Path
) -> None:
    host, scratch = ssh_hosts[0]
    leaked = new_secret()
    script = "import os, sys; print(os.environ['LEAK']); print('gpg: decryption failed: ' + os.environ['LEAK'], file=sys.stderr); sys.exit(2)"
    secret_file = tmp_path / "db-password"
    secret_file.write_text("db-value-123\n")
    secret_file.chmod(0o600)
    setup(
        tmp_path, host, scratch,
        {"DB_PASSWORD": {"file": str(secret_file)}, "API_TOKEN": {"command": [sys.executable, "-c", script]}},
    )  # fmt: skip
    proc = maint_cli(
        "run", "secrets.yml", "-i", "inventory.yml", "--state-dir", str(tmp_path / "state"),
        cwd=tmp_path, extra_env={"LEAK": leaked},
    )  # fmt: skip
    assert proc.returncode == 2
    assert f"site shop: secret API_TOKEN from command {sys.executable} -c " in proc.stderr
    assert " exited with status 2 (stderr: gpg: decryption failed: ***)\n" in proc.stderr
    assert not (scratch / "db").exists()
    assert_no_secret([("stdout", proc.stdout), ("stderr", proc.stderr)], leaked)
    assert os.environ.get("LEAK") is None
