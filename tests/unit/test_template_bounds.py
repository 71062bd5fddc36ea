"""Templates cannot build huge values: ``*`` and ``**`` are bounded in the sandbox."""

from __future__ import annotations

import pytest

from maintkit.templating import TemplateError, render_string


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{{ 'a' * 10**10 }}", "repetition would build more than 1000000 items"),
        ("{{ [1] * 10**9 }}", "repetition would build more than 1000000 items"),
        ("{{ 10**9 * 'a' }}", "repetition would build more than 1000000 items"),
        ("{{ (10**1000)**1000 }}", "is too large"),
        ("{{ 2 ** 100000 }}", "is too large"),
    ],
)
def test_huge_results_are_refused_quickly(template: str, message: str) -> None:
    with pytest.raises(TemplateError) as info:
        render_string(template, {})
    assert message in str(info.value)


def test_ordinary_arithmetic_still_works() -> None:
    assert render_string("{{ 'ab' * 3 }}-{{ 2**10 }}-{{ 3*4 }}-{{ 1.5*2 }}", {}) == "ababab-1024-12-3.0"
    assert render_string("{{ 4 * 2 }}", {}) == 8
