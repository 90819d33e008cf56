"""Routing policy through the dispatcher: fallbacks, retries, keys, aliases, cooldowns.

Every test runs the real gateway in front of real fake upstreams on 127.0.0.1 and reads the
answers with the official OpenAI SDK (or aiohttp, for headers and raw bytes).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import openai
import pytest
from aiohttp import web

from tests.conftest import FakeUpstream, GatewayFactory, provider_toml
from tests.streams import (
    answering,
    chat_chunk,
    chat_completion,
    data,
    openai_chat_stream,
    post_stream,
    streaming,
)

MESSAGES = [{"role": "user", "content": "hi"}]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def providers_toml(*urls: str, **extra: Any) -> str:
    """Providers a, b, c (OpenAI-compatible) on the given upstreams."""
    return "".join(
        provider_toml(url, name, **{"api_key": f"sk-{name}", "timeout": 2, **extra})
        for name, url in zip("abc", urls, strict=False)
    )


def error_answer(status: int, message: str, headers: dict[str, str] | None = None) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        body = {"error": {"message": message, "type": "server_error", "param": None, "code": None}}
        return web.json_response(body, status=status, headers=headers)

    return handler


async def two_behind(
    start_gateway: GatewayFactory,
    upstreams: list[FakeUpstream],
    alias: str,
    models: tuple[str, str] = ("m", "m"),
    **settings: Any,
) -> tuple[str, FakeUpstream, FakeUpstream]:
    """Providers a and b on their fake upstreams, behind `alias` (a's model first, then b's):
    the gateway's URL."""
    a, b, _ = upstreams
    targets = f'[models.{alias}]\ntargets = ["a/{models[0]}", "b/{models[1]}"]\n'
    return await start_gateway(providers_toml(a.url, b.url, **settings) + targets), a, b


async def one_key_refused(
    start_gateway: GatewayFactory, upstream: FakeUpstream, keys: str, refusal: Handler, text: str
) -> str:
    """Provider p with `keys` (TOML), whose upstream gives the first key `refusal` and any
    other `text`: the gateway's URL."""
    url = await start_gateway(
        f'[providers.p]\ntype = "openai"\nbase_url = "{upstream.url}"\nkeys = {keys}\n'
    )
    refused = "Bearer " + keys.split('"')[1]

    async def by_key(request: web.Request) -> web.StreamResponse:
        if request.headers["Authorization"] == refused:
            return await refusal(request)
        return web.json_response(chat_completion(text))

    upstream.handler = by_key
    return url


async def answer_text(url: str, model: str) -> str:
    """The text of a whole answer from `model`, through the SDK."""
    async with sdk(url) as client:
        answer = await client.chat.completions.create(model=model, messages=MESSAGES)
    return answer.choices[0].message.content or ""


async def streamed_text(url: str, model: str) -> str:
    async with sdk(url) as client:
        return await stream_text(client, model)


def sdk(url: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)


async def stream_text(client: openai.AsyncOpenAI, model: str, **extra: Any) -> str:
    stream = await client.chat.completions.create(
        model=model, messages=MESSAGES, stream=True, **extra
    )
    return "".join(
        [chunk.choices[0].delta.content or "" async for chunk in stream if chunk.choices]
    )


async def test_503_then_success_on_the_fallback_target(
    upstreams: list[FakeUpstream], start_gateway: GatewayFactory
) -> None:
    url, a, b = await two_behind(start_gateway, upstreams, "smart", ("m1", "m2"))
    a.handler = error_answer(503, "a is overloaded")
    b.handler = streaming(openai_chat_stream(["from ", "b"]))
    async with sdk(url) as client:
        raw = await client.chat.completions.with_raw_response.create(
            model="smart", messages=MESSAGES, stream=True
        )
        text = "".join([c.choices[0].delta.content or "" async for c in raw.parse() if c.choices])
    assert text == "from b"
    assert raw.headers["x-gateway-model"] == "b/m2"
    assert raw.headers["x-gateway-attempts"] == "2"
    assert a.last_body["model"] == "m1" and b.last_body["model"] == "m2"


