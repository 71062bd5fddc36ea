"""The engine over real SSH (sshd on loopback aliases): parallel sites, idempotency, honest plans,
host keys, locks, rollback, SIGTERM, quoting and secrets."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from maintkit.playbook import Playbook
from maintkit.results import SiteStatus, StepStatus
from maintkit.transport.ssh import SSHTransport
from tests.gates import GATED_SHELL, make_gates, open_gate, wait_started
from tests.lab.sshd import LabHost
from tests.runs import run, sites_of, write_inventory

MAINT = [sys.executable, "-m", "maintkit"]

PLAYBOOK = """\
name: five
concurrency: 3
stages:
  - env: production
    steps:
      - {action: file.directory, with: {path: "{{ env.path }}/app", mode: "0750"}}
      - {action: file.content, with: {path: "{{ env.path }}/app/config.txt", content: "site={{ site.name }}\\n"}}
      - {action: file.symlink, with: {path: "{{ env.path }}/current", target: "{{ env.path }}/app"}}
      - {action: command, with: {argv: [hostname], read_only: true}}
      - {action: command, with: {argv: ["true"], unless: ["true"]}}
"""


def remote(host: LabHost, *argv: str) -> str:
    t = SSHTransport(
        host.ip, port=host.port, user="root", key_filename=str(host.client_key), known_hosts=[str(host.known_hosts)]
    )
    try:
        return t.run(list(argv)).stdout
    finally:
        t.close()


def tree_hash(host: LabHost, path: Path, *, skip_state: bool = False) -> str:
    """Hash of every path, mode, owner, link target and content under ``path``, read over SSH.

    ``skip_state`` leaves out maintkit's own ``.maint`` folder (lock directory, releases log)."""
    prune = "-path ./.maint -prune -o" if skip_state else ""
    script = (
        f"cd {path} && find . {prune} -printf '%p|%m|%u|%l\\n' | sort && "
        f"find . {prune} -type f -print0 | sort -z | xargs -0r sha256sum"
    )
    return remote(host, "sh", "-c", script)


def three_sites(tmp_path: Path, ssh_hosts: list[tuple[LabHost, Path]]) -> Path:
    return write_inventory(tmp_path, sites_of({f"shop-{h.name}": h.env(d / "site") for h, d in ssh_hosts}))


def test_parallel_run_on_three_hosts_then_no_changes(tmp_path: Path, ssh_hosts: list[tuple[LabHost, Path]]) -> None:
    inv = three_sites(tmp_path, ssh_hosts)
    first = run(PLAYBOOK, inv, tmp_path / "state")
    assert first.ok, first.to_dict()
    assert first.changed == 3 * 3 + 0  # directory, content, symlink per site; the commands change nothing
    for h, d in ssh_hosts:
        site = d / "site"
        assert remote(h, "cat", f"{site}/app/config.txt") == f"site=shop-{h.name}\n"
        assert remote(h, "stat", "-c", "%a %U", f"{site}/app").split() == ["750", "deploy"]
        assert remote(h, "readlink", f"{site}/current").strip() == f"{site}/app"
        assert not Path(site / ".maint" / "lock").exists()
    changed, unchanged = StepStatus.CHANGED, StepStatus.UNCHANGED
    assert sorted(s.site for s in first.sites) == sorted(f"shop-{h.name}" for h, _ in ssh_hosts)
    for site_result in first.sites:
        assert [(s.step, s.status) for s in site_result.steps] == [
            ("file.directory", changed),
            ("file.content", changed),
            ("file.symlink", changed),
            ("command", unchanged),  # read-only: it ran, and a read never counts as a change
            ("command#2", unchanged),  # its `unless` command succeeded, so it did not run
        ], site_result.site
        # every lab host is this machine's loopback alias: `hostname` ran there and printed its name
        assert site_result.steps[3].data["stdout"] == os.uname().nodename
    # the three sites really ran at the same time: their events interleave
    events = [json.loads(x) for x in (Path(first.run_dir) / "events.jsonl").read_text().splitlines()]
    starts = [i for i, e in enumerate(events) if e["event"] == "site.started"]
    finishes = [i for i, e in enumerate(events) if e["event"] == "site.finished"]
    assert max(starts) < min(finishes)
    second = run(PLAYBOOK, inv, tmp_path / "state")
    assert second.ok and second.changed == 0
    assert {s.status for site in second.sites for s in site.steps} == {StepStatus.UNCHANGED}


