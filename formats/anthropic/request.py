"""An Anthropic Messages request as the equivalent OpenAI chat request, for any other provider.

The request follows platform.claude.com/docs/en/api/messages (the anthropic SDK's
`MessageCreateParams`); the body is decoded once into the structs below, so a malformed one is
a 400 naming the field (`messages[1].content[0].type`). How it maps (the inverse of
`providers.anthropic`):

- `system` (a string or text blocks) -> one system message, the blocks' texts joined by a blank
  line; `cache_control` anywhere is dropped (a caching hint for Anthropic alone);
- a `system` message inside `messages` (mid-conversation system messages: Claude Code's default
  model sends them) -> a system message where it stands, as chat allows one anywhere (each
  provider's translation then folds it as its format allows: Anthropic, Gemini and Bedrock
  into their top-level system prompt). One with `clear_at: "next_user_message"` is left out
  once a later user message exists, as Anthropic hides it then; its per-turn `output_config`
  is dropped. `tool_addition` / `tool_removal` blocks are a 400 worded as Anthropic refuses a
  system role, so a client falls back to sending the text in a user turn;
- user turns -> `tool` messages for their `tool_result` blocks (first, as chat wants them right
  after the assistant's calls), then one user message for the rest: text, images (base64
  sources as `data:` URLs, url sources as they are), documents (a PDF as a `file` part, a text
  source as text). Images inside a tool_result go in that user message: chat tool messages
  take text only;
- assistant turns -> content (their text blocks joined), `tool_use` -> `tool_calls` (input as
  the arguments' JSON text), `thinking` -> `reasoning` + `reasoning_signature`,
  `redacted_thinking` -> `reasoning_redacted` (its data: only Claude, behind Bedrock or an
  Anthropic provider, reads it; any other provider ignores it);
- tools -> functions (`input_schema` -> `parameters`); server tools (web search, bash, ...) and
  `mcp_servers` are a 400: only Anthropic runs them;
- tool_choice auto/any/tool/none -> auto/required/function/none, and
  `disable_parallel_tool_use` -> `parallel_tool_calls: false`;
- max_tokens, stop_sequences -> stop, temperature, top_p, metadata.user_id -> user, stream;
- thinking (`budget_tokens`, or `adaptive` with output_config.effort) -> reasoning_effort (see
  `_reasoning_effort`), only when thinking is asked for; structured output
  (`output_config.format`, or the older top-level `output_format`) -> a json_schema
  response_format.

`top_k` is dropped: chat has no such parameter, and OpenAI answers an unknown one with a 400;
Bifrost drops it the same way for OpenAI-style targets. Hints that change nothing in the
answer (top-level `cache_control`, `service_tier`, `inference_geo`, `speed`, `diagnostics`,
`context_management`, `container`) are dropped too; any other parameter is a 400 naming it.

To an upstream that speaks Messages itself, the request goes as it came, with the headers that
say what the client asks of the API (`with_client_headers`: its betas and version).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal

import msgspec
import orjson

from formats.chat.bridge import validation_error
from formats.chat.request import present
from wire.errors import BadRequest
from wire.operations import RawBody
from wire.upstream import UpstreamRequest

# --- the request, as the anthropic SDK's MessageCreateParams types it ---------------------


class _TextBlock(msgspec.Struct, tag="text", tag_field="type", gc=False):
    text: str


class _Base64Source(msgspec.Struct, tag="base64", tag_field="type", gc=False):
    media_type: str
    data: str


class _URLSource(msgspec.Struct, tag="url", tag_field="type", gc=False):
    url: str


class _FileSource(msgspec.Struct, tag="file", tag_field="type", gc=False):
    file_id: str


class _PlainTextSource(msgspec.Struct, tag="text", tag_field="type", gc=False):
    data: str
    media_type: str = "text/plain"


class _ImageBlock(msgspec.Struct, tag="image", tag_field="type", gc=False):
    source: _Base64Source | _URLSource | _FileSource


class _DocumentBlock(msgspec.Struct, tag="document", tag_field="type", gc=False):
    source: _Base64Source | _URLSource | _FileSource | _PlainTextSource
    title: str | None = None


class _ToolUseBlock(msgspec.Struct, tag="tool_use", tag_field="type", gc=False):
    id: str
    name: str
    input: msgspec.Raw = msgspec.Raw(b"{}")  # kept as JSON text: the chat call's arguments


class _ToolResultBlock(msgspec.Struct, tag="tool_result", tag_field="type", gc=False):
    tool_use_id: str
    content: str | list[_TextBlock | _ImageBlock | _DocumentBlock] = ""
    is_error: bool = False


class _ThinkingBlock(msgspec.Struct, tag="thinking", tag_field="type", gc=False):
    thinking: str
    signature: str = ""


class _RedactedThinkingBlock(msgspec.Struct, tag="redacted_thinking", tag_field="type", gc=False):
    data: str = ""


class _ToolAdditionBlock(msgspec.Struct, tag="tool_addition", tag_field="type", gc=False):
    tool: Any = None  # mid-conversation tool changes: a system message's, Anthropic's alone


class _ToolRemovalBlock(msgspec.Struct, tag="tool_removal", tag_field="type", gc=False):
    tool: Any = None


_Block = (
    _TextBlock
    | _ImageBlock
    | _DocumentBlock
    | _ToolUseBlock
    | _ToolResultBlock
    | _ThinkingBlock
    | _RedactedThinkingBlock
    | _ToolAdditionBlock
    | _ToolRemovalBlock
)

_ROLES = ("user", "assistant", "system")


class _Message(msgspec.Struct, gc=False):
    role: Literal["user", "assistant", "system"]
    content: str | list[_Block]
    clear_at: Literal["next_user_message", "never"] | None = None  # a system message's


class _Tool(msgspec.Struct, gc=False):
    name: str
    input_schema: dict[str, Any] | None = None
    description: str | None = None
    type: str | None = None  # "custom" or absent; anything else is a server tool
    strict: bool | None = None


class _ToolChoiceAuto(msgspec.Struct, tag="auto", tag_field="type", gc=False):
    disable_parallel_tool_use: bool = False


class _ToolChoiceAny(msgspec.Struct, tag="any", tag_field="type", gc=False):
    disable_parallel_tool_use: bool = False


class _ToolChoiceTool(msgspec.Struct, tag="tool", tag_field="type", gc=False):
    name: str
    disable_parallel_tool_use: bool = False


class _ToolChoiceNone(msgspec.Struct, tag="none", tag_field="type", gc=False):
    disable_parallel_tool_use: bool = False


class _ThinkingEnabled(msgspec.Struct, tag="enabled", tag_field="type", gc=False):
    budget_tokens: int


class _ThinkingDisabled(msgspec.Struct, tag="disabled", tag_field="type", gc=False):
    pass


class _ThinkingAdaptive(msgspec.Struct, tag="adaptive", tag_field="type", gc=False):
    pass


class _JSONSchemaFormat(msgspec.Struct, tag="json_schema", tag_field="type", gc=False):
    schema: dict[str, Any]


class _OutputConfig(msgspec.Struct, gc=False):
    effort: str | None = None
    format: _JSONSchemaFormat | None = None


class _Metadata(msgspec.Struct, gc=False):
    user_id: str | None = None


class MessagesRequest(msgspec.Struct, gc=False):
    model: str
    max_tokens: int
    messages: list[_Message]
    system: str | list[_TextBlock] | None = None
    stream: bool | None = None
    stop_sequences: list[str] | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    metadata: _Metadata | None = None
    tools: list[_Tool] | None = None
    tool_choice: _ToolChoiceAuto | _ToolChoiceAny | _ToolChoiceTool | _ToolChoiceNone | None = None
    thinking: _ThinkingEnabled | _ThinkingDisabled | _ThinkingAdaptive | None = None
    output_config: _OutputConfig | None = None
    output_format: _JSONSchemaFormat | None = None
    mcp_servers: list[Any] | None = None


_decoder = msgspec.json.Decoder(MessagesRequest)
_KNOWN = frozenset(MessagesRequest.__struct_fields__)
# Hints with no effect on the answer's content: dropped (see the module docstring).
_DROPPED = frozenset(
    {
        "cache_control",
        "service_tier",
        "inference_geo",
        "speed",
        "diagnostics",
        "context_management",
        "container",
    }
)


def decode_messages_request(body: RawBody) -> MessagesRequest:
    """The request's structs; an unknown parameter or a malformed field is a 400 naming it."""
    for key in body:
        if key not in _KNOWN and key not in _DROPPED:
            raise BadRequest(
                f"Parameter '{key}' is not supported when the provider is not Anthropic.",
                param=key,
                code="unsupported_parameter",
            )
    try:
        return _decoder.decode(msgspec.json.encode(body))
    except msgspec.ValidationError as exc:
        raise _anthropic_validation_error(exc) from None


