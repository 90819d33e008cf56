"""An answer as the response cache stores it, and back: one chat completion per answer.

The cache (`gateway.cache`) keeps an answer once, in one canonical form, a non-streamed chat
completion, whatever the client's format and whether it streamed: so a streamed request hits
what a non-streamed one filled and the other way round, and an entry is the answer's text
once (not its events, each with an envelope). A route says how its answers go in and out
(`StoredForm`): from its whole answer or its relayed stream to the chat completion, and from
that completion to its whole answer or to its stream, written by the very sinks the bridges
use, so a hit's stream is what a translated provider's stream would be: the opening, the
reasoning, the text in one delta, each tool call in one delta, and the finish_reason with the
usage in the last event.

The forms: chat (`/v1/chat/completions`), Anthropic's Messages, the Responses API, Gemini's
generateContent (its stream as SSE or as its JSON array). What a
format's reader cannot give back as it came (a Responses answer with hosted tools, say) is
not stored (None).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from formats.anthropic.from_chat import MessagesFromChat, message_from_chat
from formats.anthropic.to_chat import MessagesStream, translate_message
from formats.chat.bridge import read_completion
from formats.chat.from_chat import AnswerCollector, ChatStreamWriter
from formats.chat.to_chat import ChatChunkReader
from formats.gemini.from_chat import GeminiFromChat, gemini_response_from_chat
from formats.gemini.to_chat import GeminiStream
from formats.responses.from_chat import ResponseEcho, ResponsesFromChat, response_from_chat
from formats.responses.to_chat import chat_from_response, chat_from_response_stream
from formats.translator import ChatSink, EventTranslator
from wire.errors import GatewayError
from wire.usage import from_openai

_STORED = "cache"  # the "provider" the readers name in their errors


class StoredForm(msgspec.Struct, frozen=True, gc=False):
    """One client format's answers, to the stored chat completion and back."""

    from_whole: Callable[[bytes], bytes | None]  # the client's whole answer -> stored
    from_stream: Callable[[bytes], bytes | None]  # the client's whole stream -> stored
    whole: Callable[[bytes], bytes]  # stored -> the client's whole answer
    stream: Callable[[bytes], bytes]  # stored -> the client's stream, every byte of it


def replay(stored: bytes, sink: ChatSink) -> bytes:
    """The stored completion written into `sink`: the client's stream, start to end."""
    completion, choice, message = read_completion(stored)
    out = [sink.opening()]
    if message.get("reasoning"):
        out.append(sink.reasoning(message["reasoning"]))
    if message.get("reasoning_signature"):
        out.append(sink.reasoning_signature(message["reasoning_signature"]))
    for data in message.get("reasoning_redacted") or ():
        out.append(sink.reasoning_redacted(data))
    if message.get("content"):
        out.append(sink.content(message["content"]))
    for index, call in enumerate(message.get("tool_calls") or ()):
        function = call.get("function") or {}
        name, arguments = function.get("name", ""), function.get("arguments", "")
        out.append(sink.tool_call(index, call.get("id", ""), name, arguments))
    usage = from_openai(completion.get("usage"))
    out.append(sink.finish(choice.get("finish_reason") or "stop", usage))
    return b"".join(out)


def _collected(reader: Callable[[ChatSink], EventTranslator[Any]], data: bytes) -> bytes | None:
    """A whole relayed stream read into one completion; None unless it finished well."""
    collector = AnswerCollector("")
    translator = reader(collector)
    try:
        translator.feed(data)
        if not translator.finished:
            translator.end()
    except GatewayError:
        return None
    if not translator.finished or translator.failure is not None:
        return None
    return collector.answer()


def _model(stored: bytes) -> str:
    model = read_completion(stored)[0].get("model")
    return model if isinstance(model, str) else ""


def _one_choice(body: bytes) -> bytes | None:
    completion = read_completion(body)[0]
    return body if len(completion.get("choices") or ()) == 1 else None


CHAT_FORM = StoredForm(
    from_whole=_one_choice,
    from_stream=lambda data: _collected(lambda sink: ChatChunkReader(_STORED, sink), data),
    whole=lambda stored: stored,
    stream=lambda stored: replay(stored, ChatStreamWriter(_model(stored))),
)

MESSAGES_FORM = StoredForm(
    from_whole=lambda body: translate_message(body, _STORED, ""),
    from_stream=lambda data: _collected(lambda sink: MessagesStream(_STORED, "", sink), data),
    whole=message_from_chat,
    stream=lambda stored: replay(stored, MessagesFromChat(_model(stored))),
)


def responses_form(echo: ResponseEcho) -> StoredForm:
    """The Responses API's: its Response objects echo the request (`echo`)."""
    return StoredForm(
        from_whole=lambda body: chat_from_response(msgspec.json.decode(body)),
        from_stream=chat_from_response_stream,
        whole=lambda stored: response_from_chat(stored, echo),
        stream=lambda stored: replay(stored, ResponsesFromChat(_model(stored), echo)),
    )


def gemini_form(sse: bool) -> StoredForm:
    """Gemini's generateContent: a stream as SSE events (`sse`) or as one JSON array."""

    def responses(data: bytes) -> bytes | None:
        if sse:
            return _collected(lambda sink: GeminiStream(_STORED, sink), data)
        return _responses(msgspec.json.decode(data, type=list[msgspec.Raw]))

    return StoredForm(
        from_whole=lambda body: _responses([msgspec.Raw(body)]),
        from_stream=responses,
        whole=gemini_response_from_chat,
        stream=lambda stored: replay(stored, GeminiFromChat(_model(stored), sse)),
    )


def _responses(responses: list[msgspec.Raw]) -> bytes | None:
    """GenerateContentResponses (a whole answer is one) read into one completion."""
    collector = AnswerCollector("")
    reader = GeminiStream(_STORED, collector)
    try:
        for response in responses:
            reader.response(bytes(response))
    except GatewayError:
        return None
    if not reader.finished or reader.failure is not None:
        return None
    return collector.answer()
