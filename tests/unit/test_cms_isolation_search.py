"""The isolation search of cms.update: which of several updates are bad, within the bounded attempts."""

from __future__ import annotations

import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from maintkit.actions.cms.isolate import Isolation, max_attempts


def search(keys: list[str], bad: set[str], mode: str = "bisect") -> tuple[Isolation, list[list[str]]]:
    """Drive the search as the runner does: a subset passes when it holds no bad package (on top of the kept ones)."""
    iso = Isolation(keys, "first failure", mode)
    tried: list[list[str]] = []
    subset = iso.next_subset()
    while subset is not None:
        tried.append(subset)
        assert not set(subset) & set(iso.kept) and not set(subset) & set(iso.held)
        culprits = sorted(set(subset) & bad)
        subset = iso.tell(not culprits, f"broke: {','.join(culprits)}")
    iso.finish()
    return iso, tried


def test_bisect_of_two_holds_the_bad_one_with_its_reason_after_one_retry() -> None:
    iso, tried = search(["plugin:seo", "plugin:shop-cart"], {"plugin:shop-cart"})
    assert tried == [["plugin:seo"]]
    assert iso.kept == ["plugin:seo"]
    assert iso.held == {"plugin:shop-cart": "first failure"}


def test_bisect_when_the_first_half_is_bad_tests_the_second_half_alone() -> None:
    iso, tried = search(["plugin:a", "plugin:b"], {"plugin:a"})
    assert tried == [["plugin:a"], ["plugin:b"]]
    assert (iso.kept, iso.held) == (["plugin:b"], {"plugin:a": "broke: plugin:a"})


def test_one_by_one_tries_each_package_alone_on_top_of_the_kept_ones() -> None:
    iso, tried = search(["a", "b", "c"], {"b"}, "one-by-one")
    assert tried == [["a"], ["b"], ["c"]]
    assert (iso.kept, iso.held) == (["a", "c"], {"b": "broke: b"})


def test_bounds_and_a_single_package_is_never_isolated() -> None:
    assert [max_attempts("bisect", n) for n in (1, 2, 3, 4, 8, 9)] == [0, 4, 6, 6, 8, 10]
    assert max_attempts("one-by-one", 5) == 5 and max_attempts("none", 5) == 0
    iso, tried = search(["only"], {"only"})
    assert tried == [] and iso.held == {"only": "not isolated within 0 attempts (first failure)"}


def test_when_the_attempts_run_out_the_undecided_packages_are_held_too() -> None:
    keys = [f"p{i}" for i in range(8)]
    iso, tried = search(keys, set(keys))
    assert len(tried) == 8 and iso.kept == []
    assert set(iso.held) == set(keys)
    assert iso.held["p7"] == "not isolated within 8 attempts (first failure)"


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.integers(min_value=2, max_value=24), st.data(), st.sampled_from(["bisect", "one-by-one"]))
def test_nothing_bad_is_ever_kept_and_one_bad_package_is_found_within_the_bound(
    n: int, data: st.DataObject, mode: str
) -> None:
    keys = [f"plugin:p{i}" for i in range(n)]
    bad = set(data.draw(st.sets(st.sampled_from(keys), min_size=1)))
    iso, tried = search(keys, bad, mode)
    assert not set(iso.kept) & bad  # the safety property: a kept package never failed a check
    assert set(iso.kept) | set(iso.held) == set(keys) and not set(iso.kept) & set(iso.held)
    assert len(tried) <= max_attempts(mode, n)
    if len(bad) == 1:  # one culprit: found exactly, every good package kept
        assert set(iso.held) == bad and set(iso.kept) == set(keys) - bad
        if mode == "bisect":
            assert len(tried) <= 2 * math.ceil(math.log2(n))
