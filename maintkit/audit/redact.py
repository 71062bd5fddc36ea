"""The Redactor: masks secrets in events, summaries, error messages and command lines.

The rules themselves (the process-wide registry of known values, sensitive key names,
``key=value`` secrets in text) live in :mod:`maintkit._text`; this module applies them to
nested data and learns the values of pydantic secret types it meets.
"""

from __future__ import annotations

import os
import re
import sys
import threading
from collections.abc import Iterable, Mapping, MutableMapping
from typing import Any

from maintkit._text import DEFAULT_KEY_PATTERN, MASK, key_is_sensitive, mask_known, redact_text, register_secret
from maintkit._text import registry_generation as _registry_generation
from maintkit._text import registry_version as _registry_version

__all__ = ["MASK", "EventDict", "Redactor", "is_secret_type"]

EventDict = MutableMapping[str, Any]

_DEFAULT_KEY_PATTERN = DEFAULT_KEY_PATTERN

_SECRET_TYPES: tuple[type, ...] | None = None
#: values that hold no secret type and no text: every walk returns them as they are
_ATOMS = frozenset({int, float, bool, type(None)})
#: at most this many mapping keys are remembered masked (per registry version)
_KEY_MEMO = 4096


def is_secret_type(obj: object) -> bool:
    """True for pydantic SecretStr/SecretBytes (without importing pydantic).

    The types are looked up once: ``pydantic.SecretStr`` goes through pydantic's lazy
    module ``__getattr__``, which made this the hottest line of a run.
    """
    global _SECRET_TYPES
    if _SECRET_TYPES is None:
        pyd = sys.modules.get("pydantic")
        if pyd is None:
            return False
        _SECRET_TYPES = (pyd.SecretStr, pyd.SecretBytes)
    return isinstance(obj, _SECRET_TYPES)


