"""The dispatcher: between the routes and the relay, the one place that decides who answers.

A route parses its request and hands over a `Call`: the operation, the model as the client
named it, and how to build one attempt for a given provider (`prepare`). The dispatcher checks
the caller's models and admits it under its limits, plans the candidates, then runs attempts
until one answers (the policies through `gateway.engine.ports`):

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
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any, NamedTuple, TypeVar

import msgspec
from aiohttp import web

from gateway.config import RoutingConfig
from gateway.engine.attempt import (
    AttemptFailed,
    fetch_whole,
    open_stream,
)
from gateway.engine.cached import CACHE_STATE, KeptStream, answer_hit, fill
from gateway.engine.call import Call, Prepared
from gateway.engine.events import REQUEST_RECORD, Attempt, Hooks, RequestRecord
from gateway.engine.held import HeldBytes
from gateway.engine.ports import (
    Cache,
    CacheTicket,
    Caller,
    Cooldowns,
    Draining,
    Limits,
    Planner,
    Pricing,
)
from gateway.engine.stream import ClientStream
from gateway.engine.targets import Candidate, ProviderGroup, Target, weighted_order
from gateway.server.front_door import ARRIVED
from gateway.server.request_ids import REQUEST_ID
from wire.cost import Cost
from wire.errors import GatewayError, ProviderAuthError, drop_tracebacks
from wire.usage import answer_end

T = TypeVar("T")
HIT_COST = Cost(Decimal(0), "cache")  # a response cache hit

# Which provider/model answered, and after how many attempts.
SERVED_BY = "x-gateway-model"
ATTEMPTS = "x-gateway-attempts"
# What a whole answer cost, in USD (a stream's is known only after its last byte: in the
# access log, /metrics and /v1/keys/usage).
COST = "x-gateway-cost-usd"
# W3C Trace Context: the client's, read for a tracer; an attempt's, sent on to its upstream.
TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"

# Worth another try at the same target: the upstream was busy, slow or broken.
_RETRYABLE = frozenset({408, 429, 500, 502, 503, 504, 529})
# The upstream refused the key itself: rest it and try the provider's next key.
_KEY_REFUSED = frozenset({401, 403, 429})
# Not retried, but another target may serve (404: this provider lacks the model).
_FAIL_OVER_ONLY = frozenset({401, 403, 404})
# An upstream without the endpoint asked for answers one of these.
_NO_ENDPOINT = frozenset({404, 405})
# A whole answer up to this size goes out with its head in one write (a copy of it).
_JOINED_HEAD_LIMIT = 64 * 1024


class Dispatcher:
    """Holds what every request shares, each policy behind its port: the plan's maker, the
    cooldowns, the caller's limits, the drain; the answers held whole; the event hooks."""

    def __init__(
        self,
        planner: Planner,
        cooldowns: Cooldowns,
        routing: RoutingConfig,
        limits: Limits[Any],
        held: HeldBytes,
        hooks: Sequence[Hooks] = (),
        drain: Draining | None = None,
        pricing: Pricing | None = None,
        cache: Cache | None = None,
    ) -> None:
        self.planner = planner
        self.cooldowns = cooldowns
        self.routing = routing
        self.limits = limits
        self.held = held  # answers held whole, in sum
        self.hooks = tuple(hooks)  # metrics, the access log, the console
        self.drain = drain
        self.pricing = pricing  # prices each answered request once: its record's cost
        self.cache = cache  # the response cache, when [cache] is on

    async def dispatch(self, request: web.Request, call: Call) -> web.StreamResponse:
        caller = self.limits.caller(request)
        if caller is not None:
            caller.check_models([call.model, *call.fallbacks])
        plan = self.planner.plan(call.model, call.operation, call.fallbacks)
        if caller is not None and call.upstream_models:
            # Each provider the body may go to reads these as its own model names.
            names = {f"{c.group.name}/{model}" for c in plan for model in call.upstream_models}
            caller.check_models(sorted(names), param="models")
        return await _Run(self, request, call, caller).run(plan)


class _Failure(NamedTuple):
    """What the request's final error needs of a failed attempt. Never the exception: its
    traceback holds the attempt's frames, and with them its request and answer bodies."""

    label: str
    status: int
    retry_after: float | None
    error: GatewayError  # holding no traceback and no chained exception

    @classmethod
    def of(cls, attempt: Attempt, failed: AttemptFailed) -> _Failure:
        error = failed.error
        drop_tracebacks(failed)
        drop_tracebacks(error)  # raised by a translator, say: its frames hold the body
        error.__cause__ = error.__context__ = None
        return cls(attempt.label, failed.status, failed.retry_after, error)


