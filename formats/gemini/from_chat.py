"""Gemini's generateContent for providers that are not Gemini: translated through chat.

`gemini_to_chat` (from `formats.gemini.request`) turns a generateContent request into a chat
request; `GeminiFromChat` turns our normalised chat stream into what streamGenerateContent
answers (ai.google.dev/api/generate-content): a GenerateContentResponse per delta, text in
`candidates[0].content.parts`, thoughts as `thought: true` parts, each function call whole
(`functionCall` with its `args` object: chat streams the arguments in fragments, Gemini never
does, so a call waits until it is complete), and a last response with the `finishReason` and
`usageMetadata`. `gemini_response_from_chat` does the same for generateContent (errors in
Gemini's shape: `formats.gemini.error_shape`).

The responses go out as SSE events or as Gemini's JSON array (`formats.gemini.framing`).
"""

from __future__ import annotations

import secrets
from typing import Any

import orjson

from formats.chat.bridge import ChatBridge, read_completion
from formats.gemini.error_shape import gemini_error_body
from formats.gemini.framing import GeminiFraming
from wire.errors import GatewayError
from wire.sse import Comment, encode
from wire.usage import Usage, from_openai

# finish_reason -> finishReason (ai.google.dev/api/generate-content#FinishReason). Gemini ends a
# turn of function calls with STOP.
_FINISH_REASONS = {
    "stop": "STOP",
    "tool_calls": "STOP",
    "function_call": "STOP",
    "length": "MAX_TOKENS",
    "content_filter": "SAFETY",
}


def usage_metadata(usage: Usage | None) -> dict[str, int] | None:
    """Gemini's usageMetadata: thoughts are counted apart from the candidates."""
    if usage is None:
        return None
    thoughts = usage.reasoning or 0
    cached = usage.cache_read or 0
    meta = {
        "promptTokenCount": usage.input,
        "candidatesTokenCount": max(usage.output - thoughts, 0),
        "totalTokenCount": usage.total,
    }
    if thoughts:
        meta["thoughtsTokenCount"] = thoughts
    if cached:
        meta["cachedContentTokenCount"] = cached
    return meta


def finish_reason(chat_finish: str | None) -> str:
    return _FINISH_REASONS.get(chat_finish or "", "OTHER")


def response_id() -> str:
    """An id shaped as Gemini's `responseId` (22 URL-safe characters)."""
    return secrets.token_urlsafe(16)


def function_call(id: str, name: str, arguments: str) -> dict[str, Any] | None:
    """A `functionCall` part for a chat call; None when its arguments are not a JSON object."""
    try:
        args = orjson.loads(arguments or "{}")
    except orjson.JSONDecodeError:
        return None
    if not isinstance(args, dict):
        return None
    call = {"id": id, "name": name, "args": args} if id else {"name": name, "args": args}
    return {"functionCall": call}


def _response(
    parts: list[dict[str, Any]],
    model: str,
    id: str,
    finish: str | None = None,
    usage: dict[str, int] | None = None,
) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}, "index": 0}
    if finish is not None:
        candidate["finishReason"] = finish
    response: dict[str, Any] = {"candidates": [candidate]}
    if usage is not None:
        response["usageMetadata"] = usage
    response["modelVersion"] = model
    response["responseId"] = id
    return response


def _final(
    parts: list[dict[str, Any]], signature: str | None, finish: str, malformed: bool
) -> tuple[list[dict[str, Any]], str]:
    """The last response's parts and finishReason. The signature goes on the first function
    call, else on the last part, where Gemini puts it (ai.google.dev/gemini-api/docs/
    thought-signatures); a call whose arguments were not an object was left out, and a
    turn that would have ended normally says MALFORMED_FUNCTION_CALL, as Gemini does."""
    if not parts:
        parts = [{"text": ""}]
    if signature:
        calls = [part for part in parts if "functionCall" in part]
        (calls[0] if calls else parts[-1])["thoughtSignature"] = signature
    if malformed and finish == "STOP":
        finish = "MALFORMED_FUNCTION_CALL"
    return parts, finish