def _anthropic_validation_error(exc: msgspec.ValidationError) -> BadRequest:
    """The 400 for a body that does not fit the structs, worded as Anthropic words it
    (`messages.1.role: Input should be 'user', 'assistant' or 'system'`, `max_tokens: Field
    required`), for clients that read Anthropic's messages. Its param keeps the gateway's
    own form (`messages[1].role`)."""
    error = validation_error(exc)
    param = error.param or ""
    problem = str(exc).rpartition(" - at `$")[0] or str(exc)
    if error.code == "missing_required_parameter":
        problem = "Field required"
    elif re.fullmatch(r"messages\[\d+\]\.role", param):
        problem = f"Input should be {', '.join(map(repr, _ROLES[:-1]))} or {_ROLES[-1]!r}"
    where = re.sub(r"\[(\d+)\]", r".\1", param)
    message = f"{where}: {problem}" if where else problem
    return BadRequest(message, param=error.param, code=error.code)


# --- the chat request ----------------------------------------------------------------------


def messages_to_chat(body: RawBody) -> RawBody:
    """A Messages request body as the equivalent chat request body (top-level values raw)."""
    request = decode_messages_request(body)
    if request.mcp_servers:
        raise BadRequest(
            "MCP servers are run by Anthropic only: 'mcp_servers' is not supported when the "
            "provider is not Anthropic.",
            param="mcp_servers",
            code="unsupported_parameter",
        )
    messages = _system(request.system)
    last_user = max((i for i, m in enumerate(request.messages) if m.role == "user"), default=-1)
    for i, message in enumerate(request.messages):
        if message.role == "user":
            messages += _user_messages(message.content, i)
        elif message.role == "assistant":
            messages.append(_assistant_message(message.content, i))
        elif message.clear_at != "next_user_message" or i > last_user:
            messages += _system_message(message.content, i)
    chat: dict[str, Any] = {
        "model": request.model,
        "messages": messages,
        "max_tokens": request.max_tokens,
    }
    if request.stream:
        chat["stream"] = True
    chat.update(
        present(
            stop=request.stop_sequences or None,
            temperature=request.temperature,
            top_p=request.top_p,
        )
    )
    if request.metadata is not None and request.metadata.user_id:
        chat["user"] = request.metadata.user_id
    if request.tools:
        chat["tools"] = [_tool(tool, i) for i, tool in enumerate(request.tools)]
        chat.update(_tool_choice(request.tool_choice))
    effort = _reasoning_effort(request)
    if effort is not None:
        chat["reasoning_effort"] = effort
    output = request.output_config.format if request.output_config else None
    output = output or request.output_format
    if output is not None:
        chat["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "output", "schema": output.schema, "strict": True},
        }
    return {key: msgspec.Raw(orjson.dumps(value)) for key, value in chat.items()}


