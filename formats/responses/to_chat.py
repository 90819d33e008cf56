"""A Response object (the Responses API's whole answer) read back as a chat completion.

The response cache (`gateway.cache`) stores every answer as one chat completion and gives it
back in the client's format; a Responses answer is read back here: its `message` items'
`output_text` as the content, `reasoning` items' summaries as reasoning, `function_call`
items as tool calls, `incomplete` (max_output_tokens) as finish_reason "length". An answer
with any other item (a hosted tool's call, a namespaced or custom tool call, a refusal) has
no chat form that gives it back as it was: None, and it is not stored.
"""

from __future__ import annotations

from typing import Any

import orjson

from formats.chat.from_chat import chat_completion
from wire.sse import Event, SSEDecoder, SSEProtocolError
from wire.usage import Usage

_FINISH = {"max_output_tokens": "length", "content_filter": "content_filter"}


def chat_from_response(response: Any) -> bytes | None:
    """`response` (a decoded Response object) as a chat completion; None when it did not
    complete or holds what chat cannot say."""
    if not isinstance(response, dict) or response.get("status") not in ("completed", "incomplete"):
        return None
    text: list[str] = []
    reasoning: list[str] = []
    signature: str | None = None
    calls: list[dict[str, Any]] = []
    for item in response.get("output") or []:
        kind = item.get("type") if isinstance(item, dict) else None
        if kind == "message":
            for part in item.get("content") or []:
                if part.get("type") != "output_text" or part.get("annotations"):
                    return None
                text.append(part.get("text", ""))
        elif kind == "reasoning":
            reasoning += [s.get("text", "") for s in item.get("summary") or []]
            signature = item.get("encrypted_content") or signature
        elif kind == "function_call" and not item.get("namespace"):
            calls.append(
                {"id": item["call_id"], "name": item["name"], "arguments": item["arguments"]}
            )
        else:
            return None
    details = response.get("incomplete_details") or {}
    finish = _FINISH.get(details.get("reason", ""), "length") if details else None
    return chat_completion(
        model=response.get("model", ""),
        content="".join(text) or (None if calls else ""),
        finish_reason=finish or ("tool_calls" if calls else "stop"),
        usage=_usage(response.get("usage")),
        tool_calls=calls,
        reasoning="".join(reasoning) or None,
        reasoning_signature=signature,
        created=response.get("created_at"),
    )


def chat_from_response_stream(data: bytes) -> bytes | None:
    """A whole Responses event stream as a chat completion: its terminal event carries the
    Response object whole (`response.completed` or `response.incomplete`)."""
    try:
        items = SSEDecoder().feed(data + b"\n\n")
    except SSEProtocolError:
        return None
    for item in reversed(items):
        if isinstance(item, Event) and item.event in ("response.completed", "response.incomplete"):
            return chat_from_response(orjson.loads(item.data).get("response"))
    return None


def _usage(usage: Any) -> Usage | None:
    if not isinstance(usage, dict):
        return None
    input_details = usage.get("input_tokens_details") or {}
    output_details = usage.get("output_tokens_details") or {}
    return Usage(
        usage.get("input_tokens", 0),
        usage.get("output_tokens", 0),
        input_details.get("cached_tokens") or None,
        input_details.get("cache_write_tokens") or None,
        output_details.get("reasoning_tokens") or None,
    )
