"""What fuzzing found (issue 22, item 7), one class of input at a time: each is a 4xx in the
route's own error shape (OpenAI's, Anthropic's on /v1/messages, Gemini's on /v1beta), never a
500, a connection closed unanswered, or a traceback in the log. tests/test_fuzz.py draws these
classes at random; here each has its named cases."""

from __future__ import annotations

import gzip
import logging
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest

from tests.conftest import GatewayFactory
from tests.raw_requests import JSON, send_raw

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
