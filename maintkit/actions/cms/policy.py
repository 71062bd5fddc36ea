"""Version policy: which offered version (if any) a package may be updated to.

A policy has a level per package kind (``core``, ``plugins``, ``themes``; composer
packages use ``plugins``):

- ``none``: never update;
- ``patch``: only a higher patch release of the same major.minor (``1.4.2 -> 1.4.5``);
- ``minor``: any higher release of the same major (``1.4.2 -> 1.9.0``);
- ``major`` (alias ``all``): any higher release.

Levels compare version components semver-style. For WordPress core this means
``6.1 -> 6.2`` is a *minor* step here (WordPress itself calls it a major release);
``core: patch`` takes only the security releases of the installed branch.

``include`` and ``exclude`` are shell-style patterns on package names (``include``
empty = everything). ``pins`` constrain single packages and replace the level for
them. A pin is a composer version constraint with composer's exact semantics
(``"8.4.*"``, ``"8.4.2"``, ``">=8.4,<8.6"``, ``"^8.4 || ^9.0"``, ``"~8.4.1"``: see
:mod:`maintkit.actions.cms.constraints`). Pre-releases (``-beta``, ``-rc``...) are only taken with
``allow_prerelease``. A policy never downgrades.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from functools import total_ordering
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from maintkit.actions.cms.constraints import ConstraintError, parse_constraints, satisfies

Level = Literal["patch", "minor", "major", "none"]
Security = Literal["off", "report", "force"]
_VERSION_RE = re.compile(r"^[vV]?(?P<nums>\d+(?:\.\d+)*)(?:[-_.+]?(?P<pre>[A-Za-z][0-9A-Za-z.\-]*))?$")
_PRE_ORDER = {"dev": 0, "alpha": 1, "a": 1, "beta": 2, "b": 2, "rc": 3, "pre": 3}


class VersionError(ValueError):
    """A version or constraint string cannot be parsed."""


@total_ordering
@dataclass(frozen=True)
class Version:
    """A parsed version: numeric components plus an optional pre-release tag."""

    parts: tuple[int, ...]
    pre: str | None = None
    text: str = ""

    @classmethod
    def parse(cls, text: str) -> Version:
        """Parse ``1.2``, ``1.2.3``, ``v1.2.3``, ``8.4.0-rc.1``, ``1.0.0.2``; raise VersionError otherwise."""
        match = _VERSION_RE.match(str(text).strip())
        if not match:
            raise VersionError(f"not a version: {text!r}")
        parts = tuple(int(p) for p in match.group("nums").split("."))
        pre = match.group("pre")
        if pre is not None and pre.lower() in ("stable", "final", "ga", "release"):
            pre = None
        return cls(parts, pre.lower() if pre else None, str(text).strip())

    @classmethod
    def try_parse(cls, text: str | None) -> Version | None:
        """Like :meth:`parse` but None for unparseable input (``dev-main``...)."""
        if not text:
            return None
        try:
            return cls.parse(text)
        except VersionError:
            return None

    def _padded(self, n: int = 4) -> tuple[int, ...]:
        return tuple(self.parts) + (0,) * max(0, n - len(self.parts))

    @property
    def major(self) -> int:
        """First component."""
        return self._padded()[0]

    @property
    def minor(self) -> int:
        """Second component (0 when absent)."""
        return self._padded()[1]

    @property
    def is_prerelease(self) -> bool:
        """True for ``-alpha``, ``-beta``, ``-rc``, ``-dev``... versions."""
        return self.pre is not None

    def _key(self) -> tuple[tuple[int, ...], int, tuple[tuple[int, str], ...]]:
        width = max(4, len(self.parts))
        if self.pre is None:
            return (self._padded(width), 9, ())
        tag = re.split(r"[.\-]", self.pre)
        head = re.match(r"[a-z]+", tag[0])
        rank = _PRE_ORDER.get(head.group(0) if head else "", 0)
        rest: list[tuple[int, str]] = []
        for piece in [tag[0][head.end() if head else 0 :], *tag[1:]]:
            if piece:
                rest.append((int(piece), "") if piece.isdigit() else (-1, piece))
        return (self._padded(width), rank, tuple(rest))

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        return self._key() < other._key()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __str__(self) -> str:
        return self.text or ".".join(map(str, self.parts)) + (f"-{self.pre}" if self.pre else "")


def version_key(text: str) -> tuple[int, Version]:
    """Sort key for version strings: parseable versions in order, others first (as 0)."""
    v = Version.try_parse(text)
    return (1, v) if v is not None else (0, Version((0,), None, text))


def within_level(current: Version, candidate: Version, level: Level) -> bool:
    """True when ``candidate`` is newer than ``current`` and the step is allowed by ``level``."""
    if candidate <= current or level == "none":
        return False
    if level == "major":
        return True
    if candidate.major != current.major:
        return False
    if level == "minor":
        return True
    return candidate.minor == current.minor  # patch


def matches_pin(version: Version, pin: str) -> bool:
    """True when ``version`` satisfies ``pin``, a composer constraint (``8.4.*``, ``^8.4 || ^9.0``, ``~8.4.1``,
    ``>=8.4 <8.6``, ``8.4.2``...), with composer's own semantics (:mod:`maintkit.actions.cms.constraints`).

    A version composer cannot read matches no pin. Raises VersionError for a pin composer would refuse.
    """
    try:
        return satisfies(str(version), pin)
    except ConstraintError as exc:
        raise VersionError(f"invalid pin {pin!r}: {exc}") from None


def validate_pin(pin: str) -> str:
    """Raise VersionError when ``pin`` is not a constraint composer accepts."""
    try:
        parse_constraints(pin)
    except ConstraintError as exc:
        raise VersionError(f"invalid pin {pin!r}: {exc}") from None
    return pin


@dataclass(frozen=True)
class SecurityFix:
    """Known vulnerabilities of an installed package: the lowest version fixing them all, and why.

    ``fixed_in`` is None when no fixed release is known; ``reason`` reads ``fixes <title>
    (CVE-...)``.
    """

    fixed_in: str | None
    reason: str


class VersionPolicy(BaseModel):
    """Which updates are allowed. See the module docstring for the rules."""

    model_config = ConfigDict(extra="forbid")

    core: Level = Field("minor", description="WordPress core: patch | minor | major | none")
    plugins: Level = Field("minor", description="Plugins (and composer packages): patch | minor | major | none")
    themes: Level = Field("minor", description="Themes: patch | minor | major | none")
    include: list[str] = Field(default_factory=list, description="Only these package names (shell patterns)")
    exclude: list[str] = Field(default_factory=list, description="Never these package names (shell patterns)")
    pins: dict[str, str] = Field(default_factory=dict, description="name -> '8.4.*' | '8.4.2' | '>=8.4,<8.6'")
    allow_prerelease: bool = Field(False, description="Also take -alpha/-beta/-rc versions")
    security: Security = Field("off", description="Known vulnerabilities: off | report | force (take the fix)")
    #: ``kind:name`` -> the fix of the known vulnerabilities of the installed version (from the feed)
    fixes: dict[str, SecurityFix] = Field(default_factory=dict, exclude=True)

    @field_validator("core", "plugins", "themes", mode="before")
    @classmethod
    def _alias_all(cls, value: object) -> object:
        if value == "all" or value is True:
            return "major"
        if value is False:
            return "none"
        return value

    @field_validator("pins")
    @classmethod
    def _valid_pins(cls, value: dict[str, str]) -> dict[str, str]:
        for name, pin in value.items():
            try:
                validate_pin(str(pin))
            except VersionError as exc:
                raise ValueError(f"pin for {name}: {exc}") from None
        return {k: str(v) for k, v in value.items()}

    def level_for(self, kind: str) -> Level:
        """The level for a package kind (``core``, ``plugin``, ``theme``, ``composer``)."""
        if kind == "core":
            return self.core
        if kind == "theme":
            return self.themes
        return self.plugins

    def in_scope(self, name: str) -> bool:
        """True when include/exclude let ``name`` be considered at all."""
        if any(fnmatch.fnmatchcase(name, pat) for pat in self.exclude):
            return False
        return not self.include or any(fnmatch.fnmatchcase(name, pat) for pat in self.include)

    def pin_for(self, name: str) -> str | None:
        """The pin for ``name``: an exact key first, then the first matching pattern key."""
        if name in self.pins:
            return self.pins[name]
        for pattern, pin in self.pins.items():
            if fnmatch.fnmatchcase(name, pattern):
                return pin
        return None


@dataclass(frozen=True)
class Decision:
    """Outcome of :func:`choose`: the chosen version, or None with the reason.

    ``held_back`` is the newest offered version the policy refused (when it is newer than
    the chosen one), so plans can say what is left for a human.
    """

    version: str | None
    reason: str
    held_back: str | None = None
    #: ``security: fixes <title> (CVE-...)`` when the version was chosen because it fixes a known vulnerability
    security: str | None = None


def choose(policy: VersionPolicy, name: str, kind: str, current: str, offered: Iterable[str]) -> Decision:
    """Pick the version for one package: by level/pin, then (``security``) by known vulnerabilities.

    With ``security: force`` a package whose installed version has a known vulnerability
    takes the lowest offered version that fixes it when the level or pin would stay below
    the fix; ``report`` only says so in the reason. ``exclude`` and level ``none`` still win.
    """
    offered = list(offered)
    decision = choose_by_policy(policy, name, kind, current, offered)
    fix = policy.fixes.get(f"{kind}:{name}") if policy.security != "off" else None
    if fix is None or not policy.in_scope(name):
        return decision
    if policy.level_for(kind) == "none" and policy.pin_for(name) is None:
        return decision
    return _with_security(policy, fix, decision, current, offered)


def _with_security(
    policy: VersionPolicy, fix: SecurityFix, decision: Decision, current: str, offered: list[str]
) -> Decision:
    """Apply ``policy.security`` to the level/pin ``decision`` of a package with a known vulnerability."""
    need = Version.try_parse(fix.fixed_in)
    chosen = Version.try_parse(decision.version)
    if need is None:
        return replace(decision, reason=f"{decision.reason}; security: no fixed release is known for {fix.reason}")
    if chosen is not None and chosen >= need:
        return replace(decision, security=f"security: {fix.reason}")
    cur = Version.try_parse(current)
    fixing = [
        v
        for v in (Version.try_parse(text) for text in set(offered))
        if v is not None and v >= need and (cur is None or v > cur) and (policy.allow_prerelease or not v.is_prerelease)
    ]
    if not fixing:
        note = f"security: {fix.fixed_in} {fix.reason}, no source offers it"
        return replace(decision, reason=f"{decision.reason}; {note}")
    target = min(fixing)
    if policy.security == "report":
        note = f"security: {target} {fix.reason} (security: report does not take it)"
        return replace(decision, reason=f"{decision.reason}; {note}", held_back=decision.held_back or str(target))
    held = Version.try_parse(decision.held_back)
    if held is not None and held > target:
        return Decision(str(target), f"security: {fix.reason}; {decision.reason}", str(held), f"security: {fix.reason}")
    return Decision(str(target), f"security: {fix.reason}", None, f"security: {fix.reason}")


def choose_by_policy(policy: VersionPolicy, name: str, kind: str, current: str, offered: Iterable[str]) -> Decision:
    """Pick the highest offered version the level or pin allows for one package (no security rules).

    ``reason`` explains a ``None`` (excluded, level none, nothing newer, newer versions
    refused by the level or pin...).
    """
    if not policy.in_scope(name):
        return Decision(None, "excluded by policy")
    level = policy.level_for(kind)
    pin = policy.pin_for(name)
    if level == "none" and pin is None:
        return Decision(None, f"policy {kind}: none")
    cur = Version.try_parse(current)
    if cur is None:
        return Decision(None, f"installed version {current!r} is not comparable")
    newer: list[Version] = []
    for text in set(offered):
        v = Version.try_parse(text)
        if v is not None and v > cur:
            newer.append(v)
    if not newer:
        return Decision(None, "up to date")
    allowed = [v for v in newer if policy.allow_prerelease or not v.is_prerelease]
    if pin is not None:
        allowed = [v for v in allowed if matches_pin(v, pin)]
        label = f"pin {pin}"
    else:
        allowed = [v for v in allowed if within_level(cur, v, level)]
        label = f"policy {kind}: {level}"
    best = max(newer)
    if not allowed:
        return Decision(None, f"{best} is available but {label} does not allow it", str(best))
    chosen = max(allowed)
    held = f"{best} is available but {label} does not allow it"
    return Decision(
        str(chosen), f"allowed by {label}" if best == chosen else held, str(best) if best > chosen else None
    )


__all__ = [
    "Decision",
    "Level",
    "Security",
    "SecurityFix",
    "Version",
    "VersionError",
    "VersionPolicy",
    "choose",
    "choose_by_policy",
    "matches_pin",
    "version_key",
    "within_level",
]
