"""Composer version constraints, with composer's own semantics.

A port of composer/semver (``VersionParser::normalize``, ``parseConstraints``,
``Semver::satisfies``; MIT licensed, Copyright (c) 2015 Composer) and of PHP's
``version_compare``, which composer uses to compare normalized versions. Every form composer
accepts works the same here:

- ``^1.2.3`` (``>=1.2.3 <2.0.0``; ``^0.2`` is ``>=0.2 <0.3``; ``^0.0.3`` only ``0.0.3``),
- ``~1.2`` (``>=1.2 <2.0``) and ``~1.2.3`` (``>=1.2.3 <1.3``),
- wildcards ``1.2.*``, ``1.2.x``, ``*``; hyphen ranges ``1.0 - 2.0`` (the upper end
  partial: ``< 2.1``),
- comparisons ``>=``, ``>``, ``<=``, ``<``, ``=``, ``==``, ``!=``, ``<>``,
- AND with a comma or a space (``>=1.2, <1.5``), OR with ``||`` (or ``|``), AND binding
  tighter,
- stability suffixes and flags (``-beta2``, ``RC1``, ``@dev``, ``@stable``), a leading ``v``,
  build metadata (``+build``), branch names (``dev-main``, ``2.x-dev``).

``satisfies("8.4.2", "^8.4 || ^9.0")`` is True; ``satisfies("0.0.5", "^0.0.3")`` is False.
The tests check a table of composer/semver's own test cases, and compare every case with
composer itself when PHP and composer's semver library are installed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "Constraint",
    "ConstraintError",
    "MatchAll",
    "Multi",
    "normalize",
    "parse_constraints",
    "parse_stability",
    "php_version_compare",
    "satisfies",
]

_FLAGS = re.ASCII
_MODIFIER = r"[._-]?(?:(stable|beta|b|RC|alpha|a|patch|pl|p)((?:[.-]?\d+)*+)?)?([.-]?dev)?"
_STABILITIES = r"stable|RC|beta|alpha|dev"
_VERSION = r"v?(\d++)(?:\.(\d++))?(?:\.(\d++))?(?:\.(\d++))?(?:" + _MODIFIER + r"|\.([xX*][.-]?dev))(?:\+[^\s]+)?"

_ALIAS_RE = re.compile(r"^([^,\s]++) ++as ++([^,\s]++)$", _FLAGS)
_FLAG_RE = re.compile(r"@(?:" + _STABILITIES + r")$", _FLAGS | re.I)
_BUILD_RE = re.compile(r"^([^,\s+]++)\+[^\s]++$", _FLAGS)
_CLASSIC_RE = re.compile(r"^v?(\d{1,5}+)(\.\d++)?(\.\d++)?(\.\d++)?" + _MODIFIER + "$", _FLAGS | re.I)
_DATE_RE = re.compile(r"^v?(\d{4}(?:[.:-]?\d{2}){1,6}(?:[.:-]?\d{1,3}){0,2})" + _MODIFIER + "$", _FLAGS | re.I)
_DEV_BRANCH_RE = re.compile(r"(.*?)[.-]?dev$", _FLAGS | re.I)
_BRANCH_RE = re.compile(r"^v?(\d++)(\.(?:\d++|[xX*]))?(\.(?:\d++|[xX*]))?(\.(?:\d++|[xX*]))?$", _FLAGS | re.I)
_STABILITY_RE = re.compile(_MODIFIER + r"(?:\+.*)?$", _FLAGS | re.I)

_OR_SPLIT = re.compile(r"\s*\|\|?\s*", _FLAGS)
# composer: (?<!^|as|[=>< ,]) *(?<!-)[, ](?!-) *(?!,|as|$)  (Python needs fixed-width look-behinds)
_AND_SPLIT = re.compile(r"(?<!^)(?<!as)(?<![=>< ,]) *(?<!-)[, ](?!-) *(?!,|as|$)", _FLAGS)
_C_FLAG_RE = re.compile(r"^([^,\s]*?)@(" + _STABILITIES + r")$", _FLAGS | re.I)
_C_REF_RE = re.compile(r"^(dev-[^,\s@]+?|[^,\s@]+?\.x-dev)#.+$", _FLAGS | re.I)
_C_ANY_RE = re.compile(r"^(v)?[xX*](\.[xX*])*$", _FLAGS | re.I)
_C_TILDE_RE = re.compile(r"^~>?" + _VERSION + "$", _FLAGS | re.I)
_C_CARET_RE = re.compile(r"^\^" + _VERSION + "($)", _FLAGS | re.I)
_C_XRANGE_RE = re.compile(r"^v?(\d++)(?:\.(\d++))?(?:\.(\d++))?(?:\.[xX*])++$", _FLAGS)
_C_HYPHEN_RE = re.compile(r"^(?P<low>" + _VERSION + r") +- +(?P<high>" + _VERSION + ")($)", _FLAGS | re.I)
_C_BASIC_RE = re.compile(r"^(<>|!=|>=?|<=?|==?)?\s*(.*)", _FLAGS)
_C_DEVSUFFIX_RE = re.compile(r"^[0-9a-zA-Z-./]+$", _FLAGS)
_C_HAS_MODIFIER_RE = re.compile("-" + _MODIFIER + "$", _FLAGS)

_OPS = {"=": "==", "==": "==", "<": "<", "<=": "<=", ">": ">", ">=": ">=", "<>": "!=", "!=": "!="}


class ConstraintError(ValueError):
    """A version or a constraint composer would not accept either."""


def _groups(match: re.Match[str]) -> list[str]:
    """PHP's ``$matches``: index 0 the whole match, unmatched groups as empty strings."""
    return [match.group(0), *(g or "" for g in match.groups())]


