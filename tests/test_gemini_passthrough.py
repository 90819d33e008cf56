"""Gemini's generateContent passed through to a Gemini provider: the client's body as it came,
the upstream's SSE stream byte for byte, or re-framed as the JSON array stream."""

from __future__ import annotations

from typing import Any

import msgspec
import orjson
import pytest
from google.genai import types
from hypothesis import given, settings
from hypothesis import strategies as st

from formats.gemini.framing import JsonArray
from formats.translator import StreamTranslator
from providers.gemini import GeminiProvider, GeminiProviderConfig, GeminiRelay
from tests.chat_answers import run, split, sse_events
from tests.replay import fixture
from wire.errors import UpstreamProtocolError, UpstreamTimeout
from wire.operations import Operation

STREAMS = ["text_stream", "tool_stream", "thinking_stream", "blocked_stream"]

BODY = (
    b'{"contents":[{"role":"user","parts":[{"text":"Hi"}]}],'
    b'"systemInstruction":{"parts":[{"text":"Be brief."}]},'
    b'"tools":[{"googleSearch":{}}],'
    b'"generationConfig":{"candidateCount":2,"thinkingConfig":{"thinkingBudget":-1}}}'
)


def _provider() -> GeminiProvider:
    config = GeminiProviderConfig(base_url="https://gemini.test/v1beta", api_key="g-key")
    return GeminiProvider("gemini", config)


def _raw_body(data: bytes) -> dict[str, msgspec.Raw]:
    return msgspec.json.decode(data, type=dict[str, msgspec.Raw])


@pytest.mark.parametrize(
    ("stream", "url"),
    [
        (True, "https://gemini.test/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"),
        (False, "https://gemini.test/v1beta/models/gemini-2.5-flash:generateContent"),
    ],
)
def test_the_body_goes_out_unchanged(stream: bool, url: str) -> None:
    body = _raw_body(BODY)
    request = _provider().build_request(
        Operation.GENERATE_CONTENT, "gemini-2.5-flash", body, stream
    )
    assert request.url == url
    assert request.headers["x-goog-api-key"] == "g-key"
    assert request.body == BODY  # what only Gemini can do (search, 2 candidates) goes too


def test_a_model_in_the_body_stays_here() -> None:
    body = _raw_body(b'{"model":"gemini/flash","contents":[]}')
    request = _provider().build_request(Operation.GENERATE_CONTENT, "flash", body, False)
    assert request.body == b'{"contents":[]}'
    assert "model" in body  # the caller's body is not changed


@settings(max_examples=40, deadline=None)
@given(
    name=st.sampled_from(STREAMS),
    cuts=st.lists(st.integers(min_value=0, max_value=5000), max_size=40),
)
def test_the_json_array_stream_holds_the_same_responses(name: str, cuts: list[int]) -> None:
    raw = fixture(f"gemini/{name}.sse")
    out = run(JsonArray(GeminiRelay("gemini")), split(raw, cuts))
    assert out.startswith(b"[{") and out.endswith(b"}]")
    elements = out[1:-1].split(b",\r\n")
    expected = [event.data.encode() for event in sse_events(raw)]
    assert elements == expected  # each response as Gemini wrote it
    for response in orjson.loads(out):
        for candidate in response.get("candidates", []):
            for part in candidate["content"]["parts"]:
                part.pop("thoughtSignature", None)  # the fixtures' are not real base64
        types.GenerateContentResponse.model_validate(response)


def _relay(sse: bool) -> StreamTranslator:
    """The provider's relay, as an SSE client reads it or as the JSON array."""
    relay = GeminiRelay("gemini")
    return relay if sse else JsonArray(relay)


def test_usage_is_read_from_the_finishing_response() -> None:
    relay = GeminiRelay("gemini")
    run(relay, [fixture("gemini/thinking_stream.sse")])
    assert relay.usage is not None
    thoughts = relay.usage.reasoning
    assert thoughts is not None and thoughts > 0
    assert relay.usage.output > thoughts  # the thoughts are counted in the output


@settings(max_examples=30, deadline=None)
@given(sse=st.booleans(), cuts=st.lists(st.integers(min_value=0, max_value=5000), max_size=30))
def test_an_error_object_ends_the_stream_with_its_failure(sse: bool, cuts: list[int]) -> None:
    raw = fixture("gemini/midstream_error.sse")
    relay = _relay(sse)
    out = run(relay, split(raw + b'data: {"candidates": []}\r\n\r\n', cuts), end=False)
    if sse:
        assert out == raw
    else:
        assert [list(r) for r in orjson.loads(out)][-1] == ["error"]
    assert relay.finished
    assert relay.failure is not None
    assert (relay.failure.status, relay.failure.code) == (503, "UNAVAILABLE")


@pytest.mark.parametrize("sse", [True, False], ids=["sse", "array"])
def test_a_stream_cut_before_its_finish_ends_with_an_error_object(sse: bool) -> None:
    raw = fixture("gemini/text_stream.sse")
    cut = raw[: raw.index(b"data: ", 10)]  # the first response only
    relay = _relay(sse)
    out = run(relay, [cut])
    last = orjson.loads(sse_events(out)[-1].data) if sse else orjson.loads(out)[-1]
    assert last["error"]["status"] == "UNAVAILABLE"
    assert isinstance(relay.failure, UpstreamProtocolError)


@pytest.mark.parametrize("sse", [True, False], ids=["sse", "array"])
def test_a_relay_failure_is_gemini_s_error_object(sse: bool) -> None:
    relay = _relay(sse)
    raw = fixture("gemini/text_stream.sse")
    head = relay.feed(raw[: raw.index(b"data: ", 10)])
    out = head + relay.error_event(UpstreamTimeout("late"))
    last: Any = orjson.loads(sse_events(out)[-1].data) if sse else orjson.loads(out)[-1]
    assert last == {"error": {"code": 504, "message": "late", "status": "DEADLINE_EXCEEDED"}}
    assert relay.finished and isinstance(relay.failure, UpstreamTimeout)


def test_provider_serves_generate_content_with_the_relay_and_the_answer_as_is() -> None:
    provider = _provider()
    assert Operation.GENERATE_CONTENT in provider.operations
    assert isinstance(provider.stream_translator(Operation.GENERATE_CONTENT, "m"), GeminiRelay)
    answer = fixture("gemini/answer.json")
    assert provider.translate_response(Operation.GENERATE_CONTENT, "m", answer) is answer
