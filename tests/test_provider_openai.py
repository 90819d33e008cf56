"""The OpenAI provider's requests: the client's body as it came, but the upstream's model
name and the usage chunk asked for, built afresh for every attempt."""

from __future__ import annotations

import msgspec
import orjson

from providers.openai import OpenAIProvider, OpenAIProviderConfig
from wire.operations import Operation


def test_each_attempt_builds_its_body_and_leaves_the_clients_as_it_came() -> None:
    """The route's parsed body is shared by every attempt of the request, at any provider: an
    attempt writing its model name and stream_options into it changed what the next read."""
    body = {
        "model": msgspec.Raw(b'"smart"'),
        "messages": msgspec.Raw(b'[{"role":"user","content":"hi"}]'),
        "stream": msgspec.Raw(b"true"),
    }
    before = dict(body)
    first = OpenAIProvider("a", OpenAIProviderConfig(base_url="http://a.test/v1", api_key="k"))
    second = OpenAIProvider("b", OpenAIProviderConfig(base_url="http://b.test/v1", api_key="k"))
    sent = [
        orjson.loads(provider.build_request(Operation.CHAT, model, body, True).body)
        for provider, model in ((first, "model-a"), (second, "model-b"))
    ]
    assert body == before
    assert [s["model"] for s in sent] == ["model-a", "model-b"]
    assert all(s["stream_options"] == {"include_usage": True} for s in sent)