def _expand_stability(word: str) -> str:
    word = word.lower()
    return {"a": "alpha", "b": "beta", "p": "patch", "pl": "patch", "rc": "RC"}.get(word, word)


def parse_stability(version: str) -> str:
    """``stable``, ``RC``, ``beta``, ``alpha`` or ``dev`` (composer's ``parseStability``)."""
    version = re.sub(r"#.+$", "", version)
    if version.startswith("dev-") or version.endswith("-dev"):
        return "dev"
    match = _STABILITY_RE.search(version.lower())
    groups = _groups(match) if match else ["", "", "", ""]
    if groups[3]:
        return "dev"
    word = groups[1]
    if word in ("beta", "b"):
        return "beta"
    if word in ("alpha", "a"):
        return "alpha"
    return "RC" if word == "rc" else "stable"


def normalize_branch(name: str) -> str:
    """``2.1.x`` -> ``2.1.9999999.9999999-dev``; any other name -> ``dev-NAME``."""
    name = name.strip()
    match = _BRANCH_RE.match(name)
    if not match:
        return "dev-" + name
    groups = [match.group(i) for i in range(1, 5)]
    version = groups[0] + "".join(g.replace("*", "x").replace("X", "x") if g is not None else ".x" for g in groups[1:])
    return version.replace("x", "9999999") + "-dev"


def normalize(version: str) -> str:
    """Composer's normalized form: ``v1.2`` -> ``1.2.0.0``, ``1.0.0-rc1`` -> ``1.0.0.0-RC1``.

    Raises ConstraintError for what composer rejects (``1.0.0-meh``, ``1.0.0.0.0``, ``~1``...).
    """
    version = str(version).strip()
    original = version
    alias = _ALIAS_RE.match(version)
    if alias:
        version = alias.group(1)
    flag = _FLAG_RE.search(version)
    if flag:
        version = version[: len(version) - len(flag.group(0))]
    if version in ("master", "trunk", "default"):
        version = "dev-" + version
    if version[:4].lower() == "dev-":
        return "dev-" + version[4:]
    build = _BUILD_RE.match(version)
    if build:
        version = build.group(1)
    found = _normalize_numbered(version)
    if found is not None:
        return found
    dev = _DEV_BRANCH_RE.match(version)
    if dev:
        branch = normalize_branch(dev.group(1))
        if "dev-" not in branch:
            return branch
    raise ConstraintError(f'Invalid version string "{original}"')