def _may_resend(plan: list[Candidate]) -> bool:
    return len(plan) > 1 or any(c.retries or len(c.group.targets) > 1 for c in plan)


class _Run:
    """One request's attempts."""

    def __init__(
        self, dispatcher: Dispatcher, request: web.Request, call: Call, caller: Caller | None
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
            caller.name if caller is not None else None,
            request.get(ARRIVED),
        )
        request[REQUEST_RECORD] = self.record
        self.record.request_id = request.get(REQUEST_ID)
        self.record.traceparent = request.headers.get(TRACEPARENT)
        if self.record.traceparent is not None:
            self.record.tracestate = request.headers.get(TRACESTATE)
        self.failures: list[_Failure] = []
        self.held = dispatcher.held.account()  # what the attempts hold of their answers
        self.stream: ClientStream | None = None  # streams: one for every attempt of the request
        self.headers: dict[str, str] = {}  # for every answer: the key's x-ratelimit-*
        self.caller = caller
        self.client_key = dispatcher.limits.client_key(request)
        # Usage is read from whole answers only when something counts tokens or prices them.
        self.wants_usage = (
            bool(dispatcher.hooks) or caller is not None or dispatcher.pricing is not None
        )
        self.ticket: CacheTicket | None = None  # the response cache's, for a cached route

    async def run(self, plan: list[Candidate]) -> web.StreamResponse:
        """The request's answer; "request ended" is reported here, and only here, however it
        ended (answered, failed, refused by its limits, cancelled)."""
        limits = self.dispatcher.limits
        admission = None
        try:
            if self.caller is not None:
                # Checked before any upstream is called, and charged after the last byte.
                try:
                    admission = await limits.admit(self.request, self.call, plan)
                except GatewayError as refused:
                    self.record.error, self.record.status = refused, refused.status
                    raise
                self.headers = limits.rate_headers(admission)
            cache = self.dispatcher.cache
            if cache is not None:  # admitted first: a hit is a request (rpm), if no tokens
                ticket = self.ticket = await cache.ticket(self.request, self.call, plan)
                if ticket is not None:
                    self.record.cache = self.headers[CACHE_STATE] = ticket.state
                    if ticket.hit is not None:
                        return await self._answer_hit(ticket, *ticket.hit)
            return await self._answer(plan)
        finally:
            self._price()  # after the last byte: the limiter and the hooks read the cost
            if admission is not None:
                limits.settle(admission, self.record)
            if self.call.upload is not None:
                self.call.upload.close()
            self.record.ended = self.record.ended or time.perf_counter()
            for hook in self.hooks:
                hook.request_ended(self.record)

    async def _answer(self, plan: list[Candidate]) -> web.StreamResponse:
        call = self.call
        if call.stream:
            interval = plan[0].group.targets[0].keepalive
            self.stream = ClientStream(
                self.request,
                self.record,
                self.hooks,
                call.stream_format,
                self.headers,
                interval,
                call.ask.input_tokens if call.ask is not None else 0,
            )
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
                error = self._cut()
            return await self._fail(error)
        finally:
            if self.stream is not None:
                await self.stream.close()
            self.held.release()  # the answer is sent, or the request failed

    async def _answer_hit(
        self, ticket: CacheTicket, label: str, stored: bytes
    ) -> web.StreamResponse:
        call, record = self.call, self.record
        assert call.stored is not None
        record.served = label
        record.cache_saved_usd = ticket.saved_usd
        rendered = call.stored.stream(stored) if call.stream else call.stored.whole(stored)
        headers = {SERVED_BY: label, ATTEMPTS: "0", **self.headers}
        stream_format = call.stream_format if call.stream else None
        return await answer_hit(self.request, record, rendered, stream_format, headers)

    def _cut(self) -> GatewayError:
        """A cancellation: the drain ending the request (its error, which the client hears
        and retries on), or the client gone (raised on)."""
        drain = self.dispatcher.drain
        if drain is None or not drain.cutting:
            raise  # the client went away
        task = asyncio.current_task()
        if task is not None:
            task.uncancel()
        return drain.ended_error()

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
                failure = _Failure.of(attempt, failed)
            else:
                cooldowns.succeeded(candidate.label)
                return answer
            # Past the `except`: the exception, its traceback and the attempt's frames (its
            # request and answer bodies) are freed now, not held through the backoff below.
            self.held.release()
            attempt.status = status = failure.status
            self.failures.append(failure)
            if not _fails_over(status):
                self._ended(attempt, "error")
                raise failure.error
            more = attempt.number < routing.max_attempts
            if status in _KEY_REFUSED and target.client_key:
                # The client's own key was refused: neither a key of ours to rest nor a
                # fault of the target's; the next candidate may take another key.
                self._ended(attempt, "failed_over" if more and not last else "error")
                return None
            if status in _KEY_REFUSED:
                seconds = failure.retry_after if status == 429 else None
                await cooldowns.rest(target.key_id, seconds or routing.cooldown)
                refused.add(target.key_id)
                if more and len(refused) < len(candidate.group.targets):
                    self._ended(attempt, "retried")  # at once, with the provider's next key
                    continue
            await cooldowns.failed(candidate.label, routing.failures_to_rest, routing.cooldown)
            wait = self._backoff(retry, failure)
            if not more or status in _FAIL_OVER_ONLY or wait is None or retry >= candidate.retries:
                self._ended(attempt, "failed_over" if more and not last else "error")
                return None
            retry += 1
            refused.clear()  # a rested key is now skipped by weight, not excluded
            self._ended(attempt, "retried")
            await asyncio.sleep(wait)

    def _backoff(self, retry: int, failure: _Failure) -> float | None:
        """Seconds before retry number `retry + 1`; None: do not wait that long."""
        routing = self.routing
        if failure.retry_after is not None:
            return failure.retry_after if failure.retry_after <= routing.max_retry_after else None
        delay = min(routing.backoff_start * 2**retry, routing.backoff_max)
        return delay * random.uniform(0.8, 1.2)

    async def _attempt(
        self, candidate: Candidate, target: Target, attempt: Attempt
    ) -> web.StreamResponse:
        prepared = _prepared(lambda: self.call.prepare(target.provider, candidate.model))
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
                prepared = _prepared(prepared.instead)
            except AttemptFailed as refused:
                if failed.error.param is not None:
                    # The 404 named a field of the request (OpenAI's "previous response not
                    # found"): the endpoint exists and that answer stands.
                    raise failed from None
                # The 404 only said the endpoint is missing: why the other way cannot take
                # the request (a 400 naming the field) is the answer.
                raise refused from None
            answer = await self._send(target, prepared, attempt)
        if prepared.on_success is not None:
            prepared.on_success()
        return answer

    async def _send(
        self, target: Target, prepared: Prepared, attempt: Attempt
    ) -> web.StreamResponse:
        call = self.call
        if attempt.headers:  # a tracer's traceparent: the upstream joins the client's trace
            prepared = _with_headers(prepared, attempt.headers)
        if not call.stream:
            answer = await fetch_whole(target, prepared, self.held)
            if self.wants_usage and isinstance(answer.body, bytes):
                ended = answer_end(answer.body)
                self.record.usage = ended.usage
                self.record.finish_reasons = ended.finish_reasons
            self._served(answer, attempt)
            cost = self._price()
            if cost is not None and cost.header is not None:
                answer.headers[COST] = cost.header
            answer.headers.update(prepared.headers)
            self._ended(attempt, "ok")
            relayed = answer.body
            await self._deliver(answer)
            ticket = self.ticket
            if ticket is not None and ticket.keeps and isinstance(relayed, bytes):
                assert call.stored is not None
                if answer.status == 200 and len(relayed) <= ticket.keeps:
                    fill(ticket, attempt.label, call.stored.from_whole, relayed)
            return answer
        stream = self.stream
        assert stream is not None and prepared.translator is not None
        ticket = self.ticket
        kept = None
        if ticket is not None and ticket.keeps:  # kept as it goes out, for the fill
            prepared.translator = kept = KeptStream(prepared.translator, ticket.keeps)
        stream.opening(prepared.translator)
        stream_format = call.stream_format
        opened = await open_stream(
            target, prepared, stream_format.probe(), stream_format.sse, self.held, call.upload
        )
        # The first content: the stream is this attempt's.
        headers = {**self._served_headers(attempt), **prepared.headers}
        failure = await stream.serve(opened, target, attempt, headers)
        if failure is not None:
            attempt.status = failure.status
            self.record.error, self.record.status = failure, failure.status
            self._ended(attempt, "error")
        else:
            self._ended(attempt, "ok")
            whole = kept.whole() if kept is not None else None
            if ticket is not None and whole is not None:
                assert call.stored is not None
                fill(ticket, attempt.label, call.stored.from_stream, whole)
        return stream.response

    async def _deliver(self, answer: web.Response) -> None:
        """Send a whole answer now, while its bytes still count as held: aiohttp would send
        it once the handler returned, and a client slow to take it would hold it uncounted."""
        try:
            writer = await answer.prepare(self.request)
            body = answer.body
            if writer is not None and isinstance(body, bytes) and len(body) > _JOINED_HEAD_LIMIT:
                writer.send_headers()  # else aiohttp joins head and body: a copy of the body
            await answer.write_eof()
        except ConnectionError:
            pass  # the client left; aiohttp finds so too when it finishes the response
        # aiohttp keeps a kept-alive connection's last response until its next request.
        answer.body = None

    def _price(self) -> Cost | None:
        """The request's cost, worked out once, when an upstream served it (a whole answer's
        before it is sent, for its header; a stream's after its last byte)."""
        record = self.record
        pricing = self.dispatcher.pricing
        if record.cache == "hit":  # no upstream called: free (what it saved is apart)
            record.cost = HIT_COST
        elif record.cost is None and pricing is not None and record.served is not None:
            record.cost = pricing.cost(record.served, record.model, record.usage)
        return record.cost

    def _served(self, response: web.StreamResponse, attempt: Attempt) -> None:
        self.record.served = attempt.label
        response.headers.update(self._served_headers(attempt))

    def _served_headers(self, attempt: Attempt) -> dict[str, str]:
        return {SERVED_BY: attempt.label, ATTEMPTS: str(attempt.number), **self.headers}

    def _ended(self, attempt: Attempt, outcome: str) -> None:
        attempt.outcome = outcome  # type: ignore[assignment]
        for hook in self.hooks:
            hook.attempt_ended(self.record, attempt)

    def _final_error(self) -> GatewayError:
        """One error for a request whose every attempt failed, naming each."""
        if not self.failures:  # every candidate was skipped before an attempt
            return GatewayError("No provider could be tried for this request.", status=503)
        failures = self.failures
        error = failures[0].error if len(failures) == 1 else _all_failed(failures)
        waits = [f.retry_after for f in failures if f.retry_after is not None]
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
        if self.stream is None:
            raise error
        return await self.stream.fail(error)


