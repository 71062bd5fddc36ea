"""The pixel diff of ``visual.check`` (Pillow): how many pixels changed, and an image showing where.

A pixel differs when one of its colour channels changed by more than ``tolerance`` (0-255).
Screenshots of different sizes (a full page that grew or shrank) are compared on the union of
both: every pixel that only one of them has counts as differing. The diff image is the after
screenshot faded to grey with the differing pixels painted red.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["DIFF_COLOR", "Diff", "compare", "compare_images"]

DIFF_COLOR = (255, 0, 0)


@dataclass(frozen=True)
class Diff:
    """The result of comparing two screenshots."""

    differing: int
    total: int
    before_size: tuple[int, int]
    after_size: tuple[int, int]

    @property
    def ratio(self) -> float:
        """Differing pixels over all pixels compared (0.0 to 1.0)."""
        return self.differing / self.total if self.total else 0.0


def _pil() -> Any:
    try:
        from PIL import Image, ImageChops
    except ImportError:
        from maintkit.errors import CheckFailed

        raise CheckFailed("visual.check needs Pillow: pip install 'maintkit[browser]'") from None
    return Image, ImageChops


def compare_images(before: Any, after: Any, tolerance: int) -> tuple[Diff, Any]:
    """Compare two PIL images; returns the :class:`Diff` and the mask ('L', 255 where pixels differ)."""
    image, chops = _pil()
    a, b = before.convert("RGB"), after.convert("RGB")
    width, height = max(a.width, b.width), max(a.height, b.height)
    ow, oh = min(a.width, b.width), min(a.height, b.height)
    delta = chops.difference(a.crop((0, 0, ow, oh)), b.crop((0, 0, ow, oh)))
    red, green, blue = delta.split()
    strongest = chops.lighter(chops.lighter(red, green), blue)
    overlap = strongest.point(lambda v: 255 if v > tolerance else 0)
    mask = image.new("L", (width, height), 255)
    mask.paste(overlap, (0, 0))
    differing = int(overlap.histogram()[255]) + (width * height - ow * oh)
    return Diff(differing, width * height, a.size, b.size), mask


def _diff_image(after: Any, mask: Any) -> Any:
    image, _ = _pil()
    canvas = image.new("RGB", mask.size, (255, 255, 255))
    canvas.paste(after.convert("L").convert("RGB"), (0, 0))
    faded = image.blend(canvas, image.new("RGB", mask.size, (255, 255, 255)), 0.6)
    return image.composite(image.new("RGB", mask.size, DIFF_COLOR), faded, mask)


def compare(before: Path, after: Path, tolerance: int, out: Path | None = None) -> Diff:
    """Compare two PNG files; with ``out``, write the diff image there (atomically)."""
    image, _ = _pil()
    with image.open(before) as a, image.open(after) as b:
        result, mask = compare_images(a, b, tolerance)
        if out is not None:
            tmp = out.with_name(f".{out.name}.tmp")
            _diff_image(b, mask).save(tmp, format="PNG", optimize=True)
            os.replace(tmp, out)
    return result
