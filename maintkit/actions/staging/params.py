"""Parameters of ``staging.refresh``: what is copied, how, and what is rewritten and guarded."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from maintkit.action import Params

AnonKind = Literal["email", "login", "name", "phone", "address", "text", "empty"]


class DbRef(Params):
    """One side's database: its name and the MariaDB option file with its credentials."""

    name: str = Field(..., min_length=1, max_length=64, description="Database name")
    defaults_file: str | None = Field(None, description="MariaDB option file on that side's host (0600)")


class AnonRule(Params):
    """One anonymisation rule: overwrite ``table.column`` with a value of ``kind``.

    ``table`` is without the WordPress table prefix. ``keys`` limits the rule to rows whose
    ``key_column`` (default ``meta_key``) is one of them (meta tables); ``user_column`` names
    the user id column, so the rows of kept users (administrators) are left alone; the
    generated value is built from ``id_column`` (default: the primary key), for example
    ``user123@example.invalid``.
    """

    table: str = Field(..., pattern=r"^[A-Za-z0-9_]{1,64}$")
    column: str = Field(..., pattern=r"^[A-Za-z0-9_]{1,64}$")
    kind: AnonKind
    keys: list[str] = Field(default_factory=list)
    key_column: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_]{1,64}$")
    user_column: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_]{1,64}$")
    id_column: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_]{1,64}$")


class Guards(Params):
    """What makes staging safe to leave running next to production."""

    noindex: bool = Field(True, description="WordPress blog_public=0 and a noindex header; robots_txt elsewhere")
    mail: bool = Field(True, description="WordPress: a mu-plugin that stops every outgoing mail (wp_mail)")
    payments: bool = Field(True, description="WooCommerce gateways with a known test-mode flag switched to test mode")
    gateways: dict[str, str] = Field(
        default_factory=lambda: {"stripe": "testmode", "paypal": "testmode", "ppcp-gateway": "sandbox_on"},
        description="Gateway id -> its test-mode setting (set to 'yes')",
    )
    robots_txt: str | None = Field(None, description="Non-WordPress: a robots.txt (relative path) that disallows all")


class StagingRefreshParams(Params):
    """Parameters of ``staging.refresh``."""

    source: str = Field("production", description="The environment copied from")
    via: Literal["auto", "host", "controller"] = Field(
        "auto",
        description="host: the target's host reads the source directly (same machine); controller: streamed "
        "through this machine; auto: host when both use the same connection, else controller",
    )
    database: bool = Field(True, description="Copy the database")
    files: bool = Field(True, description="Copy the files (rsync, or a tar stream through the controller)")
    uploads: bool = Field(True, description="Copy the uploads too (WordPress wp-content/uploads, or uploads_dir)")
    uploads_dir: str | None = Field(None, description="Uploads folder relative to the path (non-WordPress)")
    exclude: list[str] = Field(default_factory=list, description="More rsync exclude patterns")
    source_db: DbRef | None = Field(None, description="Default: the source's db_name / db_defaults_file variables")
    target_db: DbRef | None = Field(None, description="Default: the target's db_name / db_defaults_file variables")
    replace: dict[str, str] = Field(default_factory=dict, description="More search -> replace pairs")
    url_rewrite: bool = Field(True, description="Rewrite the source URL to the target URL in the database")
    skip_columns: list[str] = Field(default_factory=lambda: ["guid"], description="Columns never rewritten")
    sql: list[str] = Field(default_factory=list, description="SQL run on the target after the load (any platform)")
    commands: list[list[str]] = Field(default_factory=list, description="Commands run in the target path at the end")
    anonymize: bool = Field(True, description="Apply the anonymisation rules (WordPress)")
    rules: list[AnonRule] | None = Field(None, description="Anonymisation rules (default: WordPress/WooCommerce)")
    keep_roles: list[str] = Field(default_factory=lambda: ["administrator"], description="Users never anonymised")
    guards: Guards = Field(default_factory=Guards)  # type: ignore[arg-type]
    max_age: str = Field("20h", description="A refresh younger than this, with both sides unchanged since, is kept")
    timeout: float = Field(3600, gt=0, description="Seconds the copy of the database or the files may take")

    @field_validator("max_age")
    @classmethod
    def _duration(cls, v: str) -> str:
        from maintkit.actions.backup.common import parse_duration

        parse_duration(v)
        return v

    @field_validator("exclude")
    @classmethod
    def _no_newlines(cls, v: list[str]) -> list[str]:
        if any("\n" in p or not p for p in v):
            raise ValueError("exclude patterns are non-empty single lines")
        return v


__all__ = ["AnonKind", "AnonRule", "DbRef", "Guards", "StagingRefreshParams"]
