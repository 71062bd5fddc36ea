"""``host.health``: parsing what the host printed, the command it sends, and threshold defaults."""

from __future__ import annotations

import json

from maintkit.actions.watch.host import (
    DbTarget,
    HostHealthParams,
    Threshold,
    host_script,
    parse_df,
    parse_fpm,
    parse_meminfo,
    parse_sections,
)

DF = """Filesystem     1024-blocks     Used Available Capacity Mounted on
/dev/vda         264212084 24464204  81926708      23% /srv/my shop"""
DFI = """Filesystem       Inodes  IUsed    IFree IUse% Mounted on
overlay               -      -        -     - /"""


def test_parse_df_with_spaces_in_the_mount_point() -> None:
    assert parse_df(DF) == ("/srv/my shop", 23, 81926708 * 1024)
    assert parse_df(DF.replace("1024-blocks", "512-blocks")) == ("/srv/my shop", 23, 81926708 * 512)


def test_parse_df_without_inode_figures_and_errors() -> None:
    assert parse_df(DFI) == ("/", None, None)
    assert parse_df("df: /nope: No such file or directory") is None


def test_parse_meminfo() -> None:
    assert parse_meminfo("MemTotal: 1000 kB\nMemFree: 100 kB\nMemAvailable: 250 kB\n") == 75.0
    assert parse_meminfo("MemTotal: 1000 kB\nMemFree: 100 kB\nBuffers: 100 kB\nCached: 300 kB\n") == 50.0
    assert parse_meminfo("garbage") is None


def test_parse_fpm_json_status() -> None:
    status = {"pool": "www", "active processes": 3, "total processes": 5, "max children reached": 2, "listen queue": 4}
    assert parse_fpm(json.dumps(status)) == {"active": 3, "total": 5, "max_children_reached": 2, "listen_queue": 4}
    assert parse_fpm("<html>pool: www</html>") is None
    assert parse_fpm(json.dumps({"active processes": "3"})) is None


def test_sections_survive_output_without_a_trailing_newline() -> None:
    out = "@@m df 0\nline1\nline2\n@@m rc 0\n@@m db 0\nERROR 2002\n@@m rc 1\n"
    assert parse_sections(out, "@@m") == {("df", 0): ("line1\nline2", 0), ("db", 0): ("ERROR 2002", 1)}


def test_script_quotes_paths_and_puts_the_option_file_first() -> None:
    db = DbTarget(["mariadb", "--no-defaults", "--user=a b"], ["mysql", "--no-defaults", "--user=a b"], local=True)
    script = host_script(["/srv/x'; rm -rf /"], "@@m", timeout=5, fpm_url="http://127.0.0.1/s?json", db=db)
    assert "df -P -- '/srv/x'\"'\"'; rm -rf /'" in script
    assert "curl -fsS --max-time 5 -- 'http://127.0.0.1/s?json'" in script
    assert "set -- mariadb --no-defaults '--user=a b' --batch" in script
    assert ".my.cnf" not in script


def test_threshold_defaults_and_partial_overrides() -> None:
    p = HostHealthParams()
    assert (p.disk_pct, p.load_per_cpu, p.mem_pct) == (
        Threshold(warn=80, fail=90),
        Threshold(warn=1.5, fail=3),
        Threshold(warn=90, fail=97),
    )
    q = HostHealthParams.model_validate({"disk_pct": {"fail": 0}, "inodes_pct": {"warn": None}})
    assert q.disk_pct == Threshold(warn=80, fail=0)
    assert q.inodes_pct == Threshold(warn=None, fail=90)
