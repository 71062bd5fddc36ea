"""The pure parts of the peers benchmark (benchmarks/): the maths, the table, the command lines, the
reports it reads, the floor's batch (run by a real local shell), the CPU accounting of orphans;
and timeline.py on a real local run."""

from __future__ import annotations

import ast
import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.lab.sshd import chown_login_user

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCH))
try:
    import common
    import dump
    import fleet
    import guarantees
    import peers
    import report
    import timeline
    import tools
finally:
    sys.path.remove(str(BENCH))

M = common.Measure
HOSTILE = '/tmp/it\'s a "dir" $(touch pwned) -x'
REC = {
    "ip": "127.0.0.7",
    "port": 2222,
    "user": "deploy",
    "key": "/k/id",
    "known_hosts": "/k/known hosts",
    "path": HOSTILE,
}


@pytest.fixture(autouse=True)
def own_tmpdir(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every harness these tests start makes its temporary folders in a folder of the test's
    own (``TMPDIR``; like /tmp, anyone may write there: the lab's database server does), and
    must leave it empty: a benchmark cleans up after itself."""
    scratch = Path(tempfile.mkdtemp(prefix="maintkit-harness-tmp-", dir="/tmp"))
    try:
        scratch.chmod(0o1777)
        monkeypatch.setenv("TMPDIR", str(scratch))
        yield
        assert sorted(p.name for p in scratch.iterdir()) == []
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


# ---------------------------------------------------------------- maths
def test_median_of_ratios_is_not_ratio_of_medians() -> None:
    a, b = [1.0, 2.0, 9.0], [2.0, 1.0, 3.0]
    assert common.pair_ratios(a, b) == [0.5, 2.0, 3.0]
    assert common.median_ratio(a, b) == 2.0
    assert common.median(a) / common.median(b) == 1.0  # what the harness must NOT report


def test_fleet_cost_per_extra_host() -> None:
    """fleet.py: the median difference between consecutive sizes, per host, in milliseconds."""
    assert fleet.per_host([100, 250, 500], [2.0, 5.0, 10.0]) == [20.0, 20.0]
    assert fleet.per_host([100, 250, 500], [4.0, 10.0, 19.0]) == [40.0, 36.0]


def test_fleet_each_rounds_own_change() -> None:
    """fleet.py: per round, the last interval's cost per extra host over the first one's, minus 1
    (the wall times of that round alone; the CPU figures are not used)."""
    runs = {
        (100, "first"): [(2.0, 9.0), (4.0, 9.0)],
        (250, "first"): [(5.0, 9.0), (10.0, 9.0)],
        (500, "first"): [(10.0, 9.0), (19.0, 9.0)],
    }
    changes = fleet.round_changes([100, 250, 500], runs, "first")
    assert [round(c, 6) for c in changes] == [0.0, -0.1]

    # fewer than three sizes have no change to give; a round whose first interval did not grow is left out
    assert fleet.round_changes([100], {(100, "first"): [(2.0, 1.0)]}, "first") == []
    assert fleet.round_changes([100, 250], {k: v for k, v in runs.items() if k[0] < 500}, "first") == []
    flat = {**runs, (250, "first"): [(2.0, 9.0), (10.0, 9.0)]}
    assert [round(c, 6) for c in fleet.round_changes([100, 250, 500], flat, "first")] == [-0.1]


def test_fleet_table_with_one_size(capsys: pytest.CaptureFixture[str]) -> None:
    """fleet.py --hosts 100: the table is printed (no cost per extra host, no change)."""
    runs = {(100, "first"): [(2.0, 1.0)], (100, "no-op"): [(1.0, 0.5)]}
    fleet.print_table([100], runs)
    lines = capsys.readouterr().out.splitlines()
    assert lines[-2:] == ["first | 2.00 / 1.00 |  () | -", "no-op | 1.00 / 0.50 |  () | -"]
    assert fleet.per_host([10], [1.0]) == []


def test_pairs_must_match_and_median_needs_values() -> None:
    with pytest.raises(ValueError, match="pairs must match"):
        common.pair_ratios([1.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="no values"):
        common.median([])
    assert common.median_measures([(1.0, 5.0), (3.0, 1.0), (2.0, 2.0)]) == (2.0, 2.0)


def test_group_summary_table_and_json() -> None:
    g = report.Group(10, "maint", "ansible")
    g.add("first", M(1.0, 0.5, 60.0), M(4.0, 2.0, 50.0))
    g.add("first", M(2.0, 1.0, 61.0), M(2.0, 4.0, 55.0))
    g.add("first", M(3.0, 0.5, 62.0), M(10.0, 1.0, 52.0))
    g.add("noop", M(1.0, 1.0), M(10.0, 5.0))
    s = g.summary("first")
    assert s == {"maint_wall": 2.0, "maint_cpu": 0.5, "peer_wall": 4.0, "peer_cpu": 2.0,
                 "ratio_wall": 0.3, "ratio_cpu": 0.25}  # fmt: skip
    absent = report.Group(10, "maint", "pyinfra", absent="pyinfra not installed (bash benchmarks/setup-peers.sh)")
    assert report.table([g, absent]) == [
        *report.HEADER,
        "10 | first run | maint | 2.00 / 0.50 | ansible | 4.00 / 2.00 | 0.30x | 0.25x",
        "10 | no-op | maint | 1.00 / 1.00 | ansible | 10.00 / 5.00 | 0.10x | 0.20x",
        "10 | - | maint | - | pyinfra | pyinfra not installed (bash benchmarks/setup-peers.sh) | - | -",
    ]
    doc = json.loads(json.dumps(g.to_json()))
    assert doc["pairs"]["first"][1] == {"maint": {"wall": 2.0, "cpu": 1.0, "rss_mb": 61.0},
                                        "peer": {"wall": 2.0, "cpu": 4.0, "rss_mb": 55.0}}  # fmt: skip
    assert doc["summary"]["noop"]["ratio_wall"] == 0.1
    assert absent.to_json()["summary"] == {"first": None, "noop": None}
    assert report.rss_lines({"fabric": 42.4, "maint": 59.6}) == ["maint: 60 MB", "fabric: 42 MB"]


# ---------------------------------------------------------------- command lines
def test_openssh_command_lines_are_strict_and_ignore_dotfiles() -> None:
    base = tools.ssh_base(REC)
    assert base[:3] == ["ssh", "-F", "/dev/null"]
    opts = [base[i + 1] for i, a in enumerate(base) if a == "-o"]
    assert {"UserKnownHostsFile=/k/known hosts", "StrictHostKeyChecking=yes", "GlobalKnownHostsFile=/dev/null",
            "IdentitiesOnly=yes", "IdentityAgent=none", "BatchMode=yes"} <= set(opts)  # fmt: skip
    sock = Path("/s/m0")
    assert tools.master_open_argv(REC, sock) == [*base, "-o", "ControlMaster=yes", "-o", "ControlPath=/s/m0",
                                                 "-o", "ControlPersist=600", "-f", "-N", "deploy@127.0.0.7"]  # fmt: skip
    assert tools.master_ctl_argv(REC, sock, "exit")[-3:] == ["-O", "exit", "deploy@127.0.0.7"]
    with pytest.raises(ValueError):
        tools.master_ctl_argv(REC, sock, "stop")
    floor = tools.floor_argv(REC, sock)
    assert floor[-2:] == ["deploy@127.0.0.7", tools.floor_script(HOSTILE)]
    assert "ControlMaster=no" in floor
    assert tools.master_pid("Master running (pid=4242)\r\n") == 4242
    with pytest.raises(ValueError):
        tools.master_pid("Control socket connect(/s/m0): No such file or directory")


def test_floor_script_reads_the_converged_state_through_a_real_shell(tmp_path: Path) -> None:
    d = tmp_path / 'it\'s a "dir" $(touch pwned) -x'
    (d / "app").mkdir(parents=True)
    (d / "app" / "config.txt").write_text(common.CONTENT)
    os.symlink(d / "app", d / "current")
    sha = hashlib.sha256(common.CONTENT.encode()).hexdigest()
    out = subprocess.run(["sh", "-c", tools.floor_script(str(d))], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[:3] == [f"{d}/app|directory|755|{_me()}|{_group()}|{(d / 'app').stat().st_size}",
                         f"{d}/app/config.txt|regular file|644|{_me()}|{_group()}|17",
                         f"{d}/current|symbolic link|777|{_me()}|{_group()}|{len(str(d / 'app'))}"]  # fmt: skip
    assert lines[3:5] == [f"{d}/app", f"{sha}  {d}/app/config.txt"]
    assert len(lines) == 6  # + uname -r; the missing lock printed nothing
    assert tools.floor_output_ok(out.stdout, str(d), sha)
    assert not (tmp_path / "pwned").exists()
    (d / "app" / "config.txt").write_text("other\n")
    again = subprocess.run(["sh", "-c", tools.floor_script(str(d))], capture_output=True, text=True)
    assert not tools.floor_output_ok(again.stdout, str(d), sha)


def test_first_floor_script_does_the_workload_through_a_real_shell(tmp_path: Path) -> None:
    d = tmp_path / 'it\'s a "dir" $(touch pwned) -x'
    d.mkdir()
    out = subprocess.run(["sh", "-c", tools.first_floor_script(str(d))], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout == os.uname().release + "\n"  # uname -r; nothing else printed
    assert sorted(p.name for p in d.iterdir()) == ["app", "current"]
    assert (d / "app" / "config.txt").read_text() == common.CONTENT
    assert os.readlink(d / "current") == f"{d}/app"
    assert not (tmp_path / "pwned").exists()
    again = subprocess.run(["sh", "-c", tools.first_floor_script(str(d))], capture_output=True, text=True)
    assert again.returncode == 0  # converged: the same result, no link inside the app directory
    assert sorted(p.name for p in (d / "app").iterdir()) == ["config.txt"]
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the directory goes\n")
    failed = subprocess.run(["sh", "-c", tools.first_floor_script(str(blocked))], capture_output=True, text=True)
    assert failed.returncode != 0 and not (tmp_path / "blocked" / "current").exists()


def _me() -> str:
    import pwd

    return pwd.getpwuid(os.getuid()).pw_name


def _group() -> str:
    import grp

    return grp.getgrgid(os.getgid()).gr_name


def test_maint_inventory_and_argv() -> None:
    inv = tools.maint_inventory([REC, {**REC, "ip": "127.0.0.8"}])
    assert inv["sites"]["s1"]["environments"]["production"] == {
        "host": "127.0.0.8", "port": 2222, "user": "deploy", "key_file": "/k/id",
        "known_hosts": "/k/known hosts", "path": HOSTILE}  # fmt: skip
    warm = tools.maint_inventory([REC], openssh=True, persist=600)["sites"]["s0"]["environments"]["production"]
    assert (warm["connection"], warm["control_persist"]) == ("openssh", 600)
    assert tools.maint_argv("maint", Path("b.yml"), Path("i.json"), Path("st"), 7) == [
        "maint", "run", "b.yml", "-i", "i.json", "--state-dir", "st", "--concurrency", "7"]  # fmt: skip
    assert tools.maint_changed({"status": "ok", "changed": 3}) == 3
    with pytest.raises(ValueError, match="'failed'"):
        tools.maint_changed({"status": "failed", "changed": 0})


def test_pyinfra_inventory_is_strict_and_argv() -> None:
    module = ast.parse(tools.pyinfra_inventory([REC]))  # the module pyinfra will load: read, never run
    [assign] = module.body  # one assignment of a literal, nothing else
    assert isinstance(assign, ast.Assign) and [ast.unparse(t) for t in assign.targets] == ["hosts"]
    expected = [("127.0.0.7", {
        "ssh_port": 2222, "ssh_user": "deploy", "ssh_key": "/k/id", "ssh_known_hosts_file": "/k/known hosts",
        "ssh_strict_host_key_checking": "yes", "ssh_config_file": "/dev/null", "ssh_allow_agent": False,
        "ssh_look_for_keys": False, "path": HOSTILE})]  # fmt: skip
    # the same syntax tree as the literal written out: nothing but constants, in this shape
    assert ast.dump(assign.value) == ast.dump(ast.parse(repr(expected), mode="eval").body)
    argv = tools.pyinfra_argv(Path("/v"), Path("/w/inv.py"), 50)
    assert argv == ["/v/bin/pyinfra", "/w/inv.py", str(tools.PYINFRA_DEPLOY), "-y", "--parallel", "50", "--json"]


def test_pyinfra_report_parsing() -> None:
    ops = [{"name": n, "success": [], "error": [], "no_change": ["h1", "h2"]} for n in tools.STATE_STEPS]
    ops += [{"name": n, "success": ["h1", "h2"], "error": [], "no_change": []} for n in tools.COMMAND_STEPS]
    out = "--> noise\n" + json.dumps({"plan": [], "results": {"operations": ops, "failed_hosts": []}})
    got = tools.pyinfra_changes(out)
    assert got["symlink"] == {"changed": set(), "unchanged": {"h1", "h2"}}
    assert got["uname"] == {"changed": {"h1", "h2"}, "unchanged": set()}
    ops[0]["error"] = ["h2"]
    with pytest.raises(ValueError, match="'directory' failed on"):
        tools.pyinfra_changes(json.dumps({"results": {"operations": ops, "failed_hosts": []}}))
    with pytest.raises(ValueError, match="failed on"):
        tools.pyinfra_changes(json.dumps({"results": {"operations": [], "failed_hosts": ["h1"]}}))


def test_ansible_cfg_inventory_argv() -> None:
    cfg = tools.ansible_cfg(50, Path("/w/ac1"))
    for line in ("host_key_checking = True", "forks = 50", "pipelining = True", "gather_facts = False",
                 "control_path_dir = /w/ac1", "control_path = %(directory)s/%%h-%%p-%%r"):  # fmt: skip
        assert line in cfg.splitlines()
    host = tools.ansible_inventory([REC])["all"]["hosts"]["127.0.0.7"]
    assert shlex.split(host["ansible_ssh_common_args"]) == [
        "-F", "/dev/null", "-o", "UserKnownHostsFile=/k/known hosts", "-o", "StrictHostKeyChecking=yes",
        "-o", "GlobalKnownHostsFile=/dev/null", "-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none"]  # fmt: skip
    assert (host["ansible_port"], host["ansible_ssh_private_key_file"], host["path"]) == (2222, "/k/id", HOSTILE)
    assert tools.ansible_argv(Path("/v"), Path("/w/i.json")) == [
        "/v/bin/ansible-playbook", "-i", "/w/i.json", str(tools.ANSIBLE_PLAYBOOK)]  # fmt: skip


def test_ansible_recap_parsing() -> None:
    out = textwrap.dedent("""\
        PLAY RECAP *********************************************************************
        127.0.0.2                  : ok=5    changed=3    unreachable=0    failed=0    skipped=0    rescued=0    ignored=0
        127.0.0.3                  : ok=5    changed=0    unreachable=0    failed=0    skipped=0    rescued=0    ignored=0
        """)
    assert tools.ansible_recap(out) == {"127.0.0.2": (5, 3), "127.0.0.3": (5, 0)}
    with pytest.raises(ValueError, match="127.0.0.3 unreachable=1 failed=0"):
        tools.ansible_recap(out.replace("ok=5    changed=0    unreachable=0", "ok=0    changed=0    unreachable=1"))


def test_workload_problems_names_what_is_missing(tmp_path: Path) -> None:
    d = tmp_path / "h"
    (d / "app").mkdir(parents=True)
    (d / "app" / "config.txt").write_text("hello from maint")  # no newline: not the same content
    os.symlink(tmp_path, d / "current")
    assert common.workload_problems([d]) == [
        f"{d}/app/config.txt: content is not 'hello from maint\\n'", f"{d}/current: not a symlink to {d}/app"]  # fmt: skip
    (d / "app" / "config.txt").write_text(common.CONTENT)
    (d / "current").unlink()
    os.symlink(d / "app", d / "current")
    assert common.workload_problems([d]) == []


# ---------------------------------------------------------------- CPU of orphans
ORPHAN = """
import os, select, subprocess, sys
sys.path.insert(0, sys.argv[1])
import common
gate = sys.argv[2]
if sys.argv[3] == "adopt":
    common.become_subreaper()
burn = "import os, time, pathlib\\nwhile time.process_time() < 0.3: pass\\npathlib.Path(%r).write_text(str(os.getpid()))" % gate
shell = f"{sys.executable} -c {__import__('shlex').quote(burn)} & exit 0"
def cleanup():  # gates, no polling: the burner writes its pid into a FIFO once its CPU is spent,
    with open(gate) as fifo:  # then its exit is awaited on a pidfd
        pid = int(fifo.read())
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return  # gone and reaped already
    select.select([fd], [], [])
    os.close(fd)
t = common.Timer()
m, _ = t.run(["sh", "-c", shell], cleanup=cleanup)
print(m.cpu)
"""


@pytest.mark.parametrize("mode", ["adopt", "plain"])
def test_timer_counts_the_cpu_of_orphans_it_adopted(tmp_path: Path, mode: str) -> None:
    gate = tmp_path / "gate"
    os.mkfifo(gate)
    proc = subprocess.run([sys.executable, "-c", ORPHAN, str(BENCH), str(gate), mode], capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    cpu = float(proc.stdout)
    if mode == "adopt":
        assert cpu >= 0.3  # the background burner's 0.3 s, reaped in the window, counted
    else:
        assert cpu < 0.3  # not adopted: it vanishes from the figures (what the subreaper prevents)


def test_versions_name_the_commit_of_a_clean_tree_and_of_a_dirty_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`git status --porcelain` prints nothing for a clean tree: the commit alone, no crash."""
    env = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
    ident = ["-c", "user.name=t", "-c", "user.email=t@example.test", "-c", "commit.gpgsign=false"]
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True, env=env)
    (tmp_path / "f").write_text("one\n")
    subprocess.run(["git", "-C", str(tmp_path), "add", "f"], check=True, env=env)
    subprocess.run(["git", "-C", str(tmp_path), *ident, "commit", "-q", "-m", "one"], check=True, env=env)
    head = subprocess.run(["git", "-C", str(tmp_path), "rev-parse", "HEAD"], capture_output=True, text=True, env=env)
    monkeypatch.setattr(peers, "ROOT", tmp_path)
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", os.devnull)
    assert peers.versions()["maint"] == head.stdout.strip()
    (tmp_path / "f").write_text("two\n")
    assert peers.versions()["maint"] == head.stdout.strip() + " (uncommitted changes)"


def test_machine_cpu_reads_the_cpu_line_of_proc_stat(tmp_path: Path) -> None:
    stat = tmp_path / "stat"
    hz = os.sysconf("SC_CLK_TCK")
    # user nice system idle iowait irq softirq steal guest guest_nice: idle, iowait and guests left out
    stat.write_text(f"cpu  {hz} {hz} {hz} {100 * hz} {50 * hz} {hz} {hz} {hz} {7 * hz} {7 * hz}\ncpu0 1 2 3\n")
    assert common.machine_cpu(stat) == 6.0
    stat.write_text("intr 1 2 3\n")
    with pytest.raises(ValueError, match="no cpu line"):
        common.machine_cpu(stat)
    assert common.machine_cpu() > 0  # this machine's own


def test_overheads_by_size_are_medians_over_the_rounds() -> None:
    rows = [
        {"sites": 20, "overhead": 0.70, "overhead_cpu": 1.0},
        {"sites": 1, "overhead": 0.90, "overhead_cpu": 1.3},
        {"sites": 20, "overhead": 0.98, "overhead_cpu": 1.2},
        {"sites": 20, "overhead": 0.95, "overhead_cpu": 1.1},
    ]
    assert common.overheads_by_size(rows) == {1: (0.90, 1.3), 20: (0.95, 1.1)}


def test_the_cold_floor_reads_every_host_over_a_new_verified_connection(
    tmp_path: Path, ssh_hosts: list[tuple[Any, Path]]
) -> None:
    records = []
    for host, scratch in ssh_hosts:
        d = scratch / 'it\'s a "dir" -x'
        (d / "app").mkdir(parents=True)
        (d / "app" / "config.txt").write_text(common.CONTENT)
        os.symlink(d / "app", d / "current")
        records.append({"ip": host.ip, "port": host.port, "user": "deploy", "key": str(host.client_key),
                        "known_hosts": str(host.known_hosts), "path": str(d)})  # fmt: skip
    direct = [r for r, (h, _) in zip(records, ssh_hosts, strict=True) if h.proxy_command is None]
    hosts = tmp_path / "hosts.json"
    hosts.write_text(json.dumps(direct))
    argv = [sys.executable, str(BENCH / "cold_floor.py"), str(hosts)]
    assert subprocess.run(argv, capture_output=True, text=True).returncode == 0
    Path(direct[-1]["path"], "app", "config.txt").write_text("other\n")
    failed = subprocess.run(argv, capture_output=True, text=True)
    assert failed.returncode == 1
    assert failed.stderr.strip() == "cold floor: 1 host(s) did not answer with the converged state"
    hosts.write_text(json.dumps([{**direct[0], "known_hosts": os.devnull}]))  # its key is unknown: refused
    assert subprocess.run(argv, capture_output=True, text=True).returncode == 1


def test_the_cold_floor_first_run_does_the_workload_on_every_host(
    tmp_path: Path, ssh_hosts: list[tuple[Any, Path]]
) -> None:
    records, dirs = [], []
    for host, scratch in ssh_hosts:
        if host.proxy_command is not None:
            continue
        d = scratch / 'fresh "dir" -x'
        d.mkdir()
        chown_login_user(d)
        dirs.append(d)
        records.append({"ip": host.ip, "port": host.port, "user": "deploy", "key": str(host.client_key),
                        "known_hosts": str(host.known_hosts), "path": str(d)})  # fmt: skip
    hosts = tmp_path / "hosts.json"
    hosts.write_text(json.dumps(records))
    first = [sys.executable, str(BENCH / "cold_floor.py"), str(hosts), "--first"]
    assert subprocess.run(first, capture_output=True, text=True).returncode == 0
    assert common.workload_problems(dirs) == []
    read = subprocess.run(first[:-1], capture_output=True, text=True)
    assert read.returncode == 0, read.stderr  # the no-op floor reads exactly what the first run left
    Path(dirs[0], "app", "config.txt").unlink()
    os.rmdir(Path(dirs[0], "app"))
    Path(dirs[0], "app").write_text("a file where the directory goes\n")
    failed = subprocess.run(first, capture_output=True, text=True)
    assert failed.returncode == 1
    assert failed.stderr.strip() == "cold floor: 1 host(s) could not do the workload"
    usage = subprocess.run([*first, "--again"], capture_output=True, text=True)
    assert usage.returncode == 1 and usage.stderr.strip() == "usage: cold_floor.py HOSTS_JSON [--first]"


def test_timeline_times_the_phases_of_a_real_run_in_order(tmp_path: Path) -> None:
    """timeline.py runs maint in a child that marks the runner's phases: every row, in run order."""
    from tests.runs import one_site, write_inventory

    site = tmp_path / "site"
    site.mkdir()
    inventory = write_inventory(tmp_path, one_site({"connection": "local", "path": str(site)}))
    playbook = tmp_path / "pb.yml"
    playbook.write_text(common.PLAYBOOK)
    args = ["run", str(playbook), "-i", str(inventory), "--state-dir", str(tmp_path / "state")]

    first = timeline.run_once(args, sys.executable)
    again = timeline.run_once(args, sys.executable)

    assert (site / "app" / "config.txt").read_text() == "hello from maint\n"  # the run really ran
    labels = [label for label, _, _ in timeline.ROWS]
    for row in (first, again):
        phases = [row[label] for label in labels]
        assert phases == sorted(phases)  # each phase starts after the one before it
        assert row["process CPU"] > 0 and row["machine CPU, all cores"] >= 0
    with pytest.raises(SystemExit, match="maint exited 2"):
        timeline.run_once(["run", str(tmp_path / "missing.yml"), "-i", str(inventory)], sys.executable)


def test_the_dump_forms_are_the_scripts_they_name() -> None:
    from maintkit.actions.backup.db import pipeline
    from maintkit.actions.cms.db import _dump_script

    out = Path("/w/out")
    forms = dump.forms("/w/c.cnf", "shop", out)
    base = "mariadb-dump --defaults-file=/w/c.cnf --single-transaction --routines --triggers --hex-blob"
    backup = "mariadb-dump --defaults-file=/w/c.cnf --single-transaction --routines --triggers --no-tablespaces"
    cms = _dump_script("shop", "/w/c.cnf", "/w/out/database.sql.zst")
    assert "command -v zstd " in cms
    assert forms == {
        "cms.update": cms,
        "cms.update without zstd": cms.replace("command -v zstd ", "command -v zstd-not-installed "),
        "cms.update before the pipe": f"umask 077\n{base} --result-file=/w/out/database.sql shop && gzip -f --"
        " /w/out/database.sql && chmod 600 -- /w/out/database.sql.gz",
        "backup.create": pipeline(f"{backup} --hex-blob shop", "zstd -q -c", out="/w/out/database.sql.zst"),
        "backup.create with gzip": pipeline(f"{backup} --hex-blob shop", "gzip -c", out="/w/out/database.sql.gz"),
        "dump alone": f"{base} shop > /dev/null",
    }
    runs = {"maint": [{"wall": 1.5, "cpu": 2.0, "bytes": 45e6}, {"wall": 1.3, "cpu": 1.8, "bytes": 45e6},
                      {"wall": 1.4, "cpu": 1.9, "bytes": 45e6}],
            "dump alone": [{"wall": 0.6, "cpu": 0.5, "bytes": 0}, {"wall": 0.8, "cpu": 0.6, "bytes": 0},
                           {"wall": 0.7, "cpu": 0.5, "bytes": 0}]}  # fmt: skip
    assert dump.table(runs)[2:] == ["maint | 1.40 | 1.90 | 45.0 | 2.00x", "dump alone | 0.70 | 0.50 | - | 1.00x"]


def test_the_dump_benchmark_times_every_form_on_a_real_database(tmp_path: Path) -> None:
    out = tmp_path / "dump.json"
    res = subprocess.run([sys.executable, str(BENCH / "dump.py"), "--mb", "1", "--rounds", "1", "--json", str(out)],
                         capture_output=True, text=True, timeout=600)  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    results = json.loads(out.read_text())["results"]
    assert list(results) == [
        "cms.update", "cms.update without zstd", "cms.update before the pipe", "backup.create",
        "backup.create with gzip", "dump alone",
    ]  # fmt: skip
    assert [len(runs) for runs in results.values()] == [1] * 6
    sizes = {name: runs[0]["bytes"] for name, runs in results.items()}
    assert sizes["dump alone"] == 0 and sizes["backup.create with gzip"] > 0
    assert abs(sizes["cms.update before the pipe"] - sizes["backup.create with gzip"]) < 64  # both gzip -6
    assert sizes["cms.update without zstd"] > sizes["backup.create with gzip"]  # gzip -1 against the default
    # zstd -3 both (every file was compared): the dumps differ only in their "-- Dump completed"
    # time, whose digits can change the compressed size by a byte
    assert abs(sizes["cms.update"] - sizes["backup.create"]) < 16
    assert sizes["cms.update"] < sizes["backup.create with gzip"]
    assert res.stdout.splitlines()[0].startswith("form | wall (s) |") and len(res.stdout.splitlines()) == 8


@pytest.mark.parametrize("form", guarantees.FORMS)
def test_every_guarantee_form_does_the_workload_through_a_real_shell(tmp_path: Path, form: str) -> None:
    d = tmp_path / 'it\'s a "dir" $(touch pwned) -x'
    d.mkdir()
    outputs = []
    for script, stdin in guarantees.form_sessions(form, str(d)):
        res = subprocess.run(["sh", "-c", script], input=stdin, capture_output=True, cwd=tmp_path)
        assert res.returncode == 0, res.stderr
        outputs.append(res.stdout.decode())
    assert common.workload_problems([d]) == []
    assert not (tmp_path / "pwned").exists()
    assert not (d / ".maint" / "lock").exists()  # released (or never taken)
    assert sorted(p.name for p in (d / "app").iterdir()) == ["config.txt"]  # no temporary file left
    sessions = {"floor": 1, "release merged": 2, "one session": 1}.get(form, 3)
    assert len(outputs) == sessions
    text = "".join(outputs)
    assert (f"  {d}/app/config.txt" in text) == (form in ("+verify", "release merged", "one session"))
    sha = hashlib.sha256(common.CONTENT.encode()).hexdigest()
    assert (sha in text) == (form in ("+verify", "release merged", "one session"))
    assert "missing" in text or form in ("floor", "+2 sessions")  # the reads before the changes saw nothing


def test_the_guarantees_table_shows_each_change() -> None:
    results = {"floor": [(0.7, 1.3), (0.8, 1.4), (0.75, 1.35)], "+2 sessions": [(0.9, 1.7), (0.85, 1.6), (0.95, 1.8)]}
    assert guarantees.table(results)[2:] == ["floor | 0.750 | 1.35 | -", "+2 sessions | 0.900 | 1.70 | +0.150, +0.35"]


def test_the_guarantees_benchmark_runs_every_form_on_lab_hosts(tmp_path: Path) -> None:
    out = tmp_path / "g.json"
    argv = [sys.executable, str(BENCH / "guarantees.py"), "--hosts", "2", "--rounds", "1", "--json", str(out)]
    res = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    results = json.loads(out.read_text())["results"]
    assert list(results) == list(guarantees.FORMS) and all(len(runs) == 1 for runs in results.values())
    assert [line.split(" | ")[0] for line in res.stdout.splitlines()[2:]] == list(guarantees.FORMS)


def test_the_filesystem_probe_creates_its_files_in_a_new_folder_and_keeps_them(tmp_path: Path) -> None:
    (tmp_path / "site").mkdir()
    took = common.file_creation_ms(tmp_path, n=45)
    again = common.file_creation_ms(tmp_path, n=45)
    probes = sorted(p for p in tmp_path.iterdir() if p.name.startswith("fs-probe-"))
    assert len(probes) == 2 and took > 0 and again > 0  # a new folder each time
    for probe in probes:
        files = sorted(p.relative_to(probe).as_posix() for p in probe.rglob("*.bin"))
        assert len(files) == 45 and {f.split("/")[0] for f in files} == {f"d{i}" for i in range(20)}
        assert all((probe / f).read_bytes() == b"x" * 2048 for f in files)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*(p.name for p in probes), "site"])  # nothing else


