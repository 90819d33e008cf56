"""Anthropic's Messages API (`type = "anthropic"`): `POST {base_url}/messages`.

Requests follow platform.claude.com/docs/en/api/messages; answers are translated back by
`formats.anthropic.to_chat`. How an OpenAI chat request maps:

- system and developer messages -> top-level `system` (their texts joined by a blank line);
- user content -> text and image blocks (`data:` URLs as base64 sources, http(s) as url ones);
- assistant `tool_calls` -> `tool_use` blocks (arguments parsed into `input`), and the
  `reasoning` + `reasoning_signature` of an earlier answer -> a `thinking` block first in its
  turn (reasoning without a signature is dropped: Anthropic rejects unsigned thinking), then
  its `reasoning_redacted` data -> `redacted_thinking` blocks (a tool loop needs them back);
- `tool` messages -> `tool_result` blocks in a user turn. Consecutive messages that land on the
  same role are merged into one turn, as Anthropic wants user and assistant to alternate;
- tools -> `input_schema` from `parameters`; tool_choice auto/none/required/function ->
  auto/none/any/tool; `parallel_tool_calls: false` -> `disable_parallel_tool_use`;
- `max_tokens` / `max_completion_tokens`, else the provider's `max_tokens` (Anthropic requires
  one); `stop` -> `stop_sequences`; temperature and top_p as given; `user` -> metadata.user_id;
- `reasoning_effort` -> `thinking` with a token budget (see `THINKING_BUDGETS`);
- `response_format` (`json_schema`, `json_object`) -> `output_config.format` for a Claude with
  structured outputs (4.5 and later), else a tool whose input is the answer, its call given
  back as the message's text (`formats.json_answer`).

Parameters Anthropic has no equivalent for (n > 1, logprobs, penalties, logit_bias, audio)
are a 400 naming the parameter; `seed` is dropped (best effort).

A client that speaks the Messages API itself (`Operation.MESSAGES`, `COUNT_TOKENS`) is passed
through: its body goes out unchanged but for `model`, and the stream is relayed as it comes
(`MessagesRelay`, below).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import msgspec

from formats.anthropic.error_shape import (
    ErrorBody,
    anthropic_error,
    anthropic_error_event,
    decode_error,
    overloaded_as_503,
    stream_error,
)
from formats.anthropic.to_chat import (
    MessagesStream,
    MessagesUsage,
    decode_message_delta,
    decode_message_start,
    event_type,
    read_usage,
    reported_so_far,
    translate_message,
)
from formats.chat.request import (
    CHOICES_AND_LOGPROBS,
    Asks,
    ChatRequest,
    ContentPart,
    FunctionDef,
    Message,
    NamedToolChoice,
    ToolMode,
    arguments_object,
    base64_data_url,
    function_of,
    present,
    text_and_images,
    text_of,
)
from formats.json_answer import (
    JSON_TOOL,
    JSON_TOOL_DESCRIPTION,
    JsonAnswer,
    check_tool_names,
    plan,
)
from formats.translator import ChatSink, StreamTranslator
from providers.adapter import TranslatingProvider
from providers.declaration import HttpProviderConfig, ProviderType
from providers.model_families import STRUCTURED_OUTPUTS, claude_at_least
from providers.passthrough import PassThrough, events_of_type
from wire.errors import BadRequest, GatewayError, upstream_error_from_body
from wire.finish_reasons import ANTHROPIC, mapped
from wire.operations import Operation, RawBody
from wire.sse import Event
from wire.upstream import UpstreamRequest
from wire.usage import Usage

# reasoning_effort -> thinking.budget_tokens (docs: build-with-claude/extended-thinking).
# 1024 is Anthropic's minimum budget; "high" is sized so that the default max_tokens plus the
# budget (4096 + 16384) stays under 21,333, above which Anthropic wants the request streamed.
# "none" (or no effort) sends no `thinking`. The budget counts inside max_tokens: with no client
# limit we send the provider's max_tokens plus the budget, so the answer keeps its usual room;
# with a client limit the budget shrinks to fit under it (a limit of 1024 or less leaves no room
# to think: 400).
THINKING_BUDGETS = {"minimal": 1024, "low": 2048, "medium": 8192, "high": 16384}
_MIN_BUDGET = 1024


class AnthropicProviderConfig(HttpProviderConfig, frozen=True, tag="anthropic"):
    anthropic_version: str = "2023-06-01"
    max_tokens: int = 4096  # Anthropic requires max_tokens; used when the request has none


class AnthropicProvider(TranslatingProvider):
    """Builds Messages API requests; `MessagesStream` translates the answers."""

    operations = frozenset({Operation.CHAT, Operation.MESSAGES, Operation.COUNT_TOKENS})
    label = "Anthropic"
    # Raw parameters with no Anthropic equivalent, and when a value actually asks for them.
    unsupported: ClassVar[Mapping[str, Asks]] = {
        **CHOICES_AND_LOGPROBS,
        "presence_penalty": bool,
        "frequency_penalty": bool,
        "audio": lambda v: v is not None,
    }

    def __init__(self, name: str, config: AnthropicProviderConfig) -> None:
        super().__init__(name, config)
        self.config = config
        self._url = self.base_url + "/messages"
        self._count_url = self._url + "/count_tokens"
        # Anthropic's own header names; configured headers may override any of them.
        self.headers = {
            "content-type": "application/json",
            "anthropic-version": config.anthropic_version,
        }
        if self.key.value:
            self.headers["x-api-key"] = self.key.value
        self.headers.update(config.headers)

    def pass_through(
        self, operation: Operation, model: str, body: RawBody, stream: bool
    ) -> UpstreamRequest:
        # The client's own Messages body: only the model is ours to set (on a copy: the body
        # may go to another provider next).
        body = {**body, "model": msgspec.Raw(msgspec.json.encode(model))}
        url = self._url if operation is Operation.MESSAGES else self._count_url
        return self.post(url, msgspec.json.encode(body))

    def chat_request(self, request: ChatRequest, model: str, stream: bool) -> UpstreamRequest:
        return self.post(self._url, messages_body(request, model, stream, self.config.max_tokens))

    def relay(self, operation: Operation, model: str) -> StreamTranslator:
        return MessagesRelay(self.name)

    def chat_translator(self, model: str, sink: ChatSink) -> MessagesStream:
        return MessagesStream(self.name, model, sink)

    def chat_answer(self, body: bytes, model: str) -> bytes:
        return translate_message(body, self.name, model)

    def upstream_error(self, status: int, body: bytes, headers: Mapping[str, str]) -> GatewayError:
        status = overloaded_as_503(status)
        try:
            error = _error_decoder.decode(body).error
        except msgspec.DecodeError:
            error = None
        if error is None:  # not Anthropic's shape (a proxy in between): keep what we can
            return upstream_error_from_body(status, body, self.name)
        return anthropic_error(status, error.type, error.message)


_error_decoder = msgspec.json.Decoder(ErrorBody)


def messages_body(
    request: ChatRequest, model: str, stream: bool, default_max_tokens: int
) -> dict[str, Any]:
    """The Messages API body for an OpenAI chat request."""
    system, turns = conversation(request.messages)
    json = plan(request.response_format, claude_at_least(model, STRUCTURED_OUTPUTS))
    # Through the answer's tool, which must be called, no thinking: Anthropic forces a tool
    # only without it, and the JSON the client parses comes first (the effort is a preference).
    json_tool = json is not None and not json.native
    max_tokens, thinking = thinking_and_limit(request, default_max_tokens, not json_tool)
    body: dict[str, Any] = {"model": model, "max_tokens": max_tokens, "messages": turns}
    if system:
        body["system"] = system
    if thinking is not None:
        body["thinking"] = thinking
    if json is not None and json.native:
        body["output_config"] = {"format": {"type": "json_schema", "schema": json.schema}}
    if stream:
        body["stream"] = True
    body.update(
        present(
            stop_sequences=request.stop_list or None,
            temperature=request.temperature,
            top_p=request.top_p,
        )
    )
    if request.user:
        body["metadata"] = {"user_id": request.user}
    check_tool_names(request.tools)
    tools = [_tool(function_of(tool, i, "Anthropic")) for i, tool in enumerate(request.tools or ())]
    choice: dict[str, Any] | None
    if json is not None and json_tool:
        tools.append(_json_tool(json))
        choice = _json_tool_choice(request)
    else:
        choice = _tool_choice(request.tool_choice, request.parallel_tool_calls)
    if tools:
        body["tools"] = tools
        if choice is not None:
            body["tool_choice"] = choice
    return body


def _json_tool(json: JsonAnswer) -> dict[str, Any]:
    about = f"{JSON_TOOL_DESCRIPTION}\n\n{json.description}" if json.description else None
    return {
        "name": JSON_TOOL,
        "description": about or JSON_TOOL_DESCRIPTION,
        "input_schema": json.schema,
    }


def _json_tool_choice(request: ChatRequest) -> dict[str, Any]:
    """tool_choice when the answer comes through `JSON_TOOL`: that tool, forced, when nothing
    else may be called; with the request's own tools, any tool (one of them, or the answer)."""
    choice = request.tool_choice
    result: dict[str, Any]
    if not request.tools or choice == "none":
        result = {"type": "tool", "name": JSON_TOOL}
    elif choice is None or isinstance(choice, str):
        result = {"type": "any"}
    else:
        result = {"type": "tool", "name": choice.function.name}
    if request.parallel_tool_calls is False:
        result["disable_parallel_tool_use"] = True
    return result


