"""A small inline SVG chart of smoke-check response times (no scripts, no external files)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from html import escape


@dataclass(frozen=True)
class LatencyPoint:
    """One smoke check run: when, median and 95th percentile latency in milliseconds."""

    when: datetime
    median_ms: float
    p95_ms: float


def percentile(values: Sequence[float], pct: float) -> float:
    """The ``pct`` percentile (0..100) with linear interpolation; 0.0 for no values."""
    if not values:
        return 0.0
    data = sorted(values)
    if len(data) == 1:
        return float(data[0])
    k = (len(data) - 1) * pct / 100.0
    lo = int(k)
    hi = min(lo + 1, len(data) - 1)
    return float(data[lo] + (data[hi] - data[lo]) * (k - lo))


def _nice_max(value: float) -> float:
    """A round axis maximum at or above ``value``."""
    if value <= 0:
        return 100.0
    for step in (10, 20, 50, 100, 200, 250, 500, 1000, 2000, 5000, 10000, 20000, 50000):
        if value <= step:
            return float(step)
    return float(int(value / 10000 + 1) * 10000)


def latency_svg(
    points: Sequence[LatencyPoint], *, width: int = 520, height: int = 140, title: str = "Response times"
) -> str:
    """An SVG line chart: median (solid) and p95 (dashed) per check run, oldest left.

    Returns an empty string when there is nothing to draw.
    """
    if not points:
        return ""
    pts = sorted(points, key=lambda p: p.when)
    left, right, top, bottom = 46, 10, 12, 26
    plot_w, plot_h = width - left - right, height - top - bottom
    y_max = _nice_max(max(p.p95_ms for p in pts))

    def x(i: int) -> float:
        return left + (plot_w / 2 if len(pts) == 1 else plot_w * i / (len(pts) - 1))

    def y(v: float) -> float:
        return top + plot_h - plot_h * min(v, y_max) / y_max

    def line(values: list[float]) -> str:
        return " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(values))

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'role="img" aria-label="{escape(title)}" class="chart">',
        f"<title>{escape(title)}</title>",
        f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#ccc"/>',
    ]
    for frac in (0.0, 0.5, 1.0):
        v = y_max * frac
        yy = y(v)
        out.append(f'<line x1="{left}" y1="{yy:.1f}" x2="{left + plot_w}" y2="{yy:.1f}" stroke="#eee"/>')
        out.append(
            f'<text x="{left - 4}" y="{yy + 4:.1f}" font-size="10" text-anchor="end" font-family="sans-serif" '
            f'fill="#555">{v:g} ms</text>'
        )
    out.append(
        f'<polyline fill="none" stroke="#d9822b" stroke-width="1.5" stroke-dasharray="4 3" '
        f'points="{line([p.p95_ms for p in pts])}"><title>p95</title></polyline>'
    )
    out.append(
        f'<polyline fill="none" stroke="#1f6feb" stroke-width="2" points="{line([p.median_ms for p in pts])}">'
        "<title>median</title></polyline>"
    )
    for i, p in enumerate(pts):
        label = f"{p.when:%Y-%m-%d %H:%M}: median {p.median_ms:.0f} ms, p95 {p.p95_ms:.0f} ms"
        cx, cy = f"{x(i):.1f}", f"{y(p.median_ms):.1f}"
        out.append(f'<circle cx="{cx}" cy="{cy}" r="2.5" fill="#1f6feb"><title>{escape(label)}</title></circle>')
    first, last = pts[0].when, pts[-1].when
    out.append(
        f'<text x="{left}" y="{height - 8}" font-size="10" font-family="sans-serif" fill="#555">{first:%Y-%m-%d}</text>'
    )
    if len(pts) > 1:
        out.append(
            f'<text x="{left + plot_w}" y="{height - 8}" font-size="10" text-anchor="end" font-family="sans-serif" '
            f'fill="#555">{last:%Y-%m-%d}</text>'
        )
    out.append(
        f'<text x="{left + plot_w / 2:.0f}" y="{height - 8}" font-size="10" text-anchor="middle" '
        'font-family="sans-serif" fill="#555">— median  - - p95</text>'
    )
    out.append("</svg>")
    return "".join(out)
