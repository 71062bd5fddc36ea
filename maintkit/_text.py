"""Known secrets and the only way to shorten text: redact first, then cut.

The lowest layer of maintkit (it imports nothing from the package). It owns:

- the **process-wide registry of known secret values** (:func:`register_secret`). Every
  value a template reads from ``secrets.*``, every pydantic ``SecretStr`` an audit
  redactor sees and every value given to ``Redactor.add_secret`` lands here, before
  anything can print or write it;
- :func:`mask_known`: replaces every registered value by ``***`` wherever it occurs, and a
  piece (8 characters or more) of one at the very start or end of a text (what a cut made
  elsewhere would leave behind);
- :func:`redact_text`: :func:`mask_known` plus the text rules (``password=...``,
  ``--token ...``, ``https://user:PASSWORD@host``, ``Bearer <token>``);
- :func:`tail` and :func:`head`, the only truncation helpers for command output and
  command labels. They redact the whole text *first* and cut afterwards, so a secret that
  straddles the cut can never survive as a fragment.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from functools import lru_cache

__all__ = [
    "CUT",
    "DEFAULT_KEY_PATTERN",
    "MASK",
    "forget_secrets",
    "head",
    "known_secrets",
    "mask_known",
    "redact_text",
    "register_secret",
    "registry_generation",
    "registry_version",
    "tail",
]

#: What a redacted value is replaced with.
MASK = "***"
#: Marks the side where :func:`tail` / :func:`head` cut text off.
CUT = "…"
#: Secret values shorter than this are ignored (too likely to mask ordinary words).
MIN_SECRET = 4
#: Pieces of a secret at least this long are masked at the start or end of a text.
MIN_FRAGMENT = 8

DEFAULT_KEY_PATTERN = (
    r"(?i)(pass(word|phrase)?|passwd|token|secret|credentials?|auth(orization)?|cookie"
    r"|(api|private|secret|access|signing|encryption|master)[_-]?key)"
)

_CAMEL = re.compile(r"([a-z0-9])([A-Z])")
_NON_WORD = re.compile(r"[^A-Za-z0-9]+")
# "key=value", "key: value", "'key' => 'value'", JSON "key":"value"
_KEY_SEP = re.compile(r"(?<![\w.])(?P<key>[A-Za-z_][\w.-]*)(?P<q>[\"']?)[ \t]*(?:=>|=|:)[ \t]*")
# "--password value" (command-line option followed by a separate value)
_OPT_SPACE = re.compile(r"(?<![\w-])--(?P<key>[A-Za-z][\w-]*)[ \t]+(?=[^\s-])")
_VALUE = re.compile(r"\"(?:[^\"\\\n]|\\.)*\"|'[^'\n]*'|[^\s\"']+")
# scheme://user:password@host
_URL_PASSWORD = re.compile(r"(?P<pre>\b[A-Za-z][A-Za-z0-9+.-]*://[^\s:/@]*:)(?P<pw>[^\s@/]+)(?=@)")
# Authorization: Bearer <token> / Basic <b64> / token <token>
_BEARER = re.compile(
    r"(?i)\b(?P<pre>(?:bearer|basic|token)[ \t]+)(?P<val>(?=[A-Za-z0-9._~+/=-]*[0-9._~+/=])[A-Za-z0-9._~+/=-]{8,})"
)
# every text rule needs one of these: "=", ":", an option "--x", or bearer/basic/token
_MAYBE_PAIR = re.compile(r"[=:]|--|(?i:bearer|basic|token)")
_KEEP_VALUES = frozenset({"", "null", "none", "true", "false", "~", MASK})


# --------------------------------------------------------------------------- the registry


class _Registry:
    """A thread-safe set of secret values with one compiled pattern (longest first)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.values: frozenset[str] = frozenset()
        self.pattern: re.Pattern[str] | None = None
        #: every 8-character piece of every value (a quick test for pieces at the edges)
        self.pieces: frozenset[str] = frozenset()
        self.generation = 0
        #: bumped after every change has been made in full (a value added, the registry emptied)
        self.version = 0

    def add(self, value: str) -> None:
        with self.lock:
            if value in self.values:
                return
            values = self.values | {value}
            ordered = sorted(values, key=lambda s: (-len(s), s))
            self.pieces = self.pieces | {value[i : i + MIN_FRAGMENT] for i in range(len(value) - MIN_FRAGMENT + 1)}
            self.pattern = re.compile("|".join(re.escape(s) for s in ordered))
            self.values = values
            self.version += 1

    def clear(self) -> None:
        with self.lock:
            self.values = frozenset()
            self.pieces = frozenset()
            self.pattern = None
            self.generation += 1
            self.version += 1


_REGISTRY = _Registry()


def register_secret(value: object) -> None:
    """Remember a secret value process-wide; every later :func:`mask_known` masks it.

    Values that are not strings, or shorter than 4 characters, are ignored.
    """
    if isinstance(value, str) and len(value) >= MIN_SECRET:
        _REGISTRY.add(value)


def known_secrets() -> frozenset[str]:
    """The registered secret values."""
    return _REGISTRY.values


def registry_generation() -> int:
    """A number that changes whenever the registry is emptied (see :func:`forget_secrets`)."""
    return _REGISTRY.generation


def registry_version() -> int:
    """A number that changes after every change of the registry: what :func:`mask_known` gives
    for a text is the same for as long as this number is (a memo of it is kept per number)."""
    return _REGISTRY.version


def forget_secrets() -> None:
    """Empty the registry. Only for tests that need a clean process between cases."""
    _REGISTRY.clear()


# --------------------------------------------------------------------------- masking


