"""The lean upstream client (gateway.engine.transport.http1) byte by byte: framing at every
split, keep-alive reuse, connections the upstream closes, bodies ended by a close, no redirect
followed, the size limit, gzip and deflate, flow control, streamed uploads and TLS.

Raw asyncio servers on 127.0.0.1 send exactly the bytes each test names; the TLS test serves
aiohttp over a certificate made here (trustme).
"""

from __future__ import annotations

import asyncio
import gzip
import ssl
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
import trustme
from aiohttp import web

from gateway.engine.transport.http1.connection import HIGH_WATER, Connection
from gateway.engine.transport.http1.route import route
from gateway.engine.transport.upstream_client import UpstreamClient
from gateway.engine.transport.upstream_errors import (
    BodyTooLarge,
    RedirectRefused,
    as_gateway_error,
    client_timeout,
)
from wire.errors import GatewayError
from wire.upstream import Upstream, UpstreamRequest

TIMEOUT = client_timeout(5)
BODY = b'{"model":"m","messages":[]}'
EVENTS = (b'data: {"a":1}\n\n', b'data: {"bb":22}\n\n', b"data: [DONE]\n\n")
CHUNKED = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n"
    b"x-request-id: req-1\r\n\r\n"
    + b"".join(b"%x\r\n%s\r\n" % (len(event), event) for event in EVENTS)
    + b"0\r\n\r\n"
)
CHUNKED_BODY = b"".join(EVENTS)


def _answer(body: bytes, *headers: str, status: str = "200 OK") -> bytes:
    head = f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\n" + "".join(
        f"{h}\r\n" for h in headers
    )
    return head.encode() + b"\r\n" + body


class RawServer:
    """A server that reads each request whole and lets the test's `reply` write the bytes."""

    def __init__(
        self, reply: Callable[[RawServer, asyncio.StreamWriter, int], Awaitable[bool]]
    ) -> None:
        self.reply = reply  # (server, writer, index) -> keep the connection open
        self.connections = 0
        self.requests: list[tuple[int, bytes, bytes]] = []  # (connection, head, body)
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1/chat/completions"

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        number = self.connections
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    return
                body = await _read_body(reader, head)
                self.requests.append((number, head, body))
                if not await self.reply(self, writer, len(self.requests) - 1):
                    return
        except ConnectionError:
            return
        finally:
            writer.close()


async def _read_body(reader: asyncio.StreamReader, head: bytes) -> bytes:
    lines = head.decode().lower().split("\r\n")
    length = next((int(x.split(":")[1]) for x in lines if x.startswith("content-length:")), None)
    if length is not None:
        return await reader.readexactly(length)
    if any(x.startswith("transfer-encoding:") and "chunked" in x for x in lines):
        body = b""
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip(), 16)
            piece = await reader.readexactly(size + 2)
            if size == 0:
                return body
            body += piece[:-2]
    return b""


@pytest.fixture
async def serve() -> AsyncIterator[Callable[..., Awaitable[RawServer]]]:
    servers: list[RawServer] = []

    async def start(reply: Callable[[RawServer, asyncio.StreamWriter, int], Awaitable[bool]]):
        server = RawServer(reply)
        await server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.stop()


@pytest.fixture
async def lean() -> AsyncIterator[UpstreamClient]:
    client = UpstreamClient(100_000)
    await client.start()
    yield client
    await client.close()


def _sending(answer: bytes, keep: bool = True):
    async def reply(server: RawServer, writer: asyncio.StreamWriter, index: int) -> bool:
        writer.write(answer)
        await writer.drain()
        return keep

    return reply


def _post(url: str, body: Any = BODY, **headers: str) -> UpstreamRequest:
    return UpstreamRequest(
        "POST",
        url,
        {"Content-Type": "application/json", "Authorization": "Bearer k", **headers},
        body,
    )


async def _whole(upstream: Upstream) -> bytes:
    try:
        return b"".join([chunk async for chunk in upstream.chunks()])
    finally:
        upstream.close()


def _error(exc: BaseException) -> GatewayError:
    error = as_gateway_error(exc, "fake", 5)
    assert error is not None, exc
    return error


# --- framing, fed to the protocol at every split ---


class _Transport:
    """The few transport calls a Connection makes, recorded (the socket is not the subject)."""

    def __init__(self) -> None:
        self.paused = False
        self.closed = False

    def get_extra_info(self, name: str) -> None:
        return None

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False

    def close(self) -> None:
        self.closed = True


async def _feed(pieces: list[bytes]) -> Connection:
    conn = Connection(asyncio.get_running_loop(), ("http", "h", 80), set())
    conn.connection_made(_Transport())  # type: ignore[arg-type]
    conn.begin(None)
    for piece in pieces:
        conn.data_received(piece)
    return conn


