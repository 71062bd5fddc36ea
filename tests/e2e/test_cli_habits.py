"""The habits users bring from Ansible and Terraform, through the real ``maint`` command.

``-e`` extra vars and their precedence, ``--steps``/``--skip-steps``/``--start-at`` (audited as
skipped), ``-v``/``-vv``/``-q`` and colours, ``--limit`` patterns, ``plan --detailed-exitcode``,
the exit code of unreachable hosts (a closed loopback port: a real refused connection), the
promotion that needs ``--promote-from``, and the run output's wording.
"""

from __future__ import annotations

import http.server
import json
import re
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.runs import events, local_env, maint_cli

PLAYBOOK = """\
name: habits
vars: {keep: 0, who: playbook, only_pb: yes-pb}
stages:
  - env: staging
    steps:
      - {id: dir, action: file.directory, with: {path: "{{ env.path }}/app"}}
      - id: conf
        action: file.content
        with:
          path: "{{ env.path }}/app/conf.txt"
          content: "keep={{ vars.keep }} next={{ vars.keep + 1 }} who={{ vars.who }} pb={{ vars.only_pb }}\\n"
      - {id: stamp, action: file.content, with: {path: "{{ env.path }}/app/stamp.txt", content: "stamp\\n"}}
  - env: production
    steps:
      - {id: dir, action: file.directory, with: {path: "{{ env.path }}/app"}}
      - {id: conf, action: file.content, with: {path: "{{ env.path }}/app/conf.txt", content: "keep={{ vars.keep }}\\n"}}
"""


def write_fleet(tmp_path: Path, extra_sites: dict[str, Any] | None = None) -> Path:
    """shop-a (vars at every level), shop-b, web-c; group eu-clients = shop-a, shop-b."""
    root = tmp_path / "sites"

    def envs(name: str, **staging: Any) -> dict[str, Any]:
        return {
            "staging": local_env(root / f"{name}-stg", **staging),
            "production": local_env(root / name),
        }

    sites: dict[str, Any] = {
        "shop-a": {"vars": {"who": "site"}, "environments": envs("shop-a", vars={"who": "env"})},
        "shop-b": {"environments": envs("shop-b")},
        "web-c": {"environments": envs("web-c")},
        **(extra_sites or {}),
    }
    data = {
        "defaults": {"vars": {"keep": 1, "who": "all"}},
        "sites": sites,
        "groups": {"eu-clients": ["shop-a", "shop-b"]},
    }
    (tmp_path / "inventory.yml").write_text(yaml.safe_dump(data))
    (tmp_path / "pb.yml").write_text(PLAYBOOK)
    return tmp_path


