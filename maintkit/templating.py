"""Sandboxed templating of step parameters.

Strings in ``with:`` may use ``{{ env.url }}``, ``{{ site.vars.x }}``, ``{{ vars.x }}``,
``{{ secrets.NAME }}`` (the inventory's ``secrets:`` sources, else environment variables)
and ``{{ run.id }}``. A string that is one single expression keeps the expression's native type (a list stays a list).
Rendering uses jinja2's SandboxedEnvironment with StrictUndefined: an unknown name is an
error, never an empty string.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

from maintkit._text import register_secret
from maintkit.errors import ConfigError
from maintkit.secret_sources import Resolver, SecretError, SourceLike

#: bounds on what ``*`` and ``**`` may build inside a template (a hostile playbook cannot hang a run)
MAX_RESULT_LENGTH = 1_000_000
MAX_EXPONENT = 1000

_SINGLE_EXPR = re.compile(r"^\s*\{\{(?P<expr>.*?)\}\}\s*$", re.S)


class TemplateError(ConfigError):
    """A template could not be rendered."""


class Secrets(Mapping[str, str]):
    """Secrets exposed to templates as ``secrets.NAME``: the inventory's ``secrets:`` sources
    (files, commands, environment variables: :mod:`maintkit.secret_sources`) of the
    environment being rendered (see :meth:`scoped`), else the environment variable NAME.

    Every value read is registered process-wide as a secret (:func:`maintkit._text.register_secret`)
    before it is returned, so no error message, output or file can show it, and it is also
    reported to ``on_read`` (the run's audit redactor). ``used`` holds what this view read.
    """

    def __init__(
        self,
        environ: Mapping[str, str] | None = None,
        on_read: Callable[[str], None] | None = None,
        *,
        sources: Mapping[str, SourceLike] | None = None,
        resolver: Resolver | None = None,
    ) -> None:
        self._environ = os.environ if environ is None else environ
        self._on_read = on_read
        self._sources: Mapping[str, SourceLike] = sources or {}
        placeholders = bool(getattr(self._environ, "placeholder_secrets", False))
        self._resolver = resolver or Resolver(self._environ, placeholders=placeholders)
        self.used: dict[str, str] = {}

    def scoped(self, sources: Mapping[str, SourceLike]) -> Secrets:
        """A view for one site environment: its ``secrets:`` sources, sharing this one's
        resolver (each file or command is read once per run) and ``on_read``."""
        return Secrets(self._environ, self._on_read, sources=sources, resolver=self._resolver)

    def __getitem__(self, name: str) -> str:
        source = self._sources.get(name)
        if source is not None:
            try:
                value = self._resolver.value(name, source)
            except SecretError as exc:
                raise TemplateError(exc.message) from None
        elif name in self._environ:
            value = self._environ[name]
        else:
            raise KeyError(name)
        register_secret(value)
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
            raise TemplateError(
                f"secret {name!r} is not set (export it as an environment variable, "
                "or give it a source under secrets: in the inventory)"
            ) from None

    def __iter__(self) -> Any:
        return iter(())

    def __len__(self) -> int:
        return 0


@lru_cache(maxsize=1)
def _environment() -> Any:
    from jinja2 import StrictUndefined
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class _Bounded(ImmutableSandboxedEnvironment):
        """The sandbox, with ``*`` and ``**`` bounded so a template cannot build huge values."""

        intercepted_binops = frozenset(["*", "**"])

        def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
            _check_binop(operator, left, right)
            return super().call_binop(context, operator, left, right)

    return _Bounded(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)


def _check_binop(operator: str, left: Any, right: Any) -> None:
    """Refuse ``*`` and ``**`` whose result would be huge (a hang or MemoryError otherwise)."""
    if operator == "**" and isinstance(left, int | float) and isinstance(right, int | float):
        bits = max(abs(int(left)), 2).bit_length()
        if abs(right) > MAX_EXPONENT or bits * abs(right) > MAX_RESULT_LENGTH:
            raise TemplateError(f"{left!r:.20} ** {right!r:.20} is too large")
    if operator == "*":
        for seq, n in ((left, right), (right, left)):
            if isinstance(seq, str | list | tuple) and isinstance(n, int) and len(seq) * n > MAX_RESULT_LENGTH:
                raise TemplateError(f"repetition would build more than {MAX_RESULT_LENGTH} items")


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
    except (ArithmeticError, AssertionError, AttributeError, LookupError, RecursionError, TypeError, ValueError) as exc:
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
    except (ArithmeticError, AssertionError, AttributeError, LookupError, RecursionError, TypeError, ValueError) as exc:
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


#: words jinja2's parser accepts as a name where a value is missing (``a and and``)
_KEYWORDS = frozenset({"and", "or", "not", "in", "is", "if", "else", "for", "recursive"})

#: deepest bracket nesting accepted in an expression or template (jinja2's parser recurses)
MAX_EXPRESSION_DEPTH = 32


def bracket_depth(text: str) -> int:
    """The deepest nesting of brackets in ``text``."""
    depth = deepest = 0
    for c in text:
        if c in "([{":
            depth += 1
            deepest = max(deepest, depth)
        elif c in ")]}" and depth:
            depth -= 1
    return deepest


def expression_references(expression: str) -> list[tuple[str, tuple[str, ...]]]:
    """Compile a ``when:`` expression exactly as :func:`evaluate` does and list what it references.

    Raises :class:`TemplateError` when it does not compile. Returns ``(kind, names)`` pairs:
    ``("name", (n,))`` for a top-level name that is not a jinja2 global, ``("steps", (id,))``
    for ``steps.id``/``steps['id']``, ``("stage", (env,))`` and ``("stages", (env, id))`` for
    ``stages.env.id``, ``("fact", (..., field))`` for a field of such a step,
    ``("will_change", (id,))`` (an empty tuple when the call is not one quoted id). References
    under an ``is defined``/``is undefined`` test are left out: they cannot fail at run time.
    """
    from jinja2 import TemplateSyntaxError, nodes
    from jinja2.parser import Parser

    match = _SINGLE_EXPR.match(expression)
    expr = match.group("expr") if match else expression
    if bracket_depth(expr) > MAX_EXPRESSION_DEPTH:
        raise TemplateError(f"expression nested deeper than {MAX_EXPRESSION_DEPTH} brackets")
    env = _environment()
    try:
        _compiled_expression(expr)
        parser = Parser(env, expr, state="variable")
        root = parser.parse_expression()
    except TemplateSyntaxError as exc:
        raise TemplateError(f"expression syntax error: {exc.message}") from None
    except RecursionError:
        raise TemplateError("expression nested too deeply") from None
    refs: list[tuple[str, tuple[str, ...]]] = []
    guarded: set[tuple[str, tuple[str, ...]]] = set()
    todo: list[tuple[Any, bool]] = [(root, False)]
    while todo:
        node, under_test = todo.pop()
        if isinstance(node, nodes.Name) and node.name in _KEYWORDS:
            raise TemplateError(f"expression syntax error: {node.name!r} is a keyword, not a value")
        found = _reference(node)
        if found is None and isinstance(node, nodes.Name) and node.ctx == "load" and node.name not in env.globals:
            found = ("name", (node.name,))
        if found is not None:
            (guarded.add if under_test else refs.append)(found)
        for child in node.iter_child_nodes():
            is_test = isinstance(node, nodes.Test) and node.name in ("defined", "undefined") and child is node.node
            todo.append((child, under_test or is_test))
    # `x is defined and x.changed` is safe: whatever a defined-test guards anywhere is not checked
    return [r for r in refs if r not in guarded and not any(_within(g, r) for g in guarded)]


def _within(guard: tuple[str, tuple[str, ...]], ref: tuple[str, tuple[str, ...]]) -> bool:
    """True when ``ref`` goes through what ``guard`` tests (``steps.x`` guards ``steps.x.changed``)."""
    if guard[0] in ("name", "will_change"):
        return False
    return ref[0] in ("fact", "steps", "stages") and ref[1][: len(guard[1])] == guard[1]


def _key(node: Any) -> str | None:
    """The constant attribute or item name of a Getattr/Getitem node."""
    from jinja2 import nodes

    if isinstance(node, nodes.Getattr):
        return str(node.attr)
    if isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
        return node.arg.value
    return None


def _is_name(node: Any, name: str) -> bool:
    from jinja2 import nodes

    return isinstance(node, nodes.Name) and node.name == name


def _reference(node: Any) -> tuple[str, tuple[str, ...]] | None:
    """What one node references (see :func:`expression_references`), or None."""
    from jinja2 import nodes

    if isinstance(node, nodes.Call) and _is_name(node.node, "will_change"):
        arg = node.args[0] if len(node.args) == 1 else None
        simple = not (node.kwargs or node.dyn_args or node.dyn_kwargs)
        if simple and isinstance(arg, nodes.Const) and isinstance(arg.value, str):
            return ("will_change", (arg.value,))
        return ("will_change", ())
    key = _key(node)
    if key is None:
        return None
    inner = node.node
    if _is_name(inner, "steps"):
        return ("steps", (key,))
    if _is_name(inner, "stages"):
        return ("stage", (key,))
    inner_key = _key(inner)
    if inner_key is not None and _is_name(inner.node, "stages"):
        return ("stages", (inner_key, key))
    parent = _reference(inner)
    if parent is not None and parent[0] in ("steps", "stages"):
        return ("fact", (*parent[1], key))
    return None


def template_problem(text: str) -> str | None:
    """Why the ``with:`` string ``text`` cannot render (syntax, nesting, compilation), or None.

    Compiles the template (and keeps it in the cache :func:`render_string` uses), so a template
    that only fails when compiled (thousands of chained filters) is caught before anything runs.
    """
    if not has_template(text):
        return None
    if bracket_depth(text) > MAX_EXPRESSION_DEPTH + 2:  # + the {{ }} around it
        return f"template nested deeper than {MAX_EXPRESSION_DEPTH} brackets"
    from jinja2 import TemplateSyntaxError

    try:
        match = _SINGLE_EXPR.match(text)
        if match and "{{" not in match.group("expr") and "}}" not in match.group("expr"):
            _compiled_expression(match.group("expr"))
        else:
            _compiled_template(text)
    except TemplateSyntaxError as exc:
        return f"template syntax error: {exc.message}"
    except RecursionError:
        return "template nested too deeply"
    return None
