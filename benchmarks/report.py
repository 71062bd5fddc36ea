"""The peers benchmark's results: one group per (hosts, maint variant, peer), its table and JSON (pure).

A group holds the counted pairs of each phase (``first``, ``noop``): maint's measure and the
peer's, taken one right after the other. The table shows each side's median wall and CPU and
the median of the per-pair ratios maint/peer (a ratio below 1 means maint was faster).
Tested in tests/unit/test_bench_harness.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from common import Measure, median, median_ratio

PHASES = ("first", "noop")
PHASE_LABEL = {"first": "first run", "noop": "no-op"}


@dataclass
class Group:
    """The pairs of one maint variant against one peer on ``hosts`` hosts."""

    hosts: int
    variant: str
    peer: str
    absent: str = ""  # why the peer (or the variant) did not run, else empty
    pairs: dict[str, list[tuple[Measure, Measure]]] = field(default_factory=lambda: {p: [] for p in PHASES})

    def add(self, phase: str, maint: Measure, peer: Measure) -> None:
        """Record one counted pair of ``phase``."""
        self.pairs[phase].append((maint, peer))

    def summary(self, phase: str) -> dict[str, float] | None:
        """Medians and median ratios of ``phase`` (None when it has no pairs)."""
        pairs = self.pairs[phase]
        if not pairs:
            return None
        a, b = [p[0] for p in pairs], [p[1] for p in pairs]
        return {
            "maint_wall": median(m.wall for m in a), "maint_cpu": median(m.cpu for m in a),
            "peer_wall": median(m.wall for m in b), "peer_cpu": median(m.cpu for m in b),
            "ratio_wall": median_ratio([m.wall for m in a], [m.wall for m in b]),
            "ratio_cpu": median_ratio([m.cpu for m in a], [m.cpu for m in b]),
        }  # fmt: skip

    def to_json(self) -> dict[str, Any]:
        """Every raw figure of the group and its summaries."""
        return {
            "hosts": self.hosts, "variant": self.variant, "peer": self.peer, "absent": self.absent or None,
            "pairs": {ph: [{"maint": _m(a), "peer": _m(b)} for a, b in ps] for ph, ps in self.pairs.items()},
            "summary": {ph: self.summary(ph) for ph in PHASES},
        }  # fmt: skip


def _m(m: Measure) -> dict[str, float]:
    return {"wall": round(m.wall, 4), "cpu": round(m.cpu, 4), "rss_mb": round(m.rss_mb, 1)}


HEADER = (
    "hosts | run | maint | maint wall / cpu (s) | peer | peer wall / cpu (s) | maint/peer wall | maint/peer cpu",
    "---|---|---|---|---|---|---|---",
)


def table(groups: list[Group]) -> list[str]:
    """The Markdown table: one row per group and phase; an absent peer gets one row saying why."""
    rows = list(HEADER)
    for g in groups:
        if g.absent:
            rows.append(f"{g.hosts} | - | {g.variant} | - | {g.peer} | {g.absent} | - | -")
            continue
        for phase in PHASES:
            s = g.summary(phase)
            if s is None:
                continue
            rows.append(
                f"{g.hosts} | {PHASE_LABEL[phase]} | {g.variant} | {s['maint_wall']:.2f} / {s['maint_cpu']:.2f} | "
                f"{g.peer} | {s['peer_wall']:.2f} / {s['peer_cpu']:.2f} | {s['ratio_wall']:.2f}x | {s['ratio_cpu']:.2f}x"
            )
    return rows


def rss_lines(peaks: dict[str, float]) -> list[str]:
    """``tool: N MB`` for the peak RSS of any one process of each tool, largest first."""
    return [f"{tool}: {mb:.0f} MB" for tool, mb in sorted(peaks.items(), key=lambda kv: -kv[1])]
