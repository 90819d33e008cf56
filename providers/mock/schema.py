"""A valid instance of a JSON Schema: the mock's tool-call arguments and structured output.

Deterministic and small, so that an answer is the same every time and cheap to stream:

- `const`, else the first `enum` value;
- an object gets its required properties, and its optional ones too while it is near the top
  (so a recursive schema ends);
- an array gets `minItems` items (one when there is no minimum, near the top), `prefixItems`
  first;
- a string is "mock" (or a sample of its `format`), padded or cut to `minLength`/`maxLength`;
- a number is 0, or the nearest value inside its bounds and `multipleOf`;
- `anyOf`/`oneOf`: the first branch that is not null (null deep down, to end recursion);
  `allOf`: the branches merged; `$ref` into `$defs`/`definitions` (JSON pointers) followed.

Covers what OpenAI's structured outputs accept. Not solved: `pattern`, `not`, `uniqueItems`
with several equal items, `if`/`then`.

A schema is a client's: each one read (the root, and what each `$ref` points to) is first
checked for the types of the keywords used here (`_Schema`), and an instance is bounded (a
hundred thousand values and characters), so that a schema that is not one, or asks for a
billion items, is a `SchemaError` (the mock's 400, as OpenAI refuses an invalid schema), never
a crash or a hang.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

import msgspec

_OPTIONAL_DEPTH = 3  # below this depth only what is required is generated
_MAX_DEPTH = 32  # a schema that requires itself forever gets null past this

_FORMATS = {
    "date-time": "2024-01-01T00:00:00Z",
    "date": "2024-01-01",
    "time": "00:00:00Z",
    "duration": "P1D",
    "email": "mock@example.com",
    "hostname": "example.com",
    "ipv4": "127.0.0.1",
    "ipv6": "::1",
    "uri": "https://example.com/",
    "uuid": "00000000-0000-4000-8000-000000000000",
}
# What a schema without `type` is, judged by its keywords.
_IMPLIED_TYPES = (
    ("object", ("properties", "required", "additionalProperties", "minProperties")),
    ("array", ("items", "prefixItems", "minItems", "maxItems")),
    ("string", ("minLength", "maxLength", "format", "pattern")),
    ("number", ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf")),
)


_BUDGET = 100_000  # values and string characters in one instance
_Count = Annotated[int, msgspec.Meta(ge=0)]


class SchemaError(ValueError):
    """A schema the mock cannot make an instance of: not a schema, or asking too much."""


class _Schema(msgspec.Struct, gc=False):
    """The keywords `instance` reads, typed (any other keyword passes unread)."""

    type: str | list[str] | None = None
    properties: dict[str, _Schema | bool] | None = None
    required: list[str] | None = None
    additionalProperties: _Schema | bool | None = None
    items: _Schema | bool | list[_Schema | bool] | None = None
    prefixItems: list[_Schema | bool] | None = None
    minItems: _Count | None = None
    maxItems: _Count | None = None
    minLength: _Count | None = None
    maxLength: _Count | None = None
    minimum: float | None = None
    maximum: float | None = None
    exclusiveMinimum: float | bool | None = None
    exclusiveMaximum: float | bool | None = None
    multipleOf: Annotated[float, msgspec.Meta(gt=0)] | None = None
    enum: list[Any] | None = None
    anyOf: list[_Schema | bool] | None = None
    oneOf: list[_Schema | bool] | None = None
    allOf: list[_Schema | bool] | None = None
    ref: str | None = msgspec.field(default=None, name="$ref")
    defs: dict[str, _Schema | bool] | None = msgspec.field(default=None, name="$defs")
    definitions: dict[str, _Schema | bool] | None = None
    format: str | None = None


def _checked(schema: Any, where: str) -> Any:
    """`schema`, once its keywords are found to have the types a schema's have."""
    try:
        msgspec.convert(schema, _Schema | bool)
    except msgspec.ValidationError as exc:
        raise SchemaError(f"{where} is not a valid JSON schema: {exc}") from None
    return schema


def instance(schema: Any) -> Any:
    """A value that `schema` accepts (a JSON Schema as a decoded dict, or a boolean); raises
    `SchemaError` for one that is not a schema or asks for an instance too large."""
    return _Instances(_checked(schema, "the schema")).of(schema, 0)


