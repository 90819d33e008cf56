"""The gateway's upstream `Transport`: the lean client, and aiohttp's where it does not go.

The line, decided per request from its URL (read once) and method:

- the lean client (`transport.http1.pool`): http and https URLs, no proxy, every method but
  HEAD and CONNECT;
- aiohttp's (`transport.aiohttp_client.HttpTransport`): a URL the environment's HTTP_PROXY /
  HTTPS_PROXY send through a proxy (NO_PROXY honoured; loopback hosts are never proxied),
  a URL with credentials in it (basic auth), any other scheme (aiohttp refuses it in its own
  words), HEAD (an answer whose length announces a body that never comes) and CONNECT;
- every request, with `[server] upstream_client = "aiohttp"`.

Both give the same errors in the same words (`transport.upstream_errors.as_gateway_error`).
"""

from __future__ import annotations

import ssl

import aiohttp
from aiohttp import web
from aiohttp.helpers import ProxyInfo, proxies_from_env

from gateway.engine.transport.aiohttp_client import HttpTransport
from gateway.engine.transport.http1.pool import LeanClient
from gateway.engine.transport.http1.route import Route, route
from gateway.engine.transport.upstream_errors import MAX_BODY_BYTES
from wire.upstream import Upstream, UpstreamRequest

_AIOHTTP_METHODS = frozenset({"HEAD", "CONNECT"})
_ROUTES_KEPT = 4096  # URLs remembered (a Gemini URL names its model: a few per model)


class UpstreamClient:
    def __init__(
        self,
        max_body_bytes: int = MAX_BODY_BYTES,
        *,
        lean: bool = True,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.aiohttp = HttpTransport(max_body_bytes)
        self.lean = LeanClient(max_body_bytes, ssl_context) if lean else None
        self._proxies: dict[str, ProxyInfo] = {}
        self._routes: dict[str, Route] = {}

    async def start(self) -> None:
        await self.aiohttp.start()
        if self.lean is not None:
            await self.lean.start()
        # The environment's proxies, read once (aiohttp's reading: also ~/.netrc for their
        # credentials).
        self._proxies = proxies_from_env()

    async def close(self) -> None:
        if self.lean is not None:
            await self.lean.close()
        await self.aiohttp.close()

    async def send(self, request: UpstreamRequest, timeout: aiohttp.ClientTimeout) -> Upstream:
        url = request.url
        found = self._routes.get(url)
        if found is None:
            found = self._route(url)
        lean = self.lean
        if found.lean and lean is not None and request.method not in _AIOHTTP_METHODS:
            return await lean.send(found, request, timeout)
        proxy = found.proxy
        if proxy is None:
            return await self.aiohttp.send(request, timeout)
        auth = proxy.proxy_auth
        return await self.aiohttp.send(
            request,
            timeout,
            proxy=str(proxy.proxy),
            proxy_headers=None if auth is None else {"Proxy-Authorization": auth.encode()},
        )

    def _route(self, url: str) -> Route:
        if len(self._routes) >= _ROUTES_KEPT:
            self._routes.clear()
        found = self._routes[url] = route(url, self._proxies)
        return found


HTTP = web.AppKey("http", UpstreamClient)