def test_the_floor_gap_benchmark_times_both_sides_the_audit_events_and_the_sessions(tmp_path: Path) -> None:
    out = tmp_path / "gap.json"
    argv = [sys.executable, str(BENCH / "floor_gap.py"), "--hosts", "2", "--runs", "1", "--sessions", "3",
            "--json", str(out)]  # fmt: skip
    res = subprocess.run(argv, capture_output=True, text=True, timeout=600)  # own_tmpdir: its work folder goes
    assert res.returncode == 0, res.stderr[-3000:]
    data = json.loads(out.read_text())
    assert list(data["sides"]) == ["maint no-op", "cold floor"]
    for rows in data["sides"].values():
        assert len(rows) == 1 and sorted(rows[0]) == ["cpu", "machine_cpu", "wall"]
        assert rows[0]["wall"] > 0 and rows[0]["cpu"] > 0 and rows[0]["machine_cpu"] >= 0
    # a 2-host no-op: the run's two events and nine per site (site and stage started, the five
    # steps checked, stage and site finished; no lock is taken)
    [(events, spent)] = data["audit"]
    assert events == 2 + 2 * 9 and spent > 0
    assert data["sessions"]["release"] == os.uname().release + "\n"  # the lab's sshd runs on this kernel
    assert data["sessions"]["session_ms"] >= 0 and data["sessions"]["kept_shell_ms"] >= 0
    assert [line.split(" | ")[0] for line in res.stdout.splitlines()[2:4]] == ["maint no-op", "cold floor"]


def test_the_benchmarks_playbook_is_committed_in_a_repository_as_users_keep_it(tmp_path: Path) -> None:
    """write_playbook: the workload committed in a repository at ``work``, which stays clean when
    the harness writes inventories and state beside it (maint records the commit of every run)."""
    from maintkit.audit.provenance import git_provenance

    book = common.write_playbook(tmp_path)
    assert book == tmp_path / "bench.yml"
    assert book.read_text() == common.PLAYBOOK
    facts = git_provenance(book)
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=tmp_path, capture_output=True, text=True, check=True,
        env={**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"},
    ).stdout.strip()  # fmt: skip
    assert facts == {"commit": head, "dirty": False, "repo": str(tmp_path)}
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "summary.json").write_text("{}")
    (tmp_path / "inventory.json").write_text("{}")
    assert git_provenance(book) == facts