def thinking_and_limit(
    request: ChatRequest, default: int, thinks: bool = True
) -> tuple[int, dict[str, Any] | None]:
    """max_tokens, and the `thinking` parameter for reasoning_effort (None: no thinking;
    always so when not `thinks`, the effort still checked)."""
    limit = request.token_limit
    effort = request.reasoning_effort
    if effort is None or effort == "none":
        return limit or default, None
    budget = THINKING_BUDGETS.get(effort)
    if budget is None:
        choices = ", ".join(["none", *THINKING_BUDGETS])
        raise BadRequest(
            f"Invalid value for 'reasoning_effort': {effort!r} (expected one of {choices}).",
            param="reasoning_effort",
            code="invalid_value",
        )
    if not thinks:
        return limit or default, None
    if limit is None:
        return default + budget, {"type": "enabled", "budget_tokens": budget}
    budget = min(budget, limit - 1)  # Anthropic: budget_tokens < max_tokens
    if budget < _MIN_BUDGET:
        raise BadRequest(
            f"With reasoning_effort, max_tokens must be above {_MIN_BUDGET}: Anthropic's "
            f"thinking budget is at least {_MIN_BUDGET} tokens and counts inside max_tokens.",
            param="max_completion_tokens" if request.max_completion_tokens else "max_tokens",
            code="invalid_value",
        )
    return limit, {"type": "enabled", "budget_tokens": budget}


