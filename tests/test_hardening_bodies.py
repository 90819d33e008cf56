"""Every malformed request body is a 400 in OpenAI's shape, never a 500, a traceback, or a 502
blamed on the upstream: JSON nested too deep, invalid UTF-8, broken multipart framing; and
the form fields of an upload are bounded."""

from __future__ import annotations

import logging
from typing import Any

import orjson
import pytest
from aiohttp import web

from tests.conftest import FakeUpstream, GatewayFactory
from tests.raw_requests import JSON, JSON_ROUTES, error_of, send_raw

DEEP = "[" * 1000 + "]" * 1000


@pytest.fixture
def no_tracebacks(caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.INFO)
    yield
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


# --- JSON nested too deep, invalid UTF-8 ---


@pytest.mark.parametrize("path", list(JSON_ROUTES))
@pytest.mark.parametrize("field", ["messages", "model", "tools", "metadata", "unknown"])
async def test_json_nested_1000_deep_in_any_field_is_a_400(
    mock_url: str, no_tracebacks: None, path: str, field: str
) -> None:
    body = orjson.dumps(JSON_ROUTES[path])[:-1] + f',"{field}":{DEEP}}}'.encode()
    status, raw, _ = await send_raw(mock_url, path, body, JSON)
    assert status == 400
    error = error_of(raw)
    assert error["code"] == "json_too_deep" and "128" in error["message"]


async def test_json_nested_128_deep_is_read(mock_url: str) -> None:
    nested: Any = "leaf"
    for _ in range(126):  # the body object is one level, `metadata` one more
        nested = [nested]
    body = {**JSON_ROUTES["/v1/chat/completions"], "metadata": nested}
    status, raw, _ = await send_raw(mock_url, "/v1/chat/completions", orjson.dumps(body), JSON)
    assert status == 200, raw


async def test_brackets_inside_strings_do_not_count(mock_url: str) -> None:
    body = {"model": "mock/m", "messages": [{"role": "user", "content": "[{" * 5000}]}
    status, raw, _ = await send_raw(mock_url, "/v1/chat/completions", orjson.dumps(body), JSON)
    assert status == 200, raw


@pytest.mark.parametrize(
    "body",
    [
        b'{"model": "mock/\xff\xfe", "messages": []}',  # a typed field
        b'{"model": "mock/m", "messages": [{"role": "user", "content": "\xc3\x28"}]}',  # raw
        b'{"model": "mock/m", "messages": [], "extra": "\xed\xa0\x80"}',  # a surrogate
    ],
)
async def test_invalid_utf8_is_a_400(mock_url: str, no_tracebacks: None, body: bytes) -> None:
    status, raw, _ = await send_raw(mock_url, "/v1/chat/completions", body, JSON)
    assert status == 400
    assert "UTF-8" in error_of(raw)["message"]


# --- multipart uploads: framing errors are the client's, fields are bounded ---


def _form(boundary: str, parts: list[tuple[str, bytes]], close: bool = True) -> bytes:
    out = b""
    for head, value in parts:
        out += f"--{boundary}\r\n{head}\r\n\r\n".encode() + value + b"\r\n"
    return out + (f"--{boundary}--\r\n".encode() if close else b"")


MODEL_PART = ('Content-Disposition: form-data; name="model"', b"fake/whisper-1")
FILE_PART = (
    'Content-Disposition: form-data; name="file"; filename="a.wav"\r\nContent-Type: audio/wav',
    b"RIFF....WAVE",
)


@pytest.fixture
async def upload_url(upstream: FakeUpstream, start_gateway: GatewayFactory) -> str:
    async def transcribe(request: web.Request) -> web.Response:
        async for _ in request.content.iter_any():
            pass
        return web.json_response({"text": "heard"})

    upstream.handler = transcribe
    return await start_gateway(
        f'[server]\nmax_request_bytes = 300000\n[providers.fake]\ntype = "openai"\n'
        f'base_url = "{upstream.url}"\n'
    )


