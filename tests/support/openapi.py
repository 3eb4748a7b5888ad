"""Whether an answer carries what /openapi.json says it does."""

from __future__ import annotations

from typing import Any


def conforms(described: dict[str, Any], schema: dict[str, Any], value: Any, where: str
             ) -> list[str]:
    """Where ``value`` strays from ``schema``: a missing or undocumented field, a wrong type."""
    if "$ref" in schema:
        schema = described["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    if "oneOf" in schema:
        tries = [conforms(described, option, value, where) for option in schema["oneOf"]]
        return [] if any(not found for found in tries) else tries[0]
    if "enum" in schema:
        return [] if value in schema["enum"] else [f"{where}: {value!r} not in the enum"]
    kinds = schema.get("type")
    kinds = [kinds] if isinstance(kinds, str) else kinds
    python = {"object": dict, "array": list, "string": str, "integer": int, "number": (int, float),
              "boolean": bool, "null": type(None)}
    if kinds and not any(isinstance(value, python[kind]) for kind in kinds):
        return [f"{where}: {value!r} is not {kinds}"]
    strays = []
    if isinstance(value, dict) and "properties" in schema:
        strays += [f"{where}.{name}: missing" for name in schema.get("required", [])
                   if name not in value]
        for name, item in value.items():
            if name in schema["properties"]:
                strays += conforms(described, schema["properties"][name], item, f"{where}.{name}")
            elif not schema.get("additionalProperties"):
                strays.append(f"{where}.{name}: not documented")
    if isinstance(value, dict) and isinstance(schema.get("additionalProperties"), dict):
        for name, item in value.items():
            if name not in schema.get("properties", {}):
                strays += conforms(described, schema["additionalProperties"], item,
                                   f"{where}.{name}")
    if isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            strays += conforms(described, schema["items"], item, f"{where}[{index}]")
    return strays
