"""AWS Bedrock (Converse / ConverseStream) behind the gateway: SigV4-signed requests out,
AWS event-stream frames in, the OpenAI SDK's objects out.

botocore has a parser for the event-stream framing but no encoder, so the binary fixtures in
tests/fixtures/bedrock/*.bin are built by tests/bedrock_frames.py; a test here checks that the
files are exactly the frames it lists, and that botocore's own parser reads them back.
"""

from __future__ import annotations

import base64
import re
import sys
from typing import Any

import msgspec
import openai
import orjson
import pytest
from aiohttp import web
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.eventstream import EventStreamBuffer

from providers.bedrock import BedrockProvider, BedrockProviderConfig, BedrockStream
from tests.bedrock_frames import STREAMS, TOOL_CALL
from tests.conftest import Connect, FakeUpstream, GatewayFactory, Handler
from tests.replay import fixture, replay
from tests.sdk import Answer, collect_stream, refused
from tests.streams import parse_sse, post_stream, weather_tool
from wire.config_values import ConfigError
from wire.operations import Operation

EVENTSTREAM = "application/vnd.amazon.eventstream"
MODEL = "anthropic.claude-3-5-sonnet-20240620-v1:0"
SEEDS = [0, 1, 2, 3, 4]
MESSAGES = [{"role": "user", "content": "Hello"}]
TEXT = "Hello! How can I help — 今日は? 🙂"
WEATHER_TOOL = weather_tool("city")

# --- gateway set-up ----------------------------------------------------------------------------


def _toml(upstream: FakeUpstream, **settings: str) -> str:
    base = upstream.url.removesuffix("/v1")
    values = {
        "access_key_id": "AKIDEXAMPLE",
        "secret_access_key": "wJalrXUtnFEMI/K7MDENG",
        **settings,
    }
    lines = ["[providers.br]", 'type = "bedrock"', f'base_url = "{base}"', 'region = "us-west-2"']
    lines += [f'{key} = "{value}"' for key, value in values.items()]
    return "\n".join(lines) + "\ntimeout = 5\n"


@pytest.fixture
async def sdk(upstream: FakeUpstream, connect: Connect) -> Any:
    return await connect(_toml(upstream))