def _system(system: str | list[_TextBlock] | None) -> list[dict[str, Any]]:
    if not system:
        return []
    text = system if isinstance(system, str) else "\n\n".join(block.text for block in system)
    return [{"role": "system", "content": text}]


def _system_message(content: str | list[_Block], i: int) -> list[dict[str, Any]]:
    """A system message inside `messages`, kept where it stands (none if it has no text)."""
    if isinstance(content, str):
        return [{"role": "system", "content": content}] if content else []
    texts = []
    for j, block in enumerate(content):
        if not isinstance(block, _TextBlock):
            # Worded as Anthropic refuses a system role, so that a client falls back to
            # sending the text in a user turn (Claude Code does).
            raise BadRequest(
                f"messages.{i}.content.{j}: {_type_of(block)!r} blocks in a message with "
                'role "system" are not supported when the provider is not Anthropic: only '
                "text blocks can be sent.",
                param=f"messages[{i}].content[{j}].type",
                code="invalid_value",
            )
        texts.append(block.text)
    text = "\n\n".join(texts)
    return [{"role": "system", "content": text}] if text else []


def _user_messages(content: str | list[_Block], i: int) -> list[dict[str, Any]]:
    """The tool messages for a user turn's tool results, then its user message, if any."""
    if isinstance(content, str):
        return [{"role": "user", "content": content}]
    tools: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for j, block in enumerate(content):
        where = f"messages[{i}].content[{j}]"
        if isinstance(block, _ToolResultBlock):
            tools.append(_tool_message(block, parts, where))
        elif isinstance(block, (_TextBlock, _ImageBlock, _DocumentBlock)):
            parts.append(_part(block, where))
        else:
            raise BadRequest(
                f"Invalid value for '{where}.type': a user message cannot hold a "
                f"{_type_of(block)!r} block.",
                param=f"{where}.type",
                code="invalid_value",
            )
    if parts:
        tools.append({"role": "user", "content": parts})
    return tools


