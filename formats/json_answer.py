"""`response_format` for the APIs that take JSON answers their own way (Anthropic, Bedrock).

Two ways to get JSON from such a model, chosen per request (`plan`):

- natively, where the model has structured outputs (Anthropic's `output_config.format`,
  Converse's `outputConfig.textFormat`): the answer is text that follows the schema. Claude's
  constrained decoding takes a subset of JSON Schema, so the schema goes as Anthropic's own SDKs
  send it (`strict_schema`: every object closed with `additionalProperties: false`, `oneOf` as
  `anyOf`, the keywords it cannot enforce told in the description); a schema outside that subset
  (an open map, a node without a type, a recursive schema) goes the other way;
- through a tool (`JSON_TOOL`), the way LiteLLM and Anthropic's own cookbook get JSON from any
  Claude: the schema is the tool's input schema, the call is forced (with the request's own
  tools: a call of any tool, one of them or the answer), so without thinking, which Claude
  takes only with `tool_choice: auto`; the call's input comes back to the client as the
  message's text, streamed as it is written. `json_object` (no schema) always goes this way,
  as an object of any shape.

The tool's name is reserved: a client tool of that name is refused rather than answered as
text.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from formats.chat.request import Tool, json_output
from wire.errors import BadRequest

# The tool whose input is the answer. Its calls become the message's text.
JSON_TOOL = "json_answer"
JSON_TOOL_DESCRIPTION = (
    "Give your answer to the user with this tool: its input is the whole answer, as the JSON "
    "they asked for. Call it once, when you have the answer."
)
ANY_OBJECT: dict[str, Any] = {"type": "object"}
# String formats Claude's structured outputs enforce (the Anthropic SDK's list).
_STRING_FORMATS = frozenset(
    {"date-time", "time", "date", "duration", "email", "hostname", "uri", "ipv4", "ipv6", "uuid"}
)
_TYPES = frozenset({"object", "array", "string", "integer", "number", "boolean", "null"})


@dataclass(frozen=True)
class JsonAnswer:
    """How one request gets its JSON: `native` with `schema` (the model's structured outputs),
    or through `JSON_TOOL` with `schema` as its input schema."""

    native: bool
    schema: dict[str, Any]
    name: str  # the json_schema's name ("response" when it had none)
    description: str | None = None


def plan(
    response_format: dict[str, Any] | None, native: bool, strict: bool = True
) -> JsonAnswer | None:
    """The way `response_format` is answered (None: it asks for no JSON). `native`: the model
    has structured outputs; `strict`: they take Claude's subset of JSON Schema (a schema
    outside it goes through the tool), else the schema as it is."""
    asks, schema = json_output(response_format)
    if not asks:
        return None
    spec = (response_format or {}).get("json_schema") or {}
    name, description = spec.get("name"), spec.get("description")
    name = name if isinstance(name, str) and name else "response"
    description = description if isinstance(description, str) and description else None
    if schema is None:  # json_object, or a json_schema without one: any object
        return JsonAnswer(False, ANY_OBJECT, name, description)
    if native and not strict:
        return JsonAnswer(True, schema, name, description)
    if native:
        taken = strict_schema(schema)
        if taken is not None:
            return JsonAnswer(True, taken, name, description)
    if schema.get("type") != "object":
        raise BadRequest(
            "Invalid value for 'response_format.json_schema.schema': this model answers JSON "
            "through a tool, whose input is an object; give the schema an object at its top.",
            param="response_format.json_schema.schema",
            code="invalid_value",
        )
    return JsonAnswer(False, schema, name, description)


def check_tool_names(tools: list[Tool] | None) -> None:
    """A client tool named as the answer's tool would come back as text: refused."""
    for i, tool in enumerate(tools or ()):
        if tool.function.name == JSON_TOOL:
            raise BadRequest(
                f"Invalid value for 'tools[{i}].function.name': {JSON_TOOL!r} is the name the "
                "gateway gives the tool that carries a JSON answer for this provider.",
                param=f"tools[{i}].function.name",
                code="invalid_value",
            )


def answered(stop_reason: str | None, answer: bool, calls: bool) -> str | None:
    """Anthropic's or Converse's stop reason, but `end_turn` for an answer that stopped only
    to call `JSON_TOOL`: that call was the answer, and it is whole."""
    return "end_turn" if stop_reason == "tool_use" and answer and not calls else stop_reason


