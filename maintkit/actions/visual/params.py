"""Parameters of ``visual.check``: the pages (with their steps and masks), the sizes and the thresholds."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from maintkit.action import Params

_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")


class PageStep(Params):
    """One thing done in the browser before a page's screenshot: exactly one of the keys."""

    goto: str | None = Field(default=None, description="Open this path (under the base URL) or absolute URL")
    click: str | None = Field(default=None, description="Click the first element matching this CSS selector")
    fill: str | None = Field(default=None, description="Type `value` into the first element matching this CSS selector")
    value: str = Field(default="", description="The text for `fill`")
    wait_for: str | None = Field(
        default=None, description="Wait until an element matching this CSS selector is visible"
    )

    @model_validator(mode="after")
    def _one(self) -> PageStep:
        given = [k for k in ("goto", "click", "fill", "wait_for") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError(f"a page step needs exactly one of goto, click, fill, wait_for (got {given or 'none'})")
        return self

    def describe(self) -> str:
        """The step in a few words, for messages."""
        if self.goto:
            return f"goto {self.goto}"
        if self.click:
            return f"click {self.click}"
        if self.fill:
            return f"fill {self.fill}"
        return f"wait for {self.wait_for}"


class Page(Params):
    """One page to capture: its steps (in the session of the pages before it), then ``path``."""

    name: str = Field(..., description="Name in file names and messages: lowercase letters, digits, - and _")
    path: str | None = Field(default=None, description="Path (or absolute URL) opened after the steps; none: stay")
    steps: list[PageStep] = Field(default_factory=list, description="Browser steps before the screenshot")
    mask: list[str] = Field(default_factory=list, description="CSS selectors of dynamic regions, painted over")
    threshold: float | None = Field(
        default=None, ge=0, le=1, description="Ratio of differing pixels allowed (step's default)"
    )

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _NAME.match(v):
            raise ValueError(f"page name {v!r}: use lowercase letters, digits, - and _ (at most 40)")
        return v

    @model_validator(mode="after")
    def _somewhere(self) -> Page:
        if self.path is None and not self.steps:
            raise ValueError(f"page {self.name}: give a path or steps")
        return self


class Size(Params):
    """A browser viewport; screenshots are full-page, so the height is the first screen's."""

    name: str = Field(..., description="desktop, mobile...")
    width: int = Field(..., ge=200, le=4000)
    height: int = Field(..., ge=200, le=4000)
    mobile: bool = Field(default=False, description="Emulate a phone (touch, device scale 1)")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _NAME.match(v):
            raise ValueError(f"size name {v!r}: use lowercase letters, digits, - and _ (at most 40)")
        return v

    @property
    def label(self) -> str:
        """``desktop 1366x900``."""
        return f"{self.name} {self.width}x{self.height}"


DEFAULT_SIZES = [
    Size(name="desktop", width=1366, height=900),
    Size(name="mobile", width=390, height=844, mobile=True),
]


class VisualCheckParams(Params):
    """Parameters of ``visual.check``."""

    phase: Literal["before", "after"] = Field(..., description="before: take the baseline; after: compare with it")
    url: str | None = Field(default=None, description="Base URL (default: the environment's url)")
    pages: list[Page] = Field(default_factory=list, description="Pages to capture (none: the platform's defaults)")
    sizes: list[Size] = Field(default_factory=lambda: list(DEFAULT_SIZES), description="Viewports")
    mask: list[str] = Field(default_factory=list, description="CSS selectors masked on every page")
    threshold: float = Field(default=0.001, ge=0, le=1, description="Ratio of differing pixels allowed per screenshot")
    tolerance: int = Field(default=16, ge=0, le=255, description="Per-pixel colour difference (0-255) not counted")
    timeout: float = Field(default=30.0, gt=0, le=600, description="Seconds per browser step (navigation, click)")
    verify: bool = Field(default=True, description="TLS verification of the pages")

    @field_validator("pages", "sizes", "mask", mode="before")
    @classmethod
    def _none_is_empty(cls, v: Any) -> Any:
        return [] if v is None else v

    @model_validator(mode="after")
    def _unique(self) -> VisualCheckParams:
        for kind, names in (("page", [p.name for p in self.pages]), ("size", [s.name for s in self.sizes])):
            dupes = sorted({n for n in names if names.count(n) > 1})
            if dupes:
                raise ValueError(f"{kind} names must be unique: {', '.join(dupes)}")
        if not self.sizes:
            self.sizes = list(DEFAULT_SIZES)
        return self


__all__ = ["DEFAULT_SIZES", "Page", "PageStep", "Size", "VisualCheckParams"]
