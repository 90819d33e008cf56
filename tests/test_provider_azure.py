"""Azure OpenAI behind the gateway: deployment URLs, `api-key`, and Azure's content-filter
annotations (learn.microsoft.com/azure/ai-services/openai/concepts/content-filter)."""

from __future__ import annotations

from typing import Any

import openai
import orjson
import pytest
from aiohttp import web

from tests.conftest import Connect, FakeUpstream, GatewayFactory, Handler, provider_toml
from tests.replay import replay
from tests.sdk import Answer, collect_stream, from_completion
from tests.streams import (
    DONE,
    USAGE,
    answering,
    chat_chunk,
    chat_completion,
    data,
    parse_sse,
    post_stream,
)

MESSAGES = [{"role": "user", "content": "Say this is a test!"}]
SAFE = {"filtered": False, "severity": "safe"}
FILTERS = {"hate": SAFE, "self_harm": SAFE, "sexual": SAFE, "violence": SAFE}
# Azure's first chunk: no choices, only the prompt's filter results, and empty id/model.
PROMPT_FILTER_CHUNK = {
    "choices": [],
    "created": 0,
    "id": "",
    "model": "",
    "object": "",
    "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": FILTERS}],
}
TOKENS = ["This", " is", " a", " test", "!"]


def _filtered(chunk: dict[str, Any]) -> dict[str, Any]:
    for choice in chunk["choices"]:
        choice["content_filter_results"] = FILTERS
    return chunk


def azure_stream() -> bytes:
    """Azure's stream for api-version 2024-10-21 with include_usage."""
    events = [data(PROMPT_FILTER_CHUNK), data(_filtered(chat_chunk({"role": "assistant"})))]
    events += [data(_filtered(chat_chunk({"content": token}))) for token in TOKENS]
    events.append(data(_filtered(chat_chunk({}, "stop"))))
    events.append(data(chat_chunk(choices=[], usage=USAGE)))
    return b"".join([*events, DONE])


def _toml(upstream: FakeUpstream, **settings: str) -> str:
    return provider_toml(upstream.url, "az", type="azure", api_key="az-key", timeout=5, **settings)


@pytest.fixture
async def sdk(upstream: FakeUpstream, connect: Connect) -> Any:
    return await connect(_toml(upstream))


@pytest.fixture
async def gateway(upstream: FakeUpstream, start_gateway: GatewayFactory) -> str:
    return await start_gateway(_toml(upstream))


