"""Raw relay: the thinnest aiohttp byte relay, the floor for any Python proxy.

Run as `python -m bench.relay --port P --upstream http://127.0.0.1:U`. Every POST is sent to
the same path on the upstream and the answer's bytes are written back as they arrive: no
JSON, no SSE parsing, no per-chunk work beyond one read and one write. Whatever a gateway
costs above this is the price of what it does with the bytes.
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

from bench.common import run, serve_app

SESSION = web.AppKey("session", aiohttp.ClientSession)
UPSTREAM = web.AppKey("upstream", str)
# Request headers worth passing on; hop-by-hop and length headers are aiohttp's business.
PASS_HEADERS = ("Content-Type", "Authorization", "Accept", "x-api-key", "anthropic-version")


async def relay(request: web.Request) -> web.StreamResponse:
    body = await request.read()
    headers = {h: request.headers[h] for h in PASS_HEADERS if h in request.headers}
    session = request.app[SESSION]
    url = request.app[UPSTREAM] + request.path_qs
    async with session.post(url, data=body, headers=headers) as upstream:
        resp = web.StreamResponse(status=upstream.status)
        if "Content-Type" in upstream.headers:
            resp.headers["Content-Type"] = upstream.headers["Content-Type"]
        await resp.prepare(request)
        async for data in upstream.content.iter_any():
            await resp.write(data)
        await resp.write_eof()
        return resp


def make_app(upstream: str) -> web.Application:
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app[UPSTREAM] = upstream.rstrip("/")

    async def session_ctx(app: web.Application) -> AsyncIterator[None]:
        # No pool limit and no decompression: the relay must never be what queues requests.
        connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=None)
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10)
        async with aiohttp.ClientSession(
            connector=connector, timeout=timeout, auto_decompress=False
        ) as session:
            app[SESSION] = session
            yield

    app.cleanup_ctx.append(session_ctx)
    app.router.add_post("/{tail:.*}", relay)
    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.relay", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--upstream", required=True, help="base URL, e.g. http://127.0.0.1:9000")
    args = parser.parse_args(argv)
    run(serve_app(make_app(args.upstream), args.host, args.port, "raw relay"))


if __name__ == "__main__":
    main()