def maint(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> Any:
    return maint_cli(*args, cwd=tmp_path, extra_env=env)


def conf(tmp_path: Path, site: str, env: str = "stg") -> str:
    suffix = "-stg" if env == "stg" else ""
    return (tmp_path / "sites" / f"{site}{suffix}" / "app" / "conf.txt").read_text()


def runs(tmp_path: Path) -> list[Path]:
    folder = tmp_path / ".maint" / "runs"
    # in the order they ran (two run ids of one second do not sort by time)
    return sorted(folder.iterdir(), key=lambda p: (p / "events.jsonl").stat().st_mtime_ns) if folder.is_dir() else []


def result_line(stdout: str) -> dict[str, Any]:
    last = json.loads(stdout.strip().splitlines()[-1])
    assert last["event"] == "result"
    return dict(last)


# ----------------------------------------------------------------------------- -e
def test_extra_vars_override_every_level_and_are_typed(tmp_path: Path) -> None:
    write_fleet(tmp_path)
    first = maint(tmp_path, "run", "pb.yml", "-l", "shop-a,web-c")
    assert first.returncode == 0, first.stderr
    # playbook vars < inventory all (defaults) < site < env
    assert conf(tmp_path, "shop-a") == "keep=1 next=2 who=env pb=yes-pb\n"
    assert conf(tmp_path, "web-c") == "keep=1 next=2 who=all pb=yes-pb\n"
    # < -e, read as YAML (5 is a number: next=6), the last -e wins
    second = maint(tmp_path, "run", "pb.yml", "-l", "shop-a,web-c", "-e", "keep=4", "-e", "keep=5", "-e", "who=cli")
    assert second.returncode == 0, second.stderr
    assert conf(tmp_path, "shop-a") == "keep=5 next=6 who=cli pb=yes-pb\n"
    assert conf(tmp_path, "web-c", "prod") == "keep=5\n"
    again = maint(tmp_path, "run", "pb.yml", "-l", "shop-a,web-c", "-e", "keep=5", "-e", "who=cli", "--json")
    assert again.returncode == 0 and result_line(again.stdout)["changed"] == 0
    started = next(e for e in events(runs(tmp_path)[-1]) if e["event"] == "run.started")
    assert started["extra_vars"] == {"keep": 5, "who": "cli"}


def test_extra_vars_from_a_file_and_flow_values(tmp_path: Path) -> None:
    write_fleet(tmp_path)
    (tmp_path / "vars.yml").write_text("keep: 7\nwho: file\n")
    text = PLAYBOOK.replace("who={{ vars.who }}", "who={{ vars.who }} pin={{ vars.pins.woocommerce }}")
    (tmp_path / "pb.yml").write_text(text)
    res = maint(tmp_path, "run", "pb.yml", "-l", "web-c", "-e", "@vars.yml", "-e", 'pins={woocommerce: "8.4.*"}')
    assert res.returncode == 0, res.stderr
    assert conf(tmp_path, "web-c") == "keep=7 next=8 who=file pin=8.4.* pb=yes-pb\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-e", "keep"], "error: -e: 'keep': expected KEY=VALUE, @FILE or a {...} mapping"),
        (["-e", "=5"], "error: -e: '=5': the variable name before '=' is empty"),
        (["-e", "a b=1"], "error: -e: 'a b=1': invalid variable name 'a b' (letters, digits, _ and -)"),
        (["-e", "@missing.yml"], "error: -e: @missing.yml: no such file"),
        (["-e", "@list.yml"], "error: -e: @list.yml: must be a mapping of variables (KEY: VALUE), not list"),
    ],
)
def test_bad_extra_vars_exit_2_naming_the_flag(tmp_path: Path, args: list[str], message: str) -> None:
    write_fleet(tmp_path)
    (tmp_path / "list.yml").write_text("- 1\n- 2\n")
    res = maint(tmp_path, "run", "pb.yml", *args)
    assert res.returncode == 2
    assert res.stderr.splitlines() == [message, "1 problem found; nothing was run."]
    assert runs(tmp_path) == [] and not (tmp_path / "sites").exists()


def test_bad_yaml_in_extra_vars_names_the_flag_or_the_file_line(tmp_path: Path) -> None:
    write_fleet(tmp_path)
    (tmp_path / "bad.yml").write_text("keep: 1\nwho: [unclosed\n")
    res = maint(tmp_path, "run", "pb.yml", "-e", "keep=[1,")
    assert res.returncode == 2 and res.stderr.startswith("error: -e keep:1:"), res.stderr
    res = maint(tmp_path, "run", "pb.yml", "-e", "@bad.yml")
    assert res.returncode == 2 and res.stderr.startswith("error: bad.yml:"), res.stderr
    assert re.match(r"error: bad\.yml:[23]:", res.stderr), res.stderr
    assert runs(tmp_path) == []


def test_an_extra_var_equal_to_a_secret_is_redacted(tmp_path: Path) -> None:
    write_fleet(tmp_path)
    secret = "s3cr3t-Value-42"
    text = PLAYBOOK.replace("pb={{ vars.only_pb }}", "pb={{ vars.only_pb }} token={{ secrets.SHOP_TOKEN }}")
    (tmp_path / "pb.yml").write_text(text)
    res = maint(tmp_path, "run", "pb.yml", "-l", "web-c", "-e", f"who={secret}", "--json", env={"SHOP_TOKEN": secret})
    assert res.returncode == 0, res.stderr
    assert secret not in res.stdout and secret not in res.stderr
    log = (runs(tmp_path)[-1] / "events.jsonl").read_text()
    assert secret not in log
    started = next(e for e in events(runs(tmp_path)[-1]) if e["event"] == "run.started")
    assert started["extra_vars"] == {"who": "***"}


