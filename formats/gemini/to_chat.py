"""Gemini's answers as chat deltas: a generateContent stream's responses, or the whole answer.

A stream is data-only SSE: each event is a whole GenerateContentResponse, there is no `[DONE]`,
and the event that carries `finishReason` (and the final `usageMetadata`) is the last one
(ai.google.dev/api/generate-content). The non-streamed answer is the same object once, so both
go through `GeminiStream`, which keeps the stream and the whole answer in agreement.
"""

from __future__ import annotations

import secrets
from typing import Any

import msgspec
import orjson

from formats.gemini.error_shape import ErrorObject, error_from_object
from formats.translator import ChatSink, EventTranslator, finish_reason
from wire.finish_reasons import GEMINI
from wire.sse import Comment, Event, SSEDecoder
from wire.usage import Usage, UsageMetadata, from_usage_metadata

# ai.google.dev/api/generate-content#FinishReason; the rest (OTHER, MALFORMED_FUNCTION_CALL,
# LANGUAGE, ...) end the answer too, with nothing more specific to say in OpenAI's terms.
FINISH_REASONS = GEMINI  # finishReason -> finish_reason


class _FunctionCall(msgspec.Struct, gc=False):
    name: str = ""
    args: dict[str, Any] | None = None
    id: str | None = None


class _Part(msgspec.Struct, rename="camel", gc=False):
    text: str | None = None
    thought: bool = False
    thought_signature: str | None = None
    function_call: _FunctionCall | None = None


class _Content(msgspec.Struct, gc=False):
    parts: list[_Part] = []


class _Candidate(msgspec.Struct, rename="camel", gc=False):
    content: _Content | None = None
    finish_reason: str | None = None


class _PromptFeedback(msgspec.Struct, rename="camel", gc=False):
    block_reason: str | None = None


class _Response(msgspec.Struct, rename="camel", gc=False):
    """A GenerateContentResponse: only what the translation reads; msgspec skips the rest."""

    candidates: list[_Candidate] = []
    usage_metadata: UsageMetadata | None = None
    model_version: str | None = None
    prompt_feedback: _PromptFeedback | None = None
    error: ErrorObject | None = None


_decode_response = msgspec.json.Decoder(_Response).decode


class GeminiStream(EventTranslator[Event | Comment]):
    """GenerateContentResponses as deltas: a stream's SSE events, or (`response`) the whole
    answer, which is the same object once, read by the same code."""

    terminal = "finishReason"

    def __init__(self, provider: str, sink: ChatSink) -> None:
        super().__init__(provider, sink, SSEDecoder())
        self._calls = 0
        self._signed = False
        self.usage_metadata: UsageMetadata | None = None  # the latest seen

    @property
    def usage_so_far(self) -> Usage | None:
        """The latest usageMetadata's counts: Gemini's own, as of its latest response."""
        return from_usage_metadata(self.usage_metadata)

    def handle(self, item: Event | Comment) -> bytes:
        return self.response(item.data) if type(item) is Event else b""

    def response(self, data: str | bytes) -> bytes:
        """The client bytes for one GenerateContentResponse."""
        try:
            response = _decode_response(data)
        except msgspec.DecodeError:
            return self.malformed("response", data)
        if response.error is not None:
            return self.error_event(error_from_object(response.error, None))
        if response.model_version:
            self.sink.named(response.model_version)
        self.usage_metadata = response.usage_metadata or self.usage_metadata
        candidate = response.candidates[0] if response.candidates else None
        out = self._parts(candidate.content.parts) if candidate and candidate.content else b""
        if candidate is not None and candidate.finish_reason:
            return out + self.end_response(candidate.finish_reason, response.usage_metadata)
        feedback = response.prompt_feedback
        if candidate is None and feedback is not None and feedback.block_reason:
            # The prompt was blocked.
            return out + self.end_response("SAFETY", response.usage_metadata)
        return out

    def end_response(self, reason: str | None, meta: UsageMetadata | None) -> bytes:
        finish = finish_reason(FINISH_REASONS, reason, called=self._calls > 0)
        return self.finish(finish, from_usage_metadata(meta))

    def _parts(self, parts: list[_Part]) -> bytes:
        sink = self.sink
        out = []
        for part in parts:
            # One signature per answer: for parallel calls Gemini signs only the first one. It
            # goes out before its part, while the thought it signs is still the open block
            # for a bridge (an Anthropic thinking block, a Responses reasoning item).
            if part.thought_signature and not self._signed:
                self._signed = True
                out.append(sink.reasoning_signature(part.thought_signature))
            call = part.function_call
            if call is not None:
                call_id = call.id or f"call_{secrets.token_hex(12)}"
                arguments = orjson.dumps(call.args or {}).decode()
                out.append(sink.tool_call(self._calls, call_id, call.name, arguments))
                self._calls += 1
            elif part.text:
                out.append(sink.reasoning(part.text) if part.thought else sink.content(part.text))
        return b"".join(out)
