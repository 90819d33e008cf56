"""The built-in `mock` provider: an OpenAI-compatible server inside the gateway process.

`mock/<anything>` answers with a deterministic reply, streamed token by token, with no network
and no key, so a fresh checkout works with the first README command and a copy-pasted curl.
Its request goes through the same path as a real provider's (built as an OpenAI request, relayed
and normalised), only the transport is in-process, so it also shows what the gateway does.

Knobs: `tokens` (reply length, default 10) and `delay` (seconds between tokens, default 0.02)
in `[providers.mock]`; a request's `max_tokens` / `max_completion_tokens` asks for fewer tokens
(the reply then ends with finish_reason "length"). Failures on demand by model name
(`status-503`, `error-first`, `cut-after-3`): `providers/mock_failures.py`.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlencode

import aiohttp
import msgspec
import orjson

from gateway.config import MockProviderConfig
from gateway.errors import GatewayError, upstream_error_from_body
from gateway.upstream import Upstream
from providers import mock_failures, mock_media
from providers.base import Operation, RawBody, UpstreamRequest
from providers.mock_failures import CutAfter, ErrorFirst, Failure, Status
from providers.mock_media import MockReply
from providers.openai import CHAT_STYLE, ChunkNormaliser, encode_body

if TYPE_CHECKING:
    from gateway.uploads import Upload

REPLY = "This is a mock reply from the gateway's built-in provider."
_WORDS = REPLY.split(" ")
_ids = itertools.count(1)


class _MockRequest(msgspec.Struct, gc=False):
    model: str
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    messages: msgspec.Raw = msgspec.Raw()
    prompt: msgspec.Raw = msgspec.Raw()


_decode_request = msgspec.json.Decoder(_MockRequest).decode


def reply_tokens(count: int) -> list[str]:
    """The first `count` tokens of the mock reply, repeated as needed: ["This", " is", ...]."""
    return [
        word if i == 0 else " " + word
        for i, word in zip(range(count), itertools.cycle(_WORDS), strict=False)
    ]


class MockProvider:
    operations = frozenset(
        {
            Operation.CHAT,
            Operation.COMPLETIONS,
            Operation.EMBEDDINGS,
            Operation.SPEECH,
            Operation.TRANSCRIPTION,
            Operation.TRANSLATION,
        }
    )

    def __init__(self, name: str, config: MockProviderConfig) -> None:
        self.name = name
        self.config = config
        self.transport = self  # no sockets: this provider answers its own requests

    def build_request(
        self, operation: Operation, model: str, body: RawBody, stream: bool
    ) -> UpstreamRequest:
        return UpstreamRequest(
            "POST",
            f"mock:{operation.value}",
            {},
            encode_body(body, model, stream and operation in CHAT_STYLE),
        )

    def build_upload(self, operation: Operation, model: str, upload: Upload) -> UpstreamRequest:
        # The form's fields the answer depends on travel in the URL, as a query.
        query = urlencode(
            {
                "model": model,
                "stream": upload.value("stream") or "false",
                "response_format": upload.value("response_format") or "json",
            }
        )
        return UpstreamRequest("POST", f"mock:{operation.value}?{query}", {}, upload.body(model))

    def stream_translator(self, operation: Operation, model: str) -> ChunkNormaliser:
        return ChunkNormaliser(operation, self.name)

    def translate_response(self, operation: Operation, model: str, body: bytes) -> bytes:
        return body

    def upstream_error(self, status: int, body: bytes, headers: Mapping[str, str]) -> GatewayError:
        return upstream_error_from_body(status, body, self.name)

    async def send(self, request: UpstreamRequest, timeout: aiohttp.ClientTimeout) -> Upstream:
        target, _, query = request.url.removeprefix("mock:").partition("?")
        operation = Operation(target)
        if operation in (Operation.TRANSCRIPTION, Operation.TRANSLATION):
            assert not isinstance(request.body, bytes)
            form = parse_qs(query)
            model, stream = form["model"][0], form["stream"][0] == "true"
            failure = mock_failures.parse_failure(model)
            answer = _failure_answer(failure, model, stream)
            if answer is not None:
                await mock_media.read_upload(request.body)
                return answer
            return await mock_media.transcript(
                request.body, stream, form["response_format"][0], self.config.delay, _cut(failure)
            )
        assert isinstance(request.body, bytes)
        if operation in CHAT_STYLE:
            chat_request = _decode_request(request.body)
            failure = mock_failures.parse_failure(chat_request.model)
            answer = _failure_answer(failure, chat_request.model, bool(chat_request.stream))
            if answer is not None:
                return answer
            return MockUpstream(operation, chat_request, self.config, _cut(failure))
        fields = orjson.loads(request.body)
        failure = mock_failures.parse_failure(fields["model"])
        answer = _failure_answer(failure, fields["model"], stream=False)  # no event stream
        if answer is not None:
            return answer
        if operation is Operation.EMBEDDINGS:
            return mock_media.embeddings(fields, _cut(failure))
        return mock_media.speech(fields, self.config.delay, _cut(failure))


def _failure_answer(failure: Failure | None, model: str, stream: bool) -> MockReply | None:
    """The answer of a `status-<code>` or `error-first` model, instead of its reply."""
    if isinstance(failure, Status):
        status = failure.code
    elif isinstance(failure, ErrorFirst):
        if stream:
            return MockReply([mock_failures.error_event(model)], "text/event-stream")
        status = mock_failures.ERROR_FIRST_STATUS
    else:
        return None
    return MockReply(
        [mock_failures.error_body(status, model)],
        "application/json",
        status=status,
        headers=mock_failures.error_headers(status),
    )


def _cut(failure: Failure | None) -> int | None:
    return failure.chunks if isinstance(failure, CutAfter) else None


class MockUpstream:
    """What an OpenAI server would answer, chunk for chunk as OpenAI shapes them
    (`cut`: the connection breaks after that many tokens, before the finish)."""

    status = 200
    content_type = "text/event-stream"
    request_id = None
    headers: Mapping[str, str] = {}

    def __init__(
        self,
        operation: Operation,
        request: _MockRequest,
        config: MockProviderConfig,
        cut: int | None = None,
    ) -> None:
        self._chat = operation is Operation.CHAT
        self._request = request
        self._delay = config.delay
        self._cut = cut
        tokens = config.tokens if cut is None else cut
        limit = request.max_completion_tokens or request.max_tokens
        count = tokens if limit is None else min(limit, tokens)
        self._tokens = reply_tokens(count)
        self._finish = "length" if limit is not None and limit < tokens else "stop"
        self._id = f"{'chatcmpl' if self._chat else 'cmpl'}-mock{next(_ids)}"
        self._created = int(time.time())
        prompt = request.messages if self._chat else request.prompt
        prompt_tokens = max(1, len(prompt) // 4)
        self._usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": count,
            "total_tokens": prompt_tokens + count,
        }

    async def chunks(self) -> AsyncIterator[bytes]:
        include_usage = bool((self._request.stream_options or {}).get("include_usage"))
        usage_field = {"usage": None} if include_usage else {}
        if self._chat:
            yield self._event(self._choice({"role": "assistant", "content": ""}, None), usage_field)
        for i, token in enumerate(self._tokens):
            if self._delay and i:
                await asyncio.sleep(self._delay)
            content = {"content": token} if self._chat else token
            yield self._event(self._choice(content, None), usage_field)
        if self._cut is not None:
            raise mock_failures.cut()  # after `cut` tokens, before the finish
        yield self._event(self._choice({} if self._chat else "", self._finish), usage_field)
        if include_usage:
            yield self._event_with([], {"usage": self._usage})
        yield b"data: [DONE]\n\n"

    async def read(self) -> bytes:
        if self._cut is not None:
            raise mock_failures.cut()
        text = "".join(self._tokens)
        if self._chat:
            choice = {
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": None},
                "logprobs": None,
                "finish_reason": self._finish,
            }
        else:
            choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": self._finish}
        return orjson.dumps(
            {
                **self._head("chat.completion" if self._chat else "text_completion"),
                "choices": [choice],
                "usage": self._usage,
            }
        )

    async def finish(self, wait: float) -> None:
        pass

    def close(self) -> None:
        pass

    def _head(self, kind: str) -> dict[str, Any]:
        return {
            "id": self._id,
            "object": kind,
            "created": self._created,
            "model": self._request.model,
            "system_fingerprint": "fp_mock",
        }

    def _choice(self, content: Any, finish_reason: str | None) -> dict[str, Any]:
        key = "delta" if self._chat else "text"
        return {"index": 0, key: content, "logprobs": None, "finish_reason": finish_reason}

    def _event(self, choice: dict[str, Any], extra: dict[str, Any]) -> bytes:
        return self._event_with([choice], extra)

    def _event_with(self, choices: list[dict[str, Any]], extra: dict[str, Any]) -> bytes:
        kind = "chat.completion.chunk" if self._chat else "text_completion"
        chunk = {**self._head(kind), "choices": choices, **extra}
        return b"data: " + orjson.dumps(chunk) + b"\n\n"
