"""How each tool of the peers benchmark is invoked, and how its report is read (pure functions).

Every tool verifies host keys against the lab's known_hosts and reads no user dotfile
(``-F /dev/null`` for OpenSSH, ``ssh_config_file=/dev/null`` for pyinfra). Tested in
tests/unit/test_bench_harness.py.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
VENVS = HERE / ".venvs"
PYINFRA_DEPLOY = HERE / "peers" / "pyinfra_deploy.py"
ANSIBLE_PLAYBOOK = HERE / "peers" / "ansible" / "playbook.yml"

#: The three steps of the workload that change something on a first run (in this order).
STATE_STEPS = ("directory", "file content", "symlink")
#: The two command steps (pyinfra counts every shell operation as a change).
COMMAND_STEPS = ("uname", "no-op command")

Record = Mapping[str, Any]


# ---------------------------------------------------------------- OpenSSH
def ssh_base(h: Record) -> list[str]:
    """An OpenSSH command line to host record ``h`` without the destination: strict host keys,
    the lab's known_hosts and key only, no user configuration, no agent."""
    return [
        "ssh", "-F", "/dev/null", "-i", str(h["key"]), "-p", str(h["port"]),
        "-o", f"UserKnownHostsFile={h['known_hosts']}", "-o", "StrictHostKeyChecking=yes",
        "-o", "GlobalKnownHostsFile=/dev/null", "-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none",
        "-o", "BatchMode=yes", "-o", "ConnectTimeout=10",
    ]  # fmt: skip


def destination(h: Record) -> str:
    """``user@ip`` of a host record."""
    return f"{h['user']}@{h['ip']}"


def master_open_argv(h: Record, socket: Path, persist: int = 600) -> list[str]:
    """Open a ControlMaster on ``socket`` that stays in the background (``-f -N``)."""
    return [*ssh_base(h), "-o", "ControlMaster=yes", "-o", f"ControlPath={socket}",
            "-o", f"ControlPersist={persist}", "-f", "-N", destination(h)]  # fmt: skip


def master_ctl_argv(h: Record, socket: Path, op: str) -> list[str]:
    """``ssh -O check|exit`` on the master behind ``socket``."""
    if op not in ("check", "exit"):
        raise ValueError(f"unknown control operation {op!r}")
    return [*ssh_base(h), "-o", f"ControlPath={socket}", "-O", op, destination(h)]


def master_pid(check_output: str) -> int:
    """The pid in ``ssh -O check``'s answer (``Master running (pid=1234)``)."""
    m = re.search(r"Master running \(pid=(\d+)\)", check_output)
    if not m:
        raise ValueError(f"no running master in {check_output!r}")
    return int(m.group(1))


def floor_script(path: str) -> str:
    """The one read-only batch the floor sends: what maint's no-op reads, in one shell.

    stat of every path of the stage (and the lock), the link target, the file's hash and the
    kernel release; the last command's status (uname) is the script's.
    """
    q = shlex.quote
    app, conf, link, lock = (f"{path}/app", f"{path}/app/config.txt", f"{path}/current", f"{path}/.maint/lock")
    return (
        f"stat -c '%n|%F|%a|%U|%G|%s' -- {q(app)} {q(conf)} {q(link)} {q(lock)} 2>/dev/null; "
        f"readlink -- {q(link)}; sha256sum -- {q(conf)}; uname -r"
    )


def first_floor_script(path: str) -> str:
    """The one session the cold floor's first run sends: the workload's five steps, as Fabric's
    five commands (fabric_baseline.py), in one shell; stops at the first that fails.

    Nothing else: no lock, no read before or after, no atomic write; the least a first run
    costs a tool that opens one connection per host and does the work.
    """
    q = shlex.quote
    app, conf, link = f"{path}/app", f"{path}/app/config.txt", f"{path}/current"
    return (
        f"mkdir -p -- {q(app)} && printf '%s\\n' 'hello from maint' > {q(conf)} && "
        f"ln -sfn -- {q(app)} {q(link)} && uname -r && true"
    )


def floor_argv(h: Record, socket: Path) -> list[str]:
    """One ssh over the already open master (``ControlMaster=no``) sending :func:`floor_script`."""
    return [*ssh_base(h), "-o", "ControlMaster=no", "-o", f"ControlPath={socket}",
            destination(h), floor_script(str(h["path"]))]  # fmt: skip


def floor_output_ok(output: str, path: str, content_sha256: str) -> bool:
    """Whether a floor answer shows the converged state (the link target and the file's hash)."""
    lines = output.splitlines()
    return f"{path}/app" in lines and f"{content_sha256}  {path}/app/config.txt" in lines


# ---------------------------------------------------------------- maint
def maint_inventory(records: Sequence[Record], openssh: bool = False, persist: int = 600) -> dict[str, Any]:
    """maint's inventory for the hosts: site ``sN`` with one production environment each."""
    sites: dict[str, Any] = {}
    for i, h in enumerate(records):
        env: dict[str, Any] = {"host": h["ip"], "port": h["port"], "user": h["user"], "key_file": h["key"],
                               "known_hosts": h["known_hosts"], "path": h["path"]}  # fmt: skip
        if openssh:
            env.update({"connection": "openssh", "control_persist": persist})
        sites[f"s{i}"] = {"environments": {"production": env}}
    return {"sites": sites}