# ----------------------------------------------------------------------------- step selection
def statuses(run_dir: Path, site: str) -> list[tuple[str, str, str, str]]:
    return [
        (e["env"], e["step"], e["status"], e.get("reason") or "")
        for e in events(run_dir)
        if e.get("site") == site and e["event"] in ("step.skipped", "step.verified", "step.checked")
        and e["status"] != "needed"
    ]  # fmt: skip


def test_steps_skip_steps_and_start_at_are_audited_as_skipped(tmp_path: Path) -> None:
    write_fleet(tmp_path)
    assert maint(tmp_path, "run", "pb.yml", "-l", "web-c").returncode == 0
    stamp = tmp_path / "sites" / "web-c-stg" / "app" / "stamp.txt"
    stamp.unlink()
    args = ["-l", "web-c", "-e", "keep=3", "--steps", "dir", "--steps", "conf,stamp", "--skip-steps", "dir,stamp"]
    res = maint(tmp_path, "run", "pb.yml", *args)
    assert res.returncode == 0, res.stdout
    assert statuses(runs(tmp_path)[-1], "web-c") == [
        ("staging", "dir", "skipped", "--skip-steps"),
        ("staging", "conf", "changed", "content differs"),
        ("staging", "stamp", "skipped", "--skip-steps"),
        ("production", "dir", "skipped", "--skip-steps"),
        ("production", "conf", "changed", "content differs"),
    ]
    assert not stamp.exists()
    assert conf(tmp_path, "web-c") == "keep=3 next=4 who=all pb=yes-pb\n"
    started = next(e for e in events(runs(tmp_path)[-1]) if e["event"] == "run.started")
    assert started["selection"] == {"steps": ["dir", "conf", "stamp"], "skip_steps": ["dir", "stamp"]}
    only = maint(tmp_path, "run", "pb.yml", "-l", "web-c", "-e", "keep=3", "--steps", "stamp")
    assert only.returncode == 0, only.stdout
    assert [s[1:3] for s in statuses(runs(tmp_path)[-1], "web-c")] == [
        ("dir", "skipped"), ("conf", "skipped"), ("stamp", "changed"), ("dir", "skipped"), ("conf", "skipped"),
    ]  # fmt: skip
    assert stamp.read_text() == "stamp\n"
    # resuming: everything before the step is skipped (and audited so); what follows runs
    resumed = maint(tmp_path, "run", "pb.yml", "-l", "web-c", "-e", "keep=9", "--start-at", "stamp")
    assert resumed.returncode == 0, resumed.stdout
    assert statuses(runs(tmp_path)[-1], "web-c") == [
        ("staging", "dir", "skipped", "--start-at stamp"),
        ("staging", "conf", "skipped", "--start-at stamp"),
        ("staging", "stamp", "unchanged", "content, mode and owner as wanted"),
        ("production", "dir", "unchanged", "directory as wanted"),
        ("production", "conf", "changed", "content differs"),
    ]
    assert conf(tmp_path, "web-c") == "keep=3 next=4 who=all pb=yes-pb\n"
    assert conf(tmp_path, "web-c", "prod") == "keep=9\n"
    skipped = [e for e in events(runs(tmp_path)[-1]) if e["event"] == "step.skipped"]
    assert [e["skipped_by"] for e in skipped] == ["--start-at", "--start-at"]
    again = maint(tmp_path, "run", "pb.yml", "-l", "web-c", "-e", "keep=9", "--start-at", "stamp", "--json")
    assert result_line(again.stdout)["changed"] == 0


