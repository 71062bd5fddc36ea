"""Render a :class:`~maintkit.report.model.Report` as markdown or as a self-contained HTML page."""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

from maintkit.report.model import Branding, Report, ReportError

TEMPLATES = Path(__file__).parent / "templates"
_SPARK = "▁▂▃▄▅▆▇█"


def _dt(value: Any) -> str:
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M UTC")
    return "" if value is None else str(value)


def _size(value: Any) -> str:
    if value is None:
        return "?"
    size = float(value)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1024 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TB"


def _age(value: Any) -> str:
    if not isinstance(value, timedelta):
        return "?"
    secs = max(0.0, value.total_seconds())
    if secs < 3600:
        return f"{secs / 60:.0f} min"
    if secs < 86400 * 2:
        return f"{secs / 3600:.0f} h"
    return f"{secs / 86400:.0f} days"


def _days(value: Any) -> str:
    if value is None:
        return "?"
    v = float(value)
    return "expired" if v < 0 else (str(int(v)) if v >= 10 else f"{v:.1f}")


def _ms(value: Any) -> str:
    return "?" if value is None else f"{float(value):.0f} ms"


def _yesno(value: Any) -> str:
    return "yes" if value is True else ("no" if value is False else "not verified")


def _md(value: Any) -> str:
    """Text safe for a markdown table cell or list item: one line, pipes and markup escaped."""
    text = " ".join(str("" if value is None else value).split())
    for ch in ("\\", "|", "*", "_", "`", "<", "[", "]"):
        text = text.replace(ch, "\\" + ch)
    return text


def _sparkline(points: Any) -> str:
    """A line of block characters: latency points (their medians, oldest first) or plain numbers."""
    items = list(points)
    if items and hasattr(items[0], "median_ms"):
        values = [float(p.median_ms) for p in sorted(items, key=lambda p: p.when)]
    else:
        values = [float(v[1] if isinstance(v, tuple) else v) for v in items]
    if not values:
        return ""
    lo, hi = min(values), max(values)
    span = (hi - lo) or 1.0
    return "".join(_SPARK[int((v - lo) / span * (len(_SPARK) - 1))] for v in values)


def _pct(value: Any, digits: int = 2) -> str:
    return "?" if value is None else f"{float(value):.{digits}f}%"


def _rate(value: Any) -> str:
    """A ratio as a percentage (``0.0125`` -> ``1.25%``)."""
    return "?" if value is None else f"{100 * float(value):.2f}%"


def _duration(value: Any) -> str:
    """Seconds in words: ``45 s``, ``12 min``, ``3 h 20 min``, ``2 days 4 h``."""
    if value is None:
        return "?"
    secs = round(float(value))
    if secs < 60:
        return f"{secs} s"
    mins, hours, days = secs // 60, secs // 3600, secs // 86400
    if secs < 3600:
        return f"{mins} min"
    if secs < 86400:
        rest = mins - hours * 60
        return f"{hours} h" + (f" {rest} min" if rest else "")
    rest_h = hours - days * 24
    return f"{days} day{'s' if days > 1 else ''}" + (f" {rest_h} h" if rest_h else "")


FILTERS: dict[str, Any] = {
    "dt": _dt, "size": _size, "age": _age, "days": _days, "ms": _ms, "yesno": _yesno, "md": _md,
    "sparkline": _sparkline, "pct": _pct, "rate": _rate, "duration": _duration,
}  # fmt: skip


@lru_cache(maxsize=8)
def _environment(html: bool, template_dir: str | None = None) -> Any:
    """A sandboxed jinja2 environment: ``template_dir`` first (when given), then the built-in templates.

    The built-in templates are also reachable as ``builtin/report.html.j2`` so that an override
    can ``{% extends "builtin/report.html.j2" %}`` and replace only some blocks.
    """
    from jinja2 import ChoiceLoader, FileSystemLoader, PrefixLoader, StrictUndefined
    from jinja2.sandbox import ImmutableSandboxedEnvironment
    from markupsafe import Markup

    builtin = FileSystemLoader(str(TEMPLATES))
    loaders: list[Any] = [PrefixLoader({"builtin": builtin})]
    if template_dir is not None:
        loaders.append(FileSystemLoader(template_dir))
    loaders.append(builtin)
    # HTML autoescapes; markdown has no HTML to escape and uses the `md` filter instead
    env = ImmutableSandboxedEnvironment(
        loader=ChoiceLoader(loaders),
        autoescape=html,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(FILTERS)
    env.filters["trusted_svg"] = lambda svg: Markup(svg)  # noqa: S704 - made by report.chart, which escapes its text
    return env


def _redact(text: str) -> str:
    from maintkit.audit import Redactor

    return str(Redactor.from_environ().redact_text(text))


def _render(report: Report, name: str, html: bool, branding: Branding | None, template_dir: str | Path | None) -> str:
    """Render template ``name``; a broken or unsafe override is a :class:`ReportError` naming it."""
    from jinja2 import TemplateError

    env = _environment(html, None if template_dir is None else str(Path(template_dir).resolve()))
    brand = branding or Branding()
    try:
        return str(env.get_template(name).render(report=report, agency=brand.agency, logo=brand.logo_uri))
    except TemplateError as exc:
        where = f" in {template_dir}" if template_dir is not None else ""
        raise ReportError(f"report template {name}{where}: {type(exc).__name__}: {exc}") from None


def render_markdown(report: Report, *, branding: Branding | None = None, template_dir: str | Path | None = None) -> str:
    """The report as markdown (GitHub-flavoured tables); ``template_dir`` may hold a ``report.md.j2``."""
    text = _render(report, "report.md.j2", False, branding, template_dir)
    while "\n\n\n" in text:
        text = text.replace("\n\n\n", "\n\n")
    return _redact(text)


def render_html(report: Report, *, branding: Branding | None = None, template_dir: str | Path | None = None) -> str:
    """The report as one self-contained HTML page (inline CSS, SVG and logo; printable)."""
    return _redact(_render(report, "report.html.j2", True, branding, template_dir))


def render(
    report: Report, fmt: str = "md", *, branding: Branding | None = None, template_dir: str | Path | None = None
) -> str:
    """``md`` or ``html``, with the agency's name and logo, from ``template_dir``'s templates when given."""
    if fmt == "html":
        return render_html(report, branding=branding, template_dir=template_dir)
    if fmt in ("md", "markdown"):
        return render_markdown(report, branding=branding, template_dir=template_dir)
    raise ValueError(f"unknown report format {fmt!r} (md or html)")
