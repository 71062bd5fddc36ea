"""The trust digest in an OpenSSH control socket's name (maintkit/transport/openssh_trust.py).

What may change it and what may not: the host's own known_hosts lines (plain or hashed), lines
that could match it without naming it (wildcards, negations, markers, malformed lines), the key
file and the ssh config change it; another host's line (plain or hashed), comments and blank
lines do not. The lines chosen for a name on a file hashed by ``ssh-keygen -H`` are the ones
``ssh-keygen -F`` finds. Hostile known_hosts text never raises. The socket of a transport
changes with its jump host's entries too.
"""

from __future__ import annotations

import base64
import hmac
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from maintkit.transport.openssh import OpenSSHTransport
from maintkit.transport.openssh_trust import _KnownHosts, host_names, trust_digest
from maintkit.transport.ssh_settings import Endpoint

HOST, PORT = "shop.example", 2222
NAMES = host_names(HOST, PORT)
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMK2GXv8o7pZ7Z8sQvQy1U0F4Qm3wz7C8Rr9bF2oY1kA"
OTHER_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOtherOtherOtherOtherOtherOtherOtherOther0"


def _hashed(name: str, salt: bytes = b"0123456789abcdefghij") -> str:
    """``name`` hashed as OpenSSH's HashKnownHosts writes it: ``|1|salt|HMAC-SHA1(salt, name)``."""
    mac = hmac.digest(salt, name.encode(), "sha1")
    return f"|1|{base64.b64encode(salt).decode()}|{base64.b64encode(mac).decode()}"


def _write(path: Path, text: str) -> Path:
    """Write ``text``; the stat-keyed cache sees a new ctime or size, so bump mtime to be sure."""
    path.write_text(text)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    return path


def _digest(path: Path, **kwargs: str) -> str:
    return trust_digest([str(path)], NAMES, **kwargs)


BASE = f"[{HOST}]:{PORT} {KEY}\nother.example {OTHER_KEY}\n"


@pytest.mark.parametrize(
    "text",
    [
        BASE + f"third.example {OTHER_KEY}\n",  # another host's entry added
        f"[{HOST}]:{PORT} {KEY}\n",  # another host's entry removed
        "# a comment\n\n" + BASE + "   \n# trailing\n",  # comments and blank lines
        BASE.replace("other.example", "other.example,10.0.0.7"),  # another host's names
        BASE + f"{_hashed('other.example')} {OTHER_KEY}\n",  # another host, hashed
        BASE + f"{_hashed(HOST + '.evil')} {OTHER_KEY}\n",
    ],
)
def test_what_does_not_concern_the_host_keeps_the_digest(tmp_path: Path, text: str) -> None:
    known = _write(tmp_path / "known_hosts", BASE)
    before = _digest(known)
    assert _digest(_write(known, text)) == before


@pytest.mark.parametrize(
    "text",
    [
        f"[{HOST}]:{PORT} {OTHER_KEY}\nother.example {OTHER_KEY}\n",  # the host's key replaced
        f"other.example {OTHER_KEY}\n",  # the host's entry removed
        BASE + f"{HOST} {OTHER_KEY}\n",  # the host by its bare name
        BASE + f"*.example {OTHER_KEY}\n",  # a wildcard
        BASE + f"!nothing,shop.exampl? {OTHER_KEY}\n",  # a negation and a single-character wildcard
        BASE + f"{_hashed(f'[{HOST}]:{PORT}')} {OTHER_KEY}\n",  # the host, hashed
        BASE + f"{_hashed(HOST)} {OTHER_KEY}\n",
        BASE + f"|1|bm90IGJhc2U2NA|aGFzaA== {OTHER_KEY}\n",  # a malformed hashed name
        BASE + f"@revoked other.example {KEY}\n",  # a marker
        BASE + f"@cert-authority *.example {OTHER_KEY}\n",
        BASE + "broken-line-without-a-key\n",
    ],
)
def test_what_may_concern_the_host_changes_the_digest(tmp_path: Path, text: str) -> None:
    known = _write(tmp_path / "known_hosts", BASE)
    before = _digest(known)
    assert _digest(_write(known, text)) != before


