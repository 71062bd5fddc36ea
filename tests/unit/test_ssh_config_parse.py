"""The OpenSSH config reader (maintkit.transport.ssh_config) and the precedence of
maintkit.transport.ssh_settings: inventory > ssh config > MAINT_* > defaults."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from maintkit.errors import ConfigError, InventoryError
from maintkit.inventory import load_inventory
from maintkit.transport.ssh_config import HostConfig, parse_jumps, read_ssh_config
from maintkit.transport.ssh_settings import Endpoint, ssh_settings

HOME = os.path.expanduser("~")


def config(tmp_path: Path, text: str, name: str = "ssh_config") -> Path:
    path = tmp_path / name
    path.write_text(text)
    path.chmod(0o600)
    return path


def test_host_patterns_negation_first_value_wins_and_key_equals_value(tmp_path: Path) -> None:
    cfg = read_ssh_config(str(config(tmp_path, """\
# agency hosts
Host shop-*-prod !shop-x-prod
    HostName %h.hosts.example
    Port=2222
    IdentityFile ~/.ssh/id_%r
Host *
    Port 22
    User ops
    IdentityFile /keys/second
    ProxyCommand sh -c "exec nc %h %p"
""")))  # fmt: skip
    assert cfg.lookup("shop-a-prod", user="deploy") == HostConfig(
        hostname="shop-a-prod.hosts.example", port=2222, user="ops",
        identity_files=(f"{HOME}/.ssh/id_deploy", "/keys/second"),
        proxy_command='sh -c "exec nc %h %p"', source=cfg.path,
    )  # fmt: skip
    excluded = cfg.lookup("shop-x-prod")
    assert (excluded.hostname, excluded.port, excluded.identity_files) == (None, 22, ("/keys/second",))


def test_include_inside_a_host_block_and_match(tmp_path: Path) -> None:
    (tmp_path / "conf.d").mkdir()
    config(tmp_path / "conf.d", "User from-include\nHost other\n    Port 2022\n", "10-a.conf")
    marker = tmp_path / "executed"
    cfg = read_ssh_config(str(config(tmp_path, f"""\
Match exec "touch {marker}"
    User evil
Host web1
    Include conf.d/*.conf
Match host web1,web2
    Port 2200
Match all
    IdentitiesOnly yes
""")))  # fmt: skip
    web1 = cfg.lookup("web1")
    assert (web1.user, web1.port, web1.identities_only) == ("from-include", 2200, True)
    assert cfg.lookup("other").port is None, "an Include inside a Host block applies only to that host"
    assert cfg.lookup("web3").user is None
    assert not marker.exists(), "Match exec is never run"


def test_problems_name_file_and_line(tmp_path: Path) -> None:
    path = config(tmp_path, "Host a\n    Port 99999\n")
    with pytest.raises(ConfigError) as info:
        read_ssh_config(str(path))
    assert str(info.value) == f"{path}:2: ssh_config: Port must be a number from 1 to 65535, not '99999'"
    path.chmod(0o664)
    with pytest.raises(ConfigError) as info:
        read_ssh_config(str(path))
    assert str(info.value) == (
        f"{path}: ssh_config: bad owner or permissions (mode 0664, uid {os.geteuid()}): "
        "it must be owned by you or root and writable by nobody else"
    )


def test_jump_specs() -> None:
    assert parse_jumps("bastion, ops@b2:2022,ssh://u@[::1]:22") == [
        (None, "bastion", None), ("ops", "b2", 2022), ("u", "::1", 22),
    ]  # fmt: skip
    for bad in ("a b", "host:port", "x;rm", "h:70000"):
        with pytest.raises(ValueError):
            parse_jumps(bad)


def inventory(tmp_path: Path, env: dict[str, object], defaults: dict[str, object] | None = None) -> Path:
    data = {"defaults": defaults or {}, "sites": {"s": {"environments": {"production": {"path": "/srv", **env}}}}}
    path = tmp_path / "inventory.yml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_inventory_values_win_over_the_file_and_the_file_over_maint_variables(tmp_path: Path) -> None:
    key = tmp_path / "from_config"
    key.write_text("")
    cfg = config(tmp_path, f"""\
Host alias
    HostName 10.1.2.3
    Port 2222
    User nobody
    IdentityFile {key}
    UserKnownHostsFile /dev/null {tmp_path}/kh
    ProxyJump jump1
Host jump1
    HostName 10.9.9.9
    User hopper
""")  # fmt: skip
    environ = {"MAINT_SSH_KEY_FILE": "/ci/key", "MAINT_KNOWN_HOSTS": "/ci/known"}
    inv = load_inventory(inventory(tmp_path, {"host": "alias", "ssh_config": str(cfg)}, {"user": "deploy"}))
    got = ssh_settings(inv.sites["s"].environments["production"], environ)
    assert got.target == Endpoint(
        "alias", "10.1.2.3", 2222, "deploy", str(key), ("/ci/known", "/dev/null", f"{tmp_path}/kh")
    )
    assert got.jumps == (Endpoint("jump1", "10.9.9.9", 22, "hopper", "/ci/key", ("/ci/known",)),)
    # explicit inventory port and proxy_command win; without the opt-in the file is not read
    inv = load_inventory(
        inventory(tmp_path, {"host": "alias", "port": 22, "proxy_command": "nc %h %p", "ssh_config": str(cfg)})
    )
    got = ssh_settings(inv.sites["s"].environments["production"], environ)
    assert (got.target.port, got.jumps, got.proxy_command) == (22, (), "nc %h %p")
    inv = load_inventory(inventory(tmp_path, {"host": "alias"}))
    got = ssh_settings(inv.sites["s"].environments["production"], environ)
    assert got.target == Endpoint("alias", "alias", 22, None, "/ci/key", ("/ci/known",))


def test_the_inventory_refuses_bad_jumps_and_both_proxies(tmp_path: Path) -> None:
    with pytest.raises(InventoryError) as info:
        load_inventory(inventory(tmp_path, {"proxy_jump": "a b"}))
    assert "proxy_jump: not a jump host ([user@]host[:port]): 'a b'" in str(info.value)
    with pytest.raises(InventoryError) as info:
        load_inventory(inventory(tmp_path, {"proxy_jump": "a", "proxy_command": "nc %h %p"}))
    assert "set proxy_command or proxy_jump, not both" in str(info.value)
    ok = load_inventory(inventory(tmp_path, {"proxy_jump": "a"}, {"proxy_command": "nc %h %p"}))
    env = ok.sites["s"].environments["production"]
    assert (env.proxy_jump, env.proxy_command) == ("a", None), "an environment's own proxy replaces the default one"
    with pytest.raises(InventoryError) as info:
        load_inventory(inventory(tmp_path, {"ssh_config": str(tmp_path / "missing")}))
    assert f"{tmp_path / 'missing'}: ssh_config: no such file (the inventory's ssh_config names it)" in str(info.value)
