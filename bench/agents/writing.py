"""Writing a `Reply` (bench.agents.script) in each wire format the fake serves, streamed and
whole, shaped as each provider documents its answers (the same shapes as the suite's captured
provider streams in tests/fixtures/: OpenAI chunks with a usage chunk and `[DONE]`, Anthropic's
message_start ... message_stop, Gemini's data-only SSE of GenerateContentResponses, the
Responses API's typed events)."""

from __future__ import annotations

import itertools
import re
import time
from typing import Any

import orjson

from bench.agents.script import Reply

MODEL = "fake-model"
INPUT_TOKENS = 20
_ids = itertools.count(1)
_PIECE = re.compile(r"\s*\S+")  # a word with its leading space: one streamed delta each


def _pieces(text: str) -> list[str]:
    return _PIECE.findall(text) or [text]


def _output_tokens(reply: Reply) -> int:
    return len(_pieces(reply.text)) if reply.call is None else 10


def _sse(obj: Any, event: str | None = None) -> bytes:
    head = f"event: {event}\n".encode() if event else b""
    return head + b"data: " + orjson.dumps(obj) + b"\n\n"


# --- OpenAI Chat Completions ------------------------------------------------------------------


def chat_stream(reply: Reply) -> list[bytes]:
    base = {
        "id": f"chatcmpl-fake{next(_ids)}",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": MODEL,
    }

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return b"data: " + orjson.dumps({**base, "choices": [choice]}) + b"\n\n"

    out = [chunk({"role": "assistant", "content": ""})]
    if reply.call is None:
        out += [chunk({"content": piece}) for piece in _pieces(reply.text)]
        finish = "stop"
    else:
        call = {
            "index": 0,
            "id": f"call_fake{next(_ids)}",
            "type": "function",
            "function": {"name": reply.call.tool.name, "arguments": ""},
        }
        out.append(chunk({"tool_calls": [call]}))
        arguments = reply.call.input if reply.call.tool.freeform else reply.call.arguments_json
        out.append(chunk({"tool_calls": [{"index": 0, "function": {"arguments": arguments}}]}))
        finish = "tool_calls"
    out.append(chunk({}, finish))
    usage = _chat_usage(reply)
    out.append(b"data: " + orjson.dumps({**base, "choices": [], "usage": usage}) + b"\n\n")
    return [*out, b"data: [DONE]\n\n"]


def chat_whole(reply: Reply) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": reply.text or None}
    if reply.call is not None:
        arguments = reply.call.input if reply.call.tool.freeform else reply.call.arguments_json
        message["tool_calls"] = [
            {
                "id": f"call_fake{next(_ids)}",
                "type": "function",
                "function": {"name": reply.call.tool.name, "arguments": arguments},
            }
        ]
    finish = "stop" if reply.call is None else "tool_calls"
    return {
        "id": f"chatcmpl-fake{next(_ids)}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": MODEL,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
        "usage": _chat_usage(reply),
    }


def _chat_usage(reply: Reply) -> dict[str, int]:
    out = _output_tokens(reply)
    return {
        "prompt_tokens": INPUT_TOKENS,
        "completion_tokens": out,
        "total_tokens": INPUT_TOKENS + out,
    }


# --- Anthropic Messages -----------------------------------------------------------------------


def messages_stream(reply: Reply) -> list[bytes]:
    message = {
        **_message(reply),
        "content": [],
        "stop_reason": None,
        "usage": {"input_tokens": INPUT_TOKENS, "output_tokens": 1},
    }
    out = [_sse({"type": "message_start", "message": message}, "message_start")]
    if reply.call is None:
        block: dict[str, Any] = {"type": "text", "text": ""}
        deltas = [{"type": "text_delta", "text": piece} for piece in _pieces(reply.text)]
    else:
        block = {
            "type": "tool_use",
            "id": f"toolu_fake{next(_ids)}",
            "name": reply.call.tool.name,
            "input": {},
        }
        deltas = [
            {"type": "input_json_delta", "partial_json": ""},
            {"type": "input_json_delta", "partial_json": reply.call.arguments_json},
        ]
    out.append(
        _sse(
            {"type": "content_block_start", "index": 0, "content_block": block},
            "content_block_start",
        )
    )
    out += [
        _sse({"type": "content_block_delta", "index": 0, "delta": delta}, "content_block_delta")
        for delta in deltas
    ]
    out.append(_sse({"type": "content_block_stop", "index": 0}, "content_block_stop"))
    delta = {"stop_reason": _stop_reason(reply), "stop_sequence": None}
    usage = {"output_tokens": _output_tokens(reply)}
    out.append(_sse({"type": "message_delta", "delta": delta, "usage": usage}, "message_delta"))
    return [*out, _sse({"type": "message_stop"}, "message_stop")]


def messages_whole(reply: Reply) -> dict[str, Any]:
    return _message(reply)


def _message(reply: Reply) -> dict[str, Any]:
    if reply.call is None:
        content: list[dict[str, Any]] = [{"type": "text", "text": reply.text}]
    else:
        content = [
            {
                "type": "tool_use",
                "id": f"toolu_fake{next(_ids)}",
                "name": reply.call.tool.name,
                "input": reply.call.arguments,
            }
        ]
    return {
        "id": f"msg_fake{next(_ids)}",
        "type": "message",
        "role": "assistant",
        "model": MODEL,
        "content": content,
        "stop_reason": _stop_reason(reply),
        "stop_sequence": None,
        "usage": {"input_tokens": INPUT_TOKENS, "output_tokens": _output_tokens(reply)},
    }


