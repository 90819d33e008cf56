"""The dispatcher: between the routes and the relay, the one place that decides who answers.

A route parses its request and hands over a `Call`: the operation, the model as the client
named it, and how to build one attempt for a given provider (`prepare`). The dispatcher plans
the candidates (`gateway.routing`), then runs attempts until one answers:

- a failure before the first content (an error status, an error event inside a 200 stream,
  a cut, a timeout) is invisible to the client: retried on the same target (`retries`, with
  backoff and jitter, honouring Retry-After), moved to another key of the provider (401, 403,
  429 rest the key), or failed over to the next candidate;
- 400, 413, 422 and other client errors are the request's fault: answered at once;
- after the first content nothing switches: a failure is the stream's final error event;
- `[routing] max_attempts` caps everything, so retries and fallbacks can never loop.

When every candidate failed, the client gets one error naming each attempt.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

import msgspec
from aiohttp import web

from gateway.auth import CLIENT_KEY, GATEWAY_KEY, GatewayKey
from gateway.config import RoutingConfig
from gateway.cooldowns import Cooldowns
from gateway.drain import DRAIN
from gateway.first_content import ContentProbe, chat_content
from gateway.hooks import ARRIVED, REQUEST_RECORD, Attempt, Hooks, RequestRecord
from gateway.limits import Limiter, LocalLimiter
from gateway.prepared import Prepared
from gateway.relay import (
    KEEPALIVE_COMMENT,
    REQUEST_ID,
    SSE_HEADERS,
    AttemptFailed,
    Keepalive,
    client_gone,
    fetch_whole,
    open_stream,
    pump,
    send_error_event,
)
from gateway.routing import Candidate, ProviderGroup, Router, Target, weighted_order
from gateway.uploads import Upload
from gateway.usage import token_counts, usage_of
from providers.base import Provider, StreamTranslator
from wire.errors import GatewayError, ProviderAuthError
from wire.operations import Operation
from wire.sse import encode_data

T = TypeVar("T")

# Which provider/model answered, and after how many attempts.
SERVED_BY = "x-gateway-model"
ATTEMPTS = "x-gateway-attempts"

# Worth another try at the same target: the upstream was busy, slow or broken.
_RETRYABLE = frozenset({408, 429, 500, 502, 503, 504, 529})
# The upstream refused the key itself: rest it and try the provider's next key.
_KEY_REFUSED = frozenset({401, 403, 429})
# Not retried, but another target may serve (404: this provider lacks the model).
_FAIL_OVER_ONLY = frozenset({401, 403, 404})
# An upstream without the endpoint asked for answers one of these.
_NO_ENDPOINT = frozenset({404, 405})


class Call(msgspec.Struct, gc=False):
    """What a route hands the dispatcher: one client request, parsed."""

    operation: Operation
    model: str  # as the client named it: provider/model or an alias
    stream: bool
    # One attempt's upstream request for a provider and the model name it is sent.
    prepare: Callable[[Provider, str], Prepared]
    fallbacks: Sequence[str] = ()  # the request's own `fallbacks`, tried after the model's
    # Models the body asks the upstream to choose from itself (OpenRouter's `models`).
    upstream_models: Sequence[str] = ()
    content_probe: Callable[[], ContentProbe] = chat_content  # streams: the client's format
    stream_headers: Mapping[str, str] = msgspec.field(default_factory=lambda: SSE_HEADERS)
    # What an SSE stream waiting for its first content sends every `keepalive` seconds (a
    # comment; Anthropic's ping). Other streams (raw audio, a JSON array) have no such thing.
    keepalive: bytes = KEEPALIVE_COMMENT
    # Streams: the answer's Content-Type is the upstream's (raw audio: audio/wav, ...).
    upstream_content_type: bool = False
    upload: Upload | None = None  # a multipart upload, spooled when it may be sent twice


class Dispatcher:
    """Holds what every request shares: the routing plan, cooldowns, limits, hooks."""

    def __init__(
        self,
        router: Router,
        cooldowns: Cooldowns,
        routing: RoutingConfig,
        limiter: Limiter | None = None,
    ) -> None:
        self.router = router
        self.cooldowns = cooldowns
        self.routing = routing
        self.limiter = limiter or LocalLimiter()
        self.hooks: list[Hooks] = []  # metrics and the access log add theirs

    async def dispatch(self, request: web.Request, call: Call) -> web.StreamResponse:
        key = request.get(GATEWAY_KEY)
        if key is not None:
            key.check_models([call.model, *call.fallbacks])
        plan = self.router.plan(call.model, call.operation, call.fallbacks)
        if key is not None and call.upstream_models:
            # Each provider the body may go to reads these as its own model names.
            names = {f"{c.group.name}/{model}" for c in plan for model in call.upstream_models}
            key.check_models(sorted(names), param="models")
        run = _Run(self, request, call, key)
        if key is None:
            return await run.run(plan)
        # Limits are checked before any upstream is called, and charged after the last byte.
        admission = await self.limiter.admit(key)
        run.headers = admission.headers
        try:
            return await run.run(plan)
        finally:
            inputs, outputs = token_counts(run.record.usage)
            self.limiter.settle(admission, inputs + outputs)


def _may_resend(plan: list[Candidate]) -> bool:
    return len(plan) > 1 or any(c.retries or len(c.group.targets) > 1 for c in plan)


class _Run:
    """One request's attempts."""

    def __init__(
        self, dispatcher: Dispatcher, request: web.Request, call: Call, key: GatewayKey | None
    ) -> None:
        self.dispatcher = dispatcher
        self.request = request
        self.call = call
        self.routing = dispatcher.routing
        self.hooks = dispatcher.hooks
        self.record = RequestRecord(
            call.operation.value,
            call.model,
            call.stream,
            key.name if key is not None else None,
            request.get(ARRIVED),
        )
        request[REQUEST_RECORD] = self.record
        self.failures: list[tuple[Attempt, AttemptFailed]] = []
        # Streams: one response and one keepalive for every attempt of the request.
        self.response: web.StreamResponse | None = None
        self.keepalive: Keepalive | None = None
        self.translator: StreamTranslator | None = None  # the last attempt's, for an error event
        self.headers: dict[str, str] = {}  # for every answer: the key's x-ratelimit-*
        self.client_key = request.get(CLIENT_KEY)
        # Usage is read from whole answers only when something counts tokens.
        self.wants_usage = bool(dispatcher.hooks) or key is not None

    async def run(self, plan: list[Candidate]) -> web.StreamResponse:
        call = self.call
        if call.stream:
            # With the key's x-ratelimit-*: a keepalive comment may send the headers first.
            self.response = web.StreamResponse(headers={**call.stream_headers, **self.headers})
            interval = plan[0].group.targets[0].keepalive
            if interval and self._sse:
                self.keepalive = Keepalive(self.request, self.response, interval, call.keepalive)
        try:
            try:
                if call.upload is not None and _may_resend(plan):  # admitted: worth the copy
                    await call.upload.spool()
                awake = await self._awake(plan, _label)
                for position, candidate in enumerate(awake):
                    answer = await self._try(candidate, last=position == len(awake) - 1)
                    if answer is not None:
                        return answer
                    if len(self.record.attempts) >= self.routing.max_attempts:
                        break
                error = self._final_error()
            except GatewayError as fatal:  # the request's own fault (a 400): answered as is
                error = fatal
            except asyncio.CancelledError:
                drain = self.request.app.get(DRAIN)
                if drain is None or not drain.cutting:
                    raise  # the client went away
                # The gateway's drain ran out of time: the client hears it, then retries.
                task = asyncio.current_task()
                if task is not None:
                    task.uncancel()
                error = drain.ended_error()
            return await self._fail(error)
        finally:
            if self.keepalive is not None:
                await self.keepalive.stop()
            if call.upload is not None:
                call.upload.close()
            self.record.ended = self.record.ended or time.perf_counter()
            for hook in self.hooks:
                hook.request_ended(self.record)

    @property
    def _sse(self) -> bool:
        return self.call.stream_headers["Content-Type"].startswith("text/event-stream")

    async def _awake(self, items: list[T], id_of: Callable[[T], str]) -> list[T]:
        """`items` (targets, or keys) without the resting ones; if all rest, the one that
        rested longest."""
        if len(items) <= 1:
            return items
        resting = await self.dispatcher.cooldowns.resting([id_of(item) for item in items])
        if not resting:
            return items
        awake = [item for item in items if id_of(item) not in resting]
        return awake or [min(items, key=lambda item: resting[id_of(item)].since)]

    async def _key(self, group: ProviderGroup, tried: set[str]) -> Target | None:
        """A key of `group` not yet refused in this request, by weight, skipping resting ones
        (if all rest, the one that rested longest)."""
        if group.forward_client_key and self.client_key:
            target = group.client_target(self.client_key)
            return None if target.key_id in tried else target
        targets = [t for t in group.targets if t.key_id not in tried]
        awake = await self._awake(targets, _key_id)
        if len(awake) <= 1:
            return awake[0] if awake else None
        return weighted_order(awake, lambda t: t.weight)[0]

    async def _try(self, candidate: Candidate, last: bool) -> web.StreamResponse | None:
        """Attempts at one candidate: its keys, then its retries. None: it failed (`last`:
        no candidate follows it)."""
        cooldowns = self.dispatcher.cooldowns
        routing = self.routing
        refused: set[str] = set()
        retry = 0
        while True:
            target = await self._key(candidate.group, refused)
            if target is None:
                return None  # every key of the provider was refused
            attempt = Attempt(len(self.record.attempts) + 1, candidate.label, candidate.group.name)
            self.record.attempts.append(attempt)
            for hook in self.hooks:
                hook.attempt_started(self.record, attempt)
            try:
                answer = await self._attempt(candidate, target, attempt)
            except AttemptFailed as failed:
                attempt.status = failed.status
                self.failures.append((attempt, failed))
                status = failed.status
                if not _fails_over(status):
                    self._ended(attempt, "error")
                    raise failed.error from None
                more = attempt.number < routing.max_attempts
                if status in _KEY_REFUSED and target.client_key:
                    # The client's own key was refused: neither a key of ours to rest nor a
                    # fault of the target's; the next candidate may take another key.
                    self._ended(attempt, "failed_over" if more and not last else "error")
                    return None
                if status in _KEY_REFUSED:
                    seconds = failed.retry_after if status == 429 else None
                    await cooldowns.rest(target.key_id, seconds or routing.cooldown)
                    refused.add(target.key_id)
                    if more and len(refused) < len(candidate.group.targets):
                        self._ended(attempt, "retried")  # at once, with the provider's next key
                        continue
                await cooldowns.failed(candidate.label, routing.failures_to_rest, routing.cooldown)
                wait = self._backoff(retry, failed)
                if (
                    not more
                    or status in _FAIL_OVER_ONLY
                    or wait is None
                    or retry >= candidate.retries
                ):
                    self._ended(attempt, "failed_over" if more and not last else "error")
                    return None
                retry += 1
                refused.clear()  # a rested key is now skipped by weight, not excluded
                self._ended(attempt, "retried")
                await asyncio.sleep(wait)
                continue
            cooldowns.succeeded(candidate.label)
            return answer

    def _backoff(self, retry: int, failed: AttemptFailed) -> float | None:
        """Seconds before retry number `retry + 1`; None: do not wait that long."""
        routing = self.routing
        if failed.retry_after is not None:
            return failed.retry_after if failed.retry_after <= routing.max_retry_after else None
        delay = min(routing.backoff_start * 2**retry, routing.backoff_max)
        return delay * random.uniform(0.8, 1.2)

    async def _attempt(
        self, candidate: Candidate, target: Target, attempt: Attempt
    ) -> web.StreamResponse:
        call = self.call
        try:
            prepared = call.prepare(target.provider, candidate.model)
        except ProviderAuthError as error:  # no key: as if the upstream had refused it
            raise AttemptFailed(error, 401) from None
        except GatewayError as error:  # the provider cannot take this request
            raise AttemptFailed(error) from None
        try:
            answer = await self._send(target, prepared, attempt)
        except AttemptFailed as failed:
            if failed.status not in _NO_ENDPOINT:
                raise
            if prepared.instead is None:
                if prepared.not_found_hint:
                    failed.error.message = f"{failed.error.message} {prepared.not_found_hint}"
                raise
            # The upstream lacks this endpoint: the same target, another way (same attempt).
            try:
                prepared = prepared.instead()
            except GatewayError:  # nor can it be asked that way: its own answer stands
                raise failed from None
            answer = await self._send(target, prepared, attempt)
        if prepared.on_success is not None:
            prepared.on_success()
        return answer

    async def _send(
        self, target: Target, prepared: Prepared, attempt: Attempt
    ) -> web.StreamResponse:
        call = self.call
        if not call.stream:
            answer = await fetch_whole(target, prepared)
            if self.wants_usage and isinstance(answer.body, bytes):
                self.record.usage = usage_of(answer.body)
            self._served(answer, attempt)
            self._ended(attempt, "ok")
            return answer
        assert self.response is not None and prepared.translator is not None
        self.translator = prepared.translator
        opened = await open_stream(target, prepared, call.content_probe(), self._sse, call.upload)
        # The first content: the stream is committed to this attempt.
        response = self.response
        try:
            if self.keepalive is not None:
                await self.keepalive.stop()
                self.keepalive = None
            self.record.first_content = time.perf_counter()
            for hook in self.hooks:
                hook.first_content(self.record, attempt)
            if not response.prepared:
                self._served(response, attempt)
                if opened.request_id:
                    response.headers[REQUEST_ID] = opened.request_id
                upstream_type = opened.upstream.content_type
                if call.upstream_content_type and upstream_type != "application/octet-stream":
                    response.content_type = upstream_type  # e.g. audio/wav
                await response.prepare(self.request)
            else:  # a keepalive comment went first: the headers are gone
                self.record.served = attempt.label
        except BaseException:
            opened.close()  # the client left before pump took the stream: stop the upstream
            raise
        failure = await pump(self.request, response, opened, target)
        self.record.usage = opened.translator.usage
        if failure is not None:
            attempt.status = failure.status
            self.record.error, self.record.status = failure, failure.status
            self._ended(attempt, "error")
        else:
            self._ended(attempt, "ok")
        return response

    def _served(self, response: web.StreamResponse, attempt: Attempt) -> None:
        self.record.served = attempt.label
        headers = response.headers
        headers[SERVED_BY] = attempt.label
        headers[ATTEMPTS] = str(attempt.number)
        if self.headers:
            headers.update(self.headers)

    def _ended(self, attempt: Attempt, outcome: str) -> None:
        attempt.outcome = outcome  # type: ignore[assignment]
        for hook in self.hooks:
            hook.attempt_ended(self.record, attempt)

    def _final_error(self) -> GatewayError:
        """One error for a request whose every attempt failed, naming each."""
        if not self.failures:  # every candidate was skipped before an attempt
            return GatewayError("No provider could be tried for this request.", status=503)
        failures = self.failures
        error = failures[0][1].error if len(failures) == 1 else _all_failed(failures)
        waits = [f.retry_after for _, f in self.failures if f.retry_after is not None]
        if error.status == 429 and waits:
            error.headers["Retry-After"] = str(max(1, round(min(waits))))
        return error

    async def _fail(self, error: GatewayError) -> web.StreamResponse:
        """Tell the client: a status while nothing was sent, else the stream's error event."""
        record = self.record
        record.error, record.status = error, error.status
        error.headers[ATTEMPTS] = str(len(record.attempts))
        for name, value in self.headers.items():
            error.headers.setdefault(name, value)
        response = self.response
        if response is None or not response.prepared:
            raise error
        # Keepalive comments committed the stream before every attempt failed.
        if self.keepalive is not None:
            await self.keepalive.stop()
            self.keepalive = None
        if not client_gone(self.request):
            translator = self.translator
            if translator is None:
                await response.write(encode_data(error.to_json()))
            else:
                await send_error_event(self.request, response, translator, error)
        return response


def _label(candidate: Candidate) -> str:
    return candidate.label


def _key_id(target: Target) -> str:
    return target.key_id


def _fails_over(status: int) -> bool:
    return status in _RETRYABLE or status in _FAIL_OVER_ONLY or status >= 500


def _all_failed(failures: list[tuple[Attempt, AttemptFailed]]) -> GatewayError:
    statuses = {failed.status for _, failed in failures}
    errors = [failed.error for _, failed in failures]
    if statuses == {429}:
        status = 429
    else:
        shown = {error.status for error in errors}
        status = shown.pop() if len(shown) == 1 else 502
    types = {error.type for error in errors}
    message = "; ".join(
        f"{attempt.label}: {failed.status} {failed.error.message}" for attempt, failed in failures
    )
    return GatewayError(
        f"Every attempt failed: {message}",
        status=status,
        type=types.pop() if len(types) == 1 else "upstream_error",
        code="rate_limit_exceeded" if status == 429 else "all_attempts_failed",
    )