def _normalize_numbered(version: str) -> str | None:
    """Classical (``1.2.3.4-beta2``) and date (``2010-01-02``) versions; None for anything else."""
    match = _CLASSIC_RE.match(version)
    if match:
        m = _groups(match)
        out = m[1] + (m[2] or ".0") + (m[3] or ".0") + (m[4] or ".0")
        index = 5
    else:
        match = _DATE_RE.match(version)
        if not match:
            return None
        m = _groups(match)
        out = re.sub(r"\D", ".", m[1], flags=_FLAGS)
        index = 2
    if m[index]:
        if m[index] == "stable":
            return out
        out += "-" + _expand_stability(m[index]) + m[index + 1].lstrip(".-")
    if m[index + 2]:
        out += "-dev"
    return out


# --------------------------------------------------------------------------- PHP's version_compare
# PHP's special forms, matched as prefixes in this order ("patch" is "p"); anything else ranks -1
_SPECIAL_FORMS = ("dev", "alpha", "a", "beta", "b", "RC", "rc", "#", "pl", "p")
_SPECIAL = tuple(zip(_SPECIAL_FORMS, (0, 1, 1, 2, 2, 3, 3, 4, 5, 5), strict=True))


def _digit(ch: str) -> bool:
    return "0" <= ch[:1] <= "9" and ch != ""


def _canonicalize(version: str) -> str:
    """PHP's ``php_canonicalize_version``: ``1.0rc1`` -> ``1.0.rc.1``, ``-_+`` -> ``.``."""
    out = [version[0]]
    prev = version[0]
    for ch in version[1:]:
        digit, prev_digit = _digit(ch), _digit(prev)
        if ch in "-_+":
            if out[-1] != ".":
                out.append(".")
        elif (prev != "." and not prev_digit and digit) or (prev_digit and ch != "." and not digit):
            if out[-1] != ".":
                out.append(".")
            out.append(ch)
        elif not (ch.isascii() and ch.isalnum()):
            if out[-1] != ".":
                out.append(".")
        else:
            out.append(ch)
        prev = ch
    return "".join(out)


def _special_order(form: str) -> int:
    for name, order in _SPECIAL:
        if form.startswith(name):
            return order
    return -1


def _leading_int(text: str) -> int:
    digits = re.match(r"[0-9]*", text)
    return int(digits.group(0)) if digits and digits.group(0) else 0


def _compare_part(p1: str, p2: str) -> int:
    d1, d2 = _digit(p1), _digit(p2)
    if d1 and d2:
        a, b = _leading_int(p1), _leading_int(p2)
        return (a > b) - (a < b)
    o1, o2 = _special_order("#N#" if d1 else p1), _special_order("#N#" if d2 else p2)
    return (o1 > o2) - (o1 < o2)


def php_version_compare(v1: str, v2: str) -> int:
    """PHP's ``version_compare($v1, $v2)``: -1, 0 or 1 (element by element, as PHP's C code walks it)."""
    if not v1 or not v2:
        return 0 if not v1 and not v2 else (1 if v1 else -1)
    p1 = v1 if v1[0] == "#" else _canonicalize(v1)
    p2 = v2 if v2[0] == "#" else _canonicalize(v2)
    more1 = more2 = True
    compare = 0
    while p1 and p2 and more1 and more2:
        e1, sep1, rest1 = p1.partition(".")
        e2, sep2, rest2 = p2.partition(".")
        more1, more2 = bool(sep1), bool(sep2)
        compare = _compare_part(e1, e2)
        if compare:
            return compare
        p1 = rest1 if more1 else p1
        p2 = rest2 if more2 else p2
    if more1:
        return 1 if _digit(p1) else php_version_compare(p1, "#N#")
    if more2:
        return -1 if _digit(p2) else php_version_compare("#N#", p2)
    return 0


def _compare(a: str, b: str, op: str) -> bool:
    """composer's ``Constraint::versionCompare`` (branches never match a numbered constraint)."""
    a_branch, b_branch = a.startswith("dev-"), b.startswith("dev-")
    if op == "!=" and (a_branch or b_branch):
        return a != b
    if a_branch and b_branch:
        return op == "==" and a == b
    if a_branch or b_branch:
        return False
    cmp = php_version_compare(a, b)
    return {"==": cmp == 0, "!=": cmp != 0, "<": cmp < 0, "<=": cmp <= 0, ">": cmp > 0, ">=": cmp >= 0}[op]


