"""Request guards, as middleware: who may ask (Host), in what form (Content-Type), and the
bookkeeping that lets a connection time its client (`gateway.server.client_connection`).

- Host: a web page can make a browser send requests to 127.0.0.1 through a name it controls
  (DNS rebinding). Bound to a loopback address, the gateway answers only loopback names
  (localhost, *.localhost, 127.0.0.1, [::1], any port) unless `[server] allowed_hosts` says
  otherwise; bound elsewhere, any Host unless configured. Others get 421.
- Content-Type: a page can POST text/plain, form-urlencoded or multipart to any origin without
  a CORS preflight. JSON routes take `application/json` (any parameters), uploads
  `multipart/form-data`; anything else is 415. A request with no Content-Type at all is read
  as JSON, as `requests` and `httpx` send raw bytes, unless it carries an Origin header:
  browsers send one on every cross-origin POST, and can send no Content-Type (a bare
  ArrayBuffer body) without a preflight.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

from gateway.config import ServerConfig
from gateway.server.client_connection import SERVER_NAME, GuardedHandler
from gateway.server.heap import HEAP, LARGE_BODY
from wire.errors import MisdirectedRequest, UnsupportedMediaType

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

UPLOAD_PATHS = frozenset({"/v1/audio/transcriptions", "/v1/audio/translations"})
_LOOPBACK_NAMES = ("localhost", "*.localhost", "127.0.0.1", "[::1]")


def request_guards(server: ServerConfig, host: str) -> list[Middleware]:
    """The guards for a gateway listening on `host`, outermost first; the error middleware
    goes between `track_request` and these, so that their errors get OpenAI's shape."""
    return [_host_guard(allowed_hosts(server, host)), content_type_guard]


@web.middleware
async def track_request(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Tell the connection a request is being handled (its head is in, its body due)."""
    protocol = request.protocol
    if not isinstance(protocol, GuardedHandler):
        return await handler(request)
    protocol.request_started(request)
    try:
        return await handler(request)
    finally:
        protocol.request_finished(request)
        length = request.content_length
        if length is not None and length >= LARGE_BODY:  # its memory, once the request is gone
            request.app[HEAP].freed(length)


async def on_response_prepare(request: web.Request, response: web.StreamResponse) -> None:
    # aiohttp's default names itself and its version: say nothing a scanner can use.
    response.headers["Server"] = SERVER_NAME
    protocol = request.protocol
    if isinstance(protocol, GuardedHandler):
        protocol.response_started()


def is_loopback(host: str) -> bool:
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def allowed_hosts(server: ServerConfig, host: str) -> tuple[str, ...] | None:
    """The Host names to answer (patterns), or None for any."""
    if server.allowed_hosts is not None:
        return None if "*" in server.allowed_hosts else tuple(server.allowed_hosts)
    return _LOOPBACK_NAMES if is_loopback(host) else None


def exposure_warning(host: str) -> str | None:
    """A warning for a gateway reachable from other machines: it has no client keys yet."""
    if is_loopback(host):
        return None
    return (
        f"listening on {host}, beyond this machine: the gateway does not authenticate its "
        "clients, so anyone who can reach it uses the providers' keys. Bind 127.0.0.1 unless "
        "a firewall or a proxy in front restricts who connects"
    )


def _host_guard(patterns: tuple[str, ...] | None) -> Middleware:
    if patterns is None:

        @web.middleware
        async def any_host(request: web.Request, handler: Handler) -> web.StreamResponse:
            return await handler(request)

        return any_host
    names = frozenset(_normal(p) for p in patterns if not p.startswith("*."))
    suffixes = tuple(_normal(p)[1:] for p in patterns if p.startswith("*."))  # ".example.com"
    loopback = patterns is _LOOPBACK_NAMES
    shown = ", ".join(patterns)

    # A client sends the same Host on every request: each value is judged once.
    @functools.lru_cache(maxsize=256)
    def refused(header: str) -> str | None:
        name = _normal(_hostname(header))
        allowed = name in names or name.endswith(suffixes) or (loopback and _is_loopback_ip(name))
        return None if allowed else name

    @web.middleware
    async def host_guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        header = request.headers.get("Host")
        # HTTP/1.0 may omit the header; a browser never does.
        name = None if header is None else refused(header)
        if name is not None:
            raise MisdirectedRequest(
                f"This gateway does not answer for the host {name!r} (it answers for: "
                f"{shown}); list it in [server] allowed_hosts to allow it."
            )
        return await handler(request)

    return host_guard


@web.middleware
async def content_type_guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.method != "POST" or request.match_info.http_exception is not None:
        return await handler(request)  # other methods carry no body; 404/405 say more
    upload = request.path in UPLOAD_PATHS
    declared = request.headers.get("Content-Type")
    if declared is None:
        if not upload and "Origin" not in request.headers:
            return await handler(request)
    elif request.content_type == ("multipart/form-data" if upload else "application/json"):
        return await handler(request)
    expected = "multipart/form-data" if upload else "application/json"
    shown = "none" if declared is None else repr(request.content_type)
    raise UnsupportedMediaType(
        f"Unsupported Content-Type {shown}: {request.path} takes {expected}."
    )


def _hostname(header: str) -> str:
    """The name in a Host header, without its port ("[::1]:8080" -> "::1")."""
    header = header.strip()
    if header.startswith("["):
        return header[1 : header.find("]")] if "]" in header else header
    name, _, port = header.rpartition(":")
    return name if name and port.isdigit() else header


def _normal(name: str) -> str:
    name = name.strip().lower().rstrip(".")
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    try:
        return str(ipaddress.ip_address(name))
    except ValueError:
        return name


def _is_loopback_ip(name: str) -> bool:
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False
