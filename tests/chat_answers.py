"""Chat answers as our translating providers emit them, streamed and whole, for the bridges.

Each answer is built with `formats.chat.from_chat.ChatStreamWriter` (the stream) and
`formats.chat.from_chat.chat_completion` (the same answer, not streamed), so the bytes are exactly
what every translating provider's chat translator emits. The bridges read them through
`ChatChunkReader`, the OpenAI-compatible provider's chat translator for a bridge.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from formats.chat.from_chat import ChatStreamWriter, chat_completion
from formats.chat.to_chat import ChatChunkReader
from formats.translator import ChatSink, StreamTranslator
from providers.anthropic import AnthropicProvider, AnthropicProviderConfig
from providers.cohere import CohereProvider, CohereProviderConfig
from providers.gemini import GeminiProvider, GeminiProviderConfig
from wire.sse import Event, SSEDecoder
from wire.usage import Usage

MODEL = "upstream-model-2025"
SIGNATURE = "RXFRQkNnSVlBaElNMWdiY0RhOUdKd1pBMmIz"  # base64, as Anthropic's and Gemini's are


@dataclass
class ChatAnswer:
    text: list[str] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)
    signature: str | None = None
    calls: list[tuple[str, str, list[str]]] = field(default_factory=list)  # id, name, fragments
    finish: str = "stop"
    usage: Usage | None = None

    def stream(self) -> bytes:
        writer = ChatStreamWriter(MODEL, id="chatcmpl-test", created=1700000000)
        out = [writer.reasoning(piece) for piece in self.reasoning]
        out.append(writer.reasoning_signature(self.signature or ""))
        out += [writer.content(piece) for piece in self.text]
        for index, (call_id, name, fragments) in enumerate(self.calls):
            out.append(writer.tool_call(index, call_id, name))
            out += [writer.tool_arguments(index, fragment) for fragment in fragments]
        out.append(writer.finish(self.finish, self.usage))
        return b"".join(out)

    def completion(self) -> bytes:
        calls = [
            {"id": call_id, "name": name, "arguments": "".join(fragments)}
            for call_id, name, fragments in self.calls
        ]
        return chat_completion(
            model=MODEL,
            content="".join(self.text) or None,
            finish_reason=self.finish,
            usage=self.usage,
            tool_calls=calls or None,
            reasoning="".join(self.reasoning) or None,
            reasoning_signature=self.signature,
            id="chatcmpl-test",
            created=1700000000,
        )

    @property
    def arguments(self) -> list[dict[str, Any]]:
        return [orjson.loads("".join(fragments) or "{}") for _, _, fragments in self.calls]


ANSWERS: dict[str, ChatAnswer] = {
    "text": ChatAnswer(text=["Hello", ",", " world", "!"], usage=Usage(12, 4)),
    "thinking": ChatAnswer(
        reasoning=["Let me ", "think it through."],
        signature=SIGNATURE,
        text=["It is ", "42."],
        usage=Usage(30, 20, cache_read=10, reasoning=12),
    ),
    "tools": ChatAnswer(
        text=["Let me check."],
        calls=[
            ("call_a", "get_weather", ['{"city"', ': "Paris", ', '"unit": "c"}']),
            ("call_b", "get_time", ['{"tz": "CET"}']),
            ("call_c", "ping", []),
        ],
        finish="tool_calls",
        usage=Usage(50, 25),
    ),
    "length": ChatAnswer(text=["cut sh"], finish="length", usage=Usage(5, 2)),
    "filtered": ChatAnswer(finish="content_filter"),
    "unicode": ChatAnswer(text=["héllo ", "🌍", " — ", "日本語"], usage=Usage(3, 6)),
}


# One provider of each type that translates chat, for checks of what they all take.
TRANSLATING = [
    GeminiProvider("gemini", GeminiProviderConfig(base_url="http://x", api_key="k")),
    AnthropicProvider("claude", AnthropicProviderConfig(base_url="http://x", api_key="k")),
    CohereProvider("cohere", CohereProviderConfig(base_url="http://x", api_key="k")),
]


def chat_translator(sink: ChatSink) -> ChatChunkReader:
    """An OpenAI-compatible provider's chat translator, writing to `sink` (a bridge): what a
    bridge is fed behind any provider whose stream is OpenAI's chunks."""
    return ChatChunkReader("test", sink)


def split(data: bytes, cuts: Iterable[int]) -> list[bytes]:
    """`data` cut at the given positions (taken modulo its length + 1)."""
    points = sorted({0, len(data), *(cut % (len(data) + 1) for cut in cuts)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


def run(translator: StreamTranslator, pieces: Iterable[bytes], *, end: bool = True) -> bytes:
    """What the relay would send: each piece fed (until finished), then `end()` if the
    upstream closed its stream without the translator having finished."""
    out = []
    for piece in pieces:
        out.append(translator.feed(piece))
        if translator.finished:
            return b"".join(out)
    if end:
        out.append(translator.end())
    return b"".join(out)


def sse_events(data: bytes) -> list[Event]:
    decoder = SSEDecoder()
    events = [item for item in decoder.feed(data) if type(item) is Event]
    assert not decoder.pending, "the stream ends in the middle of an event"
    return events