def recording_query(handler: Handler, queries: list[str]) -> Handler:
    """`handler`, noting each request's query string (FakeUpstream records only the path)."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        queries.append(request.query_string)
        return await handler(request)

    return wrapped


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
async def test_stream_with_prompt_filter_chunk_in_random_splits(
    upstream: FakeUpstream, sdk: openai.AsyncOpenAI, seed: int
) -> None:
    upstream.handler = replay(azure_stream(), seed=seed)
    answer = await collect_stream(sdk, "az/gpt-4o-prod", messages=MESSAGES)
    assert answer == Answer(text="This is a test!", finish_reason="stop", usage=USAGE)


async def test_content_filter_annotations_pass_through(
    upstream: FakeUpstream, gateway: str
) -> None:
    upstream.handler = replay(azure_stream(), seed=5)
    status, raw = await post_stream(gateway, "az/gpt-4o-prod")
    events = parse_sse(raw)
    assert status == 200
    chunks = [orjson.loads(event.data) for event in events[:-1]]
    assert events[-1].data == "[DONE]"
    assert chunks[0] == PROMPT_FILTER_CHUNK
    assert all(c["choices"][0]["content_filter_results"] == FILTERS for c in chunks[1:])
    last = chunks[-1]
    assert last["choices"][0]["finish_reason"] == "stop" and last["usage"] == USAGE


async def test_request_goes_to_the_deployment_with_api_key(
    upstream: FakeUpstream, sdk: openai.AsyncOpenAI
) -> None:
    queries: list[str] = []
    upstream.handler = recording_query(replay(azure_stream()), queries)
    await collect_stream(sdk, "az/gpt-4o-prod", messages=MESSAGES, max_tokens=20)
    sent = upstream.requests[-1]
    assert sent["path"] == "/v1/openai/deployments/gpt-4o-prod/chat/completions"
    assert queries == ["api-version=2024-10-21"]
    assert sent["headers"]["api-key"] == "az-key"
    assert "Authorization" not in sent["headers"]
    assert sent["body"] == {
        "model": "gpt-4o-prod",
        "messages": MESSAGES,
        "max_tokens": 20,
        "stream": True,
        "stream_options": {"include_usage": True},
    }


async def test_api_version_and_completions_operation(
    upstream: FakeUpstream, start_gateway: GatewayFactory
) -> None:
    url = await start_gateway(_toml(upstream, api_version="2025-01-01-preview"))
    queries: list[str] = []
    body = {
        "id": "cmpl-1",
        "object": "text_completion",
        "created": 1,
        "model": "davinci",
        "choices": [{"index": 0, "text": "ok", "logprobs": None, "finish_reason": "stop"}],
        "usage": USAGE,
    }
    upstream.handler = recording_query(answering(body), queries)
    async with openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0) as client:
        completion = await client.completions.create(model="az/instruct", prompt="Say ok")
    assert completion.choices[0].text == "ok"
    assert upstream.requests[-1]["path"] == "/v1/openai/deployments/instruct/completions"
    assert queries == ["api-version=2025-01-01-preview"]


async def test_non_streamed_answer_passes_through(
    upstream: FakeUpstream, sdk: openai.AsyncOpenAI
) -> None:
    answer = chat_completion("This is a test!")
    answer["prompt_filter_results"] = PROMPT_FILTER_CHUNK["prompt_filter_results"]
    answer["choices"][0]["content_filter_results"] = FILTERS
    upstream.handler = answering(answer)
    completion = await sdk.chat.completions.create(model="az/gpt-4o-prod", messages=MESSAGES)
    assert from_completion(completion) == Answer(
        text="This is a test!", finish_reason="stop", usage=USAGE
    )
    assert completion.model_extra == {"prompt_filter_results": answer["prompt_filter_results"]}


async def test_content_filter_error_keeps_status_message_and_code(
    upstream: FakeUpstream, sdk: openai.AsyncOpenAI
) -> None:
    # Azure's answer when the prompt itself is filtered.
    upstream.handler = answering(
        {
            "error": {
                "message": "The response was filtered due to the prompt triggering Azure "
                "OpenAI's content management policy.",
                "type": None,
                "param": "prompt",
                "code": "content_filter",
                "status": 400,
                "innererror": {
                    "code": "ResponsibleAIPolicyViolation",
                    "content_filter_result": FILTERS,
                },
            }
        },
        status=400,
    )
    with pytest.raises(openai.BadRequestError) as caught:
        await sdk.chat.completions.create(model="az/gpt-4o-prod", messages=MESSAGES, stream=True)
    body = caught.value.body
    assert isinstance(body, dict)
    assert body["code"] == "content_filter" and body["param"] == "prompt"
    assert body["message"].startswith("The response was filtered")


async def test_env_key_is_sent_as_api_key(
    upstream: FakeUpstream, start_gateway: GatewayFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", "from-env")
    url = await start_gateway(f'[providers.azure]\nbase_url = "{upstream.url}/openai/"\n')
    upstream.handler = answering(chat_completion("ok"))
    async with openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0) as client:
        await client.chat.completions.create(model="azure/d", messages=MESSAGES)
    sent = upstream.requests[-1]
    assert sent["headers"]["api-key"] == "from-env"
    assert sent["path"] == "/v1/openai/deployments/d/chat/completions"  # no double /openai
