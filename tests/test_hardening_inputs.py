"""What fuzzing found (issue 22, item 7), one class of input at a time: each is a 4xx in the
route's own error shape (OpenAI's, Anthropic's on /v1/messages, Gemini's on /v1beta), never a
500, a connection closed unanswered, or a traceback in the log. tests/test_fuzz.py draws these
classes at random; here each has its named cases."""

from __future__ import annotations

import gzip
import json
import logging
import zlib
from collections.abc import Callable, Iterator
from typing import Any
from unittest.mock import ANY
from urllib.parse import quote

import orjson
import pytest
from aiohttp import web

from tests import fuzz_cases
from tests.conftest import FakeUpstream, GatewayFactory, provider_toml
from tests.raw_requests import JSON, send_raw
from wire.jsonints import out_of_range

MESSAGES = [{"role": "user", "content": "hi"}]
# One route of each error shape, with a body the mock answers.
SHAPED = {
    "openai": ("/v1/chat/completions", {"model": "mock/m", "messages": MESSAGES}),
    "anthropic": ("/v1/messages", {"model": "mock/m", "max_tokens": 5, "messages": MESSAGES}),
    "gemini": (
        "/v1beta/models/mock/m:generateContent",
        {"contents": [{"parts": [{"text": "hi"}]}]},
    ),
}


def shaped_error(shape: str, raw: bytes) -> dict[str, Any]:
    """The error of an answer in `shape`'s error shape (its fields, exactly)."""
    body = orjson.loads(raw)
    if shape == "anthropic":
        assert set(body) == {"type", "error"} and body["type"] == "error", body
        assert set(body["error"]) == {"type", "message"}, body
    elif shape == "gemini":
        assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "status"}
    else:
        assert set(body) == {"error"}, body
        assert set(body["error"]) == {"message", "type", "param", "code"}, body
    error: dict[str, Any] = body["error"]
    assert isinstance(error["message"], str) and error["message"]
    return error