def test_start_at_a_later_stage_skips_the_earlier_stages_whole(tmp_path: Path) -> None:
    write_fleet(tmp_path)
    text = PLAYBOOK.replace(
        '{id: conf, action: file.content, with: {path: "{{ env.path }}/app/conf.txt", content: "keep={{ vars.keep }}\\n"}}',
        '{id: prod-conf, action: file.content, with: {path: "{{ env.path }}/app/conf.txt", content: "keep={{ vars.keep }}\\n"}}',
    )
    assert "prod-conf" in text
    (tmp_path / "pb.yml").write_text(text)
    assert maint(tmp_path, "run", "pb.yml", "-l", "web-c").returncode == 0
    res = maint(tmp_path, "run", "pb.yml", "-l", "web-c", "--start-at", "prod-conf", "-e", "keep=8")
    assert res.returncode == 0, res.stdout
    assert statuses(runs(tmp_path)[-1], "web-c") == [
        ("staging", "dir", "skipped", "--start-at prod-conf"),
        ("staging", "conf", "skipped", "--start-at prod-conf"),
        ("staging", "stamp", "skipped", "--start-at prod-conf"),
        ("production", "dir", "skipped", "--start-at prod-conf"),
        ("production", "prod-conf", "changed", "content differs"),
    ]
    assert conf(tmp_path, "web-c", "prod") == "keep=8\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--steps", "conf,stmp"], "error: --steps: no step 'stmp' in the stages this run executes (staging, production) (did you mean 'stamp'?)"),
        (["--skip-steps", "dri"], "error: --skip-steps: no step 'dri' in the stages this run executes (staging, production) (did you mean 'dir'?)"),
        (["--start-at", "stamp", "--env", "production"], "error: --start-at: no step 'stamp' in the stages this run executes (production)"),
    ],
)  # fmt: skip
def test_unknown_step_ids_exit_2_with_did_you_mean(tmp_path: Path, args: list[str], message: str) -> None:
    write_fleet(tmp_path)
    res = maint(tmp_path, "run", "pb.yml", *args)
    assert res.returncode == 2
    assert res.stderr.splitlines() == [message, "1 problem found; nothing was run."]
    assert runs(tmp_path) == [] and not (tmp_path / "sites").exists()


@pytest.fixture
def web(tmp_path: Path) -> Iterator[str]:
    """A real HTTP server on loopback serving an empty directory (200 for /)."""
    root = tmp_path / "www"
    root.mkdir()
    (root / "index.html").write_text("shop\n")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a: Any, **kw: Any) -> None:
            super().__init__(*a, directory=str(root), **kw)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_plan_says_when_a_dependent_check_follows_a_skipped_step(tmp_path: Path, web: str) -> None:
    site = tmp_path / "sites" / "shop"
    data = {"sites": {"shop": {"environments": {"production": local_env(site, url=web)}}}}
    (tmp_path / "inventory.yml").write_text(yaml.safe_dump(data))
    (tmp_path / "pb.yml").write_text(
        "name: deployish\nstages:\n  - env: production\n    steps:\n"
        '      - {id: release, action: file.content, with: {path: "{{ env.path }}/release.txt", content: "v2\\n"}}\n'
        "      - {id: smoke, action: http.check, with: {paths: [/]}}\n"
    )
    res = maint(tmp_path, "plan", "pb.yml", "--skip-steps", "release", "--json")
    assert res.returncode == 0, res.stderr
    steps = {s["step"]: s for s in result_line(res.stdout)["sites"][0]["steps"]}
    assert steps["release"]["status"] == "skipped" and steps["release"]["reason"] == "--skip-steps"
    assert steps["smoke"]["reason"].endswith(
        "; note: earlier steps were skipped, so this checks the site without them: release (--skip-steps)"
    )
    plain = maint(tmp_path, "plan", "pb.yml")
    assert re.search(r"shop/production +smoke +unknown +unknown: depends on step release", plain.stdout), plain.stdout


# ----------------------------------------------------------------------------- output
def test_quiet_prints_only_the_verdict_and_verbose_adds_timings_and_commands(tmp_path: Path) -> None:
    write_fleet(tmp_path)
    quiet = maint(tmp_path, "run", "pb.yml", "-l", "web-c", "-q")
    assert quiet.returncode == 0, quiet.stderr
    run_id = runs(tmp_path)[-1].name
    assert quiet.stdout == f"ok: 5 steps changed; run folder .maint/runs/{run_id}\n"
    verbose = maint(tmp_path, "-v", "run", "pb.yml", "-l", "web-c")
    lines = verbose.stdout.splitlines()
    assert lines[1] == "web-c/staging: stage started on localhost"
    assert re.fullmatch(r"web-c/staging +dir +ok +directory as wanted \[\d+ ms\]", lines[2]), lines
    assert any(re.fullmatch(r"web-c: ok in \d+ ms", x) for x in lines), lines
    assert re.fullmatch(r"web-c +ok +5 unchanged in \d+ ms", lines[-3]), lines
    same = maint(tmp_path, "run", "pb.yml", "-l", "web-c", "-v")
    digits = [re.sub(r"\d", "N", x) for x in lines[1:-1]]
    assert [re.sub(r"\d", "N", x) for x in same.stdout.splitlines()[1:-1]] == digits
    chatty = maint(tmp_path, "run", "pb.yml", "-l", "web-c", "-vv")
    commands = [x for x in chatty.stdout.splitlines() if x.startswith("    localhost$ ")]
    assert commands and all(re.search(r"\[exit \d+, [\d.]+ (ms|s)\]$", c) for c in commands), chatty.stdout
    assert not any(e["event"] == "command.ran" for e in events(runs(tmp_path)[-1]))  # shown, not audited


