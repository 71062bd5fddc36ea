"""The switches, the re-activation and verify's reads in one round trip (``switch_and_activate``):
what is kept, what is left for verify to read again when a part failed or answered incompletely,
and that nothing runs after a failed switch."""

from __future__ import annotations

import re

import pytest

from maintkit.actions.cms.db import DbUndo
from maintkit.actions.cms.drivers.wordpress import WordPressDriver
from maintkit.actions.cms.drivers.wordpress_reads import AfterReads
from maintkit.actions.cms.drivers.wordpress_switch import sibling
from maintkit.actions.cms.drivers.wordpress_trips import switch_outcomes
from maintkit.actions.cms.params import CmsUpdateParams
from maintkit.actions.cms.snapshots import RENAMED_MARK
from maintkit.errors import ApplyFailed
from maintkit.testing import FakeTransport, make_context

PATHS = ["/srv/site/wp-content/plugins/a b", "/srv/site/wp-content/themes/t"]
HASHES = ["a" * 64, "missing"]
UNDO = DbUndo("shop", "/x/db.sql.gz", "/x/db.cnf", ["wp_options"], {"db_version": "1"}, "wp_options", ["db_version"])
SIDE = sibling("/srv/site/wp-content/plugins/a b")


def answer(parts: list[tuple[str, int]], *, stopped: str = "") -> FakeTransport:
    """A transport answering the round trip as if its parts printed ``parts`` (stdout, status),
    in order; with ``stopped`` (stderr) the last of them failed and stopped the shell (so the
    runner's reads never ran). Markers are taken from the script."""

    def handler(line: str) -> tuple[int, str, str] | None:
        frame = re.search(r"printf '\\n%s %s %s\\n' (@@mk-[0-9a-f]{32}) 0", line)
        batch = re.search(r"'(@@mk-[0-9a-f]{12}) start'", line)
        query = re.search(r"SELECT '\"'\"'(@@mk-[0-9a-f]{32})'\"'\"'", line)
        assert frame and batch and query, line
        m, out, err = frame.group(1), "", ""
        for i, (text, code) in enumerate(parts):
            out += f"{text.replace('MARK', query.group(1))}\n{m} {i} {code}\n"
            err += f"{stopped if stopped and i == len(parts) - 1 else ''}\n{m} {i}\n"
        if stopped:
            return (parts[-1][1], out + f"{m} stop\n", err)
        return (0, out + f"\n{batch.group(1)} start\n", err)

    return FakeTransport(handler=handler)


def switch_then_read(
    transport: FakeTransport, *, renamed: bool = False
) -> tuple[dict[str, object], AfterReads | None, WordPressDriver]:
    """The round trip's results; asserts whether the switch reported the two renames."""
    ctx = make_context(transport, platform="wordpress")
    driver = WordPressDriver(CmsUpdateParams())
    trip, res, after = driver.switch_and_activate(ctx, [SIDE], {"slug": "a"}, (PATHS, UNDO))
    done, failed = switch_outcomes(trip, [SIDE])
    if failed is not None:
        raise failed
    assert done == [(SIDE, renamed)]
    return res, after, driver


OK_PHP = '@@MAINTKIT-JSON@@{"ok":true,"state":{"ok":true},"ms":12.5}'
SWITCHED = ("", 0)


def test_every_part_read() -> None:
    schema = ("wp_options\nwp_new\nMARK\ndb_version\t2", 0)
    res, after, driver = switch_then_read(answer([SWITCHED, (OK_PHP, 0), ("\n".join(HASHES), 0), schema]))
    assert res == {"ok": True, "state": {"ok": True}}  # its own time taken out of the answer
    assert after is not None and after.trees == {PATHS[0]: "a" * 64, PATHS[1]: None}
    assert after.schema == (["wp_options", "wp_new"], {"db_version": "2"})
    assert driver.clock.boots == 1 and 0 < driver.clock.ms["php"] <= 12.5 and "switch" in driver.clock.ms


def test_a_switch_by_renames_is_reported() -> None:
    schema = ("wp_options\nMARK\ndb_version\t1", 0)
    fell_back = (RENAMED_MARK, 0)  # the switch's fallback announces itself
    res, after, _ = switch_then_read(answer([fell_back, (OK_PHP, 0), ("\n".join(HASHES), 0), schema]), renamed=True)
    assert res == {"ok": True, "state": {"ok": True}}
    assert after is not None and after.trees == {PATHS[0]: "a" * 64, PATHS[1]: None}


@pytest.mark.parametrize(
    ("trees", "code"),
    [("a" * 64, 0), ("\n".join(HASHES), 1), ("\n".join([*HASHES, "b" * 64]), 0)],
    ids=["a line missing", "failed", "a line too many"],
)
def test_an_incomplete_tree_read_is_left_to_verify(trees: str, code: int) -> None:
    _, after, _ = switch_then_read(
        answer([SWITCHED, (OK_PHP, 0), (trees, code), ("wp_options\nMARK\ndb_version\t1", 0)])
    )
    assert after is not None and after.trees == {}
    assert after.schema == (["wp_options"], {"db_version": "1"})


@pytest.mark.parametrize("schema", [("wp_options", 0), ("", 1)], ids=["no marker row", "client failed"])
def test_a_failed_schema_read_is_left_to_verify(schema: tuple[str, int]) -> None:
    _, after, _ = switch_then_read(answer([SWITCHED, (OK_PHP, 0), ("\n".join(HASHES), 0), schema]))
    assert after is not None and after.schema is None
    assert after.trees == {PATHS[0]: "a" * 64, PATHS[1]: None}


def test_no_answer_from_the_helper_names_its_exit() -> None:
    parts = [SWITCHED, ("PHP Fatal error: boom", 255), ("", 1), ("", 1)]
    res, after, driver = switch_then_read(answer(parts))
    assert res["ok"] is False and res["error"] == "the PHP helper gave no answer (exit 255): PHP Fatal error: boom"
    assert after is not None and after.trees == {} and after.schema is None
    assert driver.clock.boots == 1


def test_a_failed_switch_runs_nothing_after_it_and_raises_as_before() -> None:
    transport = answer([("", 5)], stopped="mv: cannot move: Permission denied\n")
    with pytest.raises(ApplyFailed) as err:
        switch_then_read(transport)
    assert str(err.value) == f"switching {SIDE.new} into {SIDE.dest} failed: mv: cannot move: Permission denied"
    assert len(transport.commands) == 1


def test_a_failed_second_switch_keeps_the_first_and_runs_nothing_after_it() -> None:
    """Two packages: the first switch is made, the second fails: the outcome says the first was
    switched (so the undo puts it back) and names the second; the re-activation never ran."""
    other = sibling("/srv/site/wp-content/themes/t")
    transport = answer([("", 0), ("", 5)], stopped="mv: cannot move: Device or resource busy\n")
    ctx = make_context(transport, platform="wordpress")
    driver = WordPressDriver(CmsUpdateParams())
    trip, res, after = driver.switch_and_activate(ctx, [SIDE, other], {"packages": []}, (PATHS, UNDO))
    done, failed = switch_outcomes(trip, [SIDE, other])
    assert done == [(SIDE, False)] and failed is not None
    assert str(failed) == f"switching {other.new} into {other.dest} failed: mv: cannot move: Device or resource busy"
    assert not trip.started(2) and res["ok"] is False and driver.clock.boots == 0  # no re-activation
    (script,) = transport.commands
    assert script.index(SIDE.new) < script.index(other.new) < script.index(" activate ")


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