def mask_known(text: str) -> str:
    """``text`` with every registered secret replaced by ``***``.

    Also masks a piece of a secret of 8 characters or more at the very start of ``text``
    (the end of a secret) or at its very end (the beginning of one): what remains when
    something upstream cut through a secret.
    """
    if not text:
        return text
    pattern, values = _REGISTRY.pattern, _REGISTRY.values
    if pattern is None:
        return text
    # Repeat: a replacement can join two halves into a new occurrence. Every pass
    # shortens the text (secrets are longer than the mask), so this ends.
    while True:
        new = pattern.sub(MASK, text)
        if new == text:
            break
        text = new
    pieces = _REGISTRY.pieces
    if text[:MIN_FRAGMENT] in pieces:
        lead = max((_leading_piece(text, s) for s in values if len(s) > MIN_FRAGMENT), default=0)
        if lead:
            text = MASK + text[lead:]
    if text[-MIN_FRAGMENT:] in pieces:
        trail = max((_trailing_piece(text, s) for s in values if len(s) > MIN_FRAGMENT), default=0)
        if trail:
            text = text[:-trail] + MASK
    return text


def _leading_piece(text: str, secret: str) -> int:
    """Length of the longest piece (>= 8) of ``secret`` that ``text`` starts with and that
    runs to the end of ``secret`` or fills all of ``text``; 0 when there is none."""
    probe = text[:MIN_FRAGMENT]
    best = 0
    i = secret.find(probe)
    while i != -1:
        rest = secret[i:]
        n = _common_prefix(text, rest)
        if n >= MIN_FRAGMENT and (n == len(rest) or n == len(text)):
            best = max(best, n)
        i = secret.find(probe, i + 1)
    return best


def _trailing_piece(text: str, secret: str) -> int:
    """Length of the longest piece (>= 8) of ``secret`` that ``text`` ends with and that
    starts at the beginning of ``secret`` or fills all of ``text``: the mirror image of
    :func:`_leading_piece`."""
    return _leading_piece(text[::-1], secret[::-1])


def _common_prefix(a: str, b: str) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


# --------------------------------------------------------------------------- text rules


def key_words(key: str) -> list[str]:
    """``dbPassword`` / ``DB_PASSWORD`` / ``db-password`` -> ``["db", "password"]``."""
    return [w for w in _NON_WORD.split(_CAMEL.sub(r"\1_\2", key).lower()) if w]


def key_is_sensitive(key: str, key_re: re.Pattern[str]) -> bool:
    """Whether the last word (or last two words joined by ``_``) of ``key`` matches ``key_re``."""
    words = key_words(key)
    if not words:
        return False
    candidates = [words[-1]]
    if len(words) > 1:
        candidates.append(f"{words[-2]}_{words[-1]}")
    return any(
        key_re.fullmatch(cand) is not None or (cand.endswith("s") and key_re.fullmatch(cand[:-1]) is not None)
        for cand in candidates
    )


_DEFAULT_KEY_RE = re.compile(DEFAULT_KEY_PATTERN)


@lru_cache(maxsize=4096)
def _default_sensitive(key: str) -> bool:
    return key_is_sensitive(key, _DEFAULT_KEY_RE)


def redact_text(text: str, is_sensitive: Callable[[str], bool] | None = None) -> str:
    """Mask known secrets (:func:`mask_known`) and ``key=value`` style secrets in ``text``.

    ``is_sensitive`` decides which key names hold secrets (default: the built-in pattern).
    """
    if not text:
        return text
    text = mask_known(text)
    if _MAYBE_PAIR.search(text) is None:  # fast path: no separator a rule below could use
        return text
    sensitive = is_sensitive or _default_sensitive
    text = _BEARER.sub(lambda m: m.group("pre") + MASK, text)
    text = _URL_PASSWORD.sub(lambda m: m.group("pre") + MASK, text)
    text = _mask_pairs(text, _KEY_SEP, sensitive)
    return _mask_pairs(text, _OPT_SPACE, sensitive)


def _mask_pairs(text: str, key_re: re.Pattern[str], sensitive: Callable[[str], bool]) -> str:
    out: list[str] = []
    pos = 0
    while (m := key_re.search(text, pos)) is not None:
        out.append(text[pos : m.end()])
        pos = m.end()
        if not sensitive(m.group("key")):
            continue
        value = _VALUE.match(text, m.end())
        if value is None:
            continue
        out.append(_mask_value(value.group()))
        pos = value.end()
    out.append(text[pos:])
    return "".join(out)


def _mask_value(value: str) -> str:
    quote = value[0] if value[:1] in ("'", '"') and len(value) >= 2 and value[-1] == value[0] else ""
    inner = value[1:-1] if quote else value
    if inner.lower() in _KEEP_VALUES or inner.startswith(("{{", "$", "%(")):
        return value
    return f"{quote}{MASK}{quote}"


# --------------------------------------------------------------------------- cutting


def tail(text: str | None, n: int = 600) -> str:
    """The last ``n`` characters of ``text`` (stripped), redacted *before* the cut.

    A cut is marked with a leading ``…`` (included in the ``n`` characters).
    """
    clean = redact_text((text or "").strip())
    if len(clean) <= n:
        return clean
    if n <= 1:
        return clean[len(clean) - max(n, 0) :]
    return CUT + clean[len(clean) - n + 1 :]


def head(text: str | None, n: int = 200) -> str:
    """The first ``n`` characters of ``text``, redacted *before* the cut.

    A cut is marked with a trailing ``…`` (included in the ``n`` characters).
    """
    clean = redact_text(text or "")
    if len(clean) <= n:
        return clean
    if n <= 1:
        return clean[: max(n, 0)]
    return clean[: n - 1] + CUT
