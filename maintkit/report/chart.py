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


@dataclass(frozen=True)
class _Frame:
    """The plot area of a chart of ``n`` points and how values map onto it."""

    width: int
    height: int
    n: int
    y_max: float
    left: int = 46
    right: int = 10
    top: int = 12
    bottom: int = 26

    @property
    def plot_w(self) -> int:
        return self.width - self.left - self.right

    @property
    def plot_h(self) -> int:
        return self.height - self.top - self.bottom

    def x(self, i: int) -> float:
        return self.left + (self.plot_w / 2 if self.n == 1 else self.plot_w * i / (self.n - 1))

    def y(self, v: float) -> float:
        return self.top + self.plot_h - self.plot_h * min(v, self.y_max) / self.y_max

    def line(self, values: list[float]) -> str:
        return " ".join(f"{self.x(i):.1f},{self.y(v):.1f}" for i, v in enumerate(values))


def latency_svg(
    points: Sequence[LatencyPoint], *, width: int = 520, height: int = 140, title: str = "Response times"
) -> str:
    """An SVG line chart: median (solid) and p95 (dashed) per check run, oldest left.

    Returns an empty string when there is nothing to draw.
    """
    if not points:
        return ""
    pts = sorted(points, key=lambda p: p.when)
    f = _Frame(width, height, len(pts), _nice_max(max(p.p95_ms for p in pts)))
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'role="img" aria-label="{escape(title)}" class="chart">',
        f"<title>{escape(title)}</title>",
        f'<rect x="{f.left}" y="{f.top}" width="{f.plot_w}" height="{f.plot_h}" fill="none" stroke="#ccc"/>',
    ]
    out += _grid(f)
    out += _series(f, pts)
    out += _axis_labels(f, pts)
    out.append("</svg>")
    return "".join(out)


def _grid(f: _Frame) -> list[str]:
    """Horizontal grid lines at 0, half and full scale, with their labels."""
    out = []
    for frac in (0.0, 0.5, 1.0):
        v = f.y_max * frac
        yy = f.y(v)
        out.append(f'<line x1="{f.left}" y1="{yy:.1f}" x2="{f.left + f.plot_w}" y2="{yy:.1f}" stroke="#eee"/>')
        out.append(
            f'<text x="{f.left - 4}" y="{yy + 4:.1f}" font-size="10" text-anchor="end" font-family="sans-serif" '
            f'fill="#555">{v:g} ms</text>'
        )
    return out


def _series(f: _Frame, pts: list[LatencyPoint]) -> list[str]:
    """The p95 (dashed) and median (solid) lines, and a dot with a tooltip per check run."""
    out = [
        f'<polyline fill="none" stroke="#d9822b" stroke-width="1.5" stroke-dasharray="4 3" '
        f'points="{f.line([p.p95_ms for p in pts])}"><title>p95</title></polyline>',
        f'<polyline fill="none" stroke="#1f6feb" stroke-width="2" points="{f.line([p.median_ms for p in pts])}">'
        "<title>median</title></polyline>",
    ]
    for i, p in enumerate(pts):
        label = f"{p.when:%Y-%m-%d %H:%M}: median {p.median_ms:.0f} ms, p95 {p.p95_ms:.0f} ms"
        cx, cy = f"{f.x(i):.1f}", f"{f.y(p.median_ms):.1f}"
        out.append(f'<circle cx="{cx}" cy="{cy}" r="2.5" fill="#1f6feb"><title>{escape(label)}</title></circle>')
    return out


def _axis_labels(f: _Frame, pts: list[LatencyPoint]) -> list[str]:
    """First and last date under the plot, and the legend."""
    first, last = pts[0].when, pts[-1].when
    out = [
        f'<text x="{f.left}" y="{f.height - 8}" font-size="10" font-family="sans-serif" fill="#555">'
        f"{first:%Y-%m-%d}</text>"
    ]
    if len(pts) > 1:
        out.append(
            f'<text x="{f.left + f.plot_w}" y="{f.height - 8}" font-size="10" text-anchor="end" '
            f'font-family="sans-serif" fill="#555">{last:%Y-%m-%d}</text>'
        )
    out.append(
        f'<text x="{f.left + f.plot_w / 2:.0f}" y="{f.height - 8}" font-size="10" text-anchor="middle" '
        'font-family="sans-serif" fill="#555">— median  - - p95</text>'
    )
    return out
