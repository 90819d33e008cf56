"""Request guards, checks the front door (`gateway.server.front_door`) runs before the
handler: who may ask (Host), in what form (Content-Type).

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
from collections.abc import Callable

from aiohttp import web

from gateway.config import ServerConfig
from wire.errors import MisdirectedRequest, UnsupportedMediaType

Check = Callable[[web.Request], None]  # raises the request's error

UPLOAD_PATHS = frozenset({"/v1/audio/transcriptions", "/v1/audio/translations"})
_LOOPBACK_NAMES = ("localhost", "*.localhost", "127.0.0.1", "[::1]")


def request_checks(server: ServerConfig, host: str) -> list[Check]:
    """The guards for a gateway listening on `host`, in order: Host (when restricted), then
    Content-Type. The front door runs them inside its error answer, so that their errors get
    OpenAI's shape."""
    host_check = _host_check(allowed_hosts(server, host))
    return [content_type_check] if host_check is None else [host_check, content_type_check]


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


def _host_check(patterns: tuple[str, ...] | None) -> Check | None:
    if patterns is None:
        return None
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

    def host_check(request: web.Request) -> None:
        header = request.headers.get("Host")
        # HTTP/1.0 may omit the header; a browser never does.
        name = None if header is None else refused(header)
        if name is not None:
            raise MisdirectedRequest(
                f"This gateway does not answer for the host {name!r} (it answers for: "
                f"{shown}); list it in [server] allowed_hosts to allow it."
            )

    return host_check


def content_type_check(request: web.Request) -> None:
    if request.method != "POST" or request.match_info.http_exception is not None:
        return  # other methods carry no body; 404/405 say more
    upload = request.path in UPLOAD_PATHS
    declared = request.headers.get("Content-Type")
    if declared is None:
        if not upload and "Origin" not in request.headers:
            return
    elif request.content_type == ("multipart/form-data" if upload else "application/json"):
        return
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