async def test_error_event_inside_a_200_stream_before_content_fails_over_cleanly(
    upstreams: list[FakeUpstream], start_gateway: GatewayFactory
) -> None:
    url, a, b = await two_behind(start_gateway, upstreams, "smart")
    overloaded = {"error": {"message": "Overloaded", "type": "overloaded_error", "code": None}}
    a.handler = streaming(
        [data(chat_chunk({"role": "assistant", "content": ""})), data(overloaded)]
    )
    b.handler = streaming(openai_chat_stream(["clean"]))
    status, raw = await post_stream(url, "smart")
    assert status == 200
    assert b"Overloaded" not in raw and raw.count(b'"role"') == 1  # one role chunk: b's
    assert await streamed_text(url, "smart") == "clean"


async def test_end_of_stream_before_content_fails_over(
    upstreams: list[FakeUpstream], start_gateway: GatewayFactory
) -> None:
    url, a, b = await two_behind(start_gateway, upstreams, "smart")
    a.handler = streaming([data(chat_chunk({"role": "assistant", "content": ""}))])  # then ends
    b.handler = streaming(openai_chat_stream(["ok"]))
    assert await streamed_text(url, "smart") == "ok"


async def test_a_cut_after_content_is_the_error_event_and_no_failover(
    upstreams: list[FakeUpstream], start_gateway: GatewayFactory
) -> None:
    url, a, b = await two_behind(start_gateway, upstreams, "smart")
    a.handler = streaming([data(chat_chunk({"content": "partial"}))], then="reset")
    b.handler = streaming(openai_chat_stream(["never"]))
    async with sdk(url) as client:
        stream = await client.chat.completions.create(model="smart", messages=MESSAGES, stream=True)
        seen = []
        with pytest.raises(openai.APIError) as caught:
            async for chunk in stream:
                seen.append(chunk.choices[0].delta.content if chunk.choices else None)
    assert seen == ["partial"]  # no token twice, none from b
    assert isinstance(caught.value.body, dict)
    assert b.requests == []


async def test_a_timeout_before_content_fails_over(
    upstreams: list[FakeUpstream], start_gateway: GatewayFactory
) -> None:
    url, a, b = await two_behind(start_gateway, upstreams, "smart", timeout=0.3)
    a.handler = streaming([data(chat_chunk({"role": "assistant", "content": ""}))], then="hang")
    b.handler = streaming(openai_chat_stream(["in time"]))
    assert await streamed_text(url, "smart") == "in time"


