"""The fuzz (tests/fuzz_cases.py) against every route: the answer is a success or a 4xx in the
route's own error shape, never a 5xx and never a connection closed unanswered, and nothing is
logged as an error or with a traceback.

The gateway runs in a thread with its own event loop (uvloop, as it ships), so that hypothesis
drives a plain synchronous client; examples are bounded to keep this to seconds, and drawn the
same way every run (a failure here is reproducible). Its providers (`fuzz_cases.gateway_toml`):
the mock, one of each translating type in front of an upstream that refuses everything, and
an OpenAI, a Responses-bridged, an Anthropic and a Gemini provider in front of one that answers,
so that every route's translation, both ways, meets the fuzz.
"""

from __future__ import annotations

import http.client
import logging
from collections.abc import Awaitable, Callable, Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway import app as gateway_app
from gateway.config import parse
from tests import fuzz_cases
from tests.fuzz_cases import Case

FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
    derandomize=True,  # the same examples every run: a failure here is reproducible
)


class _Problems(logging.Handler):
    """Every log record that is an error or carries a traceback."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info or record.levelno >= logging.ERROR:
            self.records.append(record)


class _Gateway(fuzz_cases.ServedInThread):
    port = 0

    async def start(self) -> Callable[[], Awaitable[None]]:
        upstreams = await fuzz_cases.upstreams()
        toml = fuzz_cases.gateway_toml(*upstreams.urls)
        runner, url = await gateway_app.start(parse(toml, "fuzz.toml"), "127.0.0.1", 0)
        self.port = int(url.rsplit(":", 1)[1])

        async def stop() -> None:
            await runner.cleanup()
            await upstreams.cleanup()

        return stop


@pytest.fixture(scope="module")
def gateway() -> Iterator[tuple[_Gateway, _Problems]]:
    problems = _Problems()
    logging.getLogger().addHandler(problems)
    try:
        with _Gateway() as running:
            yield running, problems
    finally:
        logging.getLogger().removeHandler(problems)


def send(port: int, case: Case) -> tuple[int, bytes]:
    """The answer to `case`; a connection closed with no answer fails the test here."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    try:
        connection.request(case.method, case.path, body=case.body, headers=case.headers)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def _check(gateway: tuple[_Gateway, _Problems], case: Case) -> tuple[int, bytes]:
    running, problems = gateway
    problems.records.clear()
    status, body = send(running.port, case)
    assert not fuzz_cases.problems(case, status, body), (status, body[:500], case)
    assert not problems.records, [r.getMessage() for r in problems.records]
    return status, body


@FUZZ
@given(case=fuzz_cases.bytes_case())
def test_arbitrary_bytes_to_every_route(gateway: tuple[_Gateway, _Problems], case: Case) -> None:
    _check(gateway, case)


@FUZZ
@given(case=fuzz_cases.json_route_case())
def test_arbitrary_json_to_every_json_route(
    gateway: tuple[_Gateway, _Problems], case: Case
) -> None:
    _check(gateway, case)


@FUZZ
@given(case=fuzz_cases.form_case())
def test_arbitrary_forms_to_the_upload_routes(
    gateway: tuple[_Gateway, _Problems], case: Case
) -> None:
    _check(gateway, case)


@FUZZ
@given(body=fuzz_cases.responses_bodies)
def test_responses_bodies_through_the_chat_bridge(
    gateway: tuple[_Gateway, _Problems], body: object
) -> None:
    _check(gateway, fuzz_cases.json_case("/v1/responses", body))


@FUZZ
@given(body=fuzz_cases.messages_bodies, path=st.sampled_from(fuzz_cases.ANTHROPIC_ROUTES))
def test_messages_bodies(gateway: tuple[_Gateway, _Problems], body: object, path: str) -> None:
    _check(gateway, fuzz_cases.json_case(path, body))


@FUZZ
@given(case=fuzz_cases.gemini_case())
def test_gemini_bodies(gateway: tuple[_Gateway, _Problems], case: Case) -> None:
    _check(gateway, case)


@FUZZ
@given(case=fuzz_cases.upload_part_case())
def test_multipart_part_headers(gateway: tuple[_Gateway, _Problems], case: Case) -> None:
    _check(gateway, case)


@FUZZ
@given(case=fuzz_cases.encoded_case())
def test_content_encodings(gateway: tuple[_Gateway, _Problems], case: Case) -> None:
    _check(gateway, case)


@FUZZ
@given(case=fuzz_cases.control_model_case())
def test_control_characters_in_model_names(gateway: tuple[_Gateway, _Problems], case: Case) -> None:
    _check(gateway, case)


@FUZZ
@given(case=fuzz_cases.big_integer_case())
def test_integers_past_64_bits(gateway: tuple[_Gateway, _Problems], case: Case) -> None:
    _check(gateway, case)


@FUZZ
@given(case=fuzz_cases.mutated_case())
def test_mutated_valid_bodies_of_every_route(
    gateway: tuple[_Gateway, _Problems], case: Case
) -> None:
    _check(gateway, case)


@FUZZ
@given(case=fuzz_cases.schema_case())
def test_schemas_and_dimensions_for_the_mock(
    gateway: tuple[_Gateway, _Problems], case: Case
) -> None:
    _check(gateway, case)


@settings(FUZZ, max_examples=40)
@given(case=fuzz_cases.valid_case() | fuzz_cases.valid_upload_case())
def test_valid_bodies_of_every_route_are_answered(
    gateway: tuple[_Gateway, _Problems], case: Case
) -> None:
    """The bodies the mutations start from are answered (so that the mutations, not the
    bodies, are what the other tests try): refused only by the refusing upstream, or by a
    provider that does not serve the route."""
    status, body = _check(gateway, case)
    if status >= 400:  # the refusing upstream's 400, relayed (Cohere's says only the status)
        said = (b"refused", b"returned HTTP 400", b"support")
        assert any(words in body for words in said), (status, body[:500], case)