@pytest.fixture
def no_tracebacks(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    caplog.set_level(logging.INFO)
    yield
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


# --- Content-Encoding ---

ENCODERS: dict[str, Callable[[bytes], bytes]] = {
    "gzip": gzip.compress,
    "x-gzip": gzip.compress,
    "deflate": zlib.compress,
    "deflate (raw)": lambda data: zlib.compress(data, wbits=-15),
}


@pytest.mark.parametrize("coding", list(ENCODERS))
@pytest.mark.parametrize("shape", list(SHAPED))
async def test_a_gzip_or_deflate_body_is_read(mock_url: str, coding: str, shape: str) -> None:
    path, body = SHAPED[shape]
    headers = {**JSON, "Content-Encoding": coding.split(" ")[0]}
    status, raw, _ = await send_raw(mock_url, path, ENCODERS[coding](orjson.dumps(body)), headers)
    assert status == 200, raw


@pytest.mark.parametrize(
    ("coding", "encode"),
    [
        ("gzip", lambda data: data),  # not compressed at all
        ("gzip", lambda data: gzip.compress(data)[:-12]),  # cut short
        ("gzip", lambda data: b"\x1f\x8b\x08garbage" + data),
        ("gzip", lambda data: gzip.compress(data) + b"trailing"),
        ("deflate", lambda data: data),
        ("deflate", lambda data: zlib.compress(data)[:-4]),
        ("gzip", lambda data: b""),
    ],
)
@pytest.mark.parametrize("shape", list(SHAPED))
async def test_a_body_that_does_not_inflate_is_a_400_in_the_routes_shape(
    mock_url: str,
    no_tracebacks: None,
    coding: str,
    encode: Callable[[bytes], bytes],
    shape: str,
) -> None:
    path, body = SHAPED[shape]
    headers = {**JSON, "Content-Encoding": coding}
    status, raw, _ = await send_raw(mock_url, path, encode(orjson.dumps(body)), headers)
    assert status == 400, raw
    assert f"not valid {coding}" in shaped_error(shape, raw)["message"]


@pytest.mark.parametrize("coding", ["br", "zstd", "compress", "foo", "gzip, br", "gzip, gzip"])
@pytest.mark.parametrize("shape", list(SHAPED))
async def test_an_unsupported_content_encoding_is_a_415_naming_those_taken(
    mock_url: str, no_tracebacks: None, coding: str, shape: str
) -> None:
    path, body = SHAPED[shape]
    headers = {**JSON, "Content-Encoding": coding}
    status, raw, answer_headers = await send_raw(mock_url, path, orjson.dumps(body), headers)
    assert status == 415, raw
    assert repr(coding) in shaped_error(shape, raw)["message"]
    assert answer_headers["Accept-Encoding"] == "gzip, deflate"


async def test_a_body_inflating_past_max_request_bytes_is_a_413(
    start_gateway: GatewayFactory, no_tracebacks: None
) -> None:
    url = await start_gateway("[server]\nmax_request_bytes = 100000\n[providers.mock]\n")
    body = orjson.dumps({"model": "mock/m", "messages": MESSAGES, "pad": " " * 10_000_000})
    small = gzip.compress(body)
    assert len(small) < 100_000
    headers = {**JSON, "Content-Encoding": "gzip"}
    status, raw, _ = await send_raw(url, "/v1/chat/completions", small, headers)
    assert status == 413
    assert "inflates to more than the limit of 100000" in shaped_error("openai", raw)["message"]


async def test_a_compressed_upload_is_a_415(mock_url: str, no_tracebacks: None) -> None:
    form = (
        b'--x\r\nContent-Disposition: form-data; name="model"\r\n\r\nmock/w\r\n'
        b'--x\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\nRIFF\r\n'
        b"--x--\r\n"
    )
    headers = {"Content-Type": "multipart/form-data; boundary=x", "Content-Encoding": "gzip"}
    status, raw, answer_headers = await send_raw(
        mock_url, "/v1/audio/transcriptions", gzip.compress(form), headers
    )
    assert status == 415
    assert "'gzip'" in shaped_error("openai", raw)["message"]
    assert answer_headers["Accept-Encoding"] == "identity"


# --- integers past 64 bits ---

BIG = 2**64


@pytest.fixture
async def translating_url(upstream: FakeUpstream, start_gateway: GatewayFactory) -> str:
    """The mock, and a Gemini and an Anthropic provider (translated) on the fake upstream."""
    return await start_gateway(
        "[providers.mock]\ndelay = 0\n"
        + provider_toml(upstream.url, "gem", type="gemini", api_key="k")
        + provider_toml(upstream.url, "claude", type="anthropic", api_key="k")
    )


def _with(body: dict[str, Any], where: str, number: int) -> bytes:
    """`body` as JSON with `number` at `where`: a new top-level field, or in its first
    message (text for a typed field would be refused for its type, not its size)."""
    text = json.dumps(body)
    if where == "top":
        return text[:-1].encode() + f', "x": {number}}}'.encode()
    at = text.index("hi") + len("hi")
    return text[:at].encode() + f'", "extra": {number}, "y": "'.encode() + text[at:].encode()


@pytest.mark.parametrize("number", [2**64, -(2**63) - 1, 10**40])
@pytest.mark.parametrize("where", ["top", "inner"])
@pytest.mark.parametrize(
    ("shape", "path", "model"),
    [
        ("openai", "/v1/responses", "mock/m"),  # bridged through chat
        ("openai", "/v1/responses", "claude/m"),
        ("openai", "/v1/chat/completions", "gem/m"),  # translated to Gemini's API
        ("anthropic", "/v1/messages", "mock/m"),
        ("anthropic", "/v1/messages", "claude/m"),  # passed through
        ("gemini", "/v1beta/models/mock/m:generateContent", None),
    ],
)
async def test_an_integer_past_64_bits_is_a_400_in_the_routes_shape(
    translating_url: str,
    upstream: FakeUpstream,
    no_tracebacks: None,
    number: int,
    where: str,
    shape: str,
    path: str,
    model: str | None,
) -> None:
    body = {
        "/v1/responses": {"model": model, "input": [{"role": "user", "content": "hi"}]},
        "/v1/chat/completions": {"model": model, "messages": MESSAGES},
        "/v1/messages": {"model": model, "max_tokens": 5, "messages": MESSAGES},
    }.get(path, {"contents": [{"parts": [{"text": "hi"}]}]})
    status, raw, _ = await send_raw(translating_url, path, _with(body, where, number), JSON)
    assert status == 400, raw
    error = shaped_error(shape, raw)
    assert "outside the 64-bit range" in error["message"]
    assert str(number)[:20] in error["message"]
    assert upstream.requests == []


@pytest.mark.parametrize(
    "extra",
    [
        2**64 - 1,  # the largest unsigned 64-bit integer, and the smallest signed one
        -(2**63),
        "12345678901234567890123456789",  # digits in a string
        '\\"12345678901234567890123456789\\"',  # after an escaped quote
        1.2345678901234568e29,  # floats of any size
        "1e400x",
    ],
)
async def test_numbers_within_64_bits_floats_and_digits_in_strings_are_read(
    mock_url: str, extra: Any
) -> None:
    text = json.dumps({"model": "mock/m", "messages": MESSAGES, "x": extra})
    status, raw, _ = await send_raw(mock_url, "/v1/chat/completions", text.encode(), JSON)
    assert status == 200, raw


@pytest.mark.parametrize(
    ("text", "found"),
    [
        (b'{"a": 18446744073709551616}', 2**64),
        (b'{"a": [1, -9223372036854775809]}', -(2**63) - 1),
        (b'{"a": 18446744073709551615, "b": -9223372036854775808}', None),
        (b'{"a": "18446744073709551616"}', None),
        (b'{"a": "x\\"18446744073709551616\\"", "b": 1}', None),
        (b'{"a": "\\\\", "b": 18446744073709551616}', 2**64),
        (b'{"a": 123456789012345678901234.5}', None),
        (b'{"a": 1e18446744073709551616}', None),
        (b'{"a": 1.5E-18446744073709551616}', None),
        (b'{"a": 18446744073709551616e2}', None),
    ],
)
def test_out_of_range_finds_integers_only(text: bytes, found: int | None) -> None:
    assert out_of_range(text) == found


# --- control characters in model names ---


@pytest.fixture
async def serving_url(upstream: FakeUpstream, start_gateway: GatewayFactory) -> str:
    """The mock, and an OpenAI provider `fake` whose upstream answers every chat request."""

    async def answer(request: web.Request) -> web.StreamResponse:
        return web.json_response(orjson.loads(fuzz_cases.encode({"choices": []})))

    upstream.handler = answer
    return await start_gateway(
        "[providers.mock]\ndelay = 0\n" + provider_toml(upstream.url, api_key="k")
    )


CONTROL_NAMES = ["m\r\nX-Injected: 1", "m\n", "\rm", "m\x00", "m\x7f", "m\tx", "m\x85", "m\u2028"]


@pytest.mark.parametrize("name", CONTROL_NAMES)
@pytest.mark.parametrize("provider", ["mock", "fake"])
@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(
    ("shape", "path"),
    [
        ("openai", "/v1/chat/completions"),
        ("openai", "/v1/responses"),
        ("openai", "/v1/embeddings"),
        ("anthropic", "/v1/messages"),
        ("gemini", "/v1beta/models/{model}:generateContent"),
    ],
)
async def test_a_model_name_with_a_control_character_is_a_400(
    serving_url: str,
    upstream: FakeUpstream,
    no_tracebacks: None,
    name: str,
    provider: str,
    stream: bool,
    shape: str,
    path: str,
) -> None:
    model = f"{provider}/{name}"
    body: dict[str, Any] = {"model": model, "stream": stream, "input": "hi", "max_tokens": 5}
    body["messages"] = MESSAGES
    if shape == "gemini":
        method = "streamGenerateContent" if stream else "generateContent"
        path = f"/v1beta/models/{quote(model, safe='/')}:{method}"
        body = {"contents": [{"parts": [{"text": "hi"}]}]}
    status, raw, headers = await send_raw(serving_url, path, orjson.dumps(body), JSON)
    error = shaped_error(shape, raw)
    if shape == "gemini" and "\n" in name:  # the path matches no route: aiohttp's `.` ends there
        assert status == 404 and "Unknown request URL" in error["message"]
    else:
        assert status == 400, raw
        assert "control character" in error["message"]
    assert "X-Injected" not in headers
    assert upstream.requests == []


@pytest.mark.parametrize("field", ["fallbacks", "upload"])
async def test_a_fallback_or_upload_model_with_a_control_character_is_a_400(
    serving_url: str, upstream: FakeUpstream, no_tracebacks: None, field: str
) -> None:
    if field == "upload":
        case = fuzz_cases.upload_case(
            "/v1/audio/transcriptions",
            [(b"model", b"fake/w\r\nX: 1")],
            file=(b"a.wav", b"audio/wav", b"RIFF"),
        )
    else:
        body = {"model": "mock/m", "messages": MESSAGES, "fallbacks": ["fake/m\r\n"]}
        case = fuzz_cases.json_case("/v1/chat/completions", body)
    status, raw, _ = await send_raw(serving_url, case.path, case.body, case.headers)
    assert status == 400, raw
    error = shaped_error("openai", raw)
    assert "control character" in error["message"] and error["code"] == "invalid_model"
    assert upstream.requests == []


async def test_a_model_name_with_other_unicode_is_served(serving_url: str) -> None:
    body = {"model": "mock/modèle-世界", "messages": MESSAGES}
    status, raw, headers = await send_raw(
        serving_url, "/v1/chat/completions", orjson.dumps(body), JSON
    )
    assert status == 200, raw
    assert headers["x-gateway-model"] == "mock/modèle-世界"


# --- multipart part headers, and a second `model` ---


@pytest.fixture
async def upload_url(upstream: FakeUpstream, start_gateway: GatewayFactory) -> str:
    """The mock, an OpenAI provider `fake` that transcribes, and an alias `both` that may send
    an upload twice (so the gateway spools it); a key `narrow` that may use mock/* only."""

    async def transcribe(request: web.Request) -> web.Response:
        form = await request.post()
        upstream.requests[-1]["form"] = {key: str(value) for key, value in form.items()}
        return web.json_response({"text": "heard"})

    upstream.handler = transcribe
    return await start_gateway(
        "[providers.mock]\ndelay = 0\n"
        + provider_toml(upstream.url, api_key="k")
        + '[models.both]\ntargets = ["fake/w", "mock/w"]\n'
        + '[keys.narrow]\nvalue = "sk-narrow"\nmodels = ["mock/*", "both"]\n'
    )


UPLOAD = "/v1/audio/transcriptions"
NARROW = {"Authorization": "Bearer sk-narrow"}


def _upload(
    fields: list[tuple[bytes, bytes]],
    after: list[tuple[bytes, bytes]] = (),  # type: ignore[assignment]
    filename: bytes = b"a.wav",
    file_type: bytes = b"audio/wav",
) -> tuple[bytes, dict[str, str]]:
    case = fuzz_cases.upload_case(UPLOAD, fields, (filename, file_type, b"RIFF"), after)
    return case.body, {**case.headers, **NARROW}


@pytest.mark.parametrize(
    "where",
    ["field name", "file name", "file type", "file name (control)", "field name (NUL)"],
)
@pytest.mark.parametrize("model", [b"mock/w", b"both"])
@pytest.mark.parametrize("stream", [b"false", b"true"])
async def test_a_part_header_that_is_not_utf8_text_is_a_400(
    upload_url: str,
    upstream: FakeUpstream,
    no_tracebacks: None,
    where: str,
    model: bytes,
    stream: bytes,
) -> None:
    fields = [(b"model", model), (b"stream", stream)]
    filename, file_type = b"a.wav", b"audio/wav"
    if where == "field name":
        fields.append((b"lang\xffuage", b"en"))
    elif where == "field name (NUL)":
        fields.append((b"lang\x00uage", b"en"))
    elif where == "file name":
        filename = b"a\xff.wav"
    elif where == "file name (control)":
        filename = b"a\x1b.wav"
    else:
        file_type = b"audio/\xc3(wav"
    body, headers = _upload(fields, filename=filename, file_type=file_type)
    status, raw, _ = await send_raw(upload_url, UPLOAD, body, headers)
    assert status == 400, raw
    error = shaped_error("openai", raw)
    if "control" in where or "NUL" in where:  # aiohttp's reader refuses these itself
        assert "a part's headers cannot be read" in error["message"]
    else:
        assert error["code"] == "invalid_multipart_header" and "UTF-8 text" in error["message"]
    assert upstream.requests == []


@pytest.mark.parametrize("model", [b"mock/w", b"both"])
@pytest.mark.parametrize("stream", [b"false", b"true"])
@pytest.mark.parametrize("after_file", [False, True])
async def test_a_form_with_a_second_model_is_a_400(
    upload_url: str,
    upstream: FakeUpstream,
    no_tracebacks: None,
    model: bytes,
    stream: bytes,
    after_file: bool,
) -> None:
    """The key may use mock/* and `both`: a second model, after the file, once went upstream
    as it was, unchecked (to `fake` via `both`, the client's `fake/secret`)."""
    second = [(b"model", b"fake/secret")]
    fields = [(b"model", model), (b"stream", stream)]
    body, headers = _upload(fields, after=second) if after_file else _upload(fields + second)
    status, raw, _ = await send_raw(upload_url, UPLOAD, body, headers)
    assert status == 400, raw
    error = shaped_error("openai", raw)
    assert error["code"] == "duplicate_parameter" and error["param"] == "model"
    assert all("fake/secret" not in str(r.get("form")) for r in upstream.requests)


async def test_a_form_with_one_model_and_fields_after_the_file_is_served(
    upload_url: str, upstream: FakeUpstream
) -> None:
    body, headers = _upload([(b"model", b"both")], after=[(b"language", b"fr")])
    status, raw, _ = await send_raw(upload_url, UPLOAD, body, headers)
    assert status == 200, raw
    assert upstream.requests[-1]["form"] == {"model": "w", "file": ANY, "language": "fr"}


# --- Responses bodies through the chat bridge ---


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("input", [{"role": "user", "content": 5}]),
        ("input", [{"role": "user", "content": [5]}]),
        ("input", [{"role": "user", "content": [{"type": 5, "text": "hi"}]}]),
        ("input", [{"role": "user", "content": [{"type": ["input_text"]}]}]),
        ("input", [{"role": "user", "content": [{"text": "no type"}]}]),
        ("input", [{"role": 5, "content": "hi"}]),
        ("input", [{"type": {"a": 1}}]),
        ("input", 5),
        ("text", {"format": 1}),
        ("text", {"format": ["json_schema"]}),
    ],
)
@pytest.mark.parametrize("model", ["mock/m", "claude/m"])
@pytest.mark.parametrize("stream", [False, True])
async def test_a_wrongly_typed_responses_field_is_a_400_naming_it(
    translating_url: str,
    upstream: FakeUpstream,
    no_tracebacks: None,
    field: str,
    value: Any,
    model: str,
    stream: bool,
) -> None:
    body = {"model": model, "input": "hi", "stream": stream, field: value}
    status, raw, _ = await send_raw(translating_url, "/v1/responses", orjson.dumps(body), JSON)
    assert status == 400, raw
    error = shaped_error("openai", raw)
    assert error["param"] == field and error["code"] == "invalid_type"
    assert upstream.requests == []


