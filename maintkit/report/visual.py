"""What ``visual.check`` adds to a report: the screenshots that differed, with their images.

Read from the after steps' recorded data (``visual.shots``); the images are in the run folder
(``runs/<run_id>/visual/...``). Each image up to :data:`MAX_IMAGE_BYTES` is embedded as a
``data:`` URI, so the HTML page stays self-contained; a larger one is named by its path.
At most :data:`MAX_DIFFS` differences per site are shown (the latest).
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from maintkit.report.reading import StepState, as_float, as_text

__all__ = ["MAX_DIFFS", "MAX_IMAGE_BYTES", "VisualDiff", "visual_diffs"]

MAX_IMAGE_BYTES = 400_000
MAX_DIFFS = 6


@dataclass
class VisualDiff:
    """One screenshot that differed from its baseline by more than its threshold."""

    env: str
    page: str
    size: str
    ratio: float | None
    threshold: float | None
    when: datetime | None
    run_id: str
    #: ``before``/``after``/``diff`` -> a ``data:image/png`` URI (empty when too large or gone)
    images: dict[str, str] = field(default_factory=dict)
    #: ``before``/``after``/``diff`` -> the image's path under the state store's root
    paths: dict[str, str] = field(default_factory=dict)


def _uri(path: Path) -> str:
    try:
        if not path.is_file() or path.stat().st_size > MAX_IMAGE_BYTES:
            return ""
        return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()
    except OSError:
        return ""


def _diff(state_dir: Path, st: StepState, shot: Mapping[str, Any]) -> VisualDiff:
    found = VisualDiff(
        env=st.env,
        page=as_text(shot.get("page")),
        size=f"{as_text(shot.get('size'))} {as_text(shot.get('viewport'))}".strip(),
        ratio=as_float(shot.get("ratio")),
        threshold=as_float(shot.get("threshold")),
        when=st.when,
        run_id=st.run_id,
    )
    run_dir = state_dir / "runs" / st.run_id
    for kind in ("before", "after", "diff"):
        rel = as_text(shot.get(kind))
        if rel and ".." not in Path(rel).parts and not rel.startswith("/"):
            found.paths[kind] = f"runs/{st.run_id}/{rel}"
            found.images[kind] = _uri(run_dir / rel)
    return found


def visual_diffs(state_dir: Path, steps: Iterable[StepState]) -> list[VisualDiff]:
    """The failed comparisons of the ``visual.check`` after steps among ``steps``, latest first."""
    out: list[VisualDiff] = []
    for st in steps:
        visual = st.data.get("visual") if st.action == "visual.check" else None
        if not isinstance(visual, Mapping) or visual.get("phase") != "after":
            continue
        for shot in visual.get("shots") or []:
            if isinstance(shot, Mapping) and shot.get("ok") is False:
                out.append(_diff(state_dir, st, shot))
    out.sort(key=lambda d: d.when.isoformat() if d.when else "", reverse=True)
    return out[:MAX_DIFFS]
