"""Choosing and opening a state store: the spec forms, the order of the sources, the errors
(each naming where the spec came from), the git backend's options and the environment its git
runs with, and the test plugin's ``dir`` backend found through the ``maintkit.state`` entry
points."""

from __future__ import annotations

import base64
import json
import stat
from pathlib import Path
from typing import Any

import pytest

from maintkit.errors import ConfigError
from maintkit.state import LocalStore
from maintkit.state.base import StateSpec
from maintkit.state.git import GitStore
from maintkit.state.git_options import parse_options
from maintkit.state.git_replay import appended
from maintkit.state.select import backend_names, choose_spec, open_store, parse_spec


@pytest.mark.parametrize(
    ("text", "backend", "options"),
    [
        ("local", "local", {}),
        ("git:git@github.com:acme/maint.git", "git", {"remote": "git@github.com:acme/maint.git"}),
        ("git:/srv/state.git#prod-state", "git", {"remote": "/srv/state.git", "branch": "prod-state"}),
        ("git:https://github.com/acme/shops.git#maint-state", "git",
         {"remote": "https://github.com/acme/shops.git", "branch": "maint-state"}),
        ('{"backend": "git", "remote": "ssh://git@h:2222/s.git", "branch": "b", "ssh_port": 2222}', "git",
         {"remote": "ssh://git@h:2222/s.git", "branch": "b", "ssh_port": 2222}),
        ("  dir:/mnt/shared  ", "dir", {"remote": "/mnt/shared"}),
    ],
)  # fmt: skip
def test_parse_spec_forms(text: str, backend: str, options: dict[str, Any]) -> None:
    assert parse_spec(text, "--state") == StateSpec(backend, options, "--state")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "MAINT_STATE: state: empty state store (use local, or git:REMOTE[#BRANCH])"),
        ("{not json", "MAINT_STATE: state: not valid JSON: Expecting property name enclosed in double quotes"),
        ('{"backend": 3}', "MAINT_STATE: state.backend: must be a name such as local or git"),
        ("git;rm -rf /:x", "MAINT_STATE: state.backend: invalid backend name 'git;rm -rf /'"),
        (":/srv/x.git", "MAINT_STATE: state.backend: invalid backend name ''"),
    ],
)
def test_bad_spec_is_a_config_error_naming_its_origin(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_spec(text, "MAINT_STATE")
    assert str(err.value) == message
    assert err.value.file == "MAINT_STATE"


def test_unknown_backend_names_origin_and_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        open_store(parse_spec("s4:bucket/prefix", "--state"), state_dir=tmp_path, environ={})
    assert str(err.value) == "--state: state.backend: unknown state backend 's4' (known: dir, git, local)"
    assert backend_names() == ["dir", "git", "local"]


def test_choose_spec_order_flag_then_environment_then_inventory_then_local() -> None:
    env = {"MAINT_STATE": "git:/from/env.git"}
    inventory = {"backend": "git", "remote": "/from/inventory.git", "branch": None}
    assert choose_spec("git:/from/flag.git", env, inventory, "inv.yml") == StateSpec(
        "git", {"remote": "/from/flag.git"}, "--state"
    )
    assert choose_spec(None, env, inventory, "inv.yml") == StateSpec("git", {"remote": "/from/env.git"}, "MAINT_STATE")
    assert choose_spec(None, {"MAINT_STATE": ""}, inventory, "inv.yml") == StateSpec(
        "git", {"remote": "/from/inventory.git"}, "inv.yml"
    )
    assert choose_spec(None, {}, None, "inv.yml") == StateSpec("local", {}, "default")


def test_local_is_the_state_folder(tmp_path: Path) -> None:
    store = open_store(choose_spec(None, {}, None), state_dir=tmp_path / ".maint", environ={})
    assert isinstance(store, LocalStore)
    assert store.root == tmp_path / ".maint"
    assert store.describe() == f"local ({tmp_path / '.maint'})"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "the git state backend needs a remote (git:REMOTE[#BRANCH] or state: {remote: ...})"),
        ({"remote": "/s.git", "brnach": "x"}, "unknown git state option(s): brnach (known: author, branch, "
         "host_key_policy, known_hosts, push_attempts, remote, ssh_key, ssh_port, timeout, token_env, token_user)"),
        ({"remote": "https://bot:s3cret@example.com/s.git"},
         "the remote URL carries a password: give the token through token_env instead"),
        ({"remote": "ext::sh -c touch% /tmp/pwned"}, "not a usable git remote: 'ext::sh -c touch% /tmp/pwned'"),
        ({"remote": "--upload-pack=touch /tmp/x"}, "not a usable git remote: '--upload-pack=touch /tmp/x'"),
        ({"remote": "/s.git", "branch": "../main"}, "state option branch: '../main' is not a usable branch name"),
        ({"remote": "/s.git", "branch": "-f"}, "state option branch: '-f' is not a usable branch name"),
        ({"remote": "/s.git", "author": "nobody"}, "state option author must read 'Name <email>', not 'nobody'"),
        ({"remote": "/s.git", "host_key_policy": "auto-add"},
         "state option host_key_policy must be strict or accept-new, not 'auto-add'"),
        ({"remote": "/s.git", "ssh_port": 0}, "state option ssh_port must be between 1 and 65535"),
        ({"remote": "https://example.com/s.git", "token_env": "NOT_SET"},
         "state option token_env names NOT_SET, which is not set"),
    ],
)  # fmt: skip
def test_bad_git_options_are_config_errors_naming_the_inventory(
    tmp_path: Path, options: dict[str, Any], message: str
) -> None:
    spec = choose_spec(None, {}, {"backend": "git", **options}, "inventory.yml")
    with pytest.raises(ConfigError) as err:
        open_store(spec, state_dir=tmp_path, environ={})
    assert str(err.value) == f"inventory.yml: state: {message}"
    assert not (tmp_path / "stores").exists()  # nothing was cloned or created