# --------------------------------------------------------------------------- constraint objects
@dataclass(frozen=True)
class Constraint:
    """One comparison, ``>= 1.2.0.0-dev``, on a normalized version."""

    op: str
    version: str

    def matches(self, version: str) -> bool:
        """True when the normalized ``version`` satisfies this comparison."""
        if self.op == "==":
            return _compare(self.version, version, "==")
        return _compare(version, self.version, self.op)

    def __str__(self) -> str:
        return f"{self.op} {self.version}"


@dataclass(frozen=True)
class MatchAll:
    """``*``: every version."""

    def matches(self, version: str) -> bool:
        """Always True."""
        return True

    def __str__(self) -> str:
        return "*"


@dataclass(frozen=True)
class Multi:
    """Constraints joined by AND (``conjunctive``) or OR."""

    parts: tuple[Constraint | MatchAll | Multi, ...]
    conjunctive: bool = True

    def matches(self, version: str) -> bool:
        """True when all (AND) or any (OR) of the parts match."""
        results = (part.matches(version) for part in self.parts)
        return all(results) if self.conjunctive else any(results)

    def __str__(self) -> str:
        return "[" + (" " if self.conjunctive else " || ").join(map(str, self.parts)) + "]"


Parsed = Constraint | MatchAll | Multi


def parse_constraints(text: str) -> Parsed:
    """Parse a composer constraint string; raise ConstraintError where composer fails too."""
    groups: list[Parsed] = []
    for or_part in _OR_SPLIT.split(str(text).strip()):
        and_parts = _AND_SPLIT.split(or_part)
        items = [c for part in and_parts for c in _parse_one(part)]
        groups.append(items[0] if len(items) == 1 else Multi(tuple(items)))
    if len(groups) == 1:
        return groups[0]
    return _merge_contiguous(groups)


def _merge_contiguous(groups: list[Parsed]) -> Parsed:
    """composer's ``MultiConstraint::create``: ``[>= 1 < 2] || [>= 2 < 3]`` -> ``[>= 1 < 3]``."""
    merged: list[Parsed] = []
    left = groups[0]
    optimized = False
    for right in groups[1:]:
        if _is_range(left) and _is_range(right):
            assert isinstance(left, Multi) and isinstance(right, Multi)
            if str(left.parts[1])[2:] == str(right.parts[0])[3:]:
                optimized = True
                left = Multi((left.parts[0], right.parts[1]))
                continue
        merged.append(left)
        left = right
    if not optimized:
        return Multi(tuple(groups), conjunctive=False)
    merged.append(left)
    return merged[0] if len(merged) == 1 else Multi(tuple(merged), conjunctive=False)


def _is_range(item: Parsed) -> bool:
    return (
        isinstance(item, Multi)
        and item.conjunctive
        and len(item.parts) == 2
        and str(item.parts[0]).startswith(">=")
        and str(item.parts[1]).startswith("<")
    )


def _parse_one(constraint: str) -> list[Parsed]:
    """composer's ``parseConstraint``: one AND element, as one or two comparisons."""
    alias = _ALIAS_RE.match(constraint)
    if alias:
        constraint = alias.group(1)
    modifier = ""
    flag = _C_FLAG_RE.match(constraint)
    if flag:
        constraint = flag.group(1) or "*"
        if flag.group(2) != "stable":
            modifier = flag.group(2)
    ref = _C_REF_RE.match(constraint)
    if ref:
        constraint = ref.group(1)
    anything = _C_ANY_RE.match(constraint)
    if anything:
        if anything.group(1) or anything.group(2):
            return [Constraint(">=", "0.0.0.0-dev")]
        return [MatchAll()]
    for parser in (_tilde, _caret, _x_range, _hyphen):
        found = parser(constraint)
        if found is not None:
            return found
    return [_basic(constraint, modifier)]


def _bump(m: list[str], position: int, increment: int = 0) -> str:
    """composer's ``manipulateVersionString``: zero what follows ``position``, add ``increment`` there."""
    parts = list(m[:5])
    for i in range(4, 0, -1):
        if i > position:
            parts[i] = "0"
        elif i == position and increment:
            parts[i] = str(int(parts[i] or "0") + increment)
    return ".".join(parts[1:5])