def test_colours_follow_no_color_force_color_and_the_flag(tmp_path: Path) -> None:
    write_fleet(tmp_path)
    forced = maint_cli(
        "run", "pb.yml", "-l", "web-c", cwd=tmp_path, env={**_bare_env(), "MAINT_PLAIN": "1", "FORCE_COLOR": "1"}
    )
    assert forced.returncode == 0, forced.stderr
    assert re.search(r"web-c/staging +dir +\x1b\[33mchanged\x1b\[0m {8}directory missing\n", forced.stdout), (
        forced.stdout
    )
    for extra, args in (({"FORCE_COLOR": "1"}, ["--no-color"]), ({"FORCE_COLOR": "1", "NO_COLOR": "1"}, [])):
        plain = maint_cli(
            "run", "pb.yml", "-l", "web-c", *args, cwd=tmp_path, env={**_bare_env(), "MAINT_PLAIN": "1", **extra}
        )
        assert plain.returncode == 0 and "\x1b[" not in plain.stdout


def _bare_env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "MAINT_", "NO_COLOR", "FORCE_COLOR"))}


def test_run_output_counts_in_words(tmp_path: Path) -> None:
    write_fleet(tmp_path)
    assert maint(tmp_path, "run", "pb.yml", "-l", "web-c").returncode == 0
    (tmp_path / "sites" / "web-c-stg" / "app" / "stamp.txt").unlink()
    res = maint(tmp_path, "run", "pb.yml", "-l", "web-c", "--steps", "stamp")
    assert res.stdout.splitlines()[0].startswith("run habits: 1 site, run ")
    assert res.stdout.splitlines()[-1].startswith("ok: 1 step changed; run folder ")
    val = maint(tmp_path, "validate", "-i", "inventory.yml", "pb.yml")
    assert val.stdout.splitlines()[0] == "ok: inventory.yml (3 sites)"


def test_repeated_error_lines_are_folded(tmp_path: Path) -> None:
    write_fleet(tmp_path)
    (tmp_path / "pb.yml").write_text(
        "name: noisy\nstages:\n  - env: production\n    steps:\n"
        "      - {id: noisy, action: command, with: {shell: 'for i in 1 2 3 4 5 6 7 8 9 10 11; do echo boom >&2; done; exit 3'}}\n"
    )
    res = maint(tmp_path, "run", "pb.yml", "-l", "web-c")
    assert res.returncode == 1
    # the first "boom" ends the error's first line; the ten after it fold into one
    assert "noisy                  FAILED         apply: command exited 3: boom\nboom (x10)\n" in res.stdout
    assert "boom\nboom\n" not in res.stdout


# ----------------------------------------------------------------------------- --limit
@pytest.mark.parametrize(
    ("limit", "chosen"),
    [
        (["shop-*"], ["shop-a", "shop-b"]),
        (["eu-clients,!shop-b"], ["shop-a"]),
        (["eu-clients", "-l", "!shop-a"], ["shop-b"]),
        (["!eu-clients"], ["web-c"]),
        (["*-c,shop-b"], ["shop-b", "web-c"]),
        (["eu-*"], ["shop-a", "shop-b"]),
    ],
)
def test_limit_patterns(tmp_path: Path, limit: list[str], chosen: list[str]) -> None:
    write_fleet(tmp_path)
    res = maint(tmp_path, "plan", "pb.yml", "--json", "-l", *limit)
    assert res.returncode == 0, res.stderr
    assert [s["site"] for s in result_line(res.stdout)["sites"]] == chosen


