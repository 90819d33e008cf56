"""The console's routes over real sockets: who may read them, what the ring of finished
requests holds, the feed of new ones, and the keys' and providers' state (the browser's own
test is tests/test_console_browser.py)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest
from aiohttp import web

from gateway.config import parse
from gateway.console import page
from gateway.console.health import MAX_TARGETS, SAMPLES, ProviderHealth, percentile
from gateway.console.ring import RequestRing, finished_of
from gateway.engine.events import Attempt, RequestRecord
from tests.conftest import FakeUpstream, GatewayFactory, provider_toml
from tests.processes import GatewayProcess
from tests.streams import answering, chat_completion, openai_chat_stream, streaming
from wire.config_values import ConfigError
from wire.cost import Cost
from wire.usage import Usage

MESSAGES = [{"role": "user", "content": "hi"}]
ADMIN = "sk-admin-secret"
MOCK = "[providers.mock]\ndelay = 0\ntokens = 5\n"
CONSOLE = f'[admin]\nkey = "{ADMIN}"\n'
STATIC = Path(__file__).resolve().parent.parent / "gateway" / "console" / "static"


def sdk(url: str, key: str = "unused") -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)


async def get(
    url: str, path: str, key: str | None = ADMIN, **headers: str
) -> tuple[int, Any, dict[str, str]]:
    """GET `path` with `key` as the Bearer key: the status, the JSON body, the headers."""
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{url}{path}", headers=headers) as response,
    ):
        body = await response.read()
        is_json = response.content_type == "application/json"
        return response.status, (await response.json() if is_json else body), dict(response.headers)


async def chat(url: str, model: str, key: str = "unused", stream: bool = False) -> None:
    async with sdk(url, key) as client:
        if stream:
            async for _ in await client.chat.completions.create(
                model=model, messages=MESSAGES, stream=True
            ):
                pass
        else:
            await client.chat.completions.create(model=model, messages=MESSAGES)


# ---- on, off, and who may read ----


async def test_the_console_is_off_without_an_admin_key(start_gateway: GatewayFactory) -> None:
    for toml in (MOCK, MOCK + CONSOLE + "[console]\nenabled = false\n"):
        url = await start_gateway(toml)
        for path in ("/console", "/console/console.js", "/console/api/requests"):
            status, body, _ = await get(url, path)
            assert status == 404, (toml, path)
            assert body["error"]["code"] == "unknown_url"


def test_enabling_the_console_without_an_admin_key_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"console\.enabled: .*\[admin\] key"):
        parse(MOCK + "[console]\nenabled = true\n", "test.toml")
    with pytest.raises(ConfigError, match=r"console\.recent: between 1 and"):
        parse(MOCK + CONSOLE + "[console]\nrecent = 0\n", "test.toml")
    assert parse(MOCK + CONSOLE, "test.toml").console.on(ADMIN)


async def test_every_data_route_wants_the_admin_key_and_the_page_wants_none(
    start_gateway: GatewayFactory,
) -> None:
    # Gateway keys configured: every other route wants one, the console's want the admin key.
    url = await start_gateway(MOCK + CONSOLE + '[keys.team]\nvalue = "sk-team"\n')
    for path in ("/console/api/requests", "/console/api/keys", "/console/api/providers"):
        for key in (None, "sk-team", "sk-admin-secreT", ADMIN + "x"):
            status, body, _ = await get(url, path, key)
            assert status == 401, (path, key)
            assert body["error"]["code"] == "invalid_api_key"
        # Never in a URL: a key in the query string is no key.
        status, _, _ = await get(url, f"{path}?key={ADMIN}&api_key={ADMIN}", None)
        assert status == 401
        status, _, headers = await get(url, path)
        assert status == 200
        assert headers["Cache-Control"] == "no-store"
    status, _, _ = await get(url, "/console/api/feed", "sk-team")
    assert status == 401
    for path in page.PATHS:
        status, body, headers = await get(url, path, None)
        assert status == 200, path
        assert headers["Content-Security-Policy"] == page.CONTENT_SECURITY_POLICY
        assert headers["X-Content-Type-Options"] == "nosniff"
    # The gateway's own routes still want a gateway key, the admin key is none.
    status, _, _ = await get(url, "/v1/models", ADMIN)
    assert status == 401


def test_the_page_runs_no_inline_script_and_writes_no_html() -> None:
    policy = dict(part.split(" ", 1) for part in page.CONTENT_SECURITY_POLICY.split("; "))
    assert policy["default-src"] == "'none'"
    assert policy["script-src"] == policy["style-src"] == policy["connect-src"] == "'self'"
    assert policy["frame-ancestors"] == "'none'"
    html = (STATIC / "index.html").read_text()
    assert re.findall(r"<script\b[^>]*>", html) == ['<script src="/console/console.js" defer>']
    assert not re.search(r"<style\b|\sstyle=|\son[a-z]+=|javascript:", html, flags=re.I)
    script = (STATIC / "console.js").read_text()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in script
    # Nothing from another origin, no key in a URL.
    assert not re.search(r"https?://(?!www\.w3\.org/2000/svg)", html + script)
    assert "?key" not in script and "new EventSource" not in script


# ---- the ring ----


async def test_the_ring_keeps_the_last_n_finished_requests_newest_first(
    start_gateway: GatewayFactory,
) -> None:
    url = await start_gateway(MOCK + CONSOLE + "[console]\nrecent = 3\n")
    for n in range(5):
        await chat(url, f"mock/model-{n}")
    status, ring, _ = await get(url, "/console/api/requests")
    assert status == 200
    assert ring["capacity"] == 3 and ring["last_id"] == 5
    assert [(e["id"], e["model"]) for e in ring["data"]] == [
        (5, "mock/model-4"),
        (4, "mock/model-3"),
        (3, "mock/model-2"),
    ]
    _, newest, _ = await get(url, "/console/api/requests?limit=1")
    assert [e["id"] for e in newest["data"]] == [5]
    status, refused, _ = await get(url, "/console/api/requests?limit=zero")
    assert status == 400 and refused["error"]["param"] == "limit"


async def test_an_entry_says_what_happened_to_its_request(
    upstream: FakeUpstream, start_gateway: GatewayFactory
) -> None:
    url = await start_gateway(
        provider_toml(upstream.url, "down", api_key="sk-up")
        + MOCK
        + CONSOLE
        + '[models.smart]\ntargets = ["down/m", "mock/m"]\n'
        + '[keys.team]\nvalue = "sk-team"\nrpm = 3\n'
    )
    upstream.handler = answering({"error": {"message": "overloaded"}}, 503)
    await chat(url, "smart", "sk-team", stream=True)  # down/m fails, mock/m answers
    await chat(url, "mock/plain", "sk-team")
    with pytest.raises(openai.APIStatusError) as failed:
        await chat(url, "down/m", "sk-team")
    assert failed.value.status_code == 503
    with pytest.raises(openai.RateLimitError):  # rpm = 3: refused before any attempt
        await chat(url, "mock/plain", "sk-team")
    _, ring, _ = await get(url, "/console/api/requests")
    refused, failed_entry, plain, fallback = ring["data"]
    assert fallback["model"] == "smart" and fallback["served"] == "mock/m"
    assert fallback["stream"] is True and fallback["status"] == 200 and fallback["error"] == ""
    assert fallback["key"] == "team" and fallback["operation"] == "chat.completions"
    assert fallback["attempts"] == [
        {"target": "down/m", "status": 503, "outcome": "failed_over"},
        {"target": "mock/m", "status": None, "outcome": "ok"},
    ]
    assert 0 < fallback["ttft_ms"] <= fallback["duration_ms"]
    assert fallback["input_tokens"] > 0 and fallback["output_tokens"] == 5
    assert fallback["cost_usd"] == 0  # the record's cost: the mock is free unless priced
    assert fallback["usage_estimated"] is False
    assert failed_entry["cost_usd"] is None  # nothing answered: no cost
    assert plain["stream"] is False and plain["ttft_ms"] is None and plain["output_tokens"] == 5
    assert failed_entry["status"] == 503 and failed_entry["error"] == "503"
    assert failed_entry["served"] is None and failed_entry["attempts"][0]["outcome"] == "error"
    assert refused["status"] == 429 and refused["error"] == "429"
    assert refused["attempts"] == [] and refused["served"] is None
    assert "sk-team" not in str(ring) and "sk-up" not in str(ring)


async def test_a_request_refused_by_a_limit_is_kept_with_metrics_and_the_log_off(
    start_gateway: GatewayFactory,
) -> None:
    url = await start_gateway(
        MOCK
        + CONSOLE
        + '[keys.team]\nvalue = "sk-team"\nrpm = 1\n'
        + "[metrics]\nenabled = false\n[server]\naccess_log = false\n"
    )
    await chat(url, "mock/x", "sk-team")
    with pytest.raises(openai.RateLimitError):
        await chat(url, "mock/x", "sk-team")
    _, ring, _ = await get(url, "/console/api/requests")
    assert [(e["status"], e["error"]) for e in ring["data"]] == [(429, "429"), (200, "")]


async def test_the_filters_pick_by_key_model_and_status(start_gateway: GatewayFactory) -> None:
    url = await start_gateway(
        MOCK + CONSOLE + '[keys.a]\nvalue = "sk-a"\n[keys.b]\nvalue = "sk-b"\n'
    )
    await chat(url, "mock/Alpha", "sk-a")
    await chat(url, "mock/beta", "sk-b")
    with pytest.raises(openai.APIStatusError):
        await chat(url, "mock/status-503", "sk-b")

    async def models(query: str) -> list[str]:
        status, ring, _ = await get(url, f"/console/api/requests?{query}")
        assert status == 200, ring
        return [entry["model"] for entry in ring["data"]]

    assert await models("key=a") == ["mock/Alpha"]
    assert await models("key=b") == ["mock/status-503", "mock/beta"]
    assert await models("model=ALPH") == ["mock/Alpha"]
    assert await models("status=error") == await models("status=5xx") == ["mock/status-503"]
    assert await models("status=503") == ["mock/status-503"]
    assert await models("status=ok&key=b") == ["mock/beta"]
    status, refused, _ = await get(url, "/console/api/requests?status=bad")
    assert status == 400 and refused["error"]["param"] == "status"


async def test_an_entry_shows_its_records_cost_and_whether_it_was_estimated() -> None:
    record = RequestRecord("chat.completions", "mock/x", True, started=1.0)
    record.ended = 2.0
    record.served = "mock/x"
    record.usage = Usage(10, 3, estimated=True)
    record.cost = Cost(Decimal("0.0125"), "override")
    entry = finished_of(record, 100.0)
    assert entry.cost_usd == 0.0125 and entry.usage_estimated is True
    record.cost = Cost(None, "unknown")
    assert finished_of(record, 100.0).cost_usd is None  # unknown: a dash, never $0


async def test_the_ring_gives_what_came_after_a_number() -> None:
    ring = RequestRing(3)
    record = RequestRecord("chat.completions", "mock/x", False, started=1.0)
    for _ in range(5):
        ring.add(finished_of(record, 1.0))
    assert [e.id for e in ring.after(0)] == [3, 4, 5]  # 1 and 2 fell out
    assert [e.id for e in ring.after(3)] == [4, 5]
    assert ring.after(5) == []
    assert [e.id for e in ring.after(99)] == [3, 4, 5]  # a number from before a restart


def test_the_providers_windows_stay_bounded() -> None:
    health = ProviderHealth()
    for n in range(MAX_TARGETS + 50):
        attempt = Attempt(1, f"p/model-{n}", "p")
        attempt.status, attempt.outcome = 503, "error"
        health.attempt_ended(attempt, 1000.0)
    assert len(health.target_failures) == MAX_TARGETS
    assert "p/model-0" not in health.target_failures  # the oldest went first
    record = RequestRecord("chat.completions", "p/m", True, started=0.0)
    record.attempts = [Attempt(1, "p/m", "p")]
    record.served = "p/m"
    for n in range(SAMPLES * 4):
        record.first_content = n / 1000
        health.request_ended(record, 1000.0)
    report = health.report("p", 1000.0)
    assert report["requests"] == SAMPLES * 4
    assert sum(len(b.ttfts) for b in health._minutes["p"]) == SAMPLES
    assert report["attempts"] == report["failed_attempts"] == MAX_TARGETS + 50
    assert report["error_rate"] == 1.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.95) == 4.0
    assert percentile([], 0.5) is None


# ---- the feed ----


class Feed:
    """GET /console/api/feed read as the page reads it: events as they come."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response
        self.buffer = b""

    async def next(self) -> tuple[str, dict[str, str]]:
        """The next event's fields (comments skipped)."""
        while True:
            end = self.buffer.find(b"\n\n")
            if end >= 0:
                block, self.buffer = self.buffer[:end], self.buffer[end + 2 :]
                fields = dict(
                    line.split(": ", 1) for line in block.decode().split("\n") if ": " in line
                )
                fields.pop("", None)
                if "data" in fields:
                    return fields.get("event", "message"), fields
                continue
            chunk = await asyncio.wait_for(self.response.content.readany(), 10)
            if not chunk:
                raise EOFError
            self.buffer += chunk