def recording_raw(handler: Handler, seen: list[tuple[str, bytes]]) -> Handler:
    """`handler`, noting each request's path as sent and its body bytes (FakeUpstream records
    the path decoded and the body parsed)."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        seen.append((request.raw_path, await request.read()))
        return await handler(request)

    return wrapped


def expected_signature(raw_path: str, headers: dict[str, str], body: bytes, secret: str) -> str:
    """The SigV4 signature AWS computes for the request as received (botocore's algorithm,
    fed with the received path, signed headers, body and X-Amz-Date)."""
    authorization = headers["Authorization"]
    credential = re.search(r"Credential=([^/]+)/\d{8}/([^/]+)/([^/]+)/", authorization)
    signed = re.search(r"SignedHeaders=([^,]+)", authorization)
    assert credential and signed
    lower = {name.lower(): value for name, value in headers.items()}
    request = AWSRequest(
        method="POST",
        url=f"http://{lower['host']}{raw_path}",
        data=body,
        headers={name: lower[name] for name in signed.group(1).split(";")},
    )
    request.context["timestamp"] = lower["x-amz-date"]
    auth = SigV4Auth(Credentials(credential.group(1), secret), "bedrock", credential.group(2))
    return auth.signature(auth.string_to_sign(request, auth.canonical_request(request)), request)


def _usage(prompt: int, completion: int, **details: Any) -> dict[str, Any]:
    result: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    if details:
        result["prompt_tokens_details"] = details
    return result


def _stream(name: str, seed: int = 0) -> Handler:
    return replay(fixture(f"bedrock/{name}"), seed=seed, content_type=EVENTSTREAM)


def _json(name: str, status: int = 200) -> Handler:
    return replay(fixture(f"bedrock/{name}"), status=status, content_type="application/json")


# --- the fixtures ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(STREAMS))
def test_fixture_files_are_the_listed_frames_and_botocore_reads_them(name: str) -> None:
    raw = fixture(f"bedrock/{name}")
    assert raw == b"".join(STREAMS[name])
    buffer = EventStreamBuffer()
    buffer.add_data(raw)
    messages = list(buffer)
    assert len(messages) == len(STREAMS[name])
    assert messages[0].headers[":event-type"] == "messageStart"


# --- streams, replayed in random splits ----------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
async def test_text_stream_in_random_splits(
    upstream: FakeUpstream, sdk: openai.AsyncOpenAI, seed: int
) -> None:
    upstream.handler = _stream("text_stream.bin", seed)
    answer = await collect_stream(sdk, f"br/{MODEL}", messages=MESSAGES)
    usage = _usage(132, 15, cached_tokens=100, cache_creation_tokens=20)
    assert answer == Answer(text=TEXT, finish_reason="stop", usage=usage)


@pytest.mark.parametrize("seed", SEEDS)
async def test_tool_stream_in_random_splits(
    upstream: FakeUpstream, sdk: openai.AsyncOpenAI, seed: int
) -> None:
    upstream.handler = _stream("tool_stream.bin", seed)
    answer = await collect_stream(sdk, f"br/{MODEL}", messages=MESSAGES, tools=[WEATHER_TOOL])
    assert answer == Answer(
        text="Let me check the weather.",
        tool_calls=[TOOL_CALL],
        finish_reason="tool_calls",
        usage=_usage(410, 56),
    )


@pytest.mark.parametrize("seed", SEEDS)
async def test_reasoning_stream_in_random_splits(
    upstream: FakeUpstream, sdk: openai.AsyncOpenAI, seed: int
) -> None:
    upstream.handler = _stream("reasoning_stream.bin", seed)
    signature = ""
    stream = await sdk.chat.completions.create(model=f"br/{MODEL}", messages=MESSAGES, stream=True)
    async for chunk in stream:
        for choice in chunk.choices:
            signature += (choice.delta.model_extra or {}).get("reasoning_signature") or ""
    upstream.handler = _stream("reasoning_stream.bin", seed)
    answer = await collect_stream(sdk, f"br/{MODEL}", messages=MESSAGES)
    assert answer == Answer(
        text="Hi there!",
        reasoning="The user greets me. I should greet back.",
        finish_reason="length",
        usage=_usage(40, 64),
    )
    assert signature == "EqoBCkgIARABGAIiQ"


def _provider() -> BedrockProvider:
    return BedrockProvider(
        "br", BedrockProviderConfig(base_url="http://x", access_key_id="a", secret_access_key="b")
    )


# --- the request Bedrock receives ----------------------------------------------------------


async def test_request_is_a_signed_converse_request(
    upstream: FakeUpstream, sdk: openai.AsyncOpenAI
) -> None:
    seen: list[tuple[str, bytes]] = []
    upstream.handler = recording_raw(_json("converse_response.json"), seen)
    png = base64.b64encode(b"\x89PNG\r\n\x1a\nfake").decode()
    await sdk.chat.completions.create(
        model=f"br/{MODEL}",
        messages=[
            {"role": "system", "content": "You are terse."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Weather here?"},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{png}"}},
                ],
            },
            {
                "role": "assistant",
                "content": "Checking.",
                "tool_calls": [
                    {
                        "id": "tooluse_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Seattle"}'},
                    },
                    {
                        "id": "tooluse_2",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                    },
                ],
            },
            {"role": "tool", "tool_call_id": "tooluse_1", "content": "12 C, rain"},
            {"role": "tool", "tool_call_id": "tooluse_2", "content": "18 C, sun"},
        ],
        tools=[WEATHER_TOOL],
        tool_choice="required",
        stop=["END"],
        max_tokens=256,
        temperature=0.3,
        top_p=0.8,
    )
    sent = upstream.requests[-1]
    [(raw_path, raw_body)] = seen
    assert raw_path == f"/model/{MODEL}/converse"
    authorization = sent["headers"]["Authorization"]
    assert re.fullmatch(
        r"AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/\d{8}/us-west-2/bedrock/aws4_request, "
        r"SignedHeaders=[a-z0-9;-]*host[a-z0-9;-]*, Signature=[0-9a-f]{64}",
        authorization,
    ), authorization
    assert re.fullmatch(r"\d{8}T\d{6}Z", sent["headers"]["X-Amz-Date"])
    assert "X-Amz-Security-Token" not in sent["headers"]
    signature = expected_signature(raw_path, sent["headers"], raw_body, "wJalrXUtnFEMI/K7MDENG")
    assert authorization.endswith(f"Signature={signature}")
    assert sent["body"] == {
        "system": [{"text": "You are terse."}],
        "messages": [
            {
                "role": "user",
                "content": [
                    {"text": "Weather here?"},
                    {"image": {"format": "png", "source": {"bytes": png}}},
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {"text": "Checking."},
                    {
                        "toolUse": {
                            "toolUseId": "tooluse_1",
                            "name": "get_weather",
                            "input": {"city": "Seattle"},
                        }
                    },
                    {
                        "toolUse": {
                            "toolUseId": "tooluse_2",
                            "name": "get_weather",
                            "input": {"city": "Paris"},
                        }
                    },
                ],
            },
            {
                "role": "user",
                "content": [
                    {"toolResult": {"toolUseId": "tooluse_1", "content": [{"text": "12 C, rain"}]}},
                    {"toolResult": {"toolUseId": "tooluse_2", "content": [{"text": "18 C, sun"}]}},
                ],
            },
        ],
        "inferenceConfig": {
            "maxTokens": 256,
            "temperature": 0.3,
            "topP": 0.8,
            "stopSequences": ["END"],
        },
        "toolConfig": {
            "tools": [
                {
                    "toolSpec": {
                        "name": "get_weather",
                        "description": "Current weather in a city",
                        "inputSchema": {"json": WEATHER_TOOL["function"]["parameters"]},
                    }
                }
            ],
            "toolChoice": {"any": {}},
        },
    }


@pytest.mark.parametrize(
    "model",
    [
        "us.anthropic.claude-3-7-sonnet-20250219-v1:0",
        "arn:aws:bedrock:us-west-2:123456789012:inference-profile/us.meta.llama3-2-1b-instruct-v1:0",
    ],
)
async def test_signature_covers_the_path_as_it_arrives(
    upstream: FakeUpstream, sdk: openai.AsyncOpenAI, model: str
) -> None:
    seen: list[tuple[str, bytes]] = []
    upstream.handler = recording_raw(_stream("text_stream.bin"), seen)
    await collect_stream(sdk, f"br/{model}", messages=MESSAGES)
    [(raw_path, raw_body)] = seen
    assert upstream.requests[-1]["path"] == f"/model/{model}/converse-stream"
    assert "/" not in raw_path.removeprefix("/model/").removesuffix("/converse-stream")
    headers = upstream.requests[-1]["headers"]
    signature = expected_signature(raw_path, headers, raw_body, "wJalrXUtnFEMI/K7MDENG")
    assert headers["Authorization"].endswith(f"Signature={signature}")


async def test_streamed_request_goes_to_converse_stream_with_session_token(
    upstream: FakeUpstream, start_gateway: GatewayFactory
) -> None:
    url = await start_gateway(_toml(upstream, session_token="FwoGZXIvYXdzEXAMPLE"))
    upstream.handler = _stream("text_stream.bin")
    async with openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0) as client:
        await collect_stream(
            client,
            "br/amazon.nova-pro-v1:0",
            messages=MESSAGES,
            tools=[WEATHER_TOOL],
            tool_choice={"type": "function", "function": {"name": "get_weather"}},
        )
    sent = upstream.requests[-1]
    assert sent["path"] == "/model/amazon.nova-pro-v1:0/converse-stream"
    assert sent["headers"]["X-Amz-Security-Token"] == "FwoGZXIvYXdzEXAMPLE"
    assert "x-amz-security-token" in sent["headers"]["Authorization"]
    assert sent["body"]["toolConfig"]["toolChoice"] == {"tool": {"name": "get_weather"}}


async def test_credentials_from_the_environment(
    upstream: FakeUpstream, start_gateway: GatewayFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BR_TEST_AK", "AKIDFROMENV")
    monkeypatch.setenv("BR_TEST_SK", "secret")
    url = await start_gateway(
        _toml(upstream, access_key_id="env.BR_TEST_AK", secret_access_key="env.BR_TEST_SK")
    )
    upstream.handler = _json("converse_response.json")
    async with openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0) as client:
        await client.chat.completions.create(model="br/m", messages=MESSAGES)
    assert "Credential=AKIDFROMENV/" in upstream.requests[-1]["headers"]["Authorization"]


async def test_bedrock_api_key_is_sent_as_bearer_without_signing(
    upstream: FakeUpstream, start_gateway: GatewayFactory
) -> None:
    base = upstream.url.removesuffix("/v1")
    url = await start_gateway(
        f'[providers.br]\ntype = "bedrock"\nbase_url = "{base}"\napi_key = "bedrock-key"\n'
    )
    upstream.handler = _json("converse_response.json")
    async with openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0) as client:
        await client.chat.completions.create(model="br/m", messages=MESSAGES)
    headers = upstream.requests[-1]["headers"]
    assert headers["Authorization"] == "Bearer bedrock-key" and "X-Amz-Date" not in headers


def test_endpoint_defaults_to_the_region() -> None:
    provider = BedrockProvider(
        "br", BedrockProviderConfig(region="eu-central-1", access_key_id="a", secret_access_key="b")
    )
    body = {"model": msgspec.Raw(b'"m"'), "messages": msgspec.Raw(b"[]")}
    request = provider.build_request(Operation.CHAT, "m", body, False)
    assert request.url == "https://bedrock-runtime.eu-central-1.amazonaws.com/model/m/converse"


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"n": 2}, "n"),
        ({"seed": 7}, "seed"),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "image_url", "image_url": {"url": "https://x/a.png"}}],
                    }
                ]
            },
            "messages[0].content[0]",
        ),
    ],
)
async def test_unsupported_request_is_400_naming_the_param(
    upstream: FakeUpstream, sdk: openai.AsyncOpenAI, extra: dict[str, Any], param: str
) -> None:
    await refused(sdk, upstream, param, model="br/m", **{"messages": MESSAGES, **extra})


# --- reasoning_effort, as each model family takes it ----------------------------------------

CLAUDE_37 = "us.anthropic.claude-3-7-sonnet-20250219-v1:0"


@pytest.mark.parametrize(
    ("model", "effort", "limit", "fields", "output", "max_tokens"),
    [
        # Claude before 4.6: a budget inside maxTokens (the answer's usual 4096 on top of it,
        # or the budget shrunk under the client's limit), as providers/anthropic.py does.
        (CLAUDE_37, "medium", None, {"thinking": {"type": "enabled", "budget_tokens": 8192}},
         None, 4096 + 8192),
        (CLAUDE_37, "high", 9000, {"thinking": {"type": "enabled", "budget_tokens": 8999}},
         None, 9000),
        (CLAUDE_37, "none", None, None, None, None),
        # Claude 4.6 and later: adaptive thinking, the effort in Converse's outputConfig.
        ("global.anthropic.claude-opus-4-8-v1", "high", None, {"thinking": {"type": "adaptive"}},
         {"effort": "high"}, None),
        ("us.anthropic.claude-sonnet-4-6", "minimal", 500, {"thinking": {"type": "adaptive"}},
         {"effort": "low"}, 500),
        ("us.amazon.nova-2-lite-v1:0", "medium", None,
         {"reasoningConfig": {"type": "enabled", "maxReasoningEffort": "medium"}}, None, None),
        ("openai.gpt-oss-120b-1:0", "high", None, {"reasoning_effort": "high"}, None, None),
        ("moonshot.kimi-k2-thinking", "low", None, {"reasoning_effort": "low"}, None, None),
        ("us.openai.gpt-5.6-sol", "minimal", None, {"reasoning": {"effort": "low"}}, None, None),
        # A family Converse passes no effort to: none is sent (DeepSeek R1 always reasons).
        ("us.deepseek.r1-v1:0", "high", None, None, None, None),
        ("meta.llama3-3-70b-instruct-v1:0", "low", None, None, None, None),
    ],
)  # fmt: skip
async def test_reasoning_effort_goes_as_the_model_family_takes_it(
    upstream: FakeUpstream,
    sdk: openai.AsyncOpenAI,
    model: str,
    effort: str,
    limit: int | None,
    fields: dict[str, Any] | None,
    output: dict[str, Any] | None,
    max_tokens: int | None,
) -> None:
    upstream.handler = _json("converse_response.json")
    request: dict[str, Any] = {"model": f"br/{model}", "messages": MESSAGES}
    if limit is not None:
        request["max_completion_tokens"] = limit
    answer = await sdk.chat.completions.create(**request, reasoning_effort=effort)
    assert answer.choices[0].message.content
    sent = upstream.last_body
    assert sent.get("additionalModelRequestFields") == fields
    assert sent.get("outputConfig") == output
    assert sent.get("inferenceConfig", {}).get("maxTokens") == max_tokens


async def test_an_unknown_reasoning_effort_is_400_naming_the_choices(
    upstream: FakeUpstream, sdk: openai.AsyncOpenAI
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await sdk.chat.completions.create(
            model=f"br/{CLAUDE_37}",
            messages=MESSAGES,
            reasoning_effort="extreme",
        )
    assert caught.value.param == "reasoning_effort"
    assert "none, minimal, low, medium, high" in caught.value.message
    assert upstream.requests == []


# --- errors --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "code", "sdk_error", "relayed"),
    [
        (429, "ThrottlingException", openai.RateLimitError, 429),
        (400, "ValidationException", openai.BadRequestError, 400),
        # Also a 400: only x-amzn-ErrorType tells it from a ValidationException.
        (400, "ServiceQuotaExceededException", openai.BadRequestError, 400),
        (404, "ResourceNotFoundException", openai.NotFoundError, 404),
        (503, "ServiceUnavailableException", openai.InternalServerError, 503),
        (408, "ModelTimeoutException", openai.InternalServerError, 504),
    ],
)
async def test_http_error_keeps_status_message_and_names_the_exception(
    upstream: FakeUpstream,
    sdk: openai.AsyncOpenAI,
    status: int,
    code: str,
    sdk_error: type[openai.APIStatusError],
    relayed: int,
) -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.json_response(
            {"message": f"{code} happened"},
            status=status,
            headers={
                "x-amzn-ErrorType": f"{code}:http://internal.amazon.com/coral/com.amazon.bedrock/"
            },
        )

    upstream.handler = handler
    with pytest.raises(sdk_error) as caught:
        await sdk.chat.completions.create(model="br/m", messages=MESSAGES, stream=True)
    assert caught.value.status_code == relayed
    body = caught.value.body
    assert isinstance(body, dict)
    assert body == {
        "message": f"{code} happened",
        "type": "upstream_error",
        "param": None,
        "code": code,
    }


async def test_exception_frame_mid_stream_raises_in_the_sdk(
    upstream: FakeUpstream, sdk: openai.AsyncOpenAI
) -> None:
    upstream.handler = _stream("exception_stream.bin", seed=4)
    text = ""
    stream = await sdk.chat.completions.create(model="br/m", messages=MESSAGES, stream=True)
    with pytest.raises(openai.APIError) as caught:
        async for chunk in stream:
            text += (chunk.choices and chunk.choices[0].delta.content) or ""
    assert text == "Partial answer"
    body = caught.value.body
    assert isinstance(body, dict) and body["code"] == "ThrottlingException"
    assert body["message"] == "Too many tokens, please wait before trying again."


@pytest.mark.parametrize(
    ("frames", "expected"),
    [
        (STREAMS["text_stream.bin"][:3], "error"),  # cut before messageStop
        (STREAMS["text_stream.bin"][:-1], "finish"),  # whole answer, only the usage missing
    ],
)
async def test_stream_cut_before_the_terminal_event(
    upstream: FakeUpstream, start_gateway: GatewayFactory, frames: list[bytes], expected: str
) -> None:
    upstream.handler = replay(b"".join(frames), seed=2, content_type=EVENTSTREAM)
    url = await start_gateway(_toml(upstream))
    status, raw = await post_stream(url, "br/m")
    events = parse_sse(raw)
    assert status == 200
    if expected == "error":
        assert orjson.loads(events[-1].data)["error"]["code"] == "upstream_protocol_error"
        assert all(event.data != "[DONE]" for event in events)
    else:
        assert events[-1].data == "[DONE]"
        last = orjson.loads(events[-2].data)
        assert last["choices"][0]["finish_reason"] == "stop" and last["usage"] is None


def test_corrupt_frame_is_a_protocol_error_event() -> None:
    translator = _provider().stream_translator(Operation.CHAT, "m")
    frame = bytearray(STREAMS["text_stream.bin"][1])
    frame[-6] ^= 0xFF  # breaks the message CRC
    events = parse_sse(translator.feed(bytes(frame)))
    assert translator.finished
    assert orjson.loads(events[-1].data)["error"]["code"] == "upstream_protocol_error"


async def test_missing_env_credentials_are_a_502_naming_the_variable(
    upstream: FakeUpstream, start_gateway: GatewayFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BR_TEST_MISSING_SK", raising=False)
    url = await start_gateway(_toml(upstream, secret_access_key="env.BR_TEST_MISSING_SK"))
    async with openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0) as client:
        with pytest.raises(openai.InternalServerError) as caught:
            await client.chat.completions.create(model="br/m", messages=MESSAGES)
    assert "BR_TEST_MISSING_SK" in caught.value.message
    assert upstream.requests == []


def test_without_botocore_construction_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for module in [
        name for name in sys.modules if name == "botocore" or name.startswith("botocore.")
    ]:
        monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(ConfigError, match=r"pip install 'gateway\[bedrock\]'"):
        _provider()


def test_translator_repr_names_its_state() -> None:
    translator = _provider().stream_translator(Operation.CHAT, "m")
    assert isinstance(translator, BedrockStream)
    assert repr(translator) == "<BedrockStream finished=False tool_calls=0 finish_reason=None>"
