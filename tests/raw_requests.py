"""Requests as raw bytes to each JSON route of the gateway, and the error answers they get:
for the tests of what the gateway refuses before any provider sees a request."""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson

MESSAGES = [{"role": "user", "content": "hi"}]
# Each JSON route with a body it takes (the mock answers every one).
JSON_ROUTES = {
    "/v1/chat/completions": {"model": "mock/m", "messages": MESSAGES},
    "/v1/completions": {"model": "mock/m", "prompt": "hi"},
    "/v1/responses": {"model": "mock/m", "input": "hi"},
    "/v1/embeddings": {"model": "mock/m", "input": "hi"},
    "/v1/audio/speech": {"model": "mock/m", "input": "hi", "voice": "alloy"},
}
JSON = {"Content-Type": "application/json"}


def error_of(raw: bytes) -> dict[str, Any]:
    """The `error` of an error answer, which has OpenAI's four fields and a message."""
    body = orjson.loads(raw)
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    error: dict[str, Any] = body["error"]
    return error


async def send_raw(
    url: str, path: str, body: bytes, headers: dict[str, str] | None = None
) -> tuple[int, bytes, dict[str, str]]:
    """POST `body` as it is (no Content-Type unless given): status, body and headers."""
    async with (
        aiohttp.ClientSession(skip_auto_headers=("Content-Type",)) as session,
        session.post(url + path, data=body, headers=headers or {}) as response,
    ):
        return response.status, await response.read(), dict(response.headers)