def _tool_message(
    block: _ToolResultBlock, parts: list[dict[str, Any]], where: str
) -> dict[str, Any]:
    """A tool result as a tool message; its images and documents go to `parts`."""
    if isinstance(block.content, str):
        text = block.content
    else:
        texts = []
        for k, item in enumerate(block.content):
            if isinstance(item, _TextBlock):
                texts.append(item.text)
            else:  # chat tool messages take text only: the user message carries the rest
                parts.append(_part(item, f"{where}.content[{k}]"))
        text = "\n\n".join(texts)
    return {"role": "tool", "tool_call_id": block.tool_use_id, "content": text}


def _part(block: _TextBlock | _ImageBlock | _DocumentBlock, where: str) -> dict[str, Any]:
    if isinstance(block, _TextBlock):
        return {"type": "text", "text": block.text}
    source = block.source
    if isinstance(source, _FileSource):
        raise BadRequest(
            f"Invalid value for '{where}.source': files uploaded to Anthropic (file_id) can "
            "only be read by Anthropic.",
            param=f"{where}.source",
            code="invalid_value",
        )
    if isinstance(block, _ImageBlock):
        assert not isinstance(source, _PlainTextSource)  # an image's source is never text
        url = source.url if isinstance(source, _URLSource) else _data_url(source)
        return {"type": "image_url", "image_url": {"url": url}}
    if isinstance(source, _PlainTextSource):
        return {"type": "text", "text": source.data}
    if isinstance(source, _Base64Source):
        file = {"filename": block.title or "document.pdf", "file_data": _data_url(source)}
        return {"type": "file", "file": file}
    raise BadRequest(
        f"Invalid value for '{where}.source': a document must be sent inline (base64 or text) "
        "when the provider is not Anthropic.",
        param=f"{where}.source",
        code="invalid_value",
    )


def _data_url(source: _Base64Source) -> str:
    return f"data:{source.media_type};base64,{source.data}"


def _assistant_message(content: str | list[_Block], i: int) -> dict[str, Any]:
    if isinstance(content, str):
        return {"role": "assistant", "content": content}
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    message: dict[str, Any] = {"role": "assistant"}
    for j, block in enumerate(content):
        if isinstance(block, _TextBlock):
            texts.append(block.text)
        elif isinstance(block, _ToolUseBlock):
            arguments = bytes(block.input).decode()
            calls.append(
                {
                    "id": block.id,
                    "type": "function",
                    "function": {"name": block.name, "arguments": arguments},
                }
            )
        elif isinstance(block, _ThinkingBlock):
            message["reasoning"] = message.get("reasoning", "") + block.thinking
            if block.signature:
                message["reasoning_signature"] = block.signature
        elif isinstance(block, _RedactedThinkingBlock):
            if block.data:
                message.setdefault("reasoning_redacted", []).append(block.data)
        else:
            where = f"messages[{i}].content[{j}].type"
            raise BadRequest(
                f"Invalid value for '{where}': an assistant message cannot hold a "
                f"{_type_of(block)!r} block.",
                param=where,
                code="invalid_value",
            )
    message["content"] = "".join(texts) if texts or not calls else None
    if calls:
        message["tool_calls"] = calls
    return message


def _type_of(block: msgspec.Struct) -> str:
    return str(type(block).__struct_config__.tag)


