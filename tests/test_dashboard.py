"""deploy/grafana-dashboard.json asks only for what the gateway exports: after a few requests
(streamed, whole, an upstream error, a fallback), every metric its PromQL names is in
/metrics, with every label the queries select or group by."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.conftest import FakeUpstream, GatewayFactory, provider_toml
from tests.scrape import Scrape, scrape
from tests.streams import answering, chat_completion, openai_chat_stream, streaming

DASHBOARD = Path(__file__).resolve().parent.parent / "deploy" / "grafana-dashboard.json"
MESSAGES = [{"role": "user", "content": "hi"}]
# PromQL words that are not metric names.
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless"}


def queries(node: Any) -> Iterator[str]:
    """Every PromQL expression in the dashboard: panel targets and template variables."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "expr" and isinstance(value, str):
                yield value
            elif key == "query" and isinstance(value, dict) and "query" in value:
                yield value["query"]
            else:
                yield from queries(value)
    elif isinstance(node, list):
        for item in node:
            yield from queries(item)


def selectors(expr: str) -> tuple[list[tuple[str, set[str]]], set[str]]:
    """([(metric, labels its matchers name)], labels grouped by) of one expression."""
    grouped: set[str] = set()
    for labels in re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", expr):
        grouped |= {label.strip() for label in labels.split(",") if label.strip()}
    expr = re.sub(r"\b(?:by|without)\s*\([^)]*\)", " ", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # range selectors: [$__rate_interval]
    found = []
    for match in re.finditer(r"\b([A-Za-z_:][A-Za-z0-9_:]*)\s*(\{[^}]*\})?(\s*\()?", expr):
        name, matchers, call = match.groups()
        if call or name in KEYWORDS:
            continue  # a function (or label_values' own arguments, below)
        labels = set(re.findall(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)", matchers or ""))
        found.append((name, labels))
    call = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", expr.strip())
    if call:
        found = [(call[1], {call[2]})]
    return found, grouped


async def test_every_metric_and_label_the_dashboard_queries_is_exported(
    upstreams: list[FakeUpstream], start_gateway: GatewayFactory
) -> None:
    a, b, _ = upstreams
    url = await start_gateway(
        provider_toml(a.url, "a", api_key="sk-a", timeout=2)
        + provider_toml(b.url, "b", api_key="sk-b", timeout=2)
        + '[models.smart]\ntargets = ["a/m", "b/m"]\n[keys.team]\nvalue = "sk-team"\n'
    )
    async with openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="sk-team", max_retries=0) as sdk:
        a.handler = streaming(openai_chat_stream(["streamed ", "answer"]))
        stream = await sdk.chat.completions.create(model="a/m", messages=MESSAGES, stream=True)
        assert [chunk async for chunk in stream]
        a.handler = answering(chat_completion("whole"))
        await sdk.chat.completions.create(model="a/m", messages=MESSAGES)
        a.handler = answering({"error": {"message": "down", "type": "server_error"}}, 503)
        with pytest.raises(openai.InternalServerError):
            await sdk.chat.completions.create(model="a/m", messages=MESSAGES)
        b.handler = streaming(openai_chat_stream(["fallback"]))
        stream = await sdk.chat.completions.create(model="smart", messages=MESSAGES, stream=True)
        assert [chunk async for chunk in stream]
    scraped = await scrape(url)

    dashboard = json.loads(DASHBOARD.read_text())
    expressions = list(queries(dashboard))
    assert len(expressions) >= 15
    named = set()
    for expr in expressions:
        found, grouped = selectors(expr)
        assert found, expr
        for metric, labels in found:
            named.add(metric)
            assert metric in scraped.names, f"{metric} (in {expr}) is not in /metrics"
            assert labels <= _labels(scraped, metric), f"{metric}: {labels} in {expr}"
        on_some = set().union(*(_labels(scraped, metric) for metric, _ in found))
        assert grouped <= on_some | {"le"}, f"by {grouped} in {expr}"
    # The panels the issue asks for: TTFT and time per token, rate and errors, tokens per
    # key (a counter: the histograms carry no key by default), fallbacks.
    assert {
        "gen_ai_server_time_to_first_token_seconds_bucket",
        "gen_ai_server_time_per_output_token_seconds_bucket",
        "gen_ai_server_request_duration_seconds_count",
        "gateway_tokens_total",
        "gateway_attempts_total",
        "gateway_requests_in_flight",
        "gateway_cooldowns",
        "gateway_responses_total",
    } <= named


def _labels(scraped: Scrape, metric: str) -> set[str]:
    return {label for sample in scraped.matching(metric) for label in sample.labels}


def test_the_selector_reader_reads_what_the_test_relies_on() -> None:
    found, grouped = selectors(
        'histogram_quantile(0.95, sum by (le, gen_ai_provider_name) (rate(x_bucket{a="1", '
        'b=~"$v"}[$__rate_interval]))) / sum(rate(y_total[5m]))'
    )
    assert found == [("x_bucket", {"a", "b"}), ("y_total", set())]
    assert grouped == {"le", "gen_ai_provider_name"}
    assert selectors("label_values(m_count, lab)")[0] == [("m_count", {"lab"})]