@pytest.mark.parametrize(
    ("answer", "body"),
    [
        (CHUNKED, CHUNKED_BODY),
        (_answer(b'{"ok":true}', "Content-Type: application/json"), b'{"ok":true}'),
    ],
    ids=["chunked", "content-length"],
)
async def test_an_answer_split_at_every_byte_gives_the_same_status_headers_and_body(
    answer: bytes, body: bytes
) -> None:
    for cut in range(len(answer) + 1):
        for pieces in ([answer[:cut], answer[cut:]], [bytes([b]) for b in answer]):
            conn = await _feed([p for p in pieces if p])
            assert conn.status == 200 and conn.complete and conn.reusable, cut
            assert b"".join(conn.body) == body, cut
            if answer is CHUNKED:
                assert conn.headers is not None and conn.headers["X-Request-Id"] == "req-1"


async def test_an_interim_100_continue_is_skipped() -> None:
    conn = await _feed([b"HTTP/1.1 100 Continue\r\n\r\n" + _answer(b"{}", "A: b")])
    assert conn.status == 200 and conn.complete and b"".join(conn.body) == b"{}"
    assert conn.headers is not None and dict(conn.headers) == {"Content-Length": "2", "A": "b"}


async def test_a_second_answer_to_one_request_keeps_the_first_and_drops_the_connection() -> None:
    conn = await _feed([_answer(b"one") + _answer(b"two")])
    assert conn.complete and b"".join(conn.body) == b"one"
    assert not conn.reusable and conn.closed


# --- keep-alive over real sockets ---


async def test_requests_in_sequence_reuse_one_connection(serve, lean: UpstreamClient) -> None:
    server = await serve(_sending(CHUNKED))
    for _ in range(5):
        upstream = await lean.send(_post(server.url), TIMEOUT)
        assert upstream.status == 200 and upstream.request_id == "req-1"
        assert upstream.content_type == "text/event-stream"
        assert await _whole(upstream) == CHUNKED_BODY
    assert server.connections == 1 and len(server.requests) == 5
    head = server.requests[0][1].decode()
    assert head.startswith("POST /v1/chat/completions HTTP/1.1\r\n")
    assert f"Host: 127.0.0.1:{server.port}\r\n" in head
    assert "Accept-Encoding: gzip, deflate\r\n" in head and "Content-Length: 27\r\n" in head
    assert server.requests[0][2] == BODY


async def test_streams_at_once_each_get_a_connection_then_share_the_pool(
    serve, lean: UpstreamClient
) -> None:
    gate = asyncio.Event()
    all_in = asyncio.Event()

    async def reply(server: RawServer, writer: asyncio.StreamWriter, index: int) -> bool:
        if len(server.requests) == 3:
            all_in.set()
        if index < 3:
            await gate.wait()
        writer.write(CHUNKED)
        await writer.drain()
        return True

    server = await serve(reply)
    sends = [asyncio.ensure_future(lean.send(_post(server.url), TIMEOUT)) for _ in range(3)]
    await asyncio.wait_for(all_in.wait(), 5)
    gate.set()
    for upstream in await asyncio.gather(*sends):
        assert await _whole(upstream) == CHUNKED_BODY
    for _ in range(3):
        assert await _whole(await lean.send(_post(server.url), TIMEOUT)) == CHUNKED_BODY
    assert server.connections == 3


async def test_bytes_after_the_answer_end_the_connections_reuse(
    serve, lean: UpstreamClient
) -> None:
    # An answer followed by a second one the request never asked for (a pipelining bug
    # upstream): the first is read whole, and the connection is not trusted again.
    server = await serve(_sending(_answer(b"one") + _answer(b"two")))
    assert await _whole(await lean.send(_post(server.url), TIMEOUT)) == b"one"
    assert await _whole(await lean.send(_post(server.url), TIMEOUT)) == b"one"
    assert server.connections == 2


async def _until(condition: Callable[[], bool]) -> None:
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("not within 5 s")


async def test_a_pooled_connection_the_upstream_closed_is_not_used_again(
    serve, lean: UpstreamClient
) -> None:
    server = await serve(_sending(CHUNKED, keep=False))  # closes after each answer
    assert lean.lean is not None
    upstream = await lean.send(_post(server.url), TIMEOUT)
    conn = upstream._conn  # type: ignore[attr-defined]
    assert await _whole(upstream) == CHUNKED_BODY
    await _until(lambda: conn.closed)  # the upstream's close reached the pooled connection
    assert await _whole(await lean.send(_post(server.url), TIMEOUT)) == CHUNKED_BODY
    assert server.connections == 2