def _prepared(prepare: Callable[[], Prepared]) -> Prepared:
    """An attempt's request; a provider that cannot take the request fails the attempt."""
    try:
        return prepare()
    except ProviderAuthError as error:  # no key: as if the upstream had refused it
        raise AttemptFailed(error, 401) from None
    except GatewayError as error:  # the provider cannot take this request
        raise AttemptFailed(error) from None


def _with_headers(prepared: Prepared, headers: dict[str, str]) -> Prepared:
    """`prepared` with `headers` added to its upstream request (a copy: the provider's dict
    stays as it built it)."""
    request = prepared.request
    request = msgspec.structs.replace(request, headers={**request.headers, **headers})
    return msgspec.structs.replace(prepared, request=request)


def _label(candidate: Candidate) -> str:
    return candidate.label


def _key_id(target: Target) -> str:
    return target.key_id


def _fails_over(status: int) -> bool:
    return status in _RETRYABLE or status in _FAIL_OVER_ONLY or status >= 500


def _all_failed(failures: list[_Failure]) -> GatewayError:
    statuses = {failure.status for failure in failures}
    errors = [failure.error for failure in failures]
    if statuses == {429}:
        status = 429
    else:
        shown = {error.status for error in errors}
        status = shown.pop() if len(shown) == 1 else 502
    types = {error.type for error in errors}
    message = "; ".join(f"{f.label}: {f.status} {f.error.message}" for f in failures)
    combined = GatewayError(
        f"Every attempt failed: {message}",
        status=status,
        type=types.pop() if len(types) == 1 else "upstream_error",
        code="rate_limit_exceeded" if status == 429 else "all_attempts_failed",
    )
    # Worth retrying when one of the attempts was (a key refused everywhere is not).
    combined.retryable = any(error.should_retry() for error in errors)
    return combined


DISPATCHER = web.AppKey("dispatcher", Dispatcher)
