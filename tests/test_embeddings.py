"""POST /v1/embeddings: relayed untouched; the mock answers float and base64 alike."""

from __future__ import annotations

import aiohttp
import openai
import pytest

from tests.conftest import FakeUpstream
from tests.streams import answering

ANSWER = {
    "object": "list",
    "data": [{"object": "embedding", "index": 0, "embedding": [0.25, -0.5, 0.125]}],
    "model": "text-embedding-3-small",
    "usage": {"prompt_tokens": 2, "total_tokens": 2},
}


async def test_embeddings_request_and_answer_pass_through(
    upstream: FakeUpstream, client: openai.AsyncOpenAI
) -> None:
    upstream.handler = answering(ANSWER)
    result = await client.embeddings.create(
        model="fake/text-embedding-3-small",
        input=["hello", "world"],
        encoding_format="float",
        dimensions=3,
    )
    assert result.data[0].embedding == [0.25, -0.5, 0.125]
    sent = upstream.last_body
    assert sent == {
        "model": "text-embedding-3-small",
        "input": ["hello", "world"],
        "encoding_format": "float",
        "dimensions": 3,
    }
    assert upstream.requests[-1]["path"] == "/v1/embeddings"


async def test_mock_embeddings_are_deterministic_in_float_and_base64(
    client: openai.AsyncOpenAI,
) -> None:
    as_float = await client.embeddings.create(
        model="mock/e", input=["a", "b"], encoding_format="float", dimensions=8
    )
    as_base64 = await client.embeddings.create(model="mock/e", input=["a", "b"], dimensions=8)
    assert [d.embedding for d in as_float.data] == [d.embedding for d in as_base64.data]
    assert len(as_float.data[0].embedding) == 8
    assert as_float.data[0].embedding != as_float.data[1].embedding
    token_ids = await client.embeddings.create(model="mock/e", input=[[1, 2, 3]])
    assert len(token_ids.data) == 1


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "mock/e"}, "input"),
        ({"model": "mock/e", "input": "x", "encoding_format": "hex"}, "encoding_format"),
        ({"model": "mock/e", "input": {"a": 1}}, "input"),
    ],
)
async def test_bad_embeddings_request_is_400_naming_the_field(
    gateway_url: str, body: dict, param: str
) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{gateway_url}/v1/embeddings", json=body) as response,
    ):
        assert response.status == 400
        assert (await response.json())["error"]["param"] == param