def strict_schema(schema: Any) -> dict[str, Any] | None:
    """`schema` in the subset Claude's structured outputs take, as Anthropic's SDKs write it
    (`transform_schema`); None for a schema outside it."""
    if _recursive(schema):
        return None  # structured outputs take no recursive schema
    try:
        return _strict(schema)
    except _Outside:
        return None


class _Outside(Exception):
    """The schema holds something structured outputs cannot express."""


def _strict(schema: Any) -> dict[str, Any]:
    if not isinstance(schema, dict):
        raise _Outside
    rest = dict(schema)
    out: dict[str, Any] = {}
    for key in ("$defs", "definitions"):
        defs = rest.pop(key, None)
        if isinstance(defs, dict):
            out[key] = {name: _strict(sub) for name, sub in defs.items()}
    ref = rest.pop("$ref", None)
    if isinstance(ref, str):
        out["$ref"] = ref
        if isinstance(rest.get("description"), str):
            out["description"] = rest["description"]
        return out
    kind = rest.pop("type", None)
    enum, const = rest.get("enum"), rest.get("const")
    if isinstance(enum, list) and enum and all(map(_primitive, enum)):
        out["enum"] = rest.pop("enum")
        kind = None
    elif "const" in rest and _primitive(const):
        out["const"] = rest.pop("const")
        kind = None
    for key, as_key in (("anyOf", "anyOf"), ("oneOf", "anyOf"), ("allOf", "allOf")):
        variants = rest.pop(key, None)
        if isinstance(variants, list) and as_key not in out:
            out[as_key] = [_strict(variant) for variant in variants]
    if kind is None and not out.keys() & {"enum", "const", "anyOf", "allOf"}:
        raise _Outside  # a node of any value
    if kind is not None:
        if not isinstance(kind, str) or kind not in _TYPES:  # a list of types, or unknown
            raise _Outside
        out["type"] = kind
    for key in ("description", "title"):
        if isinstance(rest.get(key), str):
            out[key] = rest.pop(key)
    if kind == "object":
        extra = rest.pop("additionalProperties", False)
        if extra not in (False, None):
            raise _Outside  # an open map: closing it would change what is asked
        properties = rest.pop("properties", {})
        if not isinstance(properties, dict):
            raise _Outside
        out["properties"] = {key: _strict(value) for key, value in properties.items()}
        out["additionalProperties"] = False
        if isinstance(rest.get("required"), list):
            out["required"] = rest.pop("required")
    elif kind == "string" and rest.get("format") in _STRING_FORMATS:
        out["format"] = rest.pop("format")
    elif kind == "array":
        if "items" in rest:
            out["items"] = _strict(rest.pop("items"))
        if rest.get("minItems") in (0, 1):
            out["minItems"] = rest.pop("minItems")
    if rest:  # what it cannot enforce is told, so that the model may follow it
        told = ", ".join(f"{key}: {value}" for key, value in rest.items())
        about = out.get("description")
        out["description"] = f"{about}\n\n{{{told}}}" if about else f"{{{told}}}"
    return out


def _recursive(schema: Any) -> bool:
    """Whether a schema refers to itself (`#`) or its definitions refer to each other in a
    cycle (`#/$defs/Node` inside Node, or through others)."""
    if not isinstance(schema, dict):
        return False
    defs: dict[str, Any] = {}
    for key in ("$defs", "definitions"):
        if isinstance(schema.get(key), dict):
            defs |= {f"#/{key}/{name}": value for name, value in schema[key].items()}
    if "#" in _refs(schema):
        return True
    done: set[str] = set()

    def cycles(ref: str, path: frozenset[str]) -> bool:
        if ref in path:
            return True
        if ref in done or ref not in defs:
            return False
        done.add(ref)
        return any(cycles(next_ref, path | {ref}) for next_ref in _refs(defs[ref]))

    return any(cycles(ref, frozenset()) for ref in defs)


def _refs(value: Any) -> set[str]:
    """Every `$ref` a JSON value holds, at any depth."""
    if isinstance(value, list):
        return set().union(*map(_refs, value)) if value else set()
    if not isinstance(value, dict):
        return set()
    found = {value["$ref"]} if isinstance(value.get("$ref"), str) else set()
    return found.union(*map(_refs, value.values()))


def _primitive(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))