class Redactor:
    """Removes secrets from events, summaries, error messages and command lines.

    Three rules, applied before anything is written or shown:

    1. **Known secret values** (``secrets``, :meth:`add_secret`, and the value of every
       pydantic ``SecretStr``/``SecretBytes`` seen) are replaced by ``***`` wherever they
       occur inside any string, longest first. Values shorter than 4 characters are ignored.
       They are registered process-wide (:mod:`maintkit._text`), and a piece of 8 or more
       characters of one at the very start or end of a string is masked too.
    2. **Sensitive key names**: a mapping value whose key *ends* in a sensitive word is
       masked. The key is split into words (``_``, ``-``, ``.``, spaces, camelCase) and
       ``key_pattern`` must match the whole last word or the last two words joined by
       ``_`` (a trailing plural ``s`` is ignored). So ``password``, ``db_password``,
       ``CLOUDFLARE_TOKEN``, ``api_key``, ``apiKey`` and ``secret`` are masked, while
       ``key_file``, ``host_key_policy``, ``password_file`` and ``primary_key_count`` are
       not. ``None`` and booleans are kept (they reveal nothing), containers keep their
       shape with every leaf masked.
    3. **Secrets in text**: ``password=...``, ``token: ...``, ``'db_password' => '...'``,
       ``--password ...``, ``https://user:PASSWORD@host`` and ``Bearer <token>`` have the
       value masked. Template references (``{{ secrets.X }}``, ``$VAR``) are left alone.
    """

    def __init__(self, secrets: Iterable[str] = (), key_pattern: str = _DEFAULT_KEY_PATTERN) -> None:
        self._key_re = re.compile(key_pattern)
        self._lock = threading.Lock()
        self._secrets: set[str] = set()
        self._generation = _registry_generation()
        self._key_cache: dict[str, bool] = {}
        #: mapping keys as masked under one registry version: ``(version, {key: masked})``
        self._masked_keys: tuple[int, dict[str, str]] = (-1, {})
        for value in secrets:
            self.add_secret(value)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Redactor:
        """A redactor that knows the values of sensitive environment variables.

        Variables whose *names* are sensitive by rule 2 (``DB_PASSWORD``, ``CF_API_TOKEN``...)
        and ``MAINT_AUDIT_KEY``. Meant for CLI output and error messages.
        """
        env = os.environ if environ is None else environ
        red = cls()
        for name, value in env.items():
            if name == "MAINT_AUDIT_KEY" or red.is_sensitive_key(name):
                red.add_secret(value)
        return red

    # ---- configuration ------------------------------------------------------
    def add_secret(self, value: str) -> None:
        """Remember a secret value; it is masked wherever it appears. Ignores values under 4 characters.

        The value is also registered process-wide (:func:`maintkit._text.register_secret`), so
        error messages, truncated command output and CLI output mask it too.
        """
        if not isinstance(value, str) or len(value) < 4:
            return
        with self._lock:
            self._secrets.add(value)
        register_secret(value)

    def is_sensitive_key(self, key: str) -> bool:
        """Whether a mapping key (or ``key=value`` name) names a secret (see rule 2)."""
        cached = self._key_cache.get(key)
        if cached is None:
            cached = self._key_cache[key] = key_is_sensitive(key, self._key_re)
        return cached

    # ---- redaction ----------------------------------------------------------
    def learn(self, obj: Any) -> None:
        """Remember the values of every SecretStr/SecretBytes inside ``obj`` as known secrets."""
        kind = type(obj)
        if kind is str or kind in _ATOMS:
            return
        if kind is dict or isinstance(obj, Mapping):  # dict first: the abc check is slower
            for v in obj.values():
                self.learn(v)
        elif is_secret_type(obj):
            value = obj.get_secret_value()
            if isinstance(value, bytes):
                try:
                    value = value.decode("utf-8")
                except UnicodeDecodeError:
                    return
            self.add_secret(value)
        elif isinstance(obj, list | tuple | set | frozenset):
            for v in obj:
                self.learn(v)

    def redact(self, obj: Any) -> Any:
        """A copy of ``obj`` with secrets masked (dicts, lists, tuples, strings, SecretStr).

        Other values (numbers, None, arbitrary objects) are returned as they are.
        """
        self.learn(obj)
        return self._redact(obj)

    def mask(self, obj: Any) -> Any:
        """:meth:`redact` without learning first: for data whose secrets were learned already.

        What :func:`~maintkit.audit.jsonable.jsonable` made of learned data is such data (its
        SecretStr/SecretBytes are ``***`` by then, so learning again would find nothing).
        """
        return self._redact(obj)

    def redact_text(self, text: str) -> str:
        """Mask known secret values and ``key=value`` style secrets in a piece of text."""
        if not text:
            return text
        if self._generation != _registry_generation():
            self._reregister()
        return redact_text(text, self.is_sensitive_key)

    def processor(self, logger: Any, method_name: str, event_dict: EventDict) -> EventDict:
        """structlog processor: returns the event dict with secrets masked."""
        redacted: EventDict = self.redact(event_dict)
        return redacted

    __call__ = processor

    # ---- internals ----------------------------------------------------------
    def _redact(self, obj: Any) -> Any:
        kind = type(obj)
        if kind in _ATOMS:
            return obj
        if isinstance(obj, str):
            return self.redact_text(obj)
        if is_secret_type(obj):
            return MASK
        if isinstance(obj, Mapping):
            out: dict[Any, Any] = {}
            for k, v in obj.items():
                key = self._mask_known(k) if isinstance(k, str) else k
                out[key] = self._mask_all(v) if isinstance(k, str) and self.is_sensitive_key(k) else self._redact(v)
            return out
        if isinstance(obj, list):
            return [self._redact(v) for v in obj]
        if isinstance(obj, tuple):
            return tuple(self._redact(v) for v in obj)
        return obj

    def _mask_all(self, obj: Any) -> Any:
        """Mask every leaf, keeping the shape; None and booleans stay."""
        if obj is None or isinstance(obj, bool):
            return obj
        if isinstance(obj, str) and obj in ("", MASK):
            return obj
        if isinstance(obj, Mapping):
            return {k: self._mask_all(v) for k, v in obj.items()}
        if isinstance(obj, list):
            return [self._mask_all(v) for v in obj]
        if isinstance(obj, tuple):
            return tuple(self._mask_all(v) for v in obj)
        return MASK

    def _mask_known(self, key: str) -> str:
        """A mapping key with the known secrets masked, remembered while the registry stays as it is."""
        if self._generation != _registry_generation():
            self._reregister()
        version = _registry_version()
        seen, masked = self._masked_keys
        if seen != version:
            masked = {}
            self._masked_keys = (version, masked)
        out = masked.get(key)
        if out is None:
            out = mask_known(key)
            # kept only when no secret was added meanwhile (that memo is for the old version)
            if len(masked) < _KEY_MEMO and _registry_version() == version:
                masked[key] = out
        return out

    def _reregister(self) -> None:
        """Register this redactor's secrets again: the process-wide registry was emptied."""
        with self._lock:
            self._generation = _registry_generation()
            values = list(self._secrets)
        for value in values:
            register_secret(value)
