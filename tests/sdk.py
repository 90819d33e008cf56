"""Reading the gateway's answers through the official OpenAI SDK, as a client does.

`read_chunks` joins a stream's chunks, `read_completion` reads a whole answer; both give a
`Reading`, so that a streamed answer and the non-streamed one can be compared field by field.
The provider tests compare them in one of three views:

- `Reading` itself (anthropic): every field, the response ids and models included;
- `Answer` (cohere, azure, bedrock): text, reasoning, tool calls with their ids, finish, usage;
- `Reply` (gemini, ollama): tool calls as (name, arguments), their ids apart (generated per
  answer), and the signature and model.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import openai
import orjson
import pytest


@dataclass
class Reading:
    """Everything a client reads from one answer, streamed or not, in the same shape."""

    content: str | None = None  # as the whole answer has it (null beside tool calls)
    reasoning: str = ""
    reasoning_signature: str = ""
    tool_calls: list[dict[str, Any]] = field(default_factory=list)  # id, name, parsed arguments
    finish_reason: str | None = None
    usage: dict[str, Any] | None = None
    model: str = ""  # the last chunk's
    ids: set[str] = field(default_factory=set)  # chat.completion(.chunk) ids
    models: set[str] = field(default_factory=set)


def read_chunks(chunks: list[Any]) -> Reading:
    """A stream's chunks joined the way a client joins them: every string delta (tool-call id,
    name and arguments too) concatenated, in the order the chunks came."""
    reading = Reading(content="")
    calls: dict[int, dict[str, str]] = {}
    for chunk in chunks:
        reading.ids.add(chunk.id)
        reading.models.add(chunk.model)
        reading.model = chunk.model
        if chunk.usage is not None:
            reading.usage = chunk.usage.model_dump(exclude_none=True)
        for choice in chunk.choices:
            delta = choice.delta
            extra = delta.model_extra or {}
            reading.content += delta.content or ""
            reading.reasoning += extra.get("reasoning") or ""
            reading.reasoning_signature += extra.get("reasoning_signature") or ""
            for call in delta.tool_calls or ():
                slot = calls.setdefault(call.index, {"id": "", "name": "", "arguments": ""})
                assert call.function is not None
                slot["id"] += call.id or ""
                slot["name"] += call.function.name or ""
                slot["arguments"] += call.function.arguments or ""
            if choice.finish_reason is not None:
                reading.finish_reason = choice.finish_reason
    assert sorted(calls) == list(range(len(calls)))  # indexes 0, 1, ... whatever the upstream's
    reading.tool_calls = [
        {**calls[index], "arguments": orjson.loads(calls[index]["arguments"])}
        for index in sorted(calls)
    ]
    return reading


def read_completion(completion: Any) -> Reading:
    """A whole `ChatCompletion` in the same shape."""
    choice = completion.choices[0]
    message = choice.message
    extra = message.model_extra or {}
    return Reading(
        content=message.content,
        reasoning=extra.get("reasoning") or "",
        reasoning_signature=extra.get("reasoning_signature") or "",
        tool_calls=[
            {
                "id": call.id,
                "name": call.function.name,
                "arguments": orjson.loads(call.function.arguments),
            }
            for call in message.tool_calls or ()
        ],
        finish_reason=choice.finish_reason,
        usage=completion.usage.model_dump(exclude_none=True) if completion.usage else None,
        model=completion.model,
        ids={completion.id},
        models={completion.model},
    )


async def stream_chunks(client: openai.AsyncOpenAI, **request: Any) -> list[Any]:
    """Every chunk of one streamed answer."""
    return [chunk async for chunk in await client.chat.completions.create(stream=True, **request)]


async def read_stream(client: openai.AsyncOpenAI, **request: Any) -> Reading:
    return read_chunks(await stream_chunks(client, **request))


async def read_whole(client: openai.AsyncOpenAI, **request: Any) -> Reading:
    return read_completion(await client.chat.completions.create(**request))


@dataclass
class Answer:
    """A `Reading` as text, reasoning, tool calls (with the upstream's ids), finish and usage."""

    text: str = ""
    reasoning: str = ""
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    finish_reason: str | None = None
    usage: dict[str, Any] | None = None

    @classmethod
    def of(cls, reading: Reading) -> Answer:
        return cls(
            text=reading.content or "",
            reasoning=reading.reasoning,
            tool_calls=reading.tool_calls,
            finish_reason=reading.finish_reason,
            usage=reading.usage,
        )


async def collect_stream(sdk: openai.AsyncOpenAI, model: str, **kwargs: Any) -> Answer:
    """Read a whole stream through the SDK, joining deltas as a client would."""
    return Answer.of(await read_stream(sdk, model=model, **kwargs))


def from_completion(completion: Any) -> Answer:
    """The same view of a non-streamed `ChatCompletion`."""
    return Answer.of(read_completion(completion))


@dataclass
class Reply:
    """A `Reading` with tool calls as (name, parsed arguments) and their ids apart, for
    upstreams whose calls get ids generated per answer."""

    text: str = ""
    reasoning: str = ""
    signature: str = ""
    calls: list[tuple[str, Any]] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    finish: str | None = None
    usage: dict[str, Any] | None = None
    model: str = ""

    @classmethod
    def of(cls, reading: Reading) -> Reply:
        return cls(
            text=reading.content or "",
            reasoning=reading.reasoning,
            signature=reading.reasoning_signature,
            calls=[(call["name"], call["arguments"]) for call in reading.tool_calls],
            ids=[call["id"] for call in reading.tool_calls],
            finish=reading.finish_reason,
            usage=reading.usage,
            model=reading.model,
        )


async def refused(client: openai.AsyncOpenAI, upstream: Any, param: str, **request: Any) -> None:
    """The chat request is a 400 naming `param`, and nothing went to the (fake) upstream."""
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(**request)
    assert isinstance(caught.value.body, dict) and caught.value.body["param"] == param
    assert upstream.requests == []


def reply_readers(
    defaults: dict[str, Any],
) -> tuple[Callable[..., Awaitable[Reply]], Callable[..., Awaitable[Reply]]]:
    """Readers of a streamed and of a whole answer as `Reply`s, the request's fields
    defaulting to `defaults` (model, messages)."""

    async def streamed(client: openai.AsyncOpenAI, **request: Any) -> Reply:
        return Reply.of(await read_stream(client, **{**defaults, **request}))

    async def whole(client: openai.AsyncOpenAI, **request: Any) -> Reply:
        return Reply.of(await read_whole(client, **{**defaults, **request}))

    return streamed, whole
