"""The coding agents' captured requests (tests/fixtures/agents/, see the README there), and
reading the gateway's answers to them in each client's own format, with its SDK's own types.

A fixture is an HTTP/1.1 request exactly as the client sent it (request line, headers, a blank
line, the body's bytes), recorded by `python -m bench.agents.capture`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from anthropic.lib.streaming._messages import accumulate_event
from anthropic.types import Message, MessageTokensCount, RawMessageStreamEvent
from google.genai import types as genai_types
from openai import omit
from openai._models import construct_type
from openai.lib.streaming.responses._responses import ResponseStreamState
from openai.types.responses import ResponseStreamEvent
from pydantic import TypeAdapter

from tests.streams import parse_sse

AGENTS = Path(__file__).parent / "fixtures" / "agents"
# Set by the HTTP client for the connection it makes, not by the agent.
_CONNECTION_HEADERS = {"host", "content-length", "connection", "transfer-encoding"}
_anthropic_events: TypeAdapter[Any] = TypeAdapter(RawMessageStreamEvent)


@dataclass
class AgentRequest:
    name: str
    method: str
    target: str  # path and query
    headers: list[tuple[str, str]]
    body: bytes

    @property
    def kind(self) -> str:
        """What the client expects back: `messages`, `count_tokens`, `responses`,
        `gemini_stream` or `gemini`."""
        path = self.target.split("?")[0]
        if path.endswith("/messages/count_tokens"):
            return "count_tokens"
        if path.endswith("/messages"):
            return "messages"
        if path.endswith("/responses"):
            return "responses"
        return "gemini_stream" if path.endswith(":streamGenerateContent") else "gemini"

    async def send(self, base_url: str) -> tuple[int, str, bytes]:
        """Sent to the gateway as the client sent it: its status, content type and body."""
        headers = [(k, v) for k, v in self.headers if k.lower() not in _CONNECTION_HEADERS]
        timeout = aiohttp.ClientTimeout(total=30)
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.request(
                self.method, base_url + self.target, headers=headers, data=self.body
            ) as response,
        ):
            return response.status, response.content_type, await response.read()


def agent_request(name: str) -> AgentRequest:
    raw = (AGENTS / f"{name}.http").read_bytes()
    head, body = raw.split(b"\r\n\r\n", 1)
    request_line, *lines = head.decode("latin-1").split("\r\n")
    method, target, _ = request_line.split(" ")
    headers = [(k, v.lstrip()) for k, v in (line.split(":", 1) for line in lines)]
    return AgentRequest(name, method, target, headers, body)


AGENT_REQUESTS = sorted(path.stem for path in AGENTS.glob("*.http"))


@dataclass
class Answer:
    """What the client made of the gateway's answer."""

    text: str = ""
    calls: list[str] = field(default_factory=list)  # the names of the tools it calls


def read_answer(kind: str, content_type: str, body: bytes) -> Answer:
    """The answer read as the client reads it, every event checked against the SDK's own
    types; an AssertionError or a pydantic ValidationError says what is wrong."""
    readers = {
        "messages": _messages_stream,
        "count_tokens": _count_tokens,
        "responses": _responses_stream,
        "gemini_stream": _gemini_stream,
        "gemini": _gemini_whole,
    }
    streamed = kind in ("messages", "responses", "gemini_stream")
    expected = "text/event-stream" if streamed else "application/json"
    assert content_type == expected, f"{content_type} answer, not {expected}: {body[:300]!r}"
    return readers[kind](body)


def _messages_stream(body: bytes) -> Answer:
    """Anthropic's events, accumulated by the anthropic SDK's own stream helper."""
    events = [e for e in parse_sse(body) if e.event != "ping"]
    assert events, f"no events: {body[:300]!r}"
    snapshot: Message | None = None
    json_bufs: dict[int, bytes] = {}
    for event in events:
        payload = orjson.loads(event.data)
        assert event.event == payload["type"], f"`event: {event.event}` carries {payload}"
        assert payload["type"] != "error", f"error event: {payload}"
        parsed = _anthropic_events.validate_python(payload)
        snapshot = accumulate_event(event=parsed, current_snapshot=snapshot, json_bufs=json_bufs)
    assert events[0].event == "message_start" and events[-1].event == "message_stop"
    assert snapshot is not None and snapshot.stop_reason is not None
    text = "".join(block.text for block in snapshot.content if block.type == "text")
    calls = [block.name for block in snapshot.content if block.type == "tool_use"]
    return Answer(text, calls)


def _count_tokens(body: bytes) -> Answer:
    count = MessageTokensCount.model_validate_json(body)
    assert count.input_tokens > 0
    return Answer(str(count.input_tokens))


def _responses_stream(body: bytes) -> Answer:
    """The Responses API's events, built as the openai SDK builds them from a stream and fed
    to its stream helper's accumulator (`ResponseStreamState`, behind `responses.stream()`),
    which checks that every event names an output item and part it announced."""
    events = parse_sse(body)
    assert events, f"no events: {body[:300]!r}"
    state: ResponseStreamState[Any] = ResponseStreamState(input_tools=omit, text_format=omit)
    parsed = []
    for event in events:
        payload = orjson.loads(event.data)
        assert event.event in (None, payload["type"]), f"`event: {event.event}` carries {payload}"
        assert payload["type"] not in ("error", "response.failed"), f"error event: {payload}"
        parsed.append(construct_type(type_=ResponseStreamEvent, value=payload))
        state.handle_event(parsed[-1])
    kinds = [event.type for event in parsed]
    assert kinds[0] == "response.created", kinds
    assert kinds[-1] == "response.completed", kinds
    numbers = [event.sequence_number for event in parsed]
    assert numbers == sorted(set(numbers)), f"sequence numbers out of order: {numbers}"
    response = parsed[-1].response
    deltas = "".join(e.delta for e in parsed if e.type == "response.output_text.delta")
    assert deltas == response.output_text, "the deltas are not the completed response's text"
    calls = [
        item.name for item in response.output if item.type in ("function_call", "custom_tool_call")
    ]
    return Answer(response.output_text, calls)


def _gemini_stream(body: bytes) -> Answer:
    """Data-only events, each a GenerateContentResponse; the last says why it finished."""
    events = parse_sse(body)
    assert events, f"no events: {body[:300]!r}"
    answers = []
    for event in events:
        payload = orjson.loads(event.data)
        assert "error" not in payload, f"error event: {payload}"
        answers.append(genai_types.GenerateContentResponse.model_validate(payload))
    assert answers[-1].candidates and answers[-1].candidates[0].finish_reason is not None
    return _gemini_parts(answers)


def _gemini_whole(body: bytes) -> Answer:
    answer = genai_types.GenerateContentResponse.model_validate_json(body)
    assert answer.candidates and answer.candidates[0].finish_reason is not None
    return _gemini_parts([answer])


def _gemini_parts(answers: list[genai_types.GenerateContentResponse]) -> Answer:
    parts = [
        part
        for answer in answers
        for candidate in answer.candidates or []
        if candidate.content is not None
        for part in candidate.content.parts or []
    ]
    text = "".join(part.text for part in parts if part.text and not part.thought)
    calls = [part.function_call.name or "" for part in parts if part.function_call]
    return Answer(text, calls)