@pytest.mark.parametrize(
    ("limit", "message"),
    [
        ("shop-x", "error: --limit: no site or group matches 'shop-x' (did you mean 'shop-b' or 'shop-a'?)"),
        ("eu-client,!shop-b", "error: --limit: no site or group matches 'eu-client' (did you mean 'eu-clients'?)"),
        ("shop-*,!shop-bb", "error: --limit: no site or group matches '!shop-bb' (did you mean 'shop-b'"),
        ("zzz-*", "error: --limit: no site or group matches 'zzz-*'"),
    ],
)
def test_limit_that_matches_nothing_exits_2_naming_the_flag(tmp_path: Path, limit: str, message: str) -> None:
    write_fleet(tmp_path)
    res = maint(tmp_path, "run", "pb.yml", "--limit", limit)
    assert res.returncode == 2
    assert res.stderr.startswith(message), res.stderr
    assert "inventory.yml" not in res.stderr and "targets" not in res.stderr
    assert runs(tmp_path) == [] and not (tmp_path / "sites").exists()


# ----------------------------------------------------------------------------- plan --detailed-exitcode
def test_plan_detailed_exitcode(tmp_path: Path) -> None:
    write_fleet(tmp_path)
    pending = maint(tmp_path, "plan", "pb.yml", "-l", "web-c", "--detailed-exitcode", "--json")
    assert pending.returncode == 2, pending.stderr
    result = result_line(pending.stdout)
    assert (result["would_change"], result["unknown"]) == (5, 0)
    assert maint(tmp_path, "plan", "pb.yml", "-l", "web-c").returncode == 0  # without the flag: ok is 0
    assert maint(tmp_path, "run", "pb.yml", "-l", "web-c").returncode == 0
    clean = maint(tmp_path, "plan", "pb.yml", "-l", "web-c", "--detailed-exitcode", "--json")
    assert clean.returncode == 0 and result_line(clean.stdout)["would_change"] == 0
    bad_input = maint(tmp_path, "plan", "pb.yml", "-l", "nope", "--detailed-exitcode")
    assert bad_input.returncode == 1 and bad_input.stderr.startswith("error: --limit:")
    usage = maint(tmp_path, "plan", "--detailed-exitcode", "pb.yml", "--no-such-flag")
    assert usage.returncode == 1 and "No such option '--no-such-flag'" in usage.stderr


# ----------------------------------------------------------------------------- exit codes
def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_unreachable_hosts_exit_4_and_a_failed_site_wins_with_1(tmp_path: Path) -> None:
    port = closed_port()
    down = {"environments": {
        "staging": {"host": "127.0.0.1", "port": port, "path": "/srv/down", "known_hosts": "/dev/null"},
        "production": {"host": "127.0.0.1", "port": port, "path": "/srv/down"},
    }}  # fmt: skip
    write_fleet(tmp_path, {"down": down})
    res = maint(tmp_path, "run", "pb.yml", "-l", "down,web-c", "--json")
    assert res.returncode == 4, res.stderr
    result = result_line(res.stdout)
    assert result["status"] == "failed" and result["unreachable"] == ["down"]
    assert [(s["site"], s["status"], s["unreachable"]) for s in result["sites"]] == [
        ("web-c", "ok", False),
        ("down", "failed", True),
    ] or [(s["site"], s["status"], s["unreachable"]) for s in result["sites"]] == [
        ("down", "failed", True),
        ("web-c", "ok", False),
    ]
    assert conf(tmp_path, "web-c") == "keep=1 next=2 who=all pb=yes-pb\n"  # the reachable site ran
    plain = maint(tmp_path, "run", "pb.yml", "-l", "down")
    assert plain.returncode == 4
    assert plain.stdout.splitlines()[-1].startswith("failed: 0 steps changed; unreachable: down; run folder ")
    # a site that really fails (its step fails and is rolled back) decides: exit 1
    (tmp_path / "sites" / "shop-b-stg" / "app").mkdir(parents=True)
    (tmp_path / "sites" / "shop-b-stg" / "app" / "conf.txt").mkdir()  # a directory where the file goes
    both = maint(tmp_path, "run", "pb.yml", "-l", "down,shop-b", "--json")
    assert both.returncode == 1, both.stdout[-2000:]
    sites = {s["site"]: s for s in result_line(both.stdout)["sites"]}
    assert sites["down"]["unreachable"] is True and sites["shop-b"]["unreachable"] is False
    assert sites["shop-b"]["status"] in ("failed", "rolled-back")


