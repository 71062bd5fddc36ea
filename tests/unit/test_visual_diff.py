"""The pixel diff of visual.check, its parameters, its default pages and what it says without a browser."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from pydantic import ValidationError

from maintkit.actions.visual import shots
from maintkit.actions.visual.check import percent
from maintkit.actions.visual.diff import DIFF_COLOR, compare, compare_images
from maintkit.actions.visual.pages import default_pages
from maintkit.actions.visual.params import VisualCheckParams
from maintkit.errors import CheckFailed


def _img(size: tuple[int, int], colour: tuple[int, int, int] = (250, 250, 250)) -> Image.Image:
    return Image.new("RGB", size, colour)


def test_identical_images_do_not_differ() -> None:
    diff, mask = compare_images(_img((40, 30)), _img((40, 30)), tolerance=0)
    assert (diff.differing, diff.total, diff.ratio) == (0, 1200, 0.0)
    assert mask.histogram()[255] == 0


def test_a_changed_block_is_counted_exactly_and_the_tolerance_ignores_small_shifts() -> None:
    before = _img((100, 50))
    after = before.copy()
    after.paste((0, 0, 0), (10, 10, 20, 15))  # 10 x 5 = 50 pixels turn black
    after.paste((240, 250, 250), (50, 0, 60, 10))  # 100 pixels move by 10 in one channel
    diff, _ = compare_images(before, after, tolerance=16)
    assert (diff.differing, diff.total) == (50, 5000)
    assert diff.ratio == 0.01
    strict, _ = compare_images(before, after, tolerance=0)
    assert strict.differing == 150


def test_a_page_that_grew_counts_the_new_rows_as_differing() -> None:
    diff, _ = compare_images(_img((10, 10)), _img((10, 14)), tolerance=0)
    assert (diff.differing, diff.total, diff.before_size, diff.after_size) == (40, 140, (10, 10), (10, 14))


def test_the_diff_image_paints_exactly_the_differing_pixels_red(tmp_path: Path) -> None:
    before, after = _img((30, 20)), _img((30, 20))
    after.paste((255, 0, 0), (0, 0, 3, 3))  # red in the after image itself is faded, not kept
    after.paste((10, 10, 10), (20, 10, 25, 12))
    before.save(tmp_path / "a.png")
    after.save(tmp_path / "b.png")
    result = compare(tmp_path / "a.png", tmp_path / "b.png", 16, tmp_path / "d.png")
    with Image.open(tmp_path / "d.png") as img:
        colours = dict((c, n) for n, c in img.convert("RGB").getcolors(1 << 16) or [])
    assert result.differing == 9 + 10
    assert colours[DIFF_COLOR] == result.differing
    assert not list(tmp_path.glob(".*"))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    w=st.integers(1, 30),
    h=st.integers(1, 30),
    boxes=st.lists(st.tuples(st.integers(0, 29), st.integers(0, 29), st.integers(0, 255)), max_size=8),
    tolerance=st.integers(0, 255),
)
def test_diff_counts_what_a_pixel_loop_counts(
    w: int, h: int, boxes: list[tuple[int, int, int]], tolerance: int
) -> None:
    before = _img((w, h), (128, 128, 128))
    after = before.copy()
    for x, y, v in boxes:
        if x < w and y < h:
            after.putpixel((x, y), (v, 128, 255 - v))
    expected = sum(
        1
        for x in range(w)
        for y in range(h)
        if max(abs(a - b) for a, b in zip(before.getpixel((x, y)), after.getpixel((x, y)), strict=True)) > tolerance
    )
    diff, _ = compare_images(before, after, tolerance)
    assert diff.differing == expected
    assert compare_images(after, before, tolerance)[0].differing == expected


def test_percent_never_rounds_a_difference_to_zero() -> None:
    assert [percent(r) for r in (0.0, 0.0123, 0.001, 0.0000312)] == ["0.00%", "1.23%", "0.10%", "0.0031%"]


def test_params_defaults_and_refusals() -> None:
    p = VisualCheckParams.model_validate({"phase": "after"})
    assert [(s.name, s.width, s.height) for s in p.sizes] == [("desktop", 1366, 900), ("mobile", 390, 844)]
    assert (p.threshold, p.tolerance, p.pages, p.mask) == (0.001, 16, [], [])
    cases = {
        "exactly one of goto, click, fill, wait_for": {
            "pages": [{"name": "a", "steps": [{"goto": "/", "click": "a"}]}]
        },
        "page a: give a path or steps": {"pages": [{"name": "a"}]},
        "page name 'Home page'": {"pages": [{"name": "Home page", "path": "/"}]},
        "page names must be unique: a": {"pages": [{"name": "a", "path": "/"}, {"name": "a", "path": "/x"}]},
    }
    for message, extra in cases.items():
        with pytest.raises(ValidationError, match=message):
            VisualCheckParams.model_validate({"phase": "before", **extra})
    with pytest.raises(ValidationError, match="phase"):
        VisualCheckParams.model_validate({"phase": "during"})


def test_default_pages_per_platform() -> None:
    assert [p.name for p in default_pages("wordpress")] == ["home", "category", "product", "cart", "checkout"]
    cart = next(p for p in default_pages("wordpress") if p.name == "cart")
    assert cart.path == "/cart/" and [s.describe() for s in cart.steps][-1].startswith(
        "click button[name='add-to-cart']"
    )
    assert [p.name for p in default_pages("magento")] == ["home", "category", "product", "cart", "checkout"]
    assert [(p.name, p.path) for p in default_pages("generic")] == [("home", "/")]


def test_no_browser_names_the_extra_or_the_binary(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "playwright" else real(name, *a))
    with pytest.raises(CheckFailed) as no_extra:
        shots.browser_executable()
    assert no_extra.value.message == (
        "visual.check needs the browser extra: pip install 'maintkit[browser]' (Playwright for Python and Pillow)"
    )
    monkeypatch.setattr(importlib.util, "find_spec", real)
    monkeypatch.delenv("MAINT_CHROMIUM", raising=False)
    monkeypatch.setattr(shots, "_CANDIDATES", (str(tmp_path / "no-chromium"),))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(CheckFailed) as no_binary:
        shots.browser_executable()
    assert no_binary.value.message == (
        "visual.check needs Chromium: install it (Debian: apt-get install chromium) "
        "or set MAINT_CHROMIUM to its executable"
    )
    fake = tmp_path / "chromium"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.setenv("MAINT_CHROMIUM", str(fake))
    assert shots.browser_executable() == str(fake)