def test_missing_empty_key_and_config(tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    missing = _digest(known)
    assert _digest(_write(known, "")) != missing
    key = _write(tmp_path / "id", "one")
    with_key = _digest(known, key_file=str(key))
    assert with_key != _digest(known)
    assert _digest(known, key_file=str(_write(key, "two"))) != with_key
    config = _write(tmp_path / "config", "Host shop\n")
    with_config = _digest(known, ssh_config=str(config))
    assert _digest(known, ssh_config=str(_write(config, "Host shop\n  HostKeyAlias other\n"))) != with_config


def test_with_an_ssh_config_every_entry_counts(tmp_path: Path) -> None:
    """The config's HostKeyAlias could make another name the one looked up: the whole file counts."""
    known = _write(tmp_path / "known_hosts", BASE)
    config = _write(tmp_path / "config", "Host shop\n")
    before = _digest(known, ssh_config=str(config))
    assert _digest(_write(known, BASE + f"third.example {OTHER_KEY}\n"), ssh_config=str(config)) != before


def test_names_are_compared_in_lower_case_as_openssh_does(tmp_path: Path) -> None:
    """OpenSSH looks a host up in lower case (plain and hashed): an entry written in capitals is
    the host's, whatever case the inventory uses."""
    known = _write(tmp_path / "known_hosts", BASE)
    upper = host_names(HOST.upper(), PORT)
    before = trust_digest([str(known)], upper)
    assert before == _digest(known)
    _write(known, BASE + f"[{HOST.upper()}]:{PORT} {OTHER_KEY}\n")
    assert trust_digest([str(known)], upper) != before and _digest(known) != before
    _write(known, BASE + f"{_hashed(f'[{HOST}]:{PORT}')} {OTHER_KEY}\n")  # ssh hashes the lower-case name
    assert trust_digest([str(known)], upper) != before


def test_the_port_22_name_is_the_bare_host(tmp_path: Path) -> None:
    known = _write(tmp_path / "known_hosts", f"{HOST} {KEY}\n")
    plain = trust_digest([str(known)], host_names(HOST, 22))
    _write(known, f"{HOST} {OTHER_KEY}\n")
    assert trust_digest([str(known)], host_names(HOST, 22)) != plain


def test_the_entries_chosen_are_the_ones_openssh_finds(tmp_path: Path) -> None:
    """On a file hashed by ``ssh-keygen -H``, every name's lines are what ``ssh-keygen -F`` finds
    (plus the lines that may match any host: none here)."""
    known = tmp_path / "known_hosts"
    names = [HOST, f"[{HOST}]:{PORT}", "other.example", "10.0.0.7", f"[{HOST}]:22"]
    known.write_text(
        f"{HOST} {KEY}\n[{HOST}]:{PORT} {OTHER_KEY}\nother.example,10.0.0.7 {OTHER_KEY}\n"
        f"[{HOST}]:{PORT} {KEY}\nthird.example {KEY}\n"
    )
    subprocess.run([shutil.which("ssh-keygen") or "ssh-keygen", "-q", "-H", "-f", str(known)], check=True,
                   capture_output=True)  # fmt: skip
    table = _KnownHosts.parse(known.read_text())
    assert table.anyone == [] and len(table.hashed) == 6 and table.plain == {}
    for name in names:
        found = subprocess.run(["ssh-keygen", "-F", name, "-f", str(known)], capture_output=True, text=True)
        lines = [ln for ln in found.stdout.splitlines() if ln and not ln.startswith("#")]
        assert table.entries_for([name]) == lines, name
    assert len(table.entries_for([f"[{HOST}]:{PORT}"])) == 2 and table.entries_for(["[other.example]:22"]) == []


_line = st.text(st.characters(blacklist_categories=("Cs",)), max_size=60)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(_line, max_size=8), name=st.from_regex(r"[a-z][a-z0-9-]{0,12}\.test", fullmatch=True))
def test_hostile_text_never_raises_and_a_plain_other_host_never_counts(
    tmp_path: Path, lines: list[str], name: str
) -> None:
    known = tmp_path / "known_hosts"
    _write(known, "\n".join(lines) + "\n")
    before = _digest(known)
    assert len(before) == 16
    if name != HOST:
        with known.open("a") as f:
            f.write(f"\n{name} {OTHER_KEY}\n")
        assert _digest(known) == before
        with known.open("a") as f:
            f.write(f"[{HOST}]:{PORT} {OTHER_KEY}\n")
        assert _digest(known) != before


