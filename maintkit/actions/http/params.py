"""Parameters of ``http.check``: the paths, the expectations and the requests of a flow."""

from __future__ import annotations

import re
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic.json_schema import SkipJsonSchema

from maintkit.action import Params

Method = Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
READ_ONLY_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: the commerce flows maintkit knows (:mod:`maintkit.actions.http.presets`); ``none``: no flow
PresetName = Literal["woocommerce", "magento2"]
PRESET_NAMES: tuple[str, ...] = ("woocommerce", "magento2")


def _as_list(v: Any) -> Any:
    if v is None:
        return []
    return [v] if isinstance(v, str | int) else v


def _valid_patterns(v: list[str]) -> list[str]:
    for pattern in v:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"invalid regular expression {pattern!r}: {exc}") from None
    return v


def _valid_statuses(v: list[int]) -> list[int]:
    for code in v:
        if not 100 <= code <= 599:
            raise ValueError(f"invalid HTTP status {code}")
    return v


class FlowRequest(Params):
    """One request of a flow. Unset expectations fall back to the step's."""

    name: str | None = Field(None, description="Label for messages")
    path: str = Field(..., description="Path under the base URL, or an absolute URL; may use {captured} values")
    method: Method = "GET"
    data: dict[str, str] | None = Field(None, description="Form fields (application/x-www-form-urlencoded)")
    headers: dict[str, SecretStr] = Field(default_factory=dict, description="Extra headers (secret values)")
    capture: dict[str, str] = Field(default_factory=dict, description="name: regex with one group, from the body")
    capture_headers: dict[str, str] = Field(
        default_factory=dict, description="name: response header whose value is captured (e.g. nonce: Nonce)"
    )
    must_contain: list[str] | None = Field(
        None, description="Texts the body must contain (literal, not regexes); may use {captured} values"
    )
    status: list[int] | None = None
    must_match: list[str] | None = None
    must_not_match: list[str] | None = None
    max_latency_ms: float | None = Field(None, gt=0)
    follow_redirects: bool | None = None

    @field_validator("method", mode="before")
    @classmethod
    def _upper(cls, v: Any) -> Any:
        return v.upper() if isinstance(v, str) else v

    @field_validator("status", mode="before", json_schema_input_type=int | list[int] | None)
    @classmethod
    def _status_list(cls, v: Any) -> Any:
        return None if v is None else _as_list(v)

    @field_validator(
        "must_match", "must_not_match", "must_contain", mode="before", json_schema_input_type=str | list[str] | None
    )
    @classmethod
    def _pattern_list(cls, v: Any) -> Any:
        return None if v is None else _as_list(v)

    @field_validator("status")
    @classmethod
    def _statuses(cls, v: list[int] | None) -> list[int] | None:
        return None if v is None else _valid_statuses(v)

    @field_validator("must_match", "must_not_match")
    @classmethod
    def _patterns(cls, v: list[str] | None) -> list[str] | None:
        return None if v is None else _valid_patterns(v)

    @field_validator("capture")
    @classmethod
    def _one_group(cls, v: dict[str, str]) -> dict[str, str]:
        for name, pattern in v.items():
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                raise ValueError(f"capture name {name!r} must be an identifier")
            try:
                groups = re.compile(pattern).groups
            except re.error as exc:
                raise ValueError(f"capture {name}: invalid regular expression: {exc}") from None
            if groups != 1:
                raise ValueError(f"capture {name}: the pattern needs exactly one group, it has {groups}")
        return v

    @field_validator("capture_headers")
    @classmethod
    def _header_names(cls, v: dict[str, str]) -> dict[str, str]:
        for name, header in v.items():
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                raise ValueError(f"capture name {name!r} must be an identifier")
            if not re.fullmatch(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+", header):
                raise ValueError(f"capture_headers {name}: {header!r} is not a header name")
        return v

    @property
    def label(self) -> str:
        """Name for messages."""
        return self.name or f"{self.method} {self.path}"


class StoreOptions(Params):
    """Where a shop's pages are, for the commerce presets (``flow: woocommerce`` / ``magento2``)."""

    product: str | None = Field(
        None, description="Path of a product page (magento2: required; woocommerce: when no product is found)"
    )
    shop: str | None = Field(None, description="Product list page (woocommerce default /shop/)")
    cart: str | None = Field(None, description="Cart page (woocommerce /cart/, magento2 /checkout/cart/)")
    checkout: str | None = Field(None, description="Checkout page (default /checkout/)")

    @field_validator("product", "shop", "cart", "checkout")
    @classmethod
    def _relative(cls, v: str | None) -> str | None:
        if v is not None and not (v.startswith("/") or urlsplit(v).scheme in ("http", "https")):
            raise ValueError(f"{v!r}: give a path starting with / or an absolute http(s) URL")
        return v


class HttpCheckParams(Params):
    """Parameters of ``http.check``."""

    url: str | None = Field(None, description="Base URL (default: the environment's url)")
    paths: list[str] = Field(default_factory=list, description="Paths under the base URL, or absolute URLs")
    method: Literal["GET", "HEAD"] = Field("GET", description="Method for `paths`")
    status: list[int] = Field(default_factory=lambda: [200], description="Expected status (a number or a list)")
    must_match: list[str] = Field(default_factory=list, description="Regexes the body must match")
    must_not_match: list[str] = Field(default_factory=list, description="Regexes the body must not match")
    max_latency_ms: float | None = Field(None, gt=0, description="Slowest acceptable response, in ms")
    verify: bool | str = Field(True, description="TLS verification: true, false, or a CA bundle path")
    follow_redirects: bool = Field(True, description="Follow redirects (the final response is checked)")
    retries: int = Field(2, ge=0, le=20, description="Extra attempts per URL (per flow) after a failure")
    backoff_s: float = Field(1.0, ge=0, description="Wait before retry n: backoff_s * 2**(n-1)")
    timeout: float = Field(10.0, gt=0, description="Seconds per request")
    headers: dict[str, SecretStr] = Field(default_factory=dict, description="Extra headers (secret values)")
    resolve: str | None = Field(None, description="Connect to this IP address for the base URL's host name")
    flow: list[FlowRequest] = Field(
        default_factory=list,
        description="Requests sharing a cookie session, or a commerce preset: woocommerce, magento2 (none: no flow)",
    )
    #: ``flow: woocommerce`` / ``magento2`` lands here (and ``flow`` stays empty)
    flow_preset: SkipJsonSchema[PresetName | None] = Field(None, exclude=True)
    store: StoreOptions = Field(
        default_factory=lambda: StoreOptions.model_validate({}), description="Shop pages for the commerce presets"
    )

    @field_validator("status", mode="before", json_schema_input_type=int | list[int])
    @classmethod
    def _status_list(cls, v: Any) -> Any:
        return _as_list(v)

    @model_validator(mode="before")
    @classmethod
    def _preset_flow(cls, data: Any) -> Any:
        """``flow: woocommerce`` names a preset (kept in ``flow_preset``); ``none``, "" or null: no flow."""
        if not isinstance(data, dict) or not (data.get("flow") is None or isinstance(data.get("flow"), str)):
            return data
        name = (data.get("flow") or "").strip()
        if name.lower() in ("", "none"):
            return {**data, "flow": []}
        if name in PRESET_NAMES:
            return {**data, "flow": [], "flow_preset": name}
        return data  # the field validator names the problem

    @field_validator("flow", mode="before", json_schema_input_type=list[FlowRequest] | PresetName | None)
    @classmethod
    def _flow_name(cls, v: Any) -> Any:
        if isinstance(v, str):
            raise ValueError(f"unknown flow preset {v!r}: give {', '.join(PRESET_NAMES)}, none, or a list of requests")
        return v

    @field_validator("must_match", "must_not_match", "paths", mode="before", json_schema_input_type=str | list[str])
    @classmethod
    def _text_list(cls, v: Any) -> Any:
        return _as_list(v)

    @field_validator("status")
    @classmethod
    def _statuses(cls, v: list[int]) -> list[int]:
        if not v:
            raise ValueError("give at least one expected status")
        return _valid_statuses(v)

    @field_validator("must_match", "must_not_match")
    @classmethod
    def _patterns(cls, v: list[str]) -> list[str]:
        return _valid_patterns(v)

    @field_validator("paths")
    @classmethod
    def _paths(cls, v: list[str]) -> list[str]:
        for p in v:
            if not (p.startswith("/") or urlsplit(p).scheme in ("http", "https")):
                raise ValueError(f"{p!r}: give a path starting with / or an absolute http(s) URL")
        return v

    @model_validator(mode="after")
    def _something(self) -> HttpCheckParams:
        if not self.paths and not self.flow and self.flow_preset is None:
            self.paths = ["/"]
        if self.flow_preset == "magento2" and not self.store.product:
            raise ValueError("flow magento2 needs store.product (the path of a product page)")
        return self

    @property
    def preset(self) -> str | None:
        """The commerce preset the flow names, or None for a list of requests."""
        return self.flow_preset


__all__ = [
    "PRESET_NAMES",
    "READ_ONLY_METHODS",
    "FlowRequest",
    "HttpCheckParams",
    "Method",
    "PresetName",
    "StoreOptions",
]
