"""Sandboxed templating of step parameters.

Strings in ``with:`` may use ``{{ env.url }}``, ``{{ site.vars.x }}``, ``{{ vars.x }}``,
``{{ secrets.NAME }}`` (read from environment variables) and ``{{ run.id }}``. A string
that is one single expression keeps the expression's native type (a list stays a list).
Rendering uses jinja2's SandboxedEnvironment with StrictUndefined: an unknown name is an
error, never an empty string.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

from maintkit.errors import ConfigError

_SINGLE_EXPR = re.compile(r"^\s*\{\{(?P<expr>.*?)\}\}\s*$", re.S)


class TemplateError(ConfigError):
    """A template could not be rendered."""


class Secrets(Mapping[str, str]):
    """Environment variables exposed to templates as ``secrets.NAME``.

    Every value read is reported to ``on_read`` so that audit redaction knows it.
    """

    def __init__(self, environ: Mapping[str, str] | None = None, on_read: Callable[[str], None] | None = None) -> None:
        self._environ = os.environ if environ is None else environ
        self._on_read = on_read
        self.used: dict[str, str] = {}

    def __getitem__(self, name: str) -> str:
        if name not in self._environ:
            raise KeyError(name)
        value = self._environ[name]
        self.used[name] = value
        if self._on_read is not None:
            self._on_read(value)
        return value

    def __getattr__(self, name: str) -> str:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self[name]
        except KeyError:
            raise TemplateError(f"secret {name!r} is not set (export it as an environment variable)") from None

    def __iter__(self) -> Any:
        return iter(())

    def __len__(self) -> int:
        return 0


@lru_cache(maxsize=1)
def _environment() -> Any:
    from jinja2 import StrictUndefined
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    return ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)


def has_template(value: Any) -> bool:
    """True when ``value`` (or anything inside it) contains template syntax."""
    if isinstance(value, str):
        return "{{" in value or "{%" in value
    if isinstance(value, dict):
        return any(has_template(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(has_template(v) for v in value)
    return False


@lru_cache(maxsize=4096)
def _compiled_expression(expr: str) -> Any:
    return _environment().compile_expression(expr, undefined_to_none=False)


@lru_cache(maxsize=4096)
def _compiled_template(text: str) -> Any:
    return _environment().from_string(text)


def render_string(text: str, context: Mapping[str, Any]) -> Any:
    """Render one string; a lone ``{{ expr }}`` returns the expression's native value."""
    if "{{" not in text and "{%" not in text:
        return text
    from jinja2 import TemplateError as JinjaError

    try:
        match = _SINGLE_EXPR.match(text)
        if match and "{{" not in match.group("expr") and "}}" not in match.group("expr"):
            result = _compiled_expression(match.group("expr"))(**context)
            if type(result).__name__ == "StrictUndefined":
                str(result)  # raises UndefinedError
            return result
        return _compiled_template(text).render(**context)
    except TemplateError:
        raise
    except JinjaError as exc:
        raise TemplateError(f"template {text!r}: {exc}") from None
    except (TypeError, ValueError, AttributeError, KeyError) as exc:
        raise TemplateError(f"template {text!r}: {exc}") from None


def render(value: Any, context: Mapping[str, Any]) -> Any:
    """Render every string inside ``value`` (dicts and lists recursively)."""
    if isinstance(value, str):
        return render_string(value, context)
    if isinstance(value, dict):
        return {k: render(v, context) for k, v in value.items()}
    if isinstance(value, list):
        return [render(v, context) for v in value]
    return value


def evaluate(expression: str, context: Mapping[str, Any]) -> Any:
    """Evaluate a ``when:`` expression (with or without surrounding ``{{ }}``)."""
    match = _SINGLE_EXPR.match(expression)
    expr = match.group("expr") if match else expression
    from jinja2 import TemplateError as JinjaError

    try:
        result = _compiled_expression(expr)(**context)
        if type(result).__name__ == "StrictUndefined":
            str(result)
        return result
    except TemplateError:
        raise
    except JinjaError as exc:
        raise TemplateError(f"expression {expression!r}: {exc}") from None
    except (TypeError, ValueError, AttributeError, KeyError) as exc:
        raise TemplateError(f"expression {expression!r}: {exc}") from None


def syntax_error(text: str) -> str | None:
    """Return a message if ``text`` is not valid template syntax, else None (no rendering)."""
    if not has_template(text):
        return None
    from jinja2 import TemplateSyntaxError

    try:
        _environment().parse(text)
    except TemplateSyntaxError as exc:
        return f"template syntax error: {exc.message}"
    return None