# --- the mock: schemas it makes instances of, embeddings' dimensions ---


@pytest.mark.parametrize(
    ("where", "schema", "param", "code"),
    [
        ("tools", {"type": "array", "minItems": "x"}, "tools", "invalid_function_parameters"),
        ("tools", {"type": "array", "minItems": 10**9}, "tools", "invalid_function_parameters"),
        (
            "format",
            {"type": "string", "minLength": 10**9},
            "response_format",
            "invalid_json_schema",
        ),
        (
            "format",
            {"$ref": "#/x", "x": {"minimum": "a"}},
            "response_format",
            "invalid_json_schema",
        ),
        ("format", 5, "response_format", "invalid_type"),
    ],
)
@pytest.mark.parametrize("stream", [False, True])
async def test_the_mock_refuses_a_schema_it_cannot_make_an_instance_of(
    mock_url: str, no_tracebacks: None, where: str, schema: Any, param: str, code: str, stream: bool
) -> None:
    body: dict[str, Any] = {"model": "mock/m", "messages": MESSAGES, "stream": stream}
    if where == "tools":
        body["tools"] = [{"type": "function", "function": {"name": "f", "parameters": schema}}]
    elif isinstance(schema, dict):
        body["response_format"] = {"type": "json_schema", "json_schema": {"schema": schema}}
    else:
        body["response_format"] = {"type": "json_schema", "json_schema": schema}
    status, raw, _ = await send_raw(mock_url, "/v1/chat/completions", orjson.dumps(body), JSON)
    assert status == 400, raw
    error = shaped_error("openai", raw)
    assert error["param"] == param and error["code"] == code


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        ({"dimensions": 0}, "dimensions", "integer_below_min_value"),
        ({"dimensions": -3}, "dimensions", "integer_below_min_value"),
        ({"dimensions": 3073}, "dimensions", "integer_above_max_value"),
        (
            {"dimensions": 10**9, "encoding_format": "base64"},
            "dimensions",
            "integer_above_max_value",
        ),
        ({"input": []}, "input", None),
        ({"input": ["a", ""]}, "input", None),
    ],
)
async def test_the_mock_refuses_embeddings_openai_would(
    mock_url: str, no_tracebacks: None, body: dict[str, Any], param: str, code: str | None
) -> None:
    request = {"model": "mock/e", "input": "hi", **body}
    status, raw, _ = await send_raw(mock_url, "/v1/embeddings", orjson.dumps(request), JSON)
    assert status == 400, raw
    error = shaped_error("openai", raw)
    assert error["param"] == param and error["code"] == code


async def test_the_mock_embeds_up_to_3072_dimensions(mock_url: str) -> None:
    request = {"model": "mock/e", "input": "hi", "dimensions": 3072}
    status, raw, _ = await send_raw(mock_url, "/v1/embeddings", orjson.dumps(request), JSON)
    assert status == 200 and len(orjson.loads(raw)["data"][0]["embedding"]) == 3072