@pytest.fixture
async def feed_of() -> AsyncIterator[Any]:
    sessions: list[aiohttp.ClientSession] = []

    async def open_feed(url: str, last_event_id: int | None = None) -> Feed:
        session = aiohttp.ClientSession()
        sessions.append(session)
        headers = {"Authorization": f"Bearer {ADMIN}"}
        if last_event_id is not None:
            headers["Last-Event-ID"] = str(last_event_id)
        response = await session.get(f"{url}/console/api/feed", headers=headers)
        assert response.status == 200
        assert response.content_type == "text/event-stream"
        first = await response.content.readuntil(b"\n\n")
        assert first.startswith(b"retry: ")
        return Feed(response)

    yield open_feed
    for session in sessions:
        await session.close()


async def test_the_feed_sends_each_request_as_it_finishes(
    start_gateway: GatewayFactory, feed_of: Any
) -> None:
    url = await start_gateway(MOCK + CONSOLE)
    await chat(url, "mock/before")  # finished before the feed opened: not sent again
    feed = await feed_of(url)
    await chat(url, "mock/first", stream=True)
    name, event = await feed.next()
    assert name == "message" and event["id"] == "2"
    assert '"model":"mock/first"' in event["data"]
    await chat(url, "mock/second")
    _, event = await feed.next()
    assert event["id"] == "3" and '"model":"mock/second"' in event["data"]


