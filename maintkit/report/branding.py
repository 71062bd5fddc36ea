"""White-label reports: the agency's logo, checked and embedded as a ``data:`` URI.

The logo is read once, limited in size, and its type decided by its first bytes (never by its
name): PNG, JPEG, or SVG. An SVG is refused when it could do more than draw: scripts, event
handler attributes, ``javascript:`` URLs, links to anything outside itself, embedded documents
(``foreignObject``, ``iframe``...), or a DOCTYPE (entity expansion). The report stays one file
with no external resources.
"""

from __future__ import annotations

import base64
import re
from pathlib import Path
from xml.etree import ElementTree

from maintkit.report.model import Branding, ReportError

__all__ = ["LOGO_MAX_BYTES", "branding", "logo_data_uri"]

#: the largest logo accepted (it is embedded in every report)
LOGO_MAX_BYTES = 512 * 1024

_PNG = b"\x89PNG\r\n\x1a\n"
_JPEG = b"\xff\xd8\xff"
_SVG_FORBIDDEN_TAGS = {"script", "foreignobject", "iframe", "embed", "object", "audio", "video", "handler"}
_URL_ATTRS = {"href", "src"}
_SVG_START = re.compile(
    rb"\A(?:\xef\xbb\xbf)?\s*(?:<\?xml[^>]*\?>\s*)?(?:<!--.*?-->\s*|<!DOCTYPE[^\[>]*(?:\[.*?\])?\s*>\s*)*<svg[\s>/]",
    re.S | re.I,
)


def _svg_problem(data: bytes) -> str:
    """Why this SVG cannot be embedded ("" when it only draws)."""
    lowered = data.lower()
    if b"<!doctype" in lowered or b"<!entity" in lowered:
        return "it has a DOCTYPE or entities"
    if b"javascript:" in lowered:
        return "it has a javascript: URL"
    try:
        root = ElementTree.fromstring(data)  # noqa: S314 - DOCTYPE and entities were refused above
    except ElementTree.ParseError as exc:
        return f"it is not well-formed XML ({exc})"
    for el in root.iter():
        tag = el.tag.rsplit("}", 1)[-1].lower() if isinstance(el.tag, str) else ""
        if tag in _SVG_FORBIDDEN_TAGS:
            return f"it has a <{tag}> element"
        for name, value in el.attrib.items():
            attr = name.rsplit("}", 1)[-1].lower()
            if attr.startswith("on"):
                return f"it has an event handler attribute ({attr})"
            if attr in _URL_ATTRS and not value.strip().startswith(("#", "data:image/png", "data:image/jpeg")):
                return f"it links to {value.strip()[:60]!r} ({attr})"
        if tag == "style" and el.text and re.search(r"@import|url\(\s*['\"]?(?!#|data:image/)", el.text, re.I):
            return "its style loads something from outside"
    return ""


def logo_data_uri(path: str | Path, max_bytes: int = LOGO_MAX_BYTES) -> str:
    """The logo at ``path`` as a ``data:`` URI; :class:`ReportError` when it is too big, unknown or unsafe."""
    file = Path(path)
    try:
        with file.open("rb") as fh:
            data = fh.read(max_bytes + 1)
    except OSError as exc:
        raise ReportError(f"--logo {file}: cannot read it: {exc.strerror or exc}") from None
    if len(data) > max_bytes:
        raise ReportError(f"--logo {file}: larger than {max_bytes // 1024} KiB; use a smaller image")
    if data.startswith(_PNG):
        mime = "image/png"
    elif data.startswith(_JPEG):
        mime = "image/jpeg"
    elif _SVG_START.match(data):
        problem = _svg_problem(data)
        if problem:
            raise ReportError(f"--logo {file}: SVG refused: {problem}; export a plain SVG or a PNG")
        mime = "image/svg+xml"
    else:
        raise ReportError(f"--logo {file}: not a PNG, JPEG or SVG image (judged by its first bytes)")
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def branding(agency: str | None = None, logo: str | Path | None = None) -> Branding:
    """The agency's name (one line, at most 120 characters) and logo for the report."""
    name = " ".join((agency or "").split())
    if len(name) > 120:
        raise ReportError("--agency: at most 120 characters")
    return Branding(name, logo_data_uri(logo) if logo is not None else "")