class _Call:
    __slots__ = ("arguments", "id", "name")

    def __init__(self, id: str, name: str) -> None:
        self.id = id
        self.name = name
        self.arguments: list[str] = []


class GeminiFromChat(ChatBridge):
    """A ChatSink that writes Gemini's stream.

    Args:
        model: The model asked for (the answer names the upstream's, once a chunk does).
        sse: True for `?alt=sse`, False for the JSON array stream.
    """

    def __init__(self, model: str, sse: bool) -> None:
        super().__init__(model)
        self._framing = GeminiFraming(sse)
        self._id = response_id()
        self._buffered: dict[int, _Call] = {}  # calls whose arguments are still streaming
        self._signature: str | None = None  # for the next part out
        self._malformed = False

    def _emit(self, parts: list[dict[str, Any]], **final: Any) -> bytes:
        response = _response(parts, self.model, self._id, **final)
        return self._framing.element(orjson.dumps(response))

    def _signed(self, part: dict[str, Any]) -> dict[str, Any]:
        if self._signature:
            part["thoughtSignature"] = self._signature
            self._signature = None
        return part

    def _calls_out(self) -> list[dict[str, Any]]:
        """The buffered calls as functionCall parts (complete: something else came next)."""
        parts = []
        for call in self._buffered.values():
            part = function_call(call.id, call.name, "".join(call.arguments))
            if part is None:
                self._malformed = True
            else:
                parts.append(part)
        self._buffered.clear()
        if parts:
            self._signed(parts[0])
        return parts

    def _flush(self) -> bytes:
        parts = self._calls_out()
        return self._emit(parts) if parts else b""

    def _on_text(self, text: str) -> bytes:
        return self._flush() + self._emit([self._signed({"text": text})])

    def _on_reasoning(self, text: str) -> bytes:
        return self._flush() + self._emit([{"text": text, "thought": True}])

    def _on_signature(self, signature: str) -> bytes:
        self._signature = signature
        return b""

    def _on_tool_call(self, index: int, id: str, name: str) -> bytes:
        self._buffered[index] = _Call(id, name)
        return b""

    def _on_tool_arguments(self, index: int, fragment: str) -> bytes:
        call = self._buffered.get(index)
        if call is None:  # its call went out already (calls interleaved with text): lost
            self._malformed = True
            return b""
        call.arguments.append(fragment)
        return b""

    def _on_finish(self, chat_finish: str, usage: Usage | None) -> bytes:
        parts, finish = _final(
            self._calls_out(), self._signature, finish_reason(chat_finish), self._malformed
        )
        self._signature = None
        last = self._emit(parts, finish=finish, usage=usage_metadata(usage))
        return last + self._framing.close()

    def _on_error(self, error: GatewayError) -> bytes:
        return self._framing.element(gemini_error_body(error)) + self._framing.close()

    def _on_comment(self, text: str) -> bytes:
        # An upstream's keepalive: SSE can carry it, the JSON array cannot.
        return encode(Comment(text)) if self._framing.sse else b""


def gemini_response_from_chat(body: bytes) -> bytes:
    """A non-streamed chat completion as a GenerateContentResponse, agreeing with the stream:
    the thought, the text, then the function calls."""
    completion, choice, message = read_completion(body)
    parts: list[dict[str, Any]] = []
    if message.get("reasoning"):
        parts.append({"text": message["reasoning"], "thought": True})
    if message.get("content"):
        parts.append({"text": message["content"]})
    malformed = False
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {}
        part = function_call(
            call.get("id") or "", function.get("name") or "", function.get("arguments") or ""
        )
        if part is None:
            malformed = True
        else:
            parts.append(part)
    parts, finish = _final(
        parts,
        message.get("reasoning_signature"),
        finish_reason(choice.get("finish_reason")),
        malformed,
    )
    response = _response(
        parts,
        completion.get("model") or "",
        response_id(),
        finish=finish,
        usage=usage_metadata(from_openai(completion.get("usage"))),
    )
    return orjson.dumps(response)