async def test_an_answer_without_length_ends_at_the_close(serve, lean: UpstreamClient) -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n"

    async def reply(server: RawServer, writer: asyncio.StreamWriter, index: int) -> bool:
        writer.write(head + b'{"par')
        await writer.drain()
        await asyncio.sleep(0.02)
        writer.write(b't":2}')
        return False

    server = await serve(reply)
    upstream = await lean.send(_post(server.url), TIMEOUT)
    assert await upstream.read() == b'{"part":2}'
    upstream.close()
    upstream = await lean.send(_post(server.url), TIMEOUT)
    assert await _whole(upstream) == b'{"part":2}'
    assert server.connections == 2  # never pooled: its end was its close


async def test_an_answer_cut_short_is_an_error_not_an_end(serve, lean: UpstreamClient) -> None:
    server = await serve(_sending(CHUNKED[:-20], keep=False))
    upstream = await lean.send(_post(server.url), TIMEOUT)
    with pytest.raises(Exception) as caught:
        await _whole(upstream)
    assert _error(caught.value).message == (
        "Provider 'fake' closed the connection before the answer was complete."
    )


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_a_redirect_is_not_followed(serve, lean: UpstreamClient, status: int) -> None:
    elsewhere = await serve(_sending(_answer(b"{}")))
    server = await serve(
        _sending(_answer(b"", f"Location: {elsewhere.url}", status=f"{status} Moved"))
    )
    with pytest.raises(RedirectRefused) as caught:
        await lean.send(_post(server.url), TIMEOUT)
    assert caught.value.status == status
    assert _error(caught.value).code == "upstream_redirect"
    assert elsewhere.requests == []


# --- limits, encodings ---


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
async def test_a_body_over_the_limit_is_refused(serve, lean: UpstreamClient, framing: str) -> None:
    big = b" " * 200_000  # the client's limit is 100,000
    if framing == "chunked":
        answer = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        answer += b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in (big[:150_000], big[150_000:]))
        answer += b"0\r\n\r\n"
    else:
        answer = _answer(big)
    server = await serve(_sending(answer))
    upstream = await lean.send(_post(server.url), TIMEOUT)
    with pytest.raises(BodyTooLarge) as caught:
        await upstream.read()
    upstream.close()
    assert _error(caught.value).code == "upstream_too_large"


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "raw-deflate"])
async def test_compressed_answers_are_inflated(serve, lean: UpstreamClient, encoding: str) -> None:
    plain = b'{"text":"' + b"abc" * 5000 + b'"}'
    if encoding == "gzip":
        packed = gzip.compress(plain)
    elif encoding == "deflate":
        packed = zlib.compress(plain)
    else:
        squeezer = zlib.compressobj(wbits=-zlib.MAX_WBITS)
        packed = squeezer.compress(plain) + squeezer.flush()
    name = encoding.removeprefix("raw-")
    server = await serve(_sending(_answer(packed, f"Content-Encoding: {name}")))
    assert await (await lean.send(_post(server.url), TIMEOUT)).read() == plain
    assert await _whole(await lean.send(_post(server.url), TIMEOUT)) == plain


async def test_a_gzip_bomb_is_refused_by_its_inflated_size(serve, lean: UpstreamClient) -> None:
    server = await serve(
        _sending(_answer(gzip.compress(b" " * 10_000_000), "Content-Encoding: gzip"))
    )
    upstream = await lean.send(_post(server.url), TIMEOUT)
    with pytest.raises(BodyTooLarge):
        await upstream.read()
    upstream.close()


async def test_a_body_that_does_not_inflate_is_said_so(serve, lean: UpstreamClient) -> None:
    server = await serve(_sending(_answer(b"not gzip at all", "Content-Encoding: gzip")))
    upstream = await lean.send(_post(server.url), TIMEOUT)
    with pytest.raises(Exception) as caught:
        await upstream.read()
    upstream.close()
    assert _error(caught.value).message == (
        "Provider 'fake' sent a compressed answer that could not be inflated."
    )


# --- flow control, uploads, timeouts ---


async def test_reading_pauses_while_the_reader_is_slow(serve, lean: UpstreamClient) -> None:
    total = 64 * 1024 * 1024  # more than loopback's socket buffers can hold
    sent = 0

    async def reply(server: RawServer, writer: asyncio.StreamWriter, index: int) -> bool:
        nonlocal sent
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % total)
        piece = b"x" * 65536
        while sent < total:
            writer.write(piece)
            await writer.drain()
            sent += len(piece)
        return True

    server = await serve(reply)
    upstream = await lean.send(_post(server.url), TIMEOUT)
    conn = upstream._conn  # type: ignore[attr-defined]
    await _until(lambda: conn._reading_paused)
    held = conn.size
    await asyncio.sleep(0.2)  # the upstream keeps trying to send meanwhile
    assert conn.size == held and held < HIGH_WATER + 512 * 1024
    assert sent < total  # the upstream is held back, not the gateway's memory filled
    received = 0
    async for chunk in upstream.chunks():
        received += len(chunk)
    upstream.close()
    assert received == total