def conversation(messages: list[Message]) -> tuple[str, list[dict[str, Any]]]:
    """The system text and the alternating user/assistant turns for OpenAI `messages`."""
    system: list[str] = []
    turns: list[dict[str, Any]] = []
    for i, message in enumerate(messages):
        role = message.role
        if role in ("system", "developer"):
            text = text_of(message.content)
            if text:
                system.append(text)
            continue
        if role == "user":
            blocks = _content_blocks(message.content, f"messages[{i}].content")
        elif role == "assistant":
            blocks = _assistant_blocks(message, i)
        elif role == "tool":
            role, blocks = "user", [_tool_result(message, i)]
        else:
            raise BadRequest(
                f"Unsupported message role {role!r} for Anthropic.",
                param=f"messages[{i}].role",
                code="invalid_value",
            )
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)  # Anthropic's turns alternate
        else:
            turns.append({"role": role, "content": blocks})
    return "\n\n".join(system), turns


def _content_blocks(content: str | list[ContentPart] | None, where: str) -> list[dict[str, Any]]:
    if not content:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return text_and_images(
        content,
        where,
        "Anthropic",
        # Anthropic rejects empty text blocks.
        lambda text: {"type": "text", "text": text} if text else None,
        lambda image, at: _image(image.url, f"{at}.image_url.url"),
    )


