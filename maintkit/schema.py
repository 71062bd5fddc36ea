"""JSON Schema for playbooks and inventories, generated from the pydantic models.

Editors with the YAML language server validate and complete files that start with::

    # yaml-language-server: $schema=./.maint/playbook.schema.json

The playbook schema accepts what the loader accepts and no more: each step's ``with:``
is checked against its action's ``Params`` model (one ``if``/``then`` per action name), and
wherever a parameter value may stand, a string holding a template (``{{ ... }}`` or
``{% ... %}``) is accepted too, since the loader validates such values only once they are
rendered per site. Unknown keys, unknown action names, missing required parameters and
literal values of the wrong type are still errors. ``targets`` is a name or a list of names.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from maintkit.inventory import Inventory
from maintkit.playbook import Playbook
from maintkit.registry import Registry, default_registry

DRAFT = "https://json-schema.org/draft/2020-12/schema"
#: the name, under ``$defs``, of the schema of a templated value
TEMPLATE_DEF = "Template"
TEMPLATE_SCHEMA: dict[str, Any] = {
    "type": "string",
    "pattern": r"\{\{|\{%",
    "description": "A template ({{ vars.x }}), rendered per site and validated again before anything runs",
}
#: annotations kept on the outside when a value schema gets its template alternative
_ANNOTATIONS = ("title", "description", "default", "examples", "deprecated")


def inventory_schema() -> dict[str, Any]:
    """JSON Schema of inventory files."""
    schema = Inventory.model_json_schema(by_alias=True)
    schema["title"] = "maintkit inventory"
    return {"$schema": DRAFT, **schema}


def playbook_schema(registry: Registry | None = None) -> dict[str, Any]:
    """JSON Schema of playbooks, with each action's parameters under ``with``."""
    reg = registry or default_registry()
    schema = Playbook.model_json_schema(by_alias=True)
    schema["title"] = "maintkit playbook"
    schema["properties"]["targets"] = _targets_schema(schema["properties"]["targets"])
    defs = schema.setdefault("$defs", {})
    defs[TEMPLATE_DEF] = dict(TEMPLATE_SCHEMA)
    variants = []
    for name in reg.names():
        def_name = "Params_" + name.replace(".", "_")
        params = reg.get(name).Params.model_json_schema(ref_template=f"#/$defs/{def_name}.{{model}}")
        for key, value in params.pop("$defs", {}).items():
            defs[f"{def_name}.{key}"] = templated(value)
        defs[def_name] = templated(params)
        variants.append(
            {
                "if": {"properties": {"action": {"const": name}}, "required": ["action"]},
                "then": {"properties": {"with": {"$ref": f"#/$defs/{def_name}"}}},
            }
        )
    step = defs.get("Step", {})
    step.setdefault("properties", {}).setdefault("action", {})["enum"] = reg.names()
    step["allOf"] = variants
    return {"$schema": DRAFT, **schema}


def _targets_schema(generated: dict[str, Any]) -> dict[str, Any]:
    """``targets``: one name (``all``, a site, a group) or a list of names, as the loader reads it."""
    names = {"type": "array", "items": {"type": "string"}}
    return {
        "description": "Site and group names, or all: one name or a list",
        "default": generated.get("default", ["all"]),
        "anyOf": [{"type": "string"}, names],
    }


def templated(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` (an object's) with the template alternative added at every value position inside it.

    The root itself is not made templatable: ``with:`` must be a mapping.
    """
    out = dict(schema)
    if isinstance(out.get("properties"), dict):
        out["properties"] = {k: _value(v) for k, v in out["properties"].items()}
    for key in ("items", "additionalProperties"):
        if isinstance(out.get(key), dict):
            out[key] = _value(out[key])
    if isinstance(out.get("prefixItems"), list):
        out["prefixItems"] = [_value(v) for v in out["prefixItems"]]
    for key in ("anyOf", "oneOf", "allOf"):
        if isinstance(out.get(key), list):
            out[key] = [templated(v) for v in out[key]]
    return out


def _value(schema: dict[str, Any]) -> dict[str, Any]:
    """A value position: what ``schema`` allows, or a template."""
    inner = templated(schema)
    outer = {k: inner.pop(k) for k in _ANNOTATIONS if k in inner}
    ref = {"$ref": f"#/$defs/{TEMPLATE_DEF}"}
    if not inner:  # anything goes already
        return outer
    if list(inner) == ["anyOf"]:
        return {**outer, "anyOf": [*inner["anyOf"], ref]}
    return {**outer, "anyOf": [inner, ref]}


#: the kinds ``maint schema KIND`` prints: (schema function, what it describes, the files it is for)
KINDS: dict[str, tuple[Callable[[], dict[str, Any]], str, str]] = {
    "playbook": (playbook_schema, "playbooks", "playbooks/*.yml"),
    "inventory": (inventory_schema, "the inventory", "inventory.yml"),
}