class _Instances:
    def __init__(self, root: Any) -> None:
        self._root = root
        self._targets: dict[str, Any] = {}  # each $ref's target, checked once
        self._spent = 0

    def _spend(self, units: int) -> None:
        self._spent += units
        if self._spent > _BUDGET:
            raise SchemaError(
                f"the schema asks for an instance of more than {_BUDGET} values and characters"
            )

    def of(self, schema: Any, depth: int) -> Any:
        self._spend(1)
        if not isinstance(schema, dict):
            return "mock" if schema is not False else None  # true: anything; false: nothing
        if depth > _MAX_DEPTH:
            return None
        if "$ref" in schema:
            siblings = {key: value for key, value in schema.items() if key != "$ref"}
            return self.of(_merge([self._resolve(schema["$ref"]), siblings]), depth + 1)
        if "allOf" in schema:  # one level deeper: a branch may refer back to this schema
            rest = {key: value for key, value in schema.items() if key != "allOf"}
            return self.of(_merge([*(self._plain(s) for s in schema["allOf"]), rest]), depth + 1)
        if "const" in schema:
            return schema["const"]
        if schema.get("enum"):
            return schema["enum"][0]
        branches = schema.get("anyOf") or schema.get("oneOf")
        if branches:
            return self.of(self._branch(branches, depth), depth)
        kind = _type_of(schema, deep=depth >= _OPTIONAL_DEPTH)
        if kind == "object":
            return self._object(schema, depth)
        if kind == "array":
            return self._array(schema, depth)
        if kind == "string":
            text = _string(schema)
            self._spend(len(text))
            return text
        if kind == "integer":
            return _number(schema, integer=True)
        if kind == "number":
            return _number(schema, integer=False)
        if kind == "boolean":
            return True
        if kind == "null":
            return None
        return "mock"  # no type and no telling keyword: any value will do

    def _object(self, schema: dict[str, Any], depth: int) -> dict[str, Any]:
        properties: dict[str, Any] = schema.get("properties") or {}
        names: list[str] = list(schema.get("required") or ())
        if depth < _OPTIONAL_DEPTH:
            names += [name for name in properties if name not in names]
        extra = schema.get("additionalProperties", {})
        result: dict[str, Any] = {}
        for name in names:
            result[name] = self.of(properties.get(name, extra), depth + 1)
        return result

    def _array(self, schema: dict[str, Any], depth: int) -> list[Any]:
        prefix = [self.of(item, depth + 1) for item in schema.get("prefixItems") or ()]
        items = schema.get("items", {})
        if isinstance(items, list):  # draft 4-7 tuple form
            prefix, items = [self.of(item, depth + 1) for item in items], {}
        wanted = schema.get("minItems", 1 if depth < _OPTIONAL_DEPTH else 0)
        count = max(wanted - len(prefix), 0)
        if "maxItems" in schema:
            count = min(count, max(schema["maxItems"] - len(prefix), 0))
        if items is False:
            count = 0
        return prefix + [self.of(items, depth + 1) for _ in range(count)]

    def _branch(self, branches: list[Any], depth: int) -> Any:
        """A non-null branch near the top; deep down, a null one if there is one."""
        plain = [self._plain(branch) for branch in branches]
        nulls = [b for b in plain if isinstance(b, dict) and b.get("type") == "null"]
        if depth >= _OPTIONAL_DEPTH and nulls:
            return nulls[0]
        others = [branch for branch, seen in zip(branches, plain, strict=True) if seen not in nulls]
        return (others or branches)[0]

    def _plain(self, schema: Any) -> Any:
        """`schema` with a top-level `$ref` followed (for merging and looking at types); a
        chain of references longer than `_MAX_DEPTH` (one that refers to itself) is {}."""
        for _ in range(_MAX_DEPTH):
            if not (isinstance(schema, dict) and "$ref" in schema):
                return schema
            siblings = {key: value for key, value in schema.items() if key != "$ref"}
            schema = _merge([self._resolve(schema["$ref"]), siblings])
        return {}

    def _resolve(self, ref: str) -> Any:
        """What `ref` points to in the root schema ({}: nothing, so any value), checked."""
        if ref in self._targets:
            return self._targets[ref]
        # A remote schema or an anchor: nothing to follow, any value.
        node = self._root if ref == "#" or ref.startswith("#/") else {}
        for part in ref[2:].split("/") if ref.startswith("#/") else ():
            key = part.replace("~1", "/").replace("~0", "~")
            if isinstance(node, dict):
                node = node.get(key, {})
            elif isinstance(node, list) and key.isdigit() and int(key) < len(node):
                node = node[int(key)]
            else:
                node = {}
        self._targets[ref] = _checked(node, f"the target of $ref {ref!r}")
        return node


