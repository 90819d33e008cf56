"""One fake upstream per provider type, answering any request as that provider would.

Each serves the suite's documented wire fixtures (tests/fixtures/<provider>/, see the README
there) from the conftest `upstream` server, in random byte splits: a streamed request gets the
provider's text stream, a whole one the same answer whole (each pair carries the same text:
`FakeProvider.text`), a token count the provider's count. `FakeProvider.toml` is the gateway
config that puts the provider behind the fake, as its `[server] default_provider`, so that
clients' bare model names (Claude Code's, Codex's, a Gemini URL's) reach it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from tests.conftest import Handler
from tests.replay import fixture, replay
from tests.streams import chat_completion, openai_chat_stream

EVENTSTREAM = "application/vnd.amazon.eventstream"
NDJSON = "application/x-ndjson"
CHAT_TOKENS = ["Hello", " from", " the", " upstream", " ✓"]


def _json(body: Any, status: int = 200) -> web.Response:
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    return web.Response(body=data, status=status, content_type="application/json")


async def _streamed(request: web.Request, default: bool = False) -> bool:
    body = orjson.loads(await request.read() or b"{}")
    return bool(body.get("stream", default)) if isinstance(body, dict) else default


def _not_found(request: web.Request) -> web.Response:
    error = {"message": f"no route {request.method} {request.path}", "type": "not_found"}
    return _json({"error": error}, status=404)


async def openai_compat(request: web.Request) -> web.StreamResponse:
    """A chat-only OpenAI-compatible server (vLLM, llama.cpp, ...): /responses is a 404."""
    if request.path.endswith("/chat/completions"):
        if await _streamed(request):
            return await replay(b"".join(openai_chat_stream(CHAT_TOKENS)))(request)
        return _json(chat_completion("".join(CHAT_TOKENS)))
    return _not_found(request)


async def openai_native(request: web.Request) -> web.StreamResponse:
    """OpenAI itself: chat, and its own Responses API."""
    if request.path.endswith("/responses"):
        if await _streamed(request):
            return await replay(fixture("openai/responses_text.sse"))(request)
        return _json(fixture("openai/responses_text.json"))
    return await openai_compat(request)


async def anthropic(request: web.Request) -> web.StreamResponse:
    if request.path.endswith("/messages/count_tokens"):
        return _json({"input_tokens": 2095})  # docs.anthropic.com/en/api/messages-count-tokens
    if request.path.endswith("/messages"):
        if await _streamed(request):
            return await replay(fixture("anthropic/text_stream.sse"))(request)
        return _json(fixture("anthropic/message.json"))
    return _not_found(request)


async def gemini(request: web.Request) -> web.StreamResponse:
    if request.path.endswith(":countTokens"):
        return _json({"totalTokens": 31})  # ai.google.dev/api/tokens#CountTokensResponse
    if request.path.endswith(":streamGenerateContent"):
        return await replay(fixture("gemini/text_stream.sse"))(request)
    if request.path.endswith(":generateContent"):
        return _json(fixture("gemini/answer.json"))
    return _not_found(request)


async def cohere(request: web.Request) -> web.StreamResponse:
    if request.path.endswith("/chat"):
        if await _streamed(request):
            return await replay(fixture("cohere/text_stream.sse"))(request)
        return _json(fixture("cohere/chat_response.json"))
    return _not_found(request)


async def bedrock(request: web.Request) -> web.StreamResponse:
    if request.path.endswith("/converse-stream"):
        return await replay(fixture("bedrock/text_stream.bin"), content_type=EVENTSTREAM)(request)
    if request.path.endswith("/converse"):
        return _json(fixture("bedrock/converse_response.json"))
    return _not_found(request)


async def ollama(request: web.Request) -> web.StreamResponse:
    if request.path.endswith("/api/chat"):
        if await _streamed(request, default=True):  # Ollama streams unless told not to
            return await replay(fixture("ollama/text_stream.ndjson"), content_type=NDJSON)(request)
        return _json(fixture("ollama/answer.json"))
    return _not_found(request)


@dataclass(frozen=True)
class FakeProvider:
    name: str  # the provider's table, and the gateway's default_provider
    handler: Handler | None  # None: the built-in mock, no upstream
    # The text every answer carries (`openai`'s: its Responses answers'); None: the mock,
    # whose answer may be a tool call.
    text: str | None
    table: Callable[[str], str]  # the upstream's /v1 URL -> the provider's TOML lines

    def toml(self, upstream_url: str) -> str:
        server = f'[server]\ndefault_provider = "{self.name}"\n\n[providers.{self.name}]\n'
        return server + self.table(upstream_url.removesuffix("/v1")) + "\n"


def _keyed(provider_type: str, path: str = "", **extra: str) -> Callable[[str], str]:
    def table(base: str) -> str:
        lines = [f'type = "{provider_type}"', f'base_url = "{base}{path}"', 'api_key = "up-key"']
        lines += [f'{key} = "{value}"' for key, value in extra.items()]
        return "\n".join([*lines, "timeout = 10"])

    return table


def _bedrock(base: str) -> str:
    return (
        f'type = "bedrock"\nbase_url = "{base}"\nregion = "us-west-2"\n'
        'access_key_id = "AKIDEXAMPLE"\nsecret_access_key = "wJalrXUtnFEMI/K7MDENG"\ntimeout = 10'
    )


FAKES = {
    fake.name: fake
    for fake in [
        FakeProvider("mock", None, None, lambda base: 'type = "mock"\ndelay = 0'),
        # `responses = "auto"` (any table not named after a preset): tried natively, then
        # through chat after the 404.
        FakeProvider("openai-compat", openai_compat, "".join(CHAT_TOKENS), _keyed("openai", "/v1")),
        FakeProvider("openai", openai_native, "Hi there! How can I help?", _keyed("openai", "/v1")),
        FakeProvider("anthropic", anthropic, "Hello!", _keyed("anthropic", "/v1")),
        FakeProvider(
            "gemini", gemini, "Bonjour! Héllo, 世界 🎉 How can I help?", _keyed("gemini", "/v1beta")
        ),
        FakeProvider(
            "cohere",
            cohere,
            "Coca-Cola is a carbonated soft drink — 日本でも 🥤.",
            _keyed("cohere"),
        ),
        FakeProvider("bedrock", bedrock, "Hello! How can I help — 今日は? 🙂", _bedrock),
        FakeProvider("ollama", ollama, "Bonjour! Héllo, 世界 🎉", _keyed("ollama")),
    ]
}