def test_git_store_root_is_named_by_remote_and_branch(tmp_path: Path) -> None:
    a = open_store(parse_spec("git:/srv/state.git", "--state"), state_dir=tmp_path, environ={})
    b = open_store(parse_spec("git:/srv/state.git#other", "--state"), state_dir=tmp_path, environ={})
    assert isinstance(a, GitStore) and isinstance(b, GitStore)
    import hashlib

    digest = hashlib.sha256(b"/srv/state.git#maint-state").hexdigest()[:16]
    assert a.root == tmp_path / "stores" / digest
    assert a.root != b.root
    assert stat.S_IMODE(a.root.stat().st_mode) == 0o700
    assert a.describe() == f"git (/srv/state.git#maint-state, clone in {a.root})"


def test_git_environment_reads_no_user_config_and_quotes_the_ssh_command(tmp_path: Path) -> None:
    opts = parse_options(
        {"remote": "deploy@10.0.0.5:state.git", "ssh_key": "/keys/my key", "known_hosts": "/kh/known hosts",
         "ssh_port": 2222, "host_key_policy": "accept-new", "author": "Shop Ops <ops@example.com>"},
        {},
    )  # fmt: skip
    env = opts.environ(tmp_path)
    assert env["GIT_SSH_COMMAND"] == (
        "ssh -F /dev/null -o BatchMode=yes -o StrictHostKeyChecking=accept-new -o ConnectTimeout=20 "
        "-o ServerAliveInterval=15 -o ServerAliveCountMax=4 -o IdentitiesOnly=yes -i '/keys/my key' "
        "-o 'UserKnownHostsFile=/kh/known hosts' -p 2222"
    )
    assert {k: env[k] for k in ("GIT_CONFIG_GLOBAL", "GIT_CONFIG_NOSYSTEM", "GIT_TERMINAL_PROMPT", "GIT_CONFIG_COUNT")} == {
        "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1", "GIT_TERMINAL_PROMPT": "0", "GIT_CONFIG_COUNT": "0"
    }  # fmt: skip
    assert (env["GIT_DIR"], env["GIT_WORK_TREE"]) == (str(tmp_path / ".git"), str(tmp_path))
    assert (env["GIT_AUTHOR_NAME"], env["GIT_COMMITTER_EMAIL"]) == ("Shop Ops", "ops@example.com")


def test_github_token_goes_to_a_scoped_header_in_the_environment_only(tmp_path: Path) -> None:
    token = "ghs_0123456789abcdefABCDEF"
    opts = parse_options({"remote": "https://github.com/acme/shops.git"}, {"GITHUB_TOKEN": token})
    env = opts.environ(tmp_path)
    pair = base64.b64encode(f"x-access-token:{token}".encode()).decode()
    assert (env["GIT_CONFIG_COUNT"], env["GIT_CONFIG_KEY_0"], env["GIT_CONFIG_VALUE_0"]) == (
        "1", "http.https://github.com/.extraHeader", f"Authorization: Basic {pair}"
    )  # fmt: skip
    assert token not in repr(opts)
    assert opts.clean(f"fatal: {token} and {pair} at https://x:{token}@github.com/a") == (
        "fatal: *** and *** at https://github.com/a"
    )
    # no token for other hosts unless token_env names one
    assert (
        parse_options({"remote": "https://git.example.com/s.git"}, {"GITHUB_TOKEN": token}).environ(tmp_path)[
            "GIT_CONFIG_COUNT"
        ]
        == "0"
    )


@pytest.mark.parametrize(
    ("old", "ours", "theirs", "merged"),
    [
        (b"a\n", b"a\nours\n", b"a\ntheirs\n", b"a\ntheirs\nours\n"),
        (b"", b"ours\n", b"theirs\n", b"theirs\nours\n"),
        (b"", b"ours\n", b"theirs", b"theirs\nours\n"),
        (b"a\n", b"rewritten\n", b"a\ntheirs\n", None),
        (b"a", b"ab\n", b"ac\n", None),
    ],
)
def test_appended_keeps_both_sides_appends(old: bytes, ours: bytes, theirs: bytes, merged: bytes | None) -> None:
    assert appended(old, ours, theirs) == merged


def test_plugin_dir_backend_is_found_through_its_entry_point(tmp_path: Path) -> None:
    from maint_hello.state import DirStore

    shared = tmp_path / "shared"
    spec = parse_spec(json.dumps({"backend": "dir", "remote": str(shared)}), "inventory.yml")
    a = open_store(spec, state_dir=tmp_path / "a", environ={})
    b = open_store(spec, state_dir=tmp_path / "b", environ={})
    assert isinstance(a, DirStore) and a.name == "dir" and a.describe() == f"dir ({shared})"
    run = a.root / "runs" / "R1"
    run.mkdir(parents=True)
    (run / "events.jsonl").write_bytes(b'{"seq": 1}\r\n')
    a.publish([Path("runs/R1")], "run R1")
    b.pull()
    assert (b.root / "runs/R1/events.jsonl").read_bytes() == b'{"seq": 1}\r\n'
    assert stat.S_IMODE((b.root / "runs/R1/events.jsonl").stat().st_mode) == 0o600
    with pytest.raises(ConfigError) as err:
        open_store(parse_spec("dir", "--state"), state_dir=tmp_path, environ={})
    assert str(err.value) == "--state: state: the dir state backend needs a folder (dir:/shared/folder)"