def _merge(schemas: list[Any]) -> dict[str, Any]:
    """allOf as one schema: properties and required joined, the first word on anything else,
    the tightest bounds."""
    merged: dict[str, Any] = {}
    for schema in schemas:
        if not isinstance(schema, dict):
            continue
        for key, value in schema.items():
            if key == "properties":
                merged["properties"] = {**value, **merged.get("properties", {})}
            elif key == "required":
                merged["required"] = list(dict.fromkeys([*merged.get("required", []), *value]))
            elif key in ("minimum", "exclusiveMinimum", "minLength", "minItems") and key in merged:
                merged[key] = max(merged[key], value)
            elif key in ("maximum", "exclusiveMaximum", "maxLength", "maxItems") and key in merged:
                merged[key] = min(merged[key], value)
            else:
                merged.setdefault(key, value)
    return merged


def _type_of(schema: dict[str, Any], *, deep: bool) -> str | None:
    kind = schema.get("type")
    if isinstance(kind, list):
        if deep and "null" in kind:
            return "null"
        return next((k for k in kind if k != "null"), "null" if kind else None)
    if isinstance(kind, str):
        return kind
    for implied, keywords in _IMPLIED_TYPES:
        if any(keyword in schema for keyword in keywords):
            return implied
    return None


def _string(schema: dict[str, Any]) -> str:
    text = _FORMATS.get(schema.get("format", ""), "mock")
    shortest = schema.get("minLength", 0)
    if len(text) < shortest:
        text += "x" * (shortest - len(text))
    if "maxLength" in schema:
        text = text[: schema["maxLength"]]
    return text


def _number(schema: dict[str, Any], *, integer: bool) -> int | float:
    """0 if allowed, else the allowed value nearest to it (bounds, exclusive bounds and
    multipleOf all kept)."""
    low, high = schema.get("minimum"), schema.get("maximum")
    low_open, high_open = schema.get("exclusiveMinimum"), schema.get("exclusiveMaximum")
    if isinstance(low_open, bool):  # draft 4: a flag on minimum
        low_open, low = (low if low_open else None), (None if low_open else low)
    if isinstance(high_open, bool):
        high_open, high = (high if high_open else None), (None if high_open else high)
    step = schema.get("multipleOf") or (1 if integer else None)

    def allowed(value: float) -> bool:
        return (
            (low is None or value >= low)
            and (high is None or value <= high)
            and (low_open is None or value > low_open)
            and (high_open is None or value < high_open)
            and (not integer or float(value).is_integer())
        )

    lower = max((b for b in (low, low_open) if b is not None), default=None)
    upper = min((b for b in (high, high_open) if b is not None), default=None)
    candidates: list[float] = [0]
    if step is None:  # any float: a bound itself, or just inside the bounds
        candidates += [b for b in (low, high) if b is not None]
        candidates += [lower + 1] if lower is not None else []
        candidates += [upper - 1] if upper is not None else []
        candidates += [(lower + upper) / 2] if lower is not None and upper is not None else []
    else:  # the multiples of `step` next to each bound
        for bound in (lower, upper):
            if bound is not None and math.isfinite(bound / step):
                nearest = math.floor(bound / step)
                candidates += [(nearest + offset) * step for offset in (-1, 0, 1, 2)]
    for value in sorted(candidates, key=abs):
        if math.isfinite(value) and allowed(value):
            return int(value) if integer else value
    return 0  # the bounds allow nothing