async def test_keepalive_comments_then_failover_give_one_clean_stream(
    upstreams: list[FakeUpstream], start_gateway: GatewayFactory
) -> None:
    url, a, b = await two_behind(start_gateway, upstreams, "smart", keepalive=0.1)
    a.handler = error_answer(503, "slow and then down")
    slow_failure = a.handler

    async def slow(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(1.5)  # long enough for keepalive comments to commit the stream
        return await slow_failure(request)

    a.handler = slow
    b.handler = streaming(openai_chat_stream(["after ", "comments"]))
    status, raw = await post_stream(url, "smart")
    assert status == 200
    assert raw.startswith(b": keepalive\n\n")
    assert b"slow and then down" not in raw
    assert await streamed_text(url, "smart") == "after comments"


async def test_every_candidate_failing_after_keepalive_is_the_final_error_event(
    upstreams: list[FakeUpstream], start_gateway: GatewayFactory
) -> None:
    url, a, b = await two_behind(start_gateway, upstreams, "smart", keepalive=0.1)

    async def slow_503(request: web.Request) -> web.Response:
        await asyncio.sleep(1.5)  # the keepalives (every 0.1 s) commit the stream first
        return await error_answer(503, "down")(request)

    a.handler = b.handler = slow_503
    async with sdk(url) as client:
        stream = await client.chat.completions.create(model="smart", messages=MESSAGES, stream=True)
        with pytest.raises(openai.APIError) as caught:
            async for _ in stream:
                pass
    assert "a/m: 503 down" in caught.value.message and "b/m: 503 down" in caught.value.message


async def test_401_on_one_key_moves_to_the_other_key_and_rests_the_bad_one(
    upstream: FakeUpstream, start_gateway: GatewayFactory
) -> None:
    url = await one_key_refused(
        start_gateway,
        upstream,
        '[{ value = "sk-bad", weight = 1000 }, { value = "sk-good", weight = 1 }]',
        error_answer(401, "Incorrect API key provided"),
        "served",
    )
    async with sdk(url) as client:
        first = await client.chat.completions.with_raw_response.create(
            model="p/m", messages=MESSAGES
        )
        assert first.parse().choices[0].message.content == "served"
        assert first.headers["x-gateway-attempts"] == "2"
        keys = [r["headers"]["Authorization"] for r in upstream.requests]
        assert keys == ["Bearer sk-bad", "Bearer sk-good"]  # weight 1000 goes first
        upstream.requests.clear()
        for _ in range(5):  # the bad key rests: despite its weight, never tried again
            await client.chat.completions.create(model="p/m", messages=MESSAGES)
    assert {r["headers"]["Authorization"] for r in upstream.requests} == {"Bearer sk-good"}


async def test_429_rests_the_key_and_the_next_key_answers_at_once(
    upstream: FakeUpstream, start_gateway: GatewayFactory
) -> None:
    url = await one_key_refused(
        start_gateway,
        upstream,
        '[{ value = "sk-limited", weight = 1000 }, { value = "sk-free" }]',
        error_answer(429, "Rate limit reached", {"Retry-After": "30"}),
        "free",
    )
    started = time.monotonic()
    assert await answer_text(url, "p/m") == "free"
    assert time.monotonic() - started < 5  # moved to the other key, did not wait 30 s


async def test_weighted_targets_split_within_statistical_bounds(
    start_gateway: GatewayFactory,
) -> None:
    url = await start_gateway(
        '[providers.heavy]\ntype = "mock"\ndelay = 0\ntokens = 1\n'
        '[providers.light]\ntype = "mock"\ndelay = 0\ntokens = 1\n'
        '[[models.split.targets]]\nmodel = "heavy/x"\nweight = 3\n'
        '[[models.split.targets]]\nmodel = "light/x"\nweight = 1\n'
    )
    served: Counter[str] = Counter()
    body = {"model": "split", "messages": MESSAGES}
    async with aiohttp.ClientSession() as session:
        for _ in range(1000):
            async with session.post(f"{url}/v1/chat/completions", json=body) as response:
                assert response.status == 200
                served[response.headers["x-gateway-model"]] += 1
    # 3:1 -> 750 expected; a binomial sd is 13.7: 5 sd either way never fails by chance.
    assert 680 <= served["heavy/x"] <= 820, served
    assert served["heavy/x"] + served["light/x"] == 1000


async def test_max_attempts_caps_a_ring_of_failing_targets(
    upstreams: list[FakeUpstream], start_gateway: GatewayFactory
) -> None:
    a, b, c = upstreams
    url = await start_gateway(
        providers_toml(a.url, b.url, c.url, retries=5)
        + '[models.ring]\ntargets = ["a/m", "b/m", "c/m"]\n'
        + "[routing]\nmax_attempts = 4\nbackoff_start = 0.01\n"
    )
    a.handler = b.handler = c.handler = error_answer(500, "broken")
    async with sdk(url) as client:
        with pytest.raises(openai.InternalServerError) as caught:
            await client.chat.completions.create(
                model="ring", messages=MESSAGES, extra_body={"fallbacks": ["ring", "a/m"]}
            )
    assert len(a.requests) + len(b.requests) + len(c.requests) == 4
    assert caught.value.response.headers["x-gateway-attempts"] == "4"
    assert caught.value.message.count("500 broken") == 4


async def test_retries_back_off_and_honour_retry_after(
    upstream: FakeUpstream, start_gateway: GatewayFactory
) -> None:
    url = await start_gateway(
        f'[providers.p]\ntype = "openai"\nbase_url = "{upstream.url}"\nretries = 2\n'
    )
    answers = [
        error_answer(429, "slow down", {"Retry-After": "0.4"}),
        error_answer(503, "busy"),
        answering(chat_completion("third time")),
    ]
    times: list[float] = []

    async def scripted(request: web.Request) -> web.StreamResponse:
        times.append(time.monotonic())
        return await answers[len(times) - 1](request)

    upstream.handler = scripted
    assert await answer_text(url, "p/m") == "third time"
    assert times[1] - times[0] >= 0.4  # the upstream's Retry-After
    assert times[2] - times[1] >= 0.4 * 2 * 0.8  # backoff_start 0.5 * 2^1, jitter -20 %


@pytest.mark.parametrize(
    "failure",
    [
        error_answer(503, "come back in an hour", {"Retry-After": "3600"}),  # above the cap
        error_answer(404, "no such model"),  # this provider lacks the model: b may have it
    ],
    ids=["retry-after-above-the-cap", "404"],
)
async def test_a_failure_not_worth_a_retry_fails_over_at_once(
    upstreams: list[FakeUpstream], start_gateway: GatewayFactory, failure: Handler
) -> None:
    url, a, b = await two_behind(start_gateway, upstreams, "m", retries=3)
    a.handler = failure
    b.handler = answering(chat_completion("b"))
    assert await answer_text(url, "m") == "b"
    assert len(a.requests) == 1


async def test_every_candidate_failing_gives_one_error_naming_each_attempt(
    upstreams: list[FakeUpstream], start_gateway: GatewayFactory
) -> None:
    url, a, b = await two_behind(start_gateway, upstreams, "m", ("m1", "m2"))
    a.handler = error_answer(503, "a down")
    b.handler = error_answer(502, "b broken")
    async with sdk(url) as client:
        with pytest.raises(openai.APIStatusError) as caught:
            await client.chat.completions.create(model="m", messages=MESSAGES, stream=True)
    assert caught.value.status_code == 502
    assert "a/m1: 503 a down" in caught.value.message
    assert "b/m2: 502 b broken" in caught.value.message


async def test_all_429_is_a_429_with_the_smallest_retry_after(
    upstreams: list[FakeUpstream], start_gateway: GatewayFactory
) -> None:
    url, a, b = await two_behind(start_gateway, upstreams, "m")
    a.handler = error_answer(429, "a limited", {"Retry-After": "20"})
    b.handler = error_answer(429, "b limited", {"Retry-After": "7"})
    async with sdk(url) as client:
        with pytest.raises(openai.RateLimitError) as caught:
            await client.chat.completions.create(model="m", messages=MESSAGES)
    assert caught.value.response.headers["retry-after"] == "7"


async def test_request_fallbacks_are_tried_and_never_forwarded(
    upstreams: list[FakeUpstream], start_gateway: GatewayFactory
) -> None:
    a, b, _ = upstreams
    url = await start_gateway(providers_toml(a.url, b.url))
    a.handler = error_answer(500, "a failed")
    b.handler = answering(chat_completion("fallback"))
    async with sdk(url) as client:
        answer = await client.chat.completions.create(
            model="a/m", messages=MESSAGES, extra_body={"fallbacks": ["b/other"]}
        )
    assert answer.choices[0].message.content == "fallback"
    assert b.last_body["model"] == "other"
    assert "fallbacks" not in a.last_body and "fallbacks" not in b.last_body


async def test_an_unknown_fallback_is_a_400_naming_the_field(
    upstream: FakeUpstream, client: openai.AsyncOpenAI
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(
            model="fake/m", messages=MESSAGES, extra_body={"fallbacks": ["nowhere/m"]}
        )
    assert isinstance(caught.value.body, dict) and caught.value.body["param"] == "fallbacks"
    assert upstream.requests == []


@pytest.mark.parametrize("status", [400, 413, 422])
async def test_a_client_error_never_fails_over(
    upstreams: list[FakeUpstream], start_gateway: GatewayFactory, status: int
) -> None:
    url, a, b = await two_behind(start_gateway, upstreams, "m", retries=2)
    a.handler = error_answer(status, "your request is wrong")
    b.handler = answering(chat_completion("never"))
    async with sdk(url) as client:
        with pytest.raises(openai.APIStatusError) as caught:
            await client.chat.completions.create(model="m", messages=MESSAGES)
    assert caught.value.status_code == status
    assert "your request is wrong" in caught.value.message
    assert len(a.requests) == 1 and b.requests == []


async def test_a_target_that_failed_three_times_in_a_row_rests(
    upstreams: list[FakeUpstream], start_gateway: GatewayFactory
) -> None:
    url, a, b = await two_behind(start_gateway, upstreams, "m")
    a.handler = error_answer(503, "down")
    b.handler = answering(chat_completion("b"))
    async with sdk(url) as client:
        for _ in range(6):
            answer = await client.chat.completions.create(model="m", messages=MESSAGES)
            assert answer.choices[0].message.content == "b"
    assert len(a.requests) == 3  # then a/m rested for the cooldown: skipped


async def test_when_every_target_rests_the_longest_rested_is_tried(
    upstreams: list[FakeUpstream], start_gateway: GatewayFactory
) -> None:
    a, b, _ = upstreams
    url = await start_gateway(
        providers_toml(a.url, b.url)
        + '[models.m]\ntargets = ["a/m", "b/m"]\n[routing]\nfailures_to_rest = 1\n'
    )
    a.handler = b.handler = error_answer(503, "down")
    async with sdk(url) as client:
        with pytest.raises(openai.APIStatusError):
            await client.chat.completions.create(model="m", messages=MESSAGES)
        a.handler = answering(chat_completion("a is back"))  # a rested first, so longest
        answer = await client.chat.completions.create(model="m", messages=MESSAGES)
    assert answer.choices[0].message.content == "a is back"
    assert len(b.requests) == 1


async def test_retried_and_failed_over_streams_never_duplicate_a_token(
    upstreams: list[FakeUpstream], start_gateway: GatewayFactory
) -> None:
    a, b, _ = upstreams
    url = await start_gateway(
        providers_toml(a.url, b.url, retries=1)
        + '[models.m]\ntargets = ["a/m", "b/m"]\n[routing]\nbackoff_start = 0.01\n'
    )
    role = data(chat_chunk({"role": "assistant", "content": ""}))
    a.handler = streaming([role, b"data: {broken\n\n"])  # malformed before content, twice
    b.handler = streaming(openai_chat_stream(["one", " two"]))
    async with sdk(url) as client:
        chunks = [
            chunk
            async for chunk in await client.chat.completions.create(
                model="m", messages=MESSAGES, stream=True
            )
        ]
    contents = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta]
    assert "".join(filter(None, contents)) == "one two"
    assert len(a.requests) == 2 and len(b.requests) == 1
    assert chunks[-1].usage is not None and chunks[-1].choices[0].finish_reason == "stop"


async def test_models_lists_aliases(
    upstreams: list[FakeUpstream], start_gateway: GatewayFactory
) -> None:
    a, b, _ = upstreams
    url = await start_gateway(
        providers_toml(a.url, b.url) + '[models."gpt-4o"]\ntargets = ["a/gpt-4o", "b/x"]\n'
    )
    async with sdk(url) as client:
        ids = [model.id async for model in client.models.list()]
        assert "gpt-4o" in ids
        alias = await client.models.retrieve("gpt-4o")
        assert alias.owned_by == "gateway"
        direct = await client.models.retrieve("a/meta-llama/Llama-3.1-8B")  # slashes in the id
        assert direct.id == "a/meta-llama/Llama-3.1-8B" and direct.owned_by == "a"
        with pytest.raises(openai.NotFoundError) as caught:
            await client.models.retrieve("nowhere/x")
    # OpenAI's shape, though Gemini's routes share the /v1/models/ prefix.
    assert isinstance(caught.value.body, dict) and caught.value.body["code"] == "model_not_found"


ALIAS_TOML = (
    '[providers.down]\ntype = "openai"\nbase_url = "{url}"\napi_key = "k"\n'
    '[providers.mock]\ntype = "mock"\ndelay = 0\n'
    '[models.any]\ntargets = ["down/x", "mock/y"]\n'
    "[routing]\nfailures_to_rest = 1000\n"  # every request tries the failing target first
)


async def test_aliases_fail_over_for_every_operation(
    upstream: FakeUpstream, start_gateway: GatewayFactory
) -> None:
    url = await start_gateway(ALIAS_TOML.format(url=upstream.url))
    upstream.handler = error_answer(503, "down")
    async with sdk(url) as client:
        chat = await client.chat.completions.create(model="any", messages=MESSAGES)
        assert chat.choices[0].message.content
        assert await stream_text(client, "any")
        text = await client.completions.create(model="any", prompt="Hi")
        assert text.choices[0].text
        response = await client.responses.create(model="any", input="Hi")
        assert response.output_text
        async with client.responses.stream(model="any", input="Hi") as events:
            assert (await events.get_final_response()).output_text
        vectors = await client.embeddings.create(model="any", input=["a", "b"])
        assert len(vectors.data) == 2
        speech = await client.audio.speech.create(model="any", voice="alloy", input="Hi")
        assert speech.content.startswith(b"RIFF")
        wav = speech.content
        transcript = await client.audio.transcriptions.create(
            model="any", file=("a.wav", wav, "audio/wav")
        )
        assert transcript.text
        streamed = await client.audio.transcriptions.create(
            model="any", file=("a.wav", wav, "audio/wav"), stream=True
        )
        assert [event async for event in streamed]
    # every operation tried the failing target first, then the mock answered
    paths = Counter(r["path"] for r in upstream.requests)
    assert paths == {
        "/v1/chat/completions": 2,
        "/v1/completions": 1,
        "/v1/responses": 2,
        "/v1/embeddings": 1,
        "/v1/audio/speech": 1,
        "/v1/audio/transcriptions": 2,
    }


async def test_an_upload_with_several_candidates_is_sent_whole_to_each(
    upstreams: list[FakeUpstream], start_gateway: GatewayFactory
) -> None:
    url, a, b = await two_behind(start_gateway, upstreams, "w", ("whisper", "whisper"))
    audio = bytes(range(256)) * 8192  # 2 MiB: past the in-memory spool, onto disk
    received: dict[str, bytes] = {}

    def reading(name: str, status: int) -> Handler:
        async def handler(request: web.Request) -> web.Response:
            form = await request.post()
            upload = form["file"]
            assert isinstance(upload, web.FileField)
            received[name] = upload.file.read()
            if status != 200:
                return await error_answer(status, "no")(request)
            return web.json_response({"text": f"heard {form['model']}"})

        return handler

    a.handler = reading("a", 503)
    b.handler = reading("b", 200)
    async with sdk(url) as client:
        transcript = await client.audio.transcriptions.create(
            model="w", file=("a.wav", audio, "audio/wav")
        )
    assert transcript.text == "heard whisper"
    assert received["a"] == received["b"] == audio


async def test_a_default_provider_never_takes_an_unknown_prefix(
    upstream: FakeUpstream, start_gateway: GatewayFactory
) -> None:
    """`nope/x` with a default provider is a mistyped provider or a model of the default
    one: the gateway does not guess; the 400 names both readings. A bare name, or a slash
    name listed for the default provider, goes there whole."""
    url = await start_gateway(
        '[server]\ndefault_provider = "router"\n[providers.mock]\n'
        + provider_toml(upstream.url, "router", api_key="k", models=["meta-llama/llama-3"])
    )
    upstream.handler = answering(chat_completion("ok"))
    client = sdk(url)
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(model="nope/x", messages=MESSAGES)  # type: ignore[arg-type]
    error = caught.value.body
    assert error["code"] == "unknown_provider" and error["param"] == "model"  # type: ignore[index]
    message = error["message"]  # type: ignore[index]
    assert "Unknown provider 'nope' in model 'nope/x'" in message
    assert "configured providers: mock, router" in message
    assert "model of the default provider 'router', name it 'router/nope/x'" in message
    assert not upstream.requests
    for model in ("claude-sonnet-4-6", "meta-llama/llama-3", "router/nope/x"):
        await client.chat.completions.create(model=model, messages=MESSAGES)  # type: ignore[arg-type]
    sent = [request["body"]["model"] for request in upstream.requests]
    assert sent == ["claude-sonnet-4-6", "meta-llama/llama-3", "nope/x"]
    await client.close()