def _stop_reason(reply: Reply) -> str:
    return "end_turn" if reply.call is None else "tool_use"


# --- Gemini generateContent -------------------------------------------------------------------


def gemini_stream(reply: Reply) -> list[bytes]:
    """`?alt=sse`: data-only events, CRLF-terminated, the last with finishReason and usage."""
    if reply.call is None:
        parts = [[{"text": piece}] for piece in _pieces(reply.text)]
    else:
        parts = [[{"functionCall": {"name": reply.call.tool.name, "args": reply.call.arguments}}]]
    out = []
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        out.append(b"data: " + orjson.dumps(_gemini(reply, part, last)) + b"\r\n\r\n")
    return out


def gemini_whole(reply: Reply) -> dict[str, Any]:
    if reply.call is None:
        parts: list[dict[str, Any]] = [{"text": reply.text}]
    else:
        parts = [{"functionCall": {"name": reply.call.tool.name, "args": reply.call.arguments}}]
    return _gemini(reply, parts, True)


def _gemini(reply: Reply, parts: list[dict[str, Any]], last: bool) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "index": 0}
    answer: dict[str, Any] = {"candidates": [candidate], "modelVersion": MODEL}
    if last:
        candidate["finishReason"] = "STOP"
        out = _output_tokens(reply)
        answer["usageMetadata"] = {
            "promptTokenCount": INPUT_TOKENS,
            "candidatesTokenCount": out,
            "totalTokenCount": INPUT_TOKENS + out,
        }
    return answer


# --- OpenAI Responses -------------------------------------------------------------------------


def responses_stream(reply: Reply) -> list[bytes]:
    """The Responses API's typed events, each with its `sequence_number`."""
    ids = _ResponseIds()
    response = _response(reply, ids, "in_progress")
    events: list[dict[str, Any]] = [
        {"type": "response.created", "response": response},
        {"type": "response.in_progress", "response": response},
    ]
    item = _output_item(reply, ids)
    added = {**item, "status": "in_progress"}
    at = {"item_id": item["id"], "output_index": 0}
    if reply.call is None:
        events.append(
            {
                "type": "response.output_item.added",
                "output_index": 0,
                "item": {**added, "content": []},
            }
        )
        part = {"type": "output_text", "text": "", "annotations": []}
        events.append(
            {"type": "response.content_part.added", **at, "content_index": 0, "part": part}
        )
        events += [
            {
                "type": "response.output_text.delta",
                **at,
                "content_index": 0,
                "delta": piece,
                "logprobs": [],
            }
            for piece in _pieces(reply.text)
        ]
        events.append(
            {
                "type": "response.output_text.done",
                **at,
                "content_index": 0,
                "text": reply.text,
                "logprobs": [],
            }
        )
        events.append(
            {
                "type": "response.content_part.done",
                **at,
                "content_index": 0,
                "part": {**part, "text": reply.text},
            }
        )
    elif reply.call.tool.freeform:
        events.append(
            {
                "type": "response.output_item.added",
                "output_index": 0,
                "item": {**added, "input": ""},
            }
        )
        events.append(
            {"type": "response.custom_tool_call_input.delta", **at, "delta": reply.call.input}
        )
        events.append(
            {"type": "response.custom_tool_call_input.done", **at, "input": reply.call.input}
        )
    else:
        events.append(
            {
                "type": "response.output_item.added",
                "output_index": 0,
                "item": {**added, "arguments": ""},
            }
        )
        arguments = reply.call.arguments_json
        events.append({"type": "response.function_call_arguments.delta", **at, "delta": arguments})
        events.append(
            {"type": "response.function_call_arguments.done", **at, "arguments": arguments}
        )
    events.append({"type": "response.output_item.done", "output_index": 0, "item": item})
    events.append({"type": "response.completed", "response": _response(reply, ids, "completed")})
    sequence = itertools.count()
    return [_sse({**event, "sequence_number": next(sequence)}, event["type"]) for event in events]


def responses_whole(reply: Reply) -> dict[str, Any]:
    return _response(reply, _ResponseIds(), "completed")


class _ResponseIds:
    """One answer's ids, the same in every event that names them."""

    def __init__(self) -> None:
        n = next(_ids)
        self.response, self.item, self.call = f"resp_fake{n}", f"item_fake{n}", f"call_fake{n}"


def _response(reply: Reply, ids: _ResponseIds, status: str) -> dict[str, Any]:
    done = status == "completed"
    out = _output_tokens(reply)
    usage = {
        "input_tokens": INPUT_TOKENS,
        "output_tokens": out,
        "total_tokens": INPUT_TOKENS + out,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens_details": {"reasoning_tokens": 0},
    }
    return {
        "id": ids.response,
        "object": "response",
        "created_at": int(time.time()),
        "status": status,
        "model": MODEL,
        "output": [_output_item(reply, ids)] if done else [],
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "usage": usage if done else None,
    }


def _output_item(reply: Reply, ids: _ResponseIds) -> dict[str, Any]:
    if reply.call is None:
        content = [{"type": "output_text", "text": reply.text, "annotations": []}]
        return {
            "id": ids.item,
            "type": "message",
            "status": "completed",
            "role": "assistant",
            "content": content,
        }
    item: dict[str, Any] = {
        "id": ids.item,
        "status": "completed",
        "call_id": ids.call,
        "name": reply.call.tool.name,
    }
    if reply.call.tool.freeform:
        item.update(type="custom_tool_call", input=reply.call.input)
    else:
        item.update(type="function_call", arguments=reply.call.arguments_json)
    if reply.call.tool.namespace:
        item["namespace"] = reply.call.tool.namespace
    return item
