"""Plan data of ``cms.update``: installed packages, offers, planned updates, skipped candidates.

Plain dataclasses shared by the drivers, the action and ``compat.check``; nothing here
touches a host.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Generic, TypeVar

ACTION = "cms.update"
S = TypeVar("S")


@dataclass
class Installed:
    """One installed package (plugin, theme, WordPress core or composer package)."""

    name: str
    kind: str  # plugin | theme | core | composer
    version: str
    path: str = ""
    active: bool | None = None
    requires_php: str = ""
    requires_wp: str = ""
    update_uri: str = ""
    file: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """``kind:name``, the key used in version locks."""
        return f"{self.kind}:{self.name}"


@dataclass
class Offer:
    """One version of a package a source offers."""

    version: str
    source: str  # label for humans and the lock: "repository:/dir", "url:https://...", "wordpress.org"
    location: str  # controller | host | url | composer
    ref: str  # path or URL
    requires_php: str = ""
    requires_wp: str = ""
    sha256: str | None = None
    tree: str | None = None
    header_version: str | None = None
    problem: str | None = None  # why the package cannot be used (wrong folder, not a zip...)
    data: bytes | None = field(default=None, repr=False)


@dataclass
class Update:
    """One planned package change ``from -> to``."""

    package: Installed
    to: str
    offer: Offer | None = None
    expected_tree: str | None = None
    expected_sha256: str | None = None
    operation: str = "update"  # update | install | remove | downgrade
    #: why this version beyond the policy: ``security: fixes <title> (CVE-...)``
    reason: str | None = None

    @property
    def name(self) -> str:
        """Package name."""
        return self.package.name

    @property
    def kind(self) -> str:
        """Package kind."""
        return self.package.kind

    def public(self) -> dict[str, Any]:
        """``{name, type, from, to}`` for check data, the audit log and reports."""
        out: dict[str, Any] = {
            "name": self.package.name,
            "type": self.package.kind,
            "from": self.package.version or None,
            "to": self.to or None,
        }
        if self.operation != "update":
            out["operation"] = self.operation
        if self.offer is not None:
            out["source"] = self.offer.source
            if self.offer.requires_php:
                out["requires_php"] = self.offer.requires_php
            if self.offer.requires_wp:
                out["requires_wp"] = self.offer.requires_wp
        if self.package.path:
            out["path"] = self.package.path
        if self.reason:
            out["reason"] = self.reason
        return out

    def line(self) -> str:
        """``plugin shop-cart: 1.0.0 -> 1.1.0``."""
        why = f" ({self.reason})" if self.reason else ""
        return (
            f"{self.package.kind} {self.package.name}: {self.package.version or '(none)'} -> {self.to or '(removed)'}"
            + why
        )


@dataclass
class Skipped:
    """A package with a newer version that will not be installed, and why."""

    name: str
    kind: str
    version: str
    candidate: str | None
    reason: str
    blocking: bool = False  # the host cannot run the candidate (compat.check fails on these)

    def public(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "name": self.name,
            "type": self.kind,
            "from": self.version,
            "candidate": self.candidate,
            "reason": self.reason,
            "blocking": self.blocking,
        }

    def line(self) -> str:
        """One line for humans."""
        cand = f" {self.candidate}" if self.candidate else ""
        return f"{self.kind} {self.name}{cand}: {self.reason}"


@dataclass
class PlanFacts:
    """Host facts a driver read while planning; the ones that are set go into the check data."""

    php_version: str = ""
    #: the PHP CLI binary ``php_version`` is of (compat.check reuses the version for the same binary)
    php: str = ""
    core_version: str = ""
    db_version: str = ""
    wp_cli: str = ""
    composer_version: str = ""

    def public(self) -> dict[str, str]:
        """The facts that are set, in field order."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name)}


@dataclass
class UpdatePlan(Generic[S]):
    """What one cms.update would do on one environment.

    ``state`` is what the driver read from the host while planning (typed by the driver:
    ``WpState`` for WordPress, the composer.lock packages for composer); the version lock
    of an environment without updates is written from it.
    """

    driver: str
    state: S
    updates: list[Update] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    installed: list[Installed] = field(default_factory=list)
    facts: PlanFacts = field(default_factory=PlanFacts)
    promote: dict[str, Any] | None = None
    predicted: bool = False

    @property
    def blocking(self) -> list[Skipped]:
        """Skipped candidates the host cannot run."""
        return [s for s in self.skipped if s.blocking]

    def diff(self) -> str:
        """The exact ``from -> to`` list (and skipped candidates) as text."""
        lines = [u.line() for u in self.updates]
        lines += [f"skipped {s.line()}" for s in self.skipped]
        return "\n".join(lines) + ("\n" if lines else "")

    def data(self) -> dict[str, Any]:
        """Check/step data: ``updates`` (exact from -> to), ``skipped``, driver facts."""
        out: dict[str, Any] = {
            "driver": self.driver,
            "updates": [u.public() for u in self.updates],
            "skipped": [s.public() for s in self.skipped],
        }
        out.update(self.facts.public())
        if self.promote is not None:
            out["promote"] = self.promote
            # what will_change(...).schema reads: did the promoted lock's stage change the schema?
            out["schema_changed"] = self.promote.get("schema_changed")
        return out


__all__ = ["ACTION", "Installed", "Offer", "PlanFacts", "Skipped", "Update", "UpdatePlan"]
