"""The pure parts of the one-round-trip read: the stat block's output read back, and when a
lock the read-only look found is taken over rather than refused.

What the host really prints is proven on real shells in ``tests/lab/test_probe_batch.py`` and
``tests/lab/test_round_trips.py``; here: what happens when that output is not the expected one
(a path that vanished between two commands, a file that could not be hashed, a cut-short block).
"""

from __future__ import annotations

from maintkit import locks
from maintkit.probes import FileState, RawOutput

LINK_TARGET = "/srv/a\nb"  # a newline in a target: stat prints it C-quoted, the probe gets hex


def _split(text: str, probes: list[FileState]) -> dict[str, RawOutput]:
    assert FileState.bulk is not None
    return FileState.bulk.split(probes, text)


def test_every_kind_is_read_back_as_its_own_script_prints_it() -> None:
    d, f, link, gone = (FileState(p) for p in ("/d", "/f", "/l", "/gone"))
    text = (
        "E 0 1 2\n"
        'directory|755|root|root|4096|"/d"\nregular file|644|deploy|www-data|6|"/f"\n'
        'symbolic link|777|root|root|8|"/l" -> "/srv/a\\nb"\nS0\n'
        f"h 1\n\\{'a' * 64}  /f\\nname\nR0\n"  # an escaped name starts with a backslash
    )
    out = _split(text, [d, f, link, gone])
    assert out == {
        d.key: RawOutput("directory|755|root|root|4096\n", 0),
        f.key: RawOutput(f"regular file|644|deploy|www-data|6\n{'a' * 64}  -\n", 0),
        link.key: RawOutput(f"symbolic link|777|root|root|8\n{LINK_TARGET.encode().hex()}\n", 0),
        gone.key: RawOutput("MISSING\n", 0),
    }
    assert link.parse(out[link.key]).target == LINK_TARGET


def test_a_path_that_vanished_before_stat_leaves_every_existing_path_to_be_read_alone() -> None:
    f, gone = FileState("/f"), FileState("/gone")
    assert _split("E 0\nS1\n", [f, gone]) == {gone.key: RawOutput("MISSING\n", 0)}


def test_a_hash_that_failed_leaves_only_that_path() -> None:
    d, f, link = FileState("/d"), FileState("/f"), FileState("/l")
    text = (
        'E 0 1 2\ndirectory|755|root|root|4096|"/d"\nregular file|600|root|root|6|"/f"\n'
        'symbolic link|777|root|root|1|"/l" -> "x"\nS0\n'
        "h 1\nR1\n"  # sha256sum could not read /f
    )
    assert _split(text, [d, f, link]) == {
        d.key: RawOutput("directory|755|root|root|4096\n", 0),
        link.key: RawOutput(f"symbolic link|777|root|root|1\n{b'x'.hex()}\n", 0),
    }


def test_a_file_over_its_hash_limit_needs_no_hash_and_a_cut_block_answers_nothing() -> None:
    small, big = FileState("/f", max_hash_bytes=3), FileState("/f")
    text = f'E 0\nregular file|644|root|root|6|"/f"\nS0\nh 0\n{"b" * 64}  /f\nR0\n'
    assert _split(text, [small, big]) == {
        small.key: RawOutput("regular file|644|root|root|6\n", 0),
        big.key: RawOutput(f"regular file|644|root|root|6\n{'b' * 64}  -\n", 0),
    }
    assert _split('E 0\nregular file|644|root|root|6|"/f"\n', [big]) == {}
    assert _split("", [big]) == {}


def test_only_an_expired_lease_is_taken_over() -> None:
    holder = locks.leased({"run_id": "r1"}, "/srv/shop", 600) | {"expires_epoch": 1000}
    assert locks.takeover_due(holder, 1000) and locks.takeover_due(holder, 5000)
    assert not locks.takeover_due(holder, 999)  # still leased: refused, the holder named
    assert not locks.takeover_due(holder, None)
    assert not locks.takeover_due({"run_id": "old", "expires_epoch": 1}, 5000)  # no lease generation
    assert not locks.takeover_due({"run_id": "older"}, 5000)  # a holder without a lease never expires