def _image(url: str, where: str) -> dict[str, Any]:
    inline = base64_data_url(url)
    if inline is not None:
        media_type, data = inline
        return {
            "type": "image",
            "source": {"type": "base64", "media_type": media_type, "data": data},
        }
    if url.startswith(("https://", "http://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    raise BadRequest(
        "An image must be an http(s) URL or a base64 data: URL (data:image/png;base64,...).",
        param=where,
        code="invalid_value",
    )


def _assistant_blocks(message: Message, i: int) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    if message.reasoning and message.reasoning_signature:
        blocks.append(
            {
                "type": "thinking",
                "thinking": message.reasoning,
                "signature": message.reasoning_signature,
            }
        )
    blocks += [
        {"type": "redacted_thinking", "data": data} for data in message.reasoning_redacted or ()
    ]
    blocks += _content_blocks(message.content, f"messages[{i}].content")
    for j, call in enumerate(message.tool_calls or ()):
        where = f"messages[{i}].tool_calls[{j}].function.arguments"
        blocks.append(
            {
                "type": "tool_use",
                "id": call.id,
                "name": call.function.name,
                "input": arguments_object(call.function.arguments, where),
            }
        )
    return blocks


def _tool_result(message: Message, i: int) -> dict[str, Any]:
    if not message.tool_call_id:
        raise BadRequest(
            "A tool message needs the tool_call_id it answers.",
            param=f"messages[{i}].tool_call_id",
            code="missing_required_parameter",
        )
    result: dict[str, Any] = {"type": "tool_result", "tool_use_id": message.tool_call_id}
    content = message.content
    if isinstance(content, str):
        if content:
            result["content"] = content
    elif content:
        result["content"] = _content_blocks(content, f"messages[{i}].content")
    return result


def _tool(function: FunctionDef) -> dict[str, Any]:
    tool: dict[str, Any] = {
        "name": function.name,
        "input_schema": function.parameters or {"type": "object", "properties": {}},
    }
    if function.description:
        tool["description"] = function.description
    return tool


_CHOICES = {"auto": {"type": "auto"}, "none": {"type": "none"}, "required": {"type": "any"}}


def _tool_choice(
    choice: ToolMode | NamedToolChoice | None, parallel: bool | None
) -> dict[str, Any] | None:
    result: dict[str, Any] | None
    if choice is None:
        result = None
    elif isinstance(choice, str):
        result = dict(_CHOICES[choice])
    else:
        result = {"type": "tool", "name": choice.function.name}
    if parallel is False and (result is None or result["type"] != "none"):
        result = result or {"type": "auto"}
        result["disable_parallel_tool_use"] = True
    return result


# --- Messages passed through ---


class MessagesRelay(PassThrough):
    """Anthropic's stream relayed as it comes. After `message_stop` (finished) or an `error`
    event (finished, `failure` set) nothing more is sent. `usage` is what message_start and
    message_delta reported, once message_delta came (before it, `usage_so_far`: the input's
    counts), `finish_reasons` message_delta's stop_reason.
    """

    terminal = "message_stop event"
    unwatched = events_of_type(b"content_block_delta")

    def __init__(self, provider: str) -> None:
        super().__init__(provider)
        self._usage: MessagesUsage | None = None

    def error_bytes(self, error: GatewayError) -> bytes:
        return anthropic_error_event(error)

    def watch(self, event: Event) -> bool:
        """Read what matters in `event`; True when it ends the stream."""
        # A server that omits `event:` lines still names the type in the data.
        kind = event.event or event_type(event.data)
        try:
            if kind == "message_delta":
                delta = decode_message_delta(event.data)
                self._count(delta.usage)
                self.usage = read_usage(self._usage)
                if delta.delta is not None and delta.delta.stop_reason is not None:
                    self.finish_reasons = (mapped(ANTHROPIC, delta.delta.stop_reason),)
            elif kind == "message_start":
                self._count(decode_message_start(event.data).message.usage)
            elif kind == "message_stop":
                self.finished = True
                self.usage = read_usage(self._usage)
            elif kind == "error":
                self.failure = stream_error(decode_error(event.data))
                self.finished = True
        except msgspec.DecodeError:
            # Not ours to judge: the client reads the upstream's event as it is. An error
            # event still ends the stream.
            if kind == "error":
                self.finished = True
                self.failure = anthropic_error(None, "api_error", event.data[:2000])
        return self.finished

    def _count(self, usage: MessagesUsage | None) -> None:
        if usage is not None:
            self._usage = usage if self._usage is None else self._usage.updated(usage)

    @property
    def usage_so_far(self) -> Usage | None:
        return reported_so_far(self._usage, self.usage is not None)


PROVIDER = ProviderType(
    "anthropic",
    AnthropicProviderConfig,
    AnthropicProvider,
    upstream="Messages API",
    base_url="https://api.anthropic.com/v1",
    api_key="env.ANTHROPIC_API_KEY",
)