def _tool(tool: _Tool, i: int) -> dict[str, Any]:
    if tool.type not in (None, "custom"):
        raise BadRequest(
            f"Invalid value for 'tools[{i}].type': {tool.type!r} is a tool Anthropic runs; "
            "only custom tools (name, input_schema) are supported when the provider is not "
            "Anthropic.",
            param=f"tools[{i}].type",
            code="unsupported_parameter",
        )
    function: dict[str, Any] = {
        "name": tool.name,
        "parameters": tool.input_schema or {"type": "object", "properties": {}},
    }
    if tool.description:
        function["description"] = tool.description
    if tool.strict is not None:
        function["strict"] = tool.strict
    return {"type": "function", "function": function}


def _tool_choice(
    choice: _ToolChoiceAuto | _ToolChoiceAny | _ToolChoiceTool | _ToolChoiceNone | None,
) -> dict[str, Any]:
    if choice is None:
        return {}
    result: dict[str, Any]
    if isinstance(choice, _ToolChoiceTool):
        result = {"tool_choice": {"type": "function", "function": {"name": choice.name}}}
    elif isinstance(choice, _ToolChoiceAny):
        result = {"tool_choice": "required"}
    elif isinstance(choice, _ToolChoiceNone):
        return {"tool_choice": "none"}
    else:
        result = {"tool_choice": "auto"}
    if choice.disable_parallel_tool_use:
        result["parallel_tool_calls"] = False
    return result


# thinking.budget_tokens -> reasoning_effort, bucketed at the budgets `providers.anthropic`
# gives each effort (low 2048, medium 8192, high 16384), so that an effort that went out as a
# budget comes back as itself. The floor is "low": "minimal" is not accepted by every
# reasoning model (OpenAI's o-series refuse it). output_config.effort names the level itself;
# "xhigh" and "max" are Anthropic's, above chat's highest.
_EFFORTS = {"low": "low", "medium": "medium", "high": "high", "xhigh": "high", "max": "high"}


def _effort_for_budget(budget: int) -> str:
    if budget >= 16384:
        return "high"
    return "medium" if budget >= 8192 else "low"


def _reasoning_effort(request: MessagesRequest) -> str | None:
    """The chat reasoning_effort, sent only when the request asks for thinking: `enabled`
    (its budget, bucketed) or `adaptive` with an effort. With thinking disabled or not asked
    for (Claude Code's title request names an effort with thinking disabled), none: the
    provider then thinks as it does by default, and a model that cannot think is not sent a
    parameter it would refuse. `output_config.effort`, when given, names the level."""
    effort = request.output_config.effort if request.output_config else None
    if effort is not None and effort not in _EFFORTS:
        raise BadRequest(
            f"output_config.effort: Input should be {', '.join(map(repr, _EFFORTS))} "
            f"(got {effort!r}).",
            param="output_config.effort",
            code="invalid_value",
        )
    thinking = request.thinking
    if thinking is None or isinstance(thinking, _ThinkingDisabled):
        return None
    if effort is not None:
        return _EFFORTS[effort]
    if isinstance(thinking, _ThinkingEnabled):
        return _effort_for_budget(thinking.budget_tokens)
    return None


# The client's headers that say what it asks of the API: betas (Claude Code sends several,
# e.g. interleaved thinking, context management) and the version it was written against.
_BETA = "anthropic-beta"


_VERSION = "anthropic-version"


def with_client_headers(request: UpstreamRequest, headers: Mapping[str, str]) -> UpstreamRequest:
    """`request` with the client's `anthropic-beta` (joined to any the provider configures)
    and `anthropic-version` (in place of the provider's) headers.

    Args:
        request: What the provider built for `Operation.MESSAGES` or `COUNT_TOKENS`.
        headers: The client's request headers (any mapping; names are matched ignoring case,
            and a header sent several times, as a multidict holds it, is joined by commas).
    """
    betas: list[str] = []
    version: str | None = None
    for name, value in headers.items():
        key = name.lower()
        if key == _BETA:
            betas += [beta.strip() for beta in value.split(",") if beta.strip()]
        elif key == _VERSION:
            version = value
    if not betas and version is None:
        return request
    merged: dict[str, str] = {}
    for name, value in request.headers.items():
        key = name.lower()
        if key == _BETA:
            betas = [beta.strip() for beta in value.split(",") if beta.strip()] + betas
        elif key != _VERSION or version is None:
            merged[name] = value
    if betas:
        merged[_BETA] = ",".join(dict.fromkeys(betas))  # each beta once, in order
    if version is not None:
        merged[_VERSION] = version
    return msgspec.structs.replace(request, headers=merged)
