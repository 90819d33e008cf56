"""providers/mock/schema.py: every generated value is accepted by its schema.

The values are checked by `violations`, a small JSON Schema validator written here for the
keywords the generator claims to cover (the test environment has no jsonschema package), on
hand-written schemas of the shapes tools and structured outputs use, and on random ones.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from providers.mock.schema import SchemaError, instance

_TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


def violations(schema: Any, value: Any, root: Any = None, path: str = "$") -> list[str]:
    """What `value` breaks in `schema` (empty: valid)."""
    root = schema if root is None else root
    if schema is True:
        return []
    if schema is False:
        return [f"{path}: no value is allowed"]
    found: list[str] = []
    if "$ref" in schema:
        target: Any = root
        for part in filter(None, schema["$ref"].removeprefix("#").split("/")):
            target = target[part]
        found += violations(target, value, root, path)
    kinds = schema.get("type")
    if kinds is not None:
        kinds = kinds if isinstance(kinds, list) else [kinds]
        if not any(_TYPES[kind](value) for kind in kinds):
            return [*found, f"{path}: {value!r} is not of type {kinds}"]
    if "const" in schema and value != schema["const"]:
        found.append(f"{path}: {value!r} is not {schema['const']!r}")
    if "enum" in schema and value not in schema["enum"]:
        found.append(f"{path}: {value!r} is not one of {schema['enum']}")
    for sub in schema.get("allOf", ()):
        found += violations(sub, value, root, path)
    if "anyOf" in schema and all(violations(s, value, root, path) for s in schema["anyOf"]):
        found.append(f"{path}: {value!r} matches no anyOf branch")
    if "oneOf" in schema:
        matching = [s for s in schema["oneOf"] if not violations(s, value, root, path)]
        if len(matching) != 1:
            found.append(f"{path}: {value!r} matches {len(matching)} oneOf branches")
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        for name in schema.get("required", ()):
            if name not in value:
                found.append(f"{path}: {name!r} is required")
        for name, item in value.items():
            if name in properties:
                found += violations(properties[name], item, root, f"{path}.{name}")
            elif "additionalProperties" in schema:
                extra = schema["additionalProperties"]
                found += violations(extra, item, root, f"{path}.{name}")
    if isinstance(value, list):
        prefix = schema.get("prefixItems", [])
        for index, item in enumerate(value):
            sub = prefix[index] if index < len(prefix) else schema.get("items", True)
            found += violations(sub, item, root, f"{path}[{index}]")
        if len(value) < schema.get("minItems", 0):
            found.append(f"{path}: fewer than minItems")
        if len(value) > schema.get("maxItems", math.inf):
            found.append(f"{path}: more than maxItems")
    if isinstance(value, str) and not (
        schema.get("minLength", 0) <= len(value) <= schema.get("maxLength", math.inf)
    ):
        found.append(f"{path}: length {len(value)} out of bounds")
    if _TYPES["number"](value):
        bounds = [
            ("minimum", lambda v, b: v >= b),
            ("maximum", lambda v, b: v <= b),
            ("exclusiveMinimum", lambda v, b: v > b),
            ("exclusiveMaximum", lambda v, b: v < b),
        ]
        for keyword, holds in bounds:
            if keyword in schema and not holds(value, schema[keyword]):
                found.append(f"{path}: {value} breaks {keyword} {schema[keyword]}")
        step = schema.get("multipleOf")
        if step and not math.isclose(value / step, round(value / step), abs_tol=1e-9):
            found.append(f"{path}: {value} is not a multiple of {step}")
    return found


WEATHER = {
    "type": "object",
    "properties": {
        "location": {"type": "string", "description": "City and country"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        "days": {"type": "integer", "minimum": 1, "maximum": 14},
    },
    "required": ["location", "unit"],
    "additionalProperties": False,
}

# OpenAI strict structured output, as the SDK builds it from a pydantic model with a nested
# model, a list of them, an optional field and a recursive one.
STRICT_WITH_DEFS = {
    "$defs": {
        "Step": {
            "type": "object",
            "properties": {
                "explanation": {"type": "string"},
                "output": {"type": "string"},
                "substeps": {"type": "array", "items": {"$ref": "#/$defs/Step"}},
            },
            "required": ["explanation", "output", "substeps"],
            "additionalProperties": False,
        }
    },
    "type": "object",
    "properties": {
        "steps": {"type": "array", "items": {"$ref": "#/$defs/Step"}},
        "final_answer": {"type": "string"},
        "confidence": {"anyOf": [{"type": "number"}, {"type": "null"}]},
    },
    "required": ["steps", "final_answer", "confidence"],
    "additionalProperties": False,
}


@pytest.mark.parametrize(
    "schema",
    [
        WEATHER,
        STRICT_WITH_DEFS,
        {"type": "object", "properties": {}},
        {"type": "array", "items": {"type": "integer", "multipleOf": 7, "minimum": 10}},
        {"type": "array", "prefixItems": [{"const": "a"}, {"type": "boolean"}], "minItems": 2},
        {"type": "array", "items": {"type": "string"}, "minItems": 3, "maxItems": 3},
        {"type": "string", "minLength": 12, "maxLength": 20},
        {"type": "string", "maxLength": 2},
        {"type": "string", "format": "date-time"},
        {"type": "number", "exclusiveMinimum": 5, "maximum": 5.5},
        {"type": "number", "minimum": -3, "exclusiveMaximum": -2},
        {"type": "integer", "exclusiveMinimum": 0, "exclusiveMaximum": 2},
        {"type": "integer", "minimum": -20, "maximum": -10, "multipleOf": 3},
        {"type": ["null", "string"]},
        {"oneOf": [{"type": "null"}, {"type": "object", "required": ["a"]}]},
        {
            "allOf": [
                {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]},
                {"properties": {"b": {"type": "integer", "minimum": 3}}, "required": ["b"]},
            ]
        },
        {"properties": {"nested": {"properties": {"deep": {"items": {"minimum": 2}}}}}},
        {
            "definitions": {"node": {"type": "object", "properties": {"next": {"$ref": "#"}}}},
            "$ref": "#/definitions/node",
        },
    ],
)
def test_the_generated_value_is_valid_for_its_schema(schema: dict[str, Any]) -> None:
    value = instance(schema)
    assert violations(schema, value) == []


def test_an_object_gets_its_properties_and_the_first_enum_value() -> None:
    value = instance(WEATHER)
    assert value == {"location": "mock", "unit": "celsius", "days": 1}


def test_a_recursive_schema_ends() -> None:
    tree = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "children": {"items": {"$ref": "#"}}},
        "required": ["name", "children"],
    }
    value = instance(tree)
    assert violations(tree, value) == []
    depth, node = 0, value
    while node["children"]:
        depth, node = depth + 1, node["children"][0]
    assert 0 < depth < 10


@pytest.mark.parametrize(
    "schema",
    [
        {"anyOf": [{"$ref": "#/$defs/a"}], "$defs": {"a": {"$ref": "#/$defs/a"}}},
        {
            "allOf": [{"$ref": "#/$defs/a"}],
            "$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/a"}},
        },
    ],
)
def test_a_reference_to_itself_ends_instead_of_hanging(schema: dict[str, Any]) -> None:
    instance(schema)  # any value: a schema that is only a reference loop allows anything


def test_the_validator_here_can_fail() -> None:
    """The checks above would catch a wrong value: the validator is not vacuous."""
    assert violations(WEATHER, {"location": "x", "unit": "kelvin"})
    assert violations(WEATHER, {"location": "x"})
    assert violations(STRICT_WITH_DEFS, {"steps": [{}], "final_answer": "", "confidence": None})
    assert violations({"type": "integer", "multipleOf": 3}, 4)
    assert violations({"type": "string", "minLength": 3}, "ab")


# --- random schemas ---------------------------------------------------------------------------

_names = st.text(alphabet="abcdefgh_", min_size=1, max_size=6)
_leaves = st.one_of(
    st.builds(
        lambda low, span, step: {
            "type": "integer",
            "minimum": low,
            "maximum": low + span,
            **({"multipleOf": step} if step else {}),
        },
        st.integers(-50, 50),
        st.integers(0, 40),
        st.sampled_from([None, 2, 5]),
    ),
    st.builds(
        lambda low, span, open_low: {
            "type": "number",
            ("exclusiveMinimum" if open_low else "minimum"): low,
            "maximum": low + span,
        },
        st.floats(-1e6, 1e6, allow_nan=False),
        st.floats(0.5, 100, allow_nan=False),
        st.booleans(),
    ),
    st.builds(
        lambda low, extra: {"type": "string", "minLength": low, "maxLength": low + extra},
        st.integers(0, 30),
        st.integers(0, 10),
    ),
    st.lists(st.one_of(st.integers(), _names), min_size=1, max_size=4, unique=True).map(
        lambda values: {"enum": values}
    ),
    st.just({"type": "boolean"}),
    st.just({"type": "null"}),
    st.just({"type": ["string", "null"]}),
)


def _no_multiple_in_range(schema: dict[str, Any]) -> bool:
    step = schema.get("multipleOf", 1)
    return not any(value % step == 0 for value in range(schema["minimum"], schema["maximum"] + 1))


def _compound(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    objects = st.dictionaries(_names, children, max_size=4).flatmap(
        lambda props: st.builds(
            lambda required, closed: {
                "type": "object",
                "properties": props,
                "required": required,
                "additionalProperties": not closed,
            },
            st.lists(st.sampled_from(sorted(props)), unique=True) if props else st.just([]),
            st.booleans(),
        )
    )
    arrays = st.builds(
        lambda items, low, extra: {
            "type": "array",
            "items": items,
            "minItems": low,
            "maxItems": low + extra,
        },
        children,
        st.integers(0, 3),
        st.integers(0, 2),
    )
    choices = st.lists(children, min_size=1, max_size=3).map(lambda branches: {"anyOf": branches})
    return st.one_of(objects, arrays, choices)


_schemas = st.recursive(_leaves, _compound, max_leaves=12).filter(
    lambda schema: not _has_empty_integer_range(schema)
)


def _has_empty_integer_range(schema: Any) -> bool:
    if isinstance(schema, dict):
        if schema.get("type") == "integer" and _no_multiple_in_range(schema):
            return True
        return any(_has_empty_integer_range(value) for value in schema.values())
    if isinstance(schema, list):
        return any(_has_empty_integer_range(value) for value in schema)
    return False


@settings(max_examples=300, deadline=None)
@given(_schemas)
def test_any_generated_schema_gets_a_valid_value(schema: dict[str, Any]) -> None:
    assert violations(schema, instance(schema)) == []


@pytest.mark.parametrize(
    ("schema", "said"),
    [
        ({"type": "array", "minItems": "x"}, "$.minItems"),
        ({"type": "object", "properties": [1]}, "$.properties"),
        ({"type": "object", "required": 5}, "$.required"),
        ({"$ref": 5}, "$.$ref"),
        ({"enum": 5}, "$.enum"),
        ({"anyOf": 5}, "$.anyOf"),
        ({"allOf": [{"minimum": "a"}, {"minimum": 1}]}, "$.allOf[0].minimum"),
        ({"type": "integer", "multipleOf": 0}, "$.multipleOf"),
        ({"type": "string", "maxLength": -1}, "$.maxLength"),
        ({"type": {"a": 1}}, "$.type"),
        ({"$defs": [1], "$ref": "#/$defs/0"}, "$.$defs"),
        (5, "got `int`"),
        ({"$ref": "#/properties/a/type", "properties": {"a": {"type": "string"}}}, "$ref"),
        ({"$ref": "#/enum/0", "enum": [{"properties": 5}]}, "$.properties"),
    ],
)
def test_a_schema_with_a_keyword_of_the_wrong_type_is_a_schema_error(
    schema: Any, said: str
) -> None:
    with pytest.raises(SchemaError, match="not a valid JSON schema") as raised:
        instance(schema)
    assert said in str(raised.value)


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "array", "minItems": 10**9},
        {"type": "string", "minLength": 10**9},
        {
            "type": "array",
            "minItems": 100,
            "items": {
                "type": "array",
                "minItems": 100,
                "items": {"type": "array", "minItems": 100},
            },
        },
    ],
)
def test_a_schema_asking_for_a_huge_instance_is_a_schema_error_at_once(schema: Any) -> None:
    with pytest.raises(SchemaError, match="more than 100000 values and characters"):
        instance(schema)


@pytest.mark.parametrize(
    "schema",
    [
        {"$defs": {"a": {"allOf": [{"$ref": "#/$defs/a"}]}}, "$ref": "#/$defs/a"},
        {"allOf": [{"$ref": "#"}]},
        {"$ref": "#/x/1"},
        {"$ref": "#anchor"},
        {"$ref": "#/properties/a/0", "properties": {"a": {"type": "string"}}},
        {"type": "integer", "minimum": 1e308, "multipleOf": 1e-300},
        {"type": "number", "minimum": 1.7e308, "maximum": 1.75e308},
    ],
)
def test_references_that_lead_nowhere_or_back_and_extreme_bounds_still_end(schema: Any) -> None:
    instance(schema)  # a value, not an exception nor a hang
