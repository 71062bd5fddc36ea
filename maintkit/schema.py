"""JSON Schema for playbooks and inventories, generated from the pydantic models.

Editors with the YAML language server validate and complete files that start with::

    # yaml-language-server: $schema=./.maint/playbook.schema.json
"""

from __future__ import annotations

from typing import Any

from maintkit.inventory import Inventory
from maintkit.playbook import Playbook
from maintkit.registry import Registry, default_registry


def inventory_schema() -> dict[str, Any]:
    """JSON Schema of inventory files."""
    schema = Inventory.model_json_schema(by_alias=True)
    schema["title"] = "maintkit inventory"
    return schema


def playbook_schema(registry: Registry | None = None) -> dict[str, Any]:
    """JSON Schema of playbooks, with each action's parameters under ``with``."""
    reg = registry or default_registry()
    schema = Playbook.model_json_schema(by_alias=True)
    schema["title"] = "maintkit playbook"
    defs = schema.setdefault("$defs", {})
    variants = []
    for name in reg.names():
        cls = reg.get(name)
        params = cls.Params.model_json_schema(ref_template="#/$defs/{model}")
        for key, value in params.pop("$defs", {}).items():
            defs.setdefault(key, value)
        def_name = "Params_" + name.replace(".", "_")
        defs[def_name] = params
        variants.append(
            {
                "if": {"properties": {"action": {"const": name}}, "required": ["action"]},
                "then": {"properties": {"with": {"$ref": f"#/$defs/{def_name}"}}},
            }
        )
    step = defs.get("Step", {})
    step.setdefault("properties", {}).setdefault("action", {})["enum"] = reg.names()
    step["allOf"] = variants
    return schema