async def test_a_feed_that_reconnects_gets_what_it_missed(
    start_gateway: GatewayFactory, feed_of: Any
) -> None:
    url = await start_gateway(MOCK + CONSOLE + "[console]\nrecent = 2\n")
    await chat(url, "mock/one")
    await chat(url, "mock/two")
    feed = await feed_of(url, last_event_id=1)
    _, event = await feed.next()
    assert event["id"] == "2" and '"model":"mock/two"' in event["data"]
    for n in range(3, 6):
        await chat(url, f"mock/{n}")
    late = await feed_of(url, last_event_id=2)  # 3 fell out of a ring of 2
    name, gap = await late.next()
    assert name == "gap" and gap["data"] == "1"
    assert [(await late.next())[1]["id"] for _ in range(2)] == ["4", "5"]


async def test_the_feed_ends_when_the_gateway_drains(tmp_path: Path) -> None:
    process = GatewayProcess(
        MOCK + CONSOLE + "[server]\ndrain_timeout = 60\n", tmp_path, "--log-level", "error"
    )
    try:
        async with aiohttp.ClientSession() as session:
            response = await session.get(
                f"{process.url}/console/api/feed", headers={"Authorization": f"Bearer {ADMIN}"}
            )
            assert response.status == 200
            await response.content.readuntil(b"\n\n")
            process.process.terminate()
            # The feed ends by itself (within a second), long before the drain's 60 s.
            assert await asyncio.wait_for(response.read(), 20) == b""
            assert await asyncio.to_thread(process.process.wait, 20) == 0
    finally:
        process.stop()


