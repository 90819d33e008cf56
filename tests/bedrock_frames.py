"""AWS event-stream frames for the bedrock tests, and the fixture streams built from them.

botocore has a parser for the event-stream framing (`application/vnd.amazon.eventstream`) but
no encoder, so the binary fixtures in tests/fixtures/bedrock/*.bin are built by `encode_frame`
from the events listed in `STREAMS`: `python -m tests.bedrock_frames` rewrites them, and
tests/test_provider_bedrock.py checks that the files are exactly these frames.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path
from typing import Any

import orjson

from tests.replay import FIXTURES

PAD = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0"  # Bedrock pads payloads with "p"
# The tool call tool_stream.bin makes, as a client reads it.
TOOL_CALL = {
    "id": "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q",
    "name": "get_weather",
    "arguments": {"city": "Seattle"},
}


def encode_frame(headers: dict[str, str], payload: bytes) -> bytes:
    """One AWS event-stream message: prelude (total length, headers length, prelude CRC32),
    string headers (type 7), payload, then the CRC32 of everything before it."""
    encoded = b"".join(
        bytes([len(name)])
        + name.encode()
        + b"\x07"
        + struct.pack(">H", len(value.encode()))
        + value.encode()
        for name, value in headers.items()
    )
    prelude = struct.pack(">II", 12 + len(encoded) + len(payload) + 4, len(encoded))
    message = prelude + struct.pack(">I", zlib.crc32(prelude)) + encoded + payload
    return message + struct.pack(">I", zlib.crc32(message))


def event(kind: str, payload: dict[str, Any]) -> bytes:
    headers = {":event-type": kind, ":content-type": "application/json", ":message-type": "event"}
    return encode_frame(headers, orjson.dumps(payload))


def exception(kind: str, message: str) -> bytes:
    headers = {
        ":exception-type": kind,
        ":content-type": "application/json",
        ":message-type": "exception",
    }
    return encode_frame(headers, orjson.dumps({"message": message}))


def _text_deltas(index: int, pieces: list[str]) -> list[bytes]:
    return [
        event(
            "contentBlockDelta",
            {"contentBlockIndex": index, "delta": {"text": piece}, "p": PAD[: 5 + i]},
        )
        for i, piece in enumerate(pieces)
    ]


def _metadata(usage: dict[str, int]) -> bytes:
    return event("metadata", {"usage": usage, "metrics": {"latencyMs": 812}, "p": PAD[:9]})


TEXT_PIECES = ["Hello!", " How can I help", " — 今日は", "? 🙂"]
STREAMS: dict[str, list[bytes]] = {
    "text_stream.bin": [
        event("messageStart", {"role": "assistant", "p": PAD[:20]}),
        *_text_deltas(0, TEXT_PIECES),
        event("contentBlockStop", {"contentBlockIndex": 0, "p": PAD[:3]}),
        event("messageStop", {"stopReason": "end_turn", "p": PAD[:7]}),
        _metadata(
            {
                "inputTokens": 12,
                "outputTokens": 15,
                "totalTokens": 147,
                "cacheReadInputTokens": 100,
                "cacheWriteInputTokens": 20,
            }
        ),
    ],
    "tool_stream.bin": [
        event("messageStart", {"role": "assistant"}),
        *_text_deltas(0, ["Let me check", " the weather."]),
        event("contentBlockStop", {"contentBlockIndex": 0}),
        event(
            "contentBlockStart",
            {
                "contentBlockIndex": 1,
                "start": {"toolUse": {"toolUseId": TOOL_CALL["id"], "name": "get_weather"}},
            },
        ),
        *[
            event("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"toolUse": {"input": p}}})
            for p in ['{"ci', 'ty": "Sea', 'ttle"}']
        ],
        event("contentBlockStop", {"contentBlockIndex": 1}),
        event("messageStop", {"stopReason": "tool_use"}),
        _metadata({"inputTokens": 410, "outputTokens": 56, "totalTokens": 466}),
    ],
    "reasoning_stream.bin": [
        event("messageStart", {"role": "assistant"}),
        *[
            event(
                "contentBlockDelta",
                {"contentBlockIndex": 0, "delta": {"reasoningContent": {"text": piece}}},
            )
            for piece in ["The user greets me.", " I should greet back."]
        ],
        event(
            "contentBlockDelta",
            {
                "contentBlockIndex": 0,
                "delta": {"reasoningContent": {"signature": "EqoBCkgIARABGAIiQ"}},
            },
        ),
        event("contentBlockStop", {"contentBlockIndex": 0}),
        *_text_deltas(1, ["Hi there!"]),
        event("contentBlockStop", {"contentBlockIndex": 1}),
        event("messageStop", {"stopReason": "max_tokens"}),
        _metadata({"inputTokens": 40, "outputTokens": 64, "totalTokens": 104}),
    ],
    "exception_stream.bin": [
        event("messageStart", {"role": "assistant"}),
        *_text_deltas(0, ["Partial", " answer"]),
        exception("throttlingException", "Too many tokens, please wait before trying again."),
    ],
}


def write_fixtures() -> None:
    for name, frames in STREAMS.items():
        (FIXTURES / "bedrock" / name).write_bytes(b"".join(frames))


if __name__ == "__main__":
    write_fixtures()
    print(f"wrote {', '.join(STREAMS)} to {Path(FIXTURES / 'bedrock')}")
