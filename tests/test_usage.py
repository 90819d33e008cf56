"""The tokens an answer used: read once into the typed `wire.usage.Usage`, from each API's
shape, and charged whole (cached input is input)."""

from __future__ import annotations

import asyncio

import aiohttp
import anthropic
import orjson

from tests.conftest import FakeUpstream, GatewayFactory
from tests.streams import answering
from wire.usage import AnswerEnd, Usage, answer_end, from_openai, usage_of

CHAT = {
    "prompt_tokens": 130,
    "completion_tokens": 40,
    "total_tokens": 170,
    "prompt_tokens_details": {"cached_tokens": 100, "audio_tokens": 0},
    "completion_tokens_details": {"reasoning_tokens": 32},
}
RESPONSES = {
    "input_tokens": 130,
    "input_tokens_details": {"cached_tokens": 100},
    "output_tokens": 40,
    "output_tokens_details": {"reasoning_tokens": 32},
    "total_tokens": 170,
}
# Anthropic's input_tokens leave out the cache reads and writes.
MESSAGES = {
    "input_tokens": 10,
    "cache_read_input_tokens": 100,
    "cache_creation_input_tokens": 20,
    "output_tokens": 40,
}


def test_each_apis_usage_reads_as_the_same_tokens() -> None:
    assert from_openai(CHAT) == Usage(130, 40, cache_read=100, reasoning=32)
    assert from_openai(RESPONSES) == Usage(130, 40, cache_read=100, reasoning=32)
    assert from_openai(MESSAGES) == Usage(130, 40, cache_read=100, cache_write=20)
    assert from_openai({"prompt_tokens": 8, "total_tokens": 8}) == Usage(8, 0)  # embeddings
    assert from_openai({}) is None and from_openai(None) is None


def test_a_whole_answers_usage_is_found_whatever_its_api() -> None:
    gemini = {
        "candidates": [],
        "usageMetadata": {
            "promptTokenCount": 120,
            "candidatesTokenCount": 8,
            "thoughtsTokenCount": 32,
            "cachedContentTokenCount": 100,
            "toolUsePromptTokenCount": 10,
        },
    }
    assert usage_of(orjson.dumps(gemini)) == Usage(130, 40, cache_read=100, reasoning=32)
    assert usage_of(orjson.dumps({"id": "msg", "usage": MESSAGES})) == Usage(
        130, 40, cache_read=100, cache_write=20
    )
    assert usage_of(b"not json") is None and usage_of(b'{"id": "x"}') is None


def test_a_whole_answers_finish_reasons_are_read_with_its_usage_in_openais_words() -> None:
    chat = {
        "choices": [{"index": 0, "finish_reason": "length"}, {"index": 1, "finish_reason": "stop"}],
        "usage": CHAT,
    }
    assert answer_end(orjson.dumps(chat)) == AnswerEnd(
        Usage(130, 40, cache_read=100, reasoning=32), ("length", "stop")
    )
    message = {"stop_reason": "tool_use", "usage": MESSAGES}
    assert answer_end(orjson.dumps(message)).finish_reasons == ("tool_calls",)
    gemini = {"candidates": [{"finishReason": "MAX_TOKENS"}], "usageMetadata": {}}
    assert answer_end(orjson.dumps(gemini)) == AnswerEnd(Usage(), ("length",))
    assert answer_end(b'{"object": "list", "data": []}') == AnswerEnd()  # embeddings: none


async def test_an_anthropic_answers_cached_input_is_charged_to_the_key(
    upstream: FakeUpstream, start_gateway: GatewayFactory
) -> None:
    """A /v1/messages answer passed through from Anthropic: its cache reads and writes are
    input tokens too, and the key's budget is charged all of them (130 + 40, not 10 + 40)."""
    message = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-x",
        "content": [{"type": "text", "text": "hi"}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": MESSAGES,
    }
    upstream.handler = answering(message)
    url = await start_gateway(
        f'[providers.claude]\ntype = "anthropic"\nbase_url = "{upstream.url}"\napi_key = "k"\n'
        '[keys.team]\nvalue = "sk-team"\nbudget = 100000\n[admin]\nkey = "sk-admin"\n'
    )
    client = anthropic.AsyncAnthropic(base_url=url, api_key="sk-team", max_retries=0)
    answer = await client.messages.create(
        model="claude/claude-x", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
    )
    await client.close()
    assert answer.usage.cache_read_input_tokens == 100
    async with aiohttp.ClientSession() as session:
        for _ in range(100):  # settled once the handler returned, just after the answer
            async with session.get(
                f"{url}/v1/keys/usage", headers={"Authorization": "Bearer sk-admin"}
            ) as response:
                spent = (await response.json())["data"][0]["budget_spent"]
            if spent:
                break
            await asyncio.sleep(0.01)
    assert spent == 130 + 40