# ----------------------------------------------------------------------------- promotion
PROMOTE = """\
name: promo
stages:
  - env: staging
    steps:
      - {id: backup, action: backup.create, with: {files: true}}
      - {id: update, action: cms.update}
  - env: production
    promote: staging
    steps:
      - {id: backup, action: backup.create, with: {files: true}}
      - {id: update, action: cms.update}
"""

MISSING = (
    "no validated version lock: stage production promotes what staging validated, but staging's "
    "cms.update does not run in this run; run staging first or pass --promote-from RUN_ID (the "
    "staging run; see `maint runs`)"
)


def test_production_only_promotion_without_promote_from_fails_before_any_backup(tmp_path: Path) -> None:
    write_fleet(tmp_path)
    (tmp_path / "promo.yml").write_text(PROMOTE)
    (tmp_path / "sites" / "web-c").mkdir(parents=True)
    res = maint(tmp_path, "run", "promo.yml", "--env", "production", "-l", "web-c")
    assert res.returncode == 2
    assert res.stderr.splitlines() == [f"error: --promote-from: {MISSING}", "1 problem found; nothing was run."]
    assert list((tmp_path / "sites" / "web-c").iterdir()) == []  # no backup, no lock, nothing
    assert runs(tmp_path) == []
    skipped = maint(tmp_path, "run", "promo.yml", "-l", "web-c", "--skip-steps", "update")
    assert skipped.returncode == 0, skipped.stderr  # nothing promotes: no lock needed
    resumed = maint(tmp_path, "run", "promo.yml", "-l", "web-c", "--start-at", "update", "--env", "production")
    assert resumed.returncode == 2 and MISSING in resumed.stderr


def test_plan_of_a_promotion_without_a_lock_says_what_is_missing(tmp_path: Path) -> None:
    write_fleet(tmp_path)
    (tmp_path / "promo.yml").write_text(PROMOTE)
    res = maint(tmp_path, "plan", "promo.yml", "--env", "production", "-l", "web-c")
    assert res.returncode == 0, res.stderr
    assert res.stderr.splitlines() == [f"note: {MISSING}"]
    assert res.stdout.splitlines()[-1] == MISSING
    as_json = maint(tmp_path, "plan", "promo.yml", "--env", "production", "-l", "web-c", "--json")
    assert result_line(as_json.stdout)["notes"] == [MISSING]
    started = next(e for e in events(runs(tmp_path)[-1]) if e["event"] == "run.started")
    assert started["notes"] == [MISSING]


def test_every_json_option_says_what_it_prints() -> None:
    import click

    from maintkit.cli.main import cli

    def commands(group: click.Group, prefix: str) -> Iterator[tuple[str, click.Command]]:
        for name, command in group.commands.items():
            yield f"{prefix} {name}", command
            if isinstance(command, click.Group):
                yield from commands(command, f"{prefix} {name}")

    missing = [
        name
        for name, command in commands(cli, "maint")
        for param in command.params
        if isinstance(param, click.Option) and "--json" in param.opts and not param.help
    ]
    assert missing == []


def test_an_unknown_target_in_the_playbook_names_the_playbooks_targets_line(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    inv = tmp_path / "inventory.yml"
    inv.write_text(yaml.safe_dump({"sites": {"shop": {"environments": {"production": local_env(site)}}}}))
    pb = tmp_path / "pb.yml"
    pb.write_text(
        "name: t\ndescription: d\ntargets: [shop, shpo]\nstages:\n  - env: production\n"
        "    steps:\n      - {action: file.directory, with: {path: '{{ env.path }}/x'}}\n"
    )
    out = maint_cli("run", str(pb), "-i", str(inv), cwd=tmp_path)
    assert out.returncode == 2, out.stdout + out.stderr
    assert f"error: {pb}:3: targets: unknown site or group 'shpo' (not in {inv})\n" in out.stdout + out.stderr
    assert not (site / "x").exists()
