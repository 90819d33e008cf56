"""The Responses API's error event: how a Responses stream that failed ends.

An error answer (a status) is OpenAI's body (`wire.errors`); inside a stream the failure is an
`error` event with its `sequence_number` (platform.openai.com/docs/api-reference/
responses-streaming/error).
"""

from __future__ import annotations

from typing import Any

from wire.errors import GatewayError
from wire.sse import encode_event


def error_fields(error: GatewayError) -> dict[str, Any]:
    return {"code": error.code, "message": error.message, "param": error.param}


def responses_error_event(error: GatewayError, sequence_number: int = 0) -> bytes:
    """The `error` event, numbered after the `sequence_number` events before it."""
    return encode_event(
        {"type": "error", "sequence_number": sequence_number, **error_fields(error)}
    )
