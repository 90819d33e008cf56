"""Anthropic's Messages API passed through to an Anthropic provider: the client's request as it
came (but the model), its beta headers along, and the upstream's stream byte for byte."""

from __future__ import annotations

from typing import Any

import msgspec
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict

from formats.anthropic.error_shape import anthropic_error_status
from formats.anthropic.request import with_client_headers
from providers.anthropic import AnthropicProvider, AnthropicProviderConfig, MessagesRelay
from tests.chat_answers import run, split, sse_events
from tests.replay import fixture
from wire.errors import UpstreamProtocolError, UpstreamTimeout
from wire.operations import Operation
from wire.usage import Usage

STREAMS = ["text_stream", "tool_use_stream", "thinking_stream", "cached_stream"]

# A Claude Code-style request: system blocks with cache_control, tools, thinking, metadata.
CLAUDE_CODE_BODY = (
    b'{"model":"claude/claude-sonnet-4-5-20250929","max_tokens":32000,'
    b'"system":[{"type":"text","text":"You are Claude Code.",'
    b'"cache_control":{"type":"ephemeral"}}],'
    b'"messages":[{"role":"user","content":[{"type":"text","text":"hi",'
    b'"cache_control":{"type":"ephemeral"}}]}],'
    b'"tools":[{"name":"Bash","description":"Run","input_schema":{"type":"object"}}],'
    b'"thinking":{"type":"enabled","budget_tokens":31999},'
    b'"metadata":{"user_id":"user_abc"},"stream":true}'
)


def _provider(**config: Any) -> AnthropicProvider:
    settings = {"base_url": "https://api.anthropic.test/v1", "api_key": "sk-ant", **config}
    return AnthropicProvider("claude", AnthropicProviderConfig(**settings))


def _raw_body(data: bytes) -> dict[str, msgspec.Raw]:
    return msgspec.json.decode(data, type=dict[str, msgspec.Raw])


def test_the_request_goes_out_unchanged_but_the_model() -> None:
    body = _raw_body(CLAUDE_CODE_BODY)
    request = _provider().build_request(
        Operation.MESSAGES, "claude-sonnet-4-5-20250929", body, True
    )
    assert request.url == "https://api.anthropic.test/v1/messages"
    assert request.headers["x-api-key"] == "sk-ant"
    assert request.headers["anthropic-version"] == "2023-06-01"
    expected = CLAUDE_CODE_BODY.replace(b"claude/claude-sonnet", b"claude-sonnet")
    assert request.body == expected  # byte for byte
    assert bytes(body["model"]) == b'"claude/claude-sonnet-4-5-20250929"'  # not the caller's


def test_count_tokens_goes_to_its_endpoint() -> None:
    body = _raw_body(b'{"model":"claude/x","messages":[{"role":"user","content":"hi"}]}')
    request = _provider().build_request(Operation.COUNT_TOKENS, "claude-x", body, False)
    assert request.url == "https://api.anthropic.test/v1/messages/count_tokens"
    assert orjson.loads(request.body) == {  # type: ignore[arg-type]
        "model": "claude-x",
        "messages": [{"role": "user", "content": "hi"}],
    }
    provider = _provider()
    assert provider.translate_response(Operation.COUNT_TOKENS, "x", b'{"input_tokens":9}') == (
        b'{"input_tokens":9}'
    )


def test_client_beta_and_version_headers_go_along() -> None:
    provider = _provider(headers={"anthropic-beta": "prompt-caching-2024-07-31"})
    request = provider.build_request(
        Operation.MESSAGES, "m", _raw_body(b'{"model":"m","max_tokens":1,"messages":[]}'), False
    )
    client = CIMultiDict(
        [
            ("Anthropic-Beta", "interleaved-thinking-2025-05-14,prompt-caching-2024-07-31"),
            ("anthropic-beta", "context-management-2025-06-27"),
            ("Anthropic-Version", "2023-06-01"),
            ("x-api-key", "the client's, never sent"),
        ]
    )
    sent = with_client_headers(request, client)
    assert sent.headers["anthropic-beta"] == (
        "prompt-caching-2024-07-31,interleaved-thinking-2025-05-14,context-management-2025-06-27"
    )
    assert sent.headers["anthropic-version"] == "2023-06-01"
    assert sent.headers["x-api-key"] == "sk-ant"
    assert sent.body == request.body
    assert with_client_headers(request, {"accept": "*/*"}) is request


def test_usage_is_read_from_message_start_and_message_delta() -> None:
    relay = MessagesRelay("claude")
    run(relay, [fixture("anthropic/cached_stream.sse")])
    assert relay.usage == Usage(21 + 188 + 1800, 510, cache_read=1800, cache_write=188)


def test_nothing_after_message_stop_is_relayed() -> None:
    raw = fixture("anthropic/text_stream.sse")
    relay = MessagesRelay("claude")
    assert relay.feed(raw + b"event: ping\ndata: {}\n\n") == raw
    assert relay.feed(b"more") == b"" and relay.end() == b""


@settings(max_examples=30, deadline=None)
@given(cuts=st.lists(st.integers(min_value=0, max_value=5000), max_size=30))
def test_an_error_event_ends_the_stream_with_its_failure(cuts: list[int]) -> None:
    raw = fixture("anthropic/midstream_error.sse")
    relay = MessagesRelay("claude")
    assert run(relay, split(raw + b"event: ping\ndata: {}\n\n", cuts), end=False) == raw
    assert relay.finished
    assert relay.failure is not None
    assert (relay.failure.type, relay.failure.status) == ("overloaded_error", 503)
    assert anthropic_error_status(relay.failure) == 529


@pytest.mark.parametrize(
    ("error", "kind"),
    [(UpstreamTimeout("late"), "timeout_error"), (UpstreamProtocolError("cut"), "api_error")],
)
def test_a_relay_failure_is_an_anthropic_error_event(error: Any, kind: str) -> None:
    relay = MessagesRelay("claude")
    head = relay.feed(fixture("anthropic/text_stream.sse")[:300])
    out = head + relay.error_event(error)
    events = sse_events(out)
    assert events[-1].event == "error"
    assert orjson.loads(events[-1].data) == {
        "type": "error",
        "error": {"type": kind, "message": error.message},
    }
    assert relay.finished and relay.failure is error


def test_a_stream_cut_before_message_stop_ends_with_an_error_event() -> None:
    raw = fixture("anthropic/text_stream.sse")
    cut = raw[: raw.index(b"event: message_delta")]
    relay = MessagesRelay("claude")
    out = run(relay, [cut])
    assert out.startswith(cut)
    assert sse_events(out)[-1].event == "error"
    assert isinstance(relay.failure, UpstreamProtocolError)


def test_provider_serves_messages_with_the_relay_and_the_answer_as_is() -> None:
    provider = _provider()
    assert Operation.MESSAGES in provider.operations
    assert Operation.COUNT_TOKENS in provider.operations
    assert isinstance(provider.stream_translator(Operation.MESSAGES, "m"), MessagesRelay)
    answer = fixture("anthropic/message.json")
    assert provider.translate_response(Operation.MESSAGES, "m", answer) is answer