# ---- keys and providers ----


async def test_keys_show_the_usage_routes_own_figures(start_gateway: GatewayFactory) -> None:
    url = await start_gateway(
        MOCK
        + CONSOLE
        + '[keys.team]\nvalue = "sk-team"\nrpm = 10\ntpm = 5000\nbudget = 1000\n'
        + "max_parallel = 2\nmodels = ['mock/*']\n"
        + '[keys.idle]\nvalue = "sk-idle"\n'
    )
    await chat(url, "mock/x", "sk-team")
    await chat(url, "mock/y", "sk-team", stream=True)
    _, keys, _ = await get(url, "/console/api/keys")
    _, usage, _ = await get(url, "/v1/keys/usage")
    team, idle = keys["data"]
    assert keys["shared"] is False
    for shown, reported in zip(keys["data"], usage["data"], strict=True):
        assert {k: v for k, v in shown.items() if k != "models"} == reported
    assert team["key"] == "team" and team["requests_last_minute"] == 2
    assert 0 < team["budget_spent"] < 1000 and team["in_flight"] == 0
    assert team["limits"] == {"rpm": 10, "tpm": 5000, "max_parallel": 2}
    assert team["models"] == ["mock/*"]
    assert team["spend_usd"] == 0 and team["max_spend_usd"] is None  # the mock is free
    assert idle["requests_last_minute"] == 0
    assert "sk-team" not in str(keys) and "sk-idle" not in str(keys)