def _stable_suffix(m: list[str], first: int) -> str:
    """``-dev`` unless the version names a stability (groups ``first``, ``first+2``, ``first+3``)."""
    return "" if (m[first] or m[first + 2] or m[first + 3]) else "-dev"


def _tilde(constraint: str) -> list[Parsed] | None:
    match = _C_TILDE_RE.match(constraint)
    if not match:
        return None
    if constraint.startswith("~>"):
        raise ConstraintError(
            f'Could not parse version constraint {constraint}: Invalid operator "~>", '
            'you probably meant to use the "~" operator'
        )
    m = _groups(match)
    position = next((i for i in (4, 3, 2) if m[i] != ""), 1)
    if m[8]:
        position += 1
    low = normalize((constraint + _stable_suffix(m, 5))[1:])
    high = _bump(m, max(1, position - 1), 1) + "-dev"
    return [Constraint(">=", low), Constraint("<", high)]


def _caret(constraint: str) -> list[Parsed] | None:
    match = _C_CARET_RE.match(constraint)
    if not match:
        return None
    m = _groups(match)
    if m[1] != "0" or m[2] == "":
        position = 1
    elif m[2] != "0" or m[3] == "":
        position = 2
    else:
        position = 3
    low = normalize((constraint + _stable_suffix(m, 5))[1:])
    return [Constraint(">=", low), Constraint("<", _bump(m, position, 1) + "-dev")]


def _x_range(constraint: str) -> list[Parsed] | None:
    match = _C_XRANGE_RE.match(constraint)
    if not match:
        return None
    m = [*_groups(match), ""]
    position = 3 if m[3] else (2 if m[2] else 1)
    low, high = _bump(m, position) + "-dev", _bump(m, position, 1) + "-dev"
    if low == "0.0.0.0-dev":
        return [Constraint("<", high)]
    return [Constraint(">=", low), Constraint("<", high)]


def _php_empty(value: str) -> bool:
    return value == ""


def _hyphen(constraint: str) -> list[Parsed] | None:
    match = _C_HYPHEN_RE.match(constraint)
    if not match:
        return None
    m = _groups(match)
    low = Constraint(">=", normalize(match.group("low")) + _stable_suffix(m, 6))
    exact = (not _php_empty(m[12]) and not _php_empty(m[13])) or bool(m[15] or m[17] or m[18])
    if exact:
        return [low, Constraint("<=", normalize(match.group("high")))]
    normalize(match.group("high"))
    high_match = ["", m[11], m[12], m[13], m[14]]
    high = _bump(high_match, 1 if _php_empty(m[12]) else 2, 1) + "-dev"
    return [low, Constraint("<", high)]


def _basic(constraint: str, modifier: str) -> Parsed:
    """A comparison (``>=1.2``, ``!=1.3.0``, ``1.2.3``, ``dev-main``); composer's wording on failure."""
    match = _C_BASIC_RE.match(constraint)
    assert match is not None  # the pattern matches every string
    op_text, text = match.group(1) or "", match.group(2)
    try:
        try:
            version = normalize(text)
        except ConstraintError:
            if not (text.endswith("-dev") and _C_DEVSUFFIX_RE.match(text)):
                raise
            version = normalize("dev-" + text[:-4])
    except ConstraintError as exc:
        raise ConstraintError(f"Could not parse version constraint {constraint}: {exc}") from None
    op = op_text or "="
    if op not in ("==", "=") and modifier and parse_stability(version) == "stable":
        version += "-" + modifier
    elif op in ("<", ">=") and not _C_HAS_MODIFIER_RE.search(text.lower()) and not text.startswith("dev-"):
        version += "-dev"
    return Constraint(_OPS[op], version)


def satisfies(version: str, constraints: str | Parsed) -> bool:
    """composer's ``Semver::satisfies``; a version composer cannot read satisfies nothing.

    Raises ConstraintError for a constraint composer cannot parse.
    """
    parsed = parse_constraints(constraints) if isinstance(constraints, str) else constraints
    try:
        normalized = normalize(version)
    except ConstraintError:
        return False
    return parsed.matches(normalized)