def test_plan_changes_nothing_on_the_hosts(tmp_path: Path, ssh_hosts: list[tuple[LabHost, Path]]) -> None:
    inv = three_sites(tmp_path, ssh_hosts)
    for h, d in ssh_hosts:
        remote(
            h, "sh", "-c", f"mkdir -p {d}/site/app && echo old > {d}/site/app/config.txt && chown -R deploy {d}/site"
        )
    before = [tree_hash(h, d) for h, d in ssh_hosts]
    proc = subprocess.run(
        [*MAINT, "plan", "-i", str(inv), "--state-dir", str(tmp_path / "state"), "--diff", str(_pb(tmp_path))],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert [tree_hash(h, d) for h, d in ssh_hosts] == before
    assert "would change" in proc.stdout
    assert "-old" in proc.stdout and "+site=shop-h1" in proc.stdout  # --diff shows before and after


def _pb(tmp_path: Path, text: str = PLAYBOOK) -> Path:
    p = tmp_path / "pb.yml"
    p.write_text(text)
    return p


def test_unknown_and_changed_host_keys_are_refused(tmp_path: Path, ssh_hosts: list[tuple[LabHost, Path]]) -> None:
    (h1, d1), (h2, d2), _ = ssh_hosts
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    wrong = tmp_path / "wrong_known_hosts"
    wrong.write_text(f"[{h2.ip}]:{h2.port} {h1.hostkey_pub}\n")  # h1's key claimed for h2
    envs = {
        "unknown": h1.env(d1 / "site", known_hosts=str(empty)),
        "changed": h2.env(d2 / "site", known_hosts=str(wrong), host_key_policy="accept-new"),
    }
    home_known = Path("~/.ssh/known_hosts").expanduser()
    assert not home_known.exists() or h1.ip not in home_known.read_text()
    res = run(PLAYBOOK, write_inventory(tmp_path, sites_of(envs)), tmp_path / "state")
    assert res.exit_code == 1
    by = {s.site: s for s in res.sites}
    assert by["unknown"].status is SiteStatus.FAILED and "not in known_hosts" in by["unknown"].error
    assert by["changed"].status is SiteStatus.FAILED and "CHANGED" in by["changed"].error
    for h, d in ((h1, d1), (h2, d2)):
        assert remote(h, "ls", "-A", str(d)) == "", "nothing may run on a host whose key is not trusted"


def test_accept_new_records_the_key(tmp_path: Path, ssh_hosts: list[tuple[LabHost, Path]]) -> None:
    h, d = ssh_hosts[0]
    fresh = tmp_path / "tofu_known_hosts"
    tofu = h.env(d / "site", known_hosts=str(fresh), host_key_policy="accept-new")
    res = run(PLAYBOOK, write_inventory(tmp_path, sites_of({"tofu": tofu})), tmp_path / "state")
    assert res.ok
    assert h.hostkey_pub.split()[1] in fresh.read_text()


def test_second_concurrent_run_on_a_site_gets_exit_3(tmp_path: Path, ssh_hosts: list[tuple[LabHost, Path]]) -> None:
    h, d = ssh_hosts[0]
    gates = d / "gates"
    gates.mkdir()
    make_gates(gates, "deploy")
    inv = write_inventory(tmp_path, sites_of({"shop": h.env(d / "site")}))
    gated = _pb(
        tmp_path,
        PLAYBOOK.replace('argv: ["true"], unless: ["true"]', f'argv: [sh, -c, "{GATED_SHELL.format(dir=gates)}"]'),
    )
    env = {**os.environ, "MAINT_PLAIN": "1"}
    first = subprocess.Popen(
        [*MAINT, "run", str(gated), "-i", str(inv), "--state-dir", str(tmp_path / "a")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    lock = d / "site" / ".maint" / "lock" / "holder.json"
    try:
        wait_started(gates, first)  # the first run holds the lock and waits in its last step
        holder = json.loads(lock.read_text())
        second = subprocess.run(
            [*MAINT, "run", str(gated), "-i", str(inv), "--state-dir", str(tmp_path / "b")],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        assert json.loads(lock.read_text()) == holder, "the second run must leave the first run's lock alone"
    finally:
        open_gate(gates)
    assert second.returncode == 3, second.stdout + second.stderr
    assert holder["playbook"] == "five" and holder["pid"] == first.pid
    assert f"locked by run {holder['run_id']}" in second.stdout
    assert "maint unlock shop --env production" in second.stdout
    out, err = first.communicate(timeout=60)
    assert first.returncode == 0, out + err
    assert not lock.exists()


def test_stale_lock_is_reported_with_the_command_that_clears_it(
    tmp_path: Path, ssh_hosts: list[tuple[LabHost, Path]]
) -> None:
    h, d = ssh_hosts[0]
    inv = write_inventory(tmp_path, sites_of({"shop": h.env(d / "site")}))
    lockdir = d / "site" / ".maint" / "lock"
    lockdir.mkdir(parents=True)
    holder = {
        "run_id": "20200101T000000Z-dead00",
        "actor": "ci@old",
        "since": "2020-01-01T00:00:00+00:00",
        "controller": os.uname().nodename,
        "pid": 999999,
        "playbook": "five",
    }
    (lockdir / "holder.json").write_text(json.dumps(holder))
    subprocess.run(["chown", "-R", "deploy", str(d / "site")], check=True)
    proc = subprocess.run(
        [*MAINT, "run", str(_pb(tmp_path)), "-i", str(inv), "--state-dir", str(tmp_path / "s")],
        capture_output=True,
        text=True,
        env={**os.environ, "MAINT_PLAIN": "1"},
    )
    assert proc.returncode == 3
    assert "looks stale" in proc.stdout and "maint unlock shop --env production" in proc.stdout
    assert (lockdir / "holder.json").exists(), "a stale lock is reported, never silently broken"
    cleared = subprocess.run(
        [*MAINT, "unlock", "shop", "--env", "production", "-i", str(inv)], capture_output=True, text=True
    )
    assert cleared.returncode == 0 and "20200101T000000Z-dead00" in cleared.stdout
    again = subprocess.run(
        [*MAINT, "run", str(_pb(tmp_path)), "-i", str(inv), "--state-dir", str(tmp_path / "s")],
        capture_output=True,
        text=True,
    )
    assert again.returncode == 0, again.stdout + again.stderr


ROLLBACK = """\
name: rb
stages:
  - env: production
    steps:
      - {action: file.content, with: {path: "{{ env.path }}/keep.txt", content: "new\\n", mode: "0600"}}
      - {action: file.directory, with: {path: "{{ env.path }}/made/deep"}}
      - {action: file.symlink, with: {path: "{{ env.path }}/current", target: "{{ env.path }}/made"}}
      - {action: command, with: {argv: [sh, -c, "echo broken >&2; exit 4"]}}
"""


def test_failing_step_rolls_back_files_over_ssh(tmp_path: Path, ssh_hosts: list[tuple[LabHost, Path]]) -> None:
    h, d = ssh_hosts[1]
    site = d / "site"
    remote(
        h,
        "sh",
        "-c",
        f"mkdir -p {site}/old && echo old > {site}/keep.txt && chmod 644 {site}/keep.txt && "
        f"ln -s {site}/old {site}/current && chown -R deploy {site}",
    )
    before = tree_hash(h, site, skip_state=True)
    res = run(ROLLBACK, write_inventory(tmp_path, sites_of({"shop": h.env(site)})), tmp_path / "state")
    assert res.exit_code == 1
    assert res.sites[0].status is SiteStatus.ROLLED_BACK
    assert "exit 4" in (res.sites[0].error or "") or "exited 4" in (res.sites[0].error or "")
    assert tree_hash(h, site, skip_state=True) == before
    assert not (site / ".maint" / "lock").exists()


SIGTERM_PB = """\
name: slow
stages:
  - env: production
    steps:
      - {action: file.content, with: {path: "{{ env.path }}/keep.txt", content: "new\\n"}}
      - {action: command, with: {argv: [sh, -c, "GATE; touch {{ env.path }}/done"], creates: "{{ env.path }}/done", undo: [rm, -f, "{{ env.path }}/done"]}}
      - {action: file.content, with: {path: "{{ env.path }}/never.txt", content: "x"}}
"""


def test_sigterm_mid_run_undoes_and_releases_the_lock(tmp_path: Path, ssh_hosts: list[tuple[LabHost, Path]]) -> None:
    h, d = ssh_hosts[2]
    site = d / "site"
    remote(h, "sh", "-c", f"mkdir -p {site} && echo old > {site}/keep.txt && chown -R deploy {site}")
    gates = d / "gates"
    gates.mkdir()
    make_gates(gates, "deploy")
    inv = write_inventory(tmp_path, sites_of({"shop": h.env(site)}))
    pb = _pb(tmp_path, SIGTERM_PB.replace("GATE", GATED_SHELL.format(dir=gates)))
    proc = subprocess.Popen(
        [*MAINT, "run", str(pb), "-i", str(inv), "--state-dir", str(tmp_path / "s")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "MAINT_PLAIN": "1"},
    )
    try:
        wait_started(gates, proc)  # the first step is done, the second one is running
        proc.send_signal(signal.SIGTERM)
        assert proc.stderr is not None
        seen = []
        for line in proc.stderr:  # the handler has run once it says so; only then may the step end
            seen.append(line)
            if line.startswith("interrupt received:"):
                break
        assert seen and seen[-1].startswith("interrupt received:"), "".join(seen)
    finally:
        open_gate(gates)
    out, rest = proc.communicate(timeout=60)
    err = "".join(seen) + rest
    assert proc.returncode == 3, out + err
    assert (site / "keep.txt").read_text() == "old\n", "the completed step was undone"
    assert not (site / "never.txt").exists()
    assert not (site / "done").exists(), "the step that was running when the signal came was undone too"
    assert "interrupt received: finishing the current step, rolling back, releasing locks..." in err
    assert not (site / ".maint" / "lock").exists()
    run_dir = next((tmp_path / "s" / "runs").iterdir())
    events = [json.loads(x) for x in (run_dir / "events.jsonl").read_text().splitlines()]
    assert events[-1]["event"] == "run.finished" and events[-1]["status"] == "interrupted"
    assert any(e["event"] == "step.rolled_back" for e in events)
    assert any(e["event"] == "lock.released" for e in events)
    assert [(e["step"], e["reason"]) for e in events if e["event"] == "step.not_run"] == [
        ("file.content#2", "the run was interrupted")
    ]


_PIECES = [
    *"ab ;|&$()`'\"<>*?[]!#~\\\n\t%^=:,.-_/",
    "$(touch CANARY)",
    "`touch CANARY`",
    "; touch CANARY",
    "' ; touch CANARY '",
]
METACHARS = st.lists(st.sampled_from(_PIECES), min_size=1, max_size=12).map("".join)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=METACHARS)
def test_metacharacters_pass_through_literally(
    tmp_path: Path, ssh_hosts: list[tuple[LabHost, Path]], value: str
) -> None:
    h, d = ssh_hosts[0]
    site = d / "meta"
    name = "f-" + "".join(c for c in value if c not in "/\n\t\\")[:20]
    pb = Playbook.model_validate(
        {
            "name": "meta",
            "stages": [
                {
                    "env": "production",
                    "steps": [
                        {"action": "file.directory", "with": {"path": str(site)}},
                        {"action": "file.content", "with": {"path": f"{site}/{name}", "content": value}},
                        {"action": "command", "with": {"argv": ["printf", "%s", value], "read_only": True}},
                        {
                            "action": "command",
                            "with": {"argv": ["touch", f"{site}/{name}.stamp"], "creates": f"{site}/{name}.stamp"},
                        },
                    ],
                }
            ],
        }
    )
    res = run(pb, write_inventory(tmp_path, sites_of({"meta": h.env(site)})), tmp_path / "state")
    assert res.ok, res.to_dict()
    assert (site / name).read_text() == value
    assert (site / f"{name}.stamp").exists()
    assert res.sites[0].steps[2].data["stdout"] == value.strip()
    assert not list(Path("/").glob("CANARY")) and not (Path.home() / "CANARY").exists()
    assert not list(site.glob("CANARY")) and not Path("/home/deploy/CANARY").exists()


def test_secret_over_ssh_never_reaches_output_or_run_folder(
    tmp_path: Path, ssh_hosts: list[tuple[LabHost, Path]]
) -> None:
    h, d = ssh_hosts[1]
    secret = "Pa55-w0rd-over-ssh-7c1"
    inv = write_inventory(tmp_path, sites_of({"shop": h.env(d / "site")}))
    pb = _pb(
        tmp_path,
        """\
name: sec
stages:
  - env: production
    steps:
      - {action: file.directory, with: {path: "{{ env.path }}"}}
      - {action: command, with: {argv: [sh, -c, "echo using {{ secrets.DB_PASS }}; exit 9"]}}
""",
    )
    proc = subprocess.run(
        [*MAINT, "run", str(pb), "-i", str(inv), "--state-dir", str(tmp_path / "s"), "--json"],
        capture_output=True,
        text=True,
        env={**os.environ, "DB_PASS": secret},
    )
    assert proc.returncode == 1
    assert secret not in proc.stdout + proc.stderr
    assert "exit 9" in proc.stdout or "exited 9" in proc.stdout
    for f in (tmp_path / "s").rglob("*"):
        if f.is_file():
            assert secret.encode() not in f.read_bytes(), f