def maint_argv(maint: str, playbook: Path, inventory: Path, state_dir: Path, concurrency: int) -> list[str]:
    """``maint run`` as the benchmark runs it (plain output, like bench.py)."""
    return [maint, "run", str(playbook), "-i", str(inventory), "--state-dir", str(state_dir),
            "--concurrency", str(concurrency)]  # fmt: skip


def maint_changed(summary: Mapping[str, Any]) -> int:
    """How many steps a run changed, from its summary.json (a failed run raises ValueError)."""
    if summary.get("status") != "ok":
        raise ValueError(f"maint run ended {summary.get('status')!r}")
    return int(summary["changed"])


# ---------------------------------------------------------------- pyinfra
def pyinfra_inventory(records: Sequence[Record]) -> str:
    """A pyinfra inventory module: every host with its key, strict known_hosts and path."""
    hosts = [
        (h["ip"], {"ssh_port": int(h["port"]), "ssh_user": h["user"], "ssh_key": h["key"],
                   "ssh_known_hosts_file": h["known_hosts"], "ssh_strict_host_key_checking": "yes",
                   "ssh_config_file": "/dev/null", "ssh_allow_agent": False, "ssh_look_for_keys": False,
                   "path": h["path"]})
        for h in records
    ]  # fmt: skip
    return f"hosts = {hosts!r}\n"


def pyinfra_argv(venv: Path, inventory: Path, parallel: int) -> list[str]:
    """Run the deploy on every host at once, without a prompt, results as JSON on stdout."""
    return [str(venv / "bin" / "pyinfra"), str(inventory), str(PYINFRA_DEPLOY), "-y",
            "--parallel", str(parallel), "--json"]  # fmt: skip


def pyinfra_changes(stdout: str) -> dict[str, dict[str, set[str]]]:
    """Per operation name: the hosts it changed (``success``) and left alone (``no_change``).

    Raises ValueError when any host failed or errored.
    """
    doc = json.loads(stdout[stdout.index("{") :])
    results = doc["results"]
    if results.get("failed_hosts"):
        raise ValueError(f"pyinfra failed on {results['failed_hosts']}")
    out: dict[str, dict[str, set[str]]] = {}
    for op in results["operations"]:
        if op["error"]:
            raise ValueError(f"pyinfra operation {op['name']!r} failed on {op['error']}")
        out[op["name"]] = {"changed": set(op["success"]), "unchanged": set(op["no_change"])}
    return out


# ---------------------------------------------------------------- Ansible
def ansible_cfg(forks: int, control_dir: Path) -> str:
    """ansible.cfg: pipelining, strict host keys, forks = hosts, no facts, no retry files.

    Connections: Ansible's own default (ControlMaster=auto, ControlPersist=60s, so the tasks
    of one run share a connection) with the masters in ``control_dir``, which the harness
    closes after every run: no run starts with a connection left by an earlier one.
    """
    return "\n".join([
        "[defaults]", "host_key_checking = True", f"forks = {forks}", "gather_facts = False",
        "interpreter_python = /usr/bin/python3", "retry_files_enabled = False", "nocows = True", "",
        "[ssh_connection]", "pipelining = True", "ssh_args = -C -o ControlMaster=auto -o ControlPersist=60s",
        f"control_path_dir = {control_dir}", "control_path = %(directory)s/%%h-%%p-%%r", "",
    ])  # fmt: skip


def ansible_inventory(records: Sequence[Record]) -> dict[str, Any]:
    """Ansible's YAML/JSON inventory: every host with its key, the lab's known_hosts, its path."""
    hosts: dict[str, Any] = {}
    for h in records:
        common = " ".join(shlex.quote(a) for a in [
            "-F", "/dev/null", "-o", f"UserKnownHostsFile={h['known_hosts']}", "-o", "StrictHostKeyChecking=yes",
            "-o", "GlobalKnownHostsFile=/dev/null", "-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none",
        ])  # fmt: skip
        hosts[str(h["ip"])] = {"ansible_host": h["ip"], "ansible_port": int(h["port"]), "ansible_user": h["user"],
                               "ansible_ssh_private_key_file": h["key"], "ansible_ssh_common_args": common,
                               "path": h["path"]}  # fmt: skip
    return {"all": {"hosts": hosts}}


def ansible_argv(venv: Path, inventory: Path) -> list[str]:
    """``ansible-playbook`` on the benchmark playbook."""
    return [str(venv / "bin" / "ansible-playbook"), "-i", str(inventory), str(ANSIBLE_PLAYBOOK)]


_RECAP = re.compile(r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)


def ansible_recap(stdout: str) -> dict[str, tuple[int, int]]:
    """Per host (ok, changed) from the PLAY RECAP; an unreachable or failed host raises ValueError."""
    out: dict[str, tuple[int, int]] = {}
    for host, ok, changed, unreachable, failed in _RECAP.findall(stdout):
        if int(unreachable) or int(failed):
            raise ValueError(f"ansible: {host} unreachable={unreachable} failed={failed}")
        out[host] = (int(ok), int(changed))
    return out