def test_a_jump_hosts_entry_changes_the_socket(tmp_path: Path) -> None:
    hop_known = _write(tmp_path / "hop_known_hosts", f"[bastion.example]:22 {KEY}\nbastion.example {KEY}\n")
    target_known = _write(tmp_path / "known_hosts", BASE)
    hop = Endpoint("bastion", "bastion.example", 22, "jump", None, (str(hop_known),))

    def socket() -> Path:
        t = OpenSSHTransport(HOST, port=PORT, known_hosts=[str(target_known)], jumps=[hop], control_dir=tmp_path)
        return t.socket

    before = socket()
    assert socket() == before
    _write(hop_known, f"bastion.example {OTHER_KEY}\n")
    assert socket() != before


def test_the_files_an_ssh_config_includes_count(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``Include`` (nested, in any block, even one never applied) is followed: an included file
    edited, added to or removed from a globbed folder changes the digest; a relative name counts
    beside the including file (maintkit's reading) and in ``~/.ssh`` (``ssh -F``'s)."""
    home = tmp_path / "home"
    (home / ".ssh" / "clients").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    here = tmp_path / "conf.d"
    here.mkdir()
    known = _write(tmp_path / "known_hosts", BASE)
    config = _write(
        tmp_path / "config", 'Match exec "false"\n  Include conf.d/*.conf\nHost shop\n  Include "clients/a b.conf"\n'
    )
    nested = _write(here / "10-nested.conf", f"Include {tmp_path}/deep.conf\n")
    deep = _write(tmp_path / "deep.conf", "Host shop\n  HostKeyAlias one\n")
    theirs = _write(home / ".ssh" / "clients" / "a b.conf", "Host shop\n  HostKeyAlias two\n")

    def digest() -> str:
        return _digest(known, ssh_config=str(config))

    seen = [digest()]
    assert digest() == seen[0]  # nothing changed, nothing differs
    _write(here / "notes.txt", "not included\n")
    assert digest() == seen[0]
    for change in (
        lambda: _write(deep, "Host shop\n  HostKeyAlias three\n"),  # two levels down
        lambda: _write(theirs, "Host shop\n  HostKeyAlias four\n"),  # relative: ~/.ssh/clients/
        lambda: _write(here / "20-new.conf", "Host shop\n"),  # a file added to the folder
        lambda: nested.unlink(),  # a nested include's source gone
    ):
        change()
        seen.append(digest())
        assert seen[-1] not in seen[:-1]
    _write(nested, f"Include {tmp_path}/deep.conf\n")
    (here / "20-new.conf").unlink()
    assert digest() == seen[2]  # the same files with the same contents: the same digest


def test_an_include_loop_or_a_hostile_config_ends(tmp_path: Path) -> None:
    config = _write(tmp_path / "config", f'Include {tmp_path}/config "{tmp_path}/*"\nInclude "unclosed\n\0\n')
    _write(tmp_path / "other", f"Include {tmp_path}/config\n")
    assert len(_digest(tmp_path / "known_hosts", ssh_config=str(config))) == 16