async def test_a_streamed_upload_is_sent_chunked(serve, lean: UpstreamClient) -> None:
    server = await serve(_sending(_answer(b"{}")))

    async def parts() -> AsyncIterator[bytes]:
        for i in range(5):
            yield b"part%d," % i
            await asyncio.sleep(0)

    upstream = await lean.send(_post(server.url, parts()), TIMEOUT)
    assert await _whole(upstream) == b"{}"
    assert server.requests[0][2] == b"part0,part1,part2,part3,part4,"
    assert b"Transfer-Encoding: chunked\r\n" in server.requests[0][1]


async def test_silence_past_the_read_timeout_is_the_providers_timeout(
    serve, lean: UpstreamClient
) -> None:
    async def silent(server: RawServer, writer: asyncio.StreamWriter, index: int) -> bool:
        await asyncio.sleep(30)
        return False

    server = await serve(silent)
    with pytest.raises(TimeoutError) as caught:
        await lean.send(_post(server.url), client_timeout(0.2))
    assert (
        _error(caught.value).message == "Provider 'fake' sent nothing for 5 seconds (its timeout)."
    )


# --- TLS ---


@pytest.fixture(scope="module")
def authority() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
async def tls_server(authority: trustme.CA) -> AsyncIterator[str]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1").configure_cert(context)
    peers: list[Any] = []

    async def answer(request: web.Request) -> web.Response:
        peers.append(request.transport.get_extra_info("peername") if request.transport else None)
        return web.json_response({"ok": True, "peer": str(peers[-1])})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", answer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    yield f"https://127.0.0.1:{runner.addresses[0][1]}/v1/chat/completions"
    await runner.cleanup()


async def test_tls_through_the_loop_with_a_pooled_connection(
    tls_server: str, authority: trustme.CA
) -> None:
    context = ssl.create_default_context()
    authority.configure_trust(context)
    client = UpstreamClient(ssl_context=context)
    await client.start()
    try:
        first = await _whole(await client.send(_post(tls_server), TIMEOUT))
        second = await _whole(await client.send(_post(tls_server), TIMEOUT))
    finally:
        await client.close()
    assert b'"ok": true' in first and first == second  # the same peer: the connection reused


@pytest.mark.parametrize("lean_client", [True, False])
async def test_an_untrusted_certificate_is_refused_in_the_same_words_by_both_clients(
    tls_server: str, lean_client: bool
) -> None:
    client = UpstreamClient(lean=lean_client)
    await client.start()
    try:
        with pytest.raises(Exception) as caught:
            await client.send(_post(tls_server), TIMEOUT)
    finally:
        await client.close()
    assert _error(caught.value).message == (
        "Cannot connect to provider 'fake': its TLS certificate could not be verified."
    )


# --- the line between the clients ---


def test_what_the_lean_client_takes_and_what_goes_to_aiohttp() -> None:
    proxies = aiohttp.helpers.proxies_from_env()
    assert route("http://127.0.0.1:9/v1/x", proxies).lean
    assert route("https://api.example.com/v1/x?a=b c", proxies).target == "/v1/x?a=b+c"
    assert route("https://[::1]/v1", proxies).host_header == "[::1]"
    assert not route("http://user:pass@h.example/v1", proxies).lean
    assert not route("ftp://h.example/v1", proxies).lean
    assert not route("not a url", proxies).lean


async def test_a_host_name_is_resolved_once_and_connected_to(serve, lean: UpstreamClient) -> None:
    # A name, not an address: resolved (getaddrinfo), then connected to address by address.
    server = await serve(_sending(_answer(b"{}")))
    url = server.url.replace("127.0.0.1", "localhost")
    for _ in range(2):  # the second from the pool, without resolving again
        assert await _whole(await lean.send(_post(url), TIMEOUT)) == b"{}"
    assert server.connections == 1
    assert b"Host: localhost:%d\r\n" % server.port in server.requests[0][1]


async def test_a_host_name_that_does_not_resolve_is_said_so(lean: UpstreamClient) -> None:
    with pytest.raises(Exception) as caught:
        await lean.send(_post("http://no-such-host.invalid/v1/chat/completions"), TIMEOUT)
    assert _error(caught.value).message == (
        "Cannot connect to provider 'fake': its host name could not be resolved."
    )