async def test_providers_show_what_rests_and_why(
    upstream: FakeUpstream, start_gateway: GatewayFactory
) -> None:
    url = await start_gateway(
        provider_toml(upstream.url, "flaky")
        + 'keys = [{ value = "sk-1" }, { value = "sk-2" }]\n'
        + MOCK
        + CONSOLE
        + "[routing]\nfailures_to_rest = 1\ncooldown = 600\n"
    )

    async def upstream_answer(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        if body["model"] == "refusing":  # the key is refused: it rests
            return web.json_response({"error": {"message": "bad key"}}, status=401)
        if body["model"] == "down":  # the target fails: with failures_to_rest = 1, it rests
            return web.json_response({"error": {"message": "overloaded"}}, status=503)
        return await streaming(openai_chat_stream(["a", "b"]))(request)

    upstream.handler = upstream_answer
    await chat(url, "flaky/fine", stream=True)
    with pytest.raises(openai.APIStatusError):
        await chat(url, "flaky/refusing")  # both keys refused, one after the other
    with pytest.raises(openai.APIStatusError):
        await chat(url, "flaky/down")
    await chat(url, "mock/m", stream=True)
    status, state, _ = await get(url, "/console/api/providers")
    assert status == 200
    resting = {rest["id"]: rest for rest in state["resting"]}
    assert set(resting) == {"flaky#0", "flaky#1", "flaky/down", "flaky/refusing"}
    for id in ("flaky#0", "flaky#1"):
        rest = resting[id]
        assert rest["kind"] == "key" and rest["provider"] == "flaky"
        assert rest["why"]["status"] == 401 and 590 < rest["seconds_left"] <= 600
    down = resting["flaky/down"]
    assert down["kind"] == "target" and down["why"]["status"] == 503
    assert down["why"]["target"] == "flaky/down"
    providers = {p["name"]: p for p in state["providers"]}
    flaky = providers["flaky"]
    assert flaky["type"] == "openai" and flaky["keys"] == 2
    # fine (1 ok), refusing (2 refused), down (1 failed): 3 of 4 attempts failed.
    assert flaky["attempts"] == 4 and flaky["failed_attempts"] == 3
    assert flaky["error_rate"] == 0.75 and flaky["requests"] == 1
    assert flaky["ttft_p50_ms"] is not None and flaky["ttft_p95_ms"] >= flaky["ttft_p50_ms"]
    assert providers["mock"]["error_rate"] == 0.0 and providers["mock"]["type"] == "mock"


async def test_several_instances_share_keys_and_rests_through_redis_not_the_ring(
    upstream: FakeUpstream,
    start_gateway: GatewayFactory,
    redis_url: str,
) -> None:
    toml = (
        provider_toml(upstream.url, "flaky", api_key="sk-up")
        + MOCK
        + CONSOLE
        + f'[state]\nredis_url = "{redis_url}"\n'
        + '[keys.team]\nvalue = "sk-team"\nbudget = 100000\n'
    )
    one, two = await start_gateway(toml), await start_gateway(toml)
    upstream.handler = answering(chat_completion("no"), 401)
    await chat(one, "mock/a", "sk-team")
    await chat(two, "mock/b", "sk-team")
    with pytest.raises(openai.APIStatusError):
        await chat(two, "flaky/x", "sk-team")
    _, keys, _ = await get(one, "/console/api/keys")
    assert keys["shared"] is True
    assert keys["data"][0]["requests_last_minute"] == 3  # every instance's requests
    _, state, _ = await get(one, "/console/api/providers")
    rest = next(r for r in state["resting"] if r["id"] == "flaky#0")
    assert rest["why"] is None  # rested by the other instance: its reason is its own
    _, ring, _ = await get(one, "/console/api/requests")
    assert [e["model"] for e in ring["data"]] == ["mock/a"]  # this process's ring only
