"""The parameters of ``deploy.release`` and ``deploy.rollback``, validated when a playbook loads."""

from __future__ import annotations

import posixpath
from typing import Any, Literal

from pydantic import Field, field_validator

from maintkit.action import Params
from maintkit.actions.deploy.git import display_url

#: A build or after-switch command: an argument list (quoted for you) or, explicitly, a shell script.
Command = list[str] | str


def _relative(value: str) -> str:
    # names are kept exactly (no stripping): " config.php" is a different file than "config.php"
    norm = posixpath.normpath(value) if value.strip() else ""
    if not norm or norm.startswith("/") or norm in (".", "..") or norm.startswith("../") or "\n" in value:
        raise ValueError(f"{value!r} must be a relative path inside the release")
    return norm


def _commands(value: list[Any]) -> list[Any]:
    for cmd in value:
        if isinstance(cmd, list) and not cmd:
            raise ValueError("an argument list must not be empty")
        if isinstance(cmd, str) and not cmd.strip():
            raise ValueError("a shell command must not be empty")
    return value


class DeployReleaseParams(Params):
    """Parameters of ``deploy.release``."""

    repo: str = Field(..., min_length=1, description="Git repository: URL, or a path on the controller")
    ref: str = Field("main", min_length=1, description="Branch, tag or commit to deploy")
    transfer: Literal["clone", "archive"] | None = Field(
        None,
        description="clone: the host fetches into <path>/.maint/repo; archive: git archive streamed from the "
        "controller (for hosts that cannot reach the repository). Default: archive for a local path, else clone",
    )
    shared_files: list[str] = Field(default_factory=list, description="Files of <path>/shared linked into each release")
    shared_dirs: list[str] = Field(
        default_factory=list, description="Directories of <path>/shared linked into each release"
    )
    build: list[Command] = Field(
        default_factory=list,
        description="Commands run inside the new release before the switch: argument lists, or shell strings",
    )
    build_timeout: float | None = Field(None, gt=0, description="Seconds each build command may take")
    after_switch: list[Command] = Field(
        default_factory=list, description="Commands run after the switch and after a rollback (e.g. reload php-fpm)"
    )
    keep: int = Field(5, ge=1, description="Releases to keep (current and the rollback target are always kept)")

    @field_validator("repo")
    @classmethod
    def _safe_repo(cls, v: str) -> str:
        if v.startswith("-") or any(ord(c) < 32 for c in v):
            raise ValueError(f"invalid repository {display_url(v)!r}")
        return v

    @field_validator("ref")
    @classmethod
    def _safe_ref(cls, v: str) -> str:
        if v.startswith("-") or any(c.isspace() or ord(c) < 32 for c in v) or ".." in v:
            raise ValueError(f"invalid git ref {v!r}")
        return v

    @field_validator("shared_files", "shared_dirs")
    @classmethod
    def _relative_paths(cls, v: list[str]) -> list[str]:
        return [_relative(p) for p in v]

    @field_validator("build", "after_switch")
    @classmethod
    def _non_empty(cls, v: list[Any]) -> list[Any]:
        return _commands(v)


class DeployRollbackParams(Params):
    """Parameters of ``deploy.rollback``."""

    to: str | None = Field(
        None, description="Release to switch to (name, unique prefix or commit prefix); default: the previous good one"
    )
    after_switch: list[Command] = Field(default_factory=list, description="Commands run after the switch")

    @field_validator("after_switch")
    @classmethod
    def _non_empty(cls, v: list[Any]) -> list[Any]:
        return _commands(v)


__all__ = ["Command", "DeployReleaseParams", "DeployRollbackParams"]
