"""Verify's reads in the re-activation's round trip (``call_then_read``): what is kept, and
what is left for verify to read again when a part failed or answered incompletely."""

from __future__ import annotations

import re
import subprocess

import pytest

from maintkit.actions.cms.db import DbUndo
from maintkit.actions.cms.drivers.wordpress import WordPressDriver
from maintkit.actions.cms.drivers.wordpress_reads import call_then_read
from maintkit.actions.cms.params import CmsUpdateParams
from maintkit.testing import FakeTransport, make_context
from maintkit.transport.base import framed, unframe

PATHS = ["/srv/site/wp-content/plugins/a b", "/srv/site/wp-content/themes/t"]
HASHES = ["a" * 64, "missing"]
UNDO = DbUndo("shop", "/x/db.sql.gz", "/x/db.cnf", ["wp_options"], {"db_version": "1"}, "wp_options", ["db_version"])


def answer(php: str, trees: str, schema: tuple[str, int] | None, *, tree_code: int = 0) -> FakeTransport:
    """A transport answering the round trip with these parts (markers taken from the script)."""

    def handler(line: str) -> tuple[int, str, str] | None:
        frame = re.search(r"printf '\\n%s %s %s\\n' (@@mk-[0-9a-f]{32}) 0", line)
        batch = re.search(r"'(@@mk-[0-9a-f]{12}) start'", line)
        query = re.search(r"SELECT '\"'\"'(@@mk-[0-9a-f]{32})'\"'\"'", line)
        assert frame and batch and query, line
        m, qm = frame.group(1), query.group(1)
        out = f"{php}\n{m} 0 0\n{trees}\n{m} 1 {tree_code}\n"
        if schema is not None:
            rows = schema[0].replace("MARK", qm)
            out += f"{rows}\n{m} 2 {schema[1]}\n"
        return (0, out + f"\n{batch.group(1)} start\n", "")

    return FakeTransport(handler=handler)


def read(transport: FakeTransport) -> tuple[dict[str, object], object]:
    ctx = make_context(transport, platform="wordpress")
    driver = WordPressDriver(CmsUpdateParams())
    return call_then_read(driver, ctx, "activate", {"slug": "a"}, PATHS, UNDO)


OK_PHP = '@@MAINTKIT-JSON@@{"ok":true,"state":{"ok":true}}'


def test_every_part_read() -> None:
    res, after = read(answer(OK_PHP, "\n".join(HASHES), ("wp_options\nwp_new\nMARK\ndb_version\t2", 0)))
    assert res == {"ok": True, "state": {"ok": True}}
    assert after.trees == {PATHS[0]: "a" * 64, PATHS[1]: None}
    assert after.schema == (["wp_options", "wp_new"], {"db_version": "2"})


@pytest.mark.parametrize(
    ("trees", "code"),
    [("a" * 64, 0), ("\n".join(HASHES), 1), ("\n".join([*HASHES, "b" * 64]), 0)],
    ids=["a line missing", "failed", "a line too many"],
)
def test_an_incomplete_tree_read_is_left_to_verify(trees: str, code: int) -> None:
    _, after = read(answer(OK_PHP, trees, ("wp_options\nMARK\ndb_version\t1", 0), tree_code=code))
    assert after.trees == {}
    assert after.schema == (["wp_options"], {"db_version": "1"})


@pytest.mark.parametrize("schema", [("wp_options", 0), ("", 1)], ids=["no marker row", "client failed"])
def test_a_failed_schema_read_is_left_to_verify(schema: tuple[str, int]) -> None:
    _, after = read(answer(OK_PHP, "\n".join(HASHES), schema))
    assert after.schema is None
    assert after.trees == {PATHS[0]: "a" * 64, PATHS[1]: None}


def test_no_answer_from_the_helper_names_its_exit() -> None:
    res, after = read(FakeTransport(handler=lambda line: (0, "PHP Fatal error: boom\n", "")))
    assert res["ok"] is False and "the PHP helper gave no answer" in str(res["error"])
    assert after.trees == {} and after.schema is None


def test_framed_parts_and_their_exit_statuses() -> None:
    script = framed("@@mk-" + "0" * 32, ["printf 'x\\ny'", "false", "echo 'last'"])
    out = subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=True).stdout
    assert unframe(out, "@@mk-" + "0" * 32, 3) == [("x\ny", 0), ("", 1), ("last\n", 0)]
    assert unframe("x\n@@mk-m 0 0\n", "@@mk-m", 2) == [("x", 0), None]
    assert unframe("no frame at all", "@@mk-m", 2) == [None, None]


def test_the_zip_written_with_the_snapshot_names_its_path_when_it_cannot_be() -> None:
    from maintkit.actions.cms.snapshots import snapshot_path
    from maintkit.errors import ApplyFailed

    transport = FakeTransport(handler=lambda line: (81, "", "cannot write '/s/packages/a.zip'\n"))
    ctx = make_context(transport)
    with pytest.raises(ApplyFailed, match=r"cannot write /s/packages/a\.zip on the host"):
        snapshot_path(ctx, "/srv/site/p/a", "/s/plugins/a", upload=(b"zip", "/s/packages/a.zip"))
    (script,) = transport.commands
    assert transport.stdins == [b"zip"]
    # the zip first (0600, atomically), and nothing is copied when it cannot be written
    assert script.index("mktemp -- /s/packages/a.zip.XXXXXX") < script.index("chmod 0600") < script.index("cp -a")
    assert "exit 81" in script.split("cp -a")[0]
