"""Client reports rendered from run folders (markdown and self-contained HTML).

::

    from maintkit.report import build_report, render_html
    report = build_report(".maint", since=date(2026, 11, 1), until=date(2026, 11, 30))
    Path("report.html").write_text(render_html(report))
"""

from __future__ import annotations

from maintkit.report.builder import build_report
from maintkit.report.chart import LatencyPoint, latency_svg, percentile
from maintkit.report.model import (
    Attention,
    Backup,
    Branding,
    Certificate,
    EnvHealth,
    Incident,
    Latency,
    Renewal,
    Report,
    ReportError,
    Rollback,
    SiteReport,
    Update,
    Verdict,
)
from maintkit.report.render import render, render_html, render_markdown

__all__ = [
    "Attention",
    "Backup",
    "Branding",
    "Certificate",
    "EnvHealth",
    "Incident",
    "Latency",
    "LatencyPoint",
    "Renewal",
    "Report",
    "ReportError",
    "Rollback",
    "SiteReport",
    "Update",
    "Verdict",
    "build_report",
    "latency_svg",
    "percentile",
    "render",
    "render_html",
    "render_markdown",
]
