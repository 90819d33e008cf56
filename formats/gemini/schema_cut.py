"""JSON schemas cut to what Gemini accepts: its Schema object, an OpenAPI 3.0 subset.

Tool parameters (`functionDeclarations[].parameters`) and structured output
(`generationConfig.responseSchema`) take Gemini's Schema object
(ai.google.dev/api/caching#Schema), not JSON schema: `gemini_schema` keeps the keys it knows,
inlines local `$ref`s and spells nullability and alternatives its way. `json_schema` goes the
other way, for a Gemini client's tools and response schema sent to another provider, and
`lower_types` spells the types of a JSON schema a Gemini client wrote (`"OBJECT"`) as JSON
schema does.
"""

from __future__ import annotations

from typing import Any

from wire.errors import BadRequest

# The fields of Gemini's Schema object, an OpenAPI 3.0 subset: Gemini answers any other
# JSON-schema key (additionalProperties, $schema, strict, ...) with a 400, so it is dropped.
_SCHEMA_KEYS = frozenset(
    {
        "type",
        "format",
        "title",
        "description",
        "nullable",
        "enum",
        "maxItems",
        "minItems",
        "properties",
        "required",
        "minProperties",
        "maxProperties",
        "minLength",
        "maxLength",
        "pattern",
        "example",
        "anyOf",
        "propertyOrdering",
        "default",
        "items",
        "minimum",
        "maximum",
    }
)
_MAX_SCHEMA_DEPTH = 64


def gemini_schema(schema: Any, param: str) -> Any:
    """A JSON schema cut to Gemini's OpenAPI subset: unknown keys dropped, local `$ref`s inlined,
    `["T", "null"]` types and `{"type": "null"}` alternatives turned into `nullable`, `oneOf`
    read as `anyOf` and `const` as a one-value `enum`."""
    if not isinstance(schema, dict):
        return schema
    defs = {**schema.get("definitions", {}), **schema.get("$defs", {})}
    return _schema(schema, defs, param, 0)


def _schema(node: Any, defs: dict[str, Any], param: str, depth: int) -> Any:
    if not isinstance(node, dict):
        return node
    if depth > _MAX_SCHEMA_DEPTH:
        raise BadRequest(
            f"Invalid value for '{param}': the schema nests deeper than {_MAX_SCHEMA_DEPTH} "
            "levels (a recursive $ref?); Gemini cannot express it.",
            param=param,
            code="invalid_value",
        )
    node = _resolve_ref(node, defs)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "oneOf":
            key = "anyOf"
        elif key == "const":
            key, value = "enum", [value]
        if key not in _SCHEMA_KEYS:
            continue
        if key == "properties" and isinstance(value, dict):
            value = {name: _schema(sub, defs, param, depth + 1) for name, sub in value.items()}
        elif key == "items":
            value = _schema(value, defs, param, depth + 1)
        elif key == "anyOf" and isinstance(value, list):
            value = [_schema(sub, defs, param, depth + 1) for sub in value]
        out[key] = value
    _nullable(out)
    return out