@pytest.mark.parametrize(
    ("content_type", "body", "said"),
    [
        ("multipart/form-data", _form("abc", [MODEL_PART, FILE_PART]), "no boundary"),
        ('multipart/form-data; boundary=""', _form("abc", [MODEL_PART, FILE_PART]), "boundary"),
        ("multipart/form-data; boundary=zzz", _form("abc", [MODEL_PART, FILE_PART]), "start"),
        ("multipart/form-data; boundary=abc", b"not a form at all", "start"),
        ("multipart/form-data; boundary=abc", b"", "start"),
        (
            "multipart/form-data; boundary=abc",
            _form("abc", [MODEL_PART, FILE_PART], close=False),
            "closing boundary",
        ),
        (  # cut inside the file
            "multipart/form-data; boundary=abc",
            _form("abc", [MODEL_PART, FILE_PART])[:-20],
            "closing boundary",
        ),
        (  # cut inside the file part's headers
            "multipart/form-data; boundary=abc",
            _form("abc", [MODEL_PART, FILE_PART])[:-40],
            "malformed",
        ),
        (
            "multipart/form-data; boundary=abc",
            b"--abc\r\nno colon in this header\r\n\r\nx\r\n--abc--\r\n",
            "malformed",
        ),
    ],
)
@pytest.mark.parametrize("stream", [False, True])
async def test_a_malformed_multipart_body_is_a_400_not_blamed_on_the_upstream(
    upload_url: str,
    no_tracebacks: None,
    content_type: str,
    body: bytes,
    said: str,
    stream: bool,
) -> None:
    if stream:  # the same form, asking for a streamed transcript
        body = body.replace(
            b"fake/whisper-1",
            b'fake/whisper-1\r\n--abc\r\nContent-Disposition: form-data; name="stream"\r\n\r\ntrue',
        )
    status, raw, _ = await send_raw(
        upload_url, "/v1/audio/transcriptions", body, {"Content-Type": content_type}
    )
    assert status == 400, raw
    error = error_of(raw)
    assert error["type"] == "invalid_request_error" and said in error["message"]


async def test_a_well_formed_upload_still_passes(upload_url: str) -> None:
    body = _form("abc", [MODEL_PART, FILE_PART])
    status, raw, _ = await send_raw(
        upload_url,
        "/v1/audio/transcriptions",
        body,
        {"Content-Type": "multipart/form-data; boundary=abc"},
    )
    assert status == 200 and orjson.loads(raw) == {"text": "heard"}


def _field(number: int, size: int) -> tuple[str, bytes]:
    return (f'Content-Disposition: form-data; name="f{number}"', b"v" * size)


@pytest.mark.parametrize("after_file", [False, True])
async def test_more_than_100_form_fields_is_a_400(
    upload_url: str, upstream: FakeUpstream, after_file: bool
) -> None:
    fields = [_field(i, 10) for i in range(101)]
    parts = [MODEL_PART, FILE_PART, *fields] if after_file else [MODEL_PART, *fields, FILE_PART]
    status, raw, _ = await send_raw(
        upload_url,
        "/v1/audio/transcriptions",
        _form("abc", parts),
        {"Content-Type": "multipart/form-data; boundary=abc"},
    )
    assert status == 400
    assert "100 fields" in error_of(raw)["message"]


async def test_form_fields_over_max_request_bytes_in_all_are_a_413(
    upload_url: str, upstream: FakeUpstream
) -> None:
    fields = [_field(i, 60_000) for i in range(6)]  # 360 KB of fields, each under 64 KiB
    status, raw, _ = await send_raw(
        upload_url,
        "/v1/audio/transcriptions",
        _form("abc", [MODEL_PART, *fields, FILE_PART]),
        {"Content-Type": "multipart/form-data; boundary=abc"},
    )
    assert status == 413
    assert "300000" in error_of(raw)["message"]
    assert upstream.requests == []  # refused before the upstream was called