def _resolve_ref(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref")
    if not isinstance(ref, str):
        return node
    target = defs.get(ref.rpartition("/")[2])
    if not isinstance(target, dict):
        return node
    return {**target, **{key: value for key, value in node.items() if key != "$ref"}}


def _nullable(out: dict[str, Any]) -> None:
    """Gemini has no "null" type: it is the `nullable` flag on the other one."""
    kind = out.get("type")
    if isinstance(kind, list):
        kinds = [k for k in kind if k != "null"]
        if len(kinds) < len(kind):
            out["nullable"] = True
        if len(kinds) == 1:
            out["type"] = kinds[0]
        else:
            del out["type"]
            out["anyOf"] = [{"type": k} for k in kinds]
    alternatives = out.get("anyOf")
    if isinstance(alternatives, list):
        rest = [a for a in alternatives if not (isinstance(a, dict) and a.get("type") == "null")]
        if len(rest) < len(alternatives):
            out["nullable"] = True
            if len(rest) == 1 and isinstance(rest[0], dict):
                del out["anyOf"]
                for key, value in rest[0].items():
                    out.setdefault(key, value)
            else:
                out["anyOf"] = rest


# --- the other way: Gemini's Schema as JSON schema (for Gemini clients of other providers) ---

# Gemini's Schema (an OpenAPI 3.0 subset, ai.google.dev/api/caching#Schema) -> JSON schema:
# types in capitals become lowercase, `nullable` joins "null" to the type; the keys JSON schema
# shares keep their meaning; `propertyOrdering` and `example` say nothing JSON schema can.
_TYPES = {
    "STRING": "string",
    "NUMBER": "number",
    "INTEGER": "integer",
    "BOOLEAN": "boolean",
    "ARRAY": "array",
    "OBJECT": "object",
    "NULL": "null",
}
_SHARED = frozenset(
    {
        "format",
        "title",
        "description",
        "enum",
        "required",
        "pattern",
        "default",
        "minimum",
        "maximum",
    }
)
_COUNTS = frozenset(
    {"minItems", "maxItems", "minLength", "maxLength", "minProperties", "maxProperties"}
)


def json_schema(schema: Any, param: str, depth: int = 0) -> Any:
    """The JSON schema a Gemini Schema object stands for."""
    if not isinstance(schema, dict):
        return schema
    if depth > _MAX_SCHEMA_DEPTH:
        raise BadRequest(
            f"Invalid value for '{param}': the schema nests deeper than {_MAX_SCHEMA_DEPTH} "
            "levels.",
            param=param,
            code="invalid_value",
        )
    result: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "type":
            kind = _TYPES.get(str(value).upper())
            if kind is not None:
                result["type"] = kind
        elif key in _SHARED:
            result[key] = value
        elif key in _COUNTS:  # int64 fields: proto JSON may spell them as strings
            result[key] = int(value) if isinstance(value, str) and value.isdigit() else value
        elif key == "properties" and isinstance(value, dict):
            result[key] = {
                name: json_schema(sub, f"{param}.properties.{name}", depth + 1)
                for name, sub in value.items()
            }
        elif key == "items":
            result[key] = json_schema(value, f"{param}.items", depth + 1)
        elif key == "anyOf" and isinstance(value, list):
            result[key] = [json_schema(sub, f"{param}.anyOf", depth + 1) for sub in value]
    if schema.get("nullable") is True and "type" in result:
        result["type"] = [result["type"], "null"]
    return result


# JSON-schema keywords whose value is a schema, a list of schemas, or a map of them (draft
# 2020-12 and draft 7 spellings both): where `lower_types` looks for more types.
_SUBSCHEMA = frozenset(
    {
        "items",
        "additionalItems",
        "additionalProperties",
        "unevaluatedItems",
        "unevaluatedProperties",
        "contains",
        "propertyNames",
        "not",
        "if",
        "then",
        "else",
    }
)
_SUBSCHEMA_LISTS = frozenset({"anyOf", "oneOf", "allOf", "prefixItems"})
_SUBSCHEMA_MAPS = frozenset(
    {"properties", "patternProperties", "$defs", "definitions", "dependentSchemas"}
)


def lower_types(schema: Any) -> Any:
    """A JSON schema with Gemini-style type names (`"OBJECT"`, `["STRING", "NULL"]`) in JSON
    schema's lower case, at every depth; everything else as it was. Gemini takes either in
    `parametersJsonSchema` and `responseJsonSchema` (Gemini CLI sends capitals); other
    providers take only the lower case."""
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "type":
            value = (
                [_lower_type(v) for v in value] if isinstance(value, list) else _lower_type(value)
            )
        elif key in _SUBSCHEMA:
            value = (
                [lower_types(v) for v in value] if isinstance(value, list) else lower_types(value)
            )
        elif key in _SUBSCHEMA_LISTS and isinstance(value, list):
            value = [lower_types(v) for v in value]
        elif key in _SUBSCHEMA_MAPS and isinstance(value, dict):
            value = {name: lower_types(v) for name, v in value.items()}
        out[key] = value
    return out


def _lower_type(kind: Any) -> Any:
    return _TYPES.get(kind.upper(), kind) if isinstance(kind, str) else kind
