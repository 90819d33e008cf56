"""Where a request URL goes, and the request head the lean client writes for it.

A URL is read once (yarl, as aiohttp reads it: the same percent-encoding, the same Host
header) and the answer kept: providers send to a handful of URLs. A URL the lean client does
not take (another scheme, credentials in it, a proxy from the environment) is routed to
aiohttp's client, which either serves it or raises its own error for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import ip_address
from urllib.request import proxy_bypass

from aiohttp.helpers import ProxyInfo
from yarl import URL

_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain"})
# Asked when the provider does not say: aiohttp's defaults here (no br, zstd: their packages
# are not installed), so that both clients send the same request.
_ACCEPT = "Accept: */*\r\n"
_ACCEPT_ENCODING = "Accept-Encoding: gzip, deflate\r\n"
_OCTETS = "Content-Type: application/octet-stream\r\n"


@dataclass(frozen=True, slots=True)
class Route:
    lean: bool  # False: aiohttp's client sends it
    origin: tuple[str, str, int] = ("", "", 0)  # (scheme, host, port): its pool
    host: str = ""  # to connect to (an IPv6 address without brackets)
    port: int = 0
    tls: bool = False
    target: str = ""  # the request-target: path and query, percent-encoded
    host_header: str = ""
    proxy: ProxyInfo | None = None  # aiohttp's, through this proxy


def route(url: str, proxies: dict[str, ProxyInfo]) -> Route:
    try:
        parsed = URL(url)
    except (TypeError, ValueError):
        return Route(lean=False)  # aiohttp says why (InvalidURL)
    scheme = parsed.scheme
    host = parsed.raw_host
    port = parsed.port
    if scheme not in ("http", "https") or not host or port is None:
        return Route(lean=False)
    if parsed.raw_user is not None or parsed.raw_password is not None:
        return Route(lean=False)  # basic auth from the URL: aiohttp's
    proxy = proxies.get(scheme)
    if proxy is not None and not _loopback(host) and not proxy_bypass(host):
        return Route(lean=False, proxy=proxy)
    host_header = parsed.host_port_subcomponent
    assert host_header is not None
    return Route(
        lean=True,
        origin=(scheme, host, port),
        host=host,
        port=port,
        tls=scheme == "https",
        target=parsed.raw_path_qs,
        host_header=host_header,
    )


def request_head(
    route: Route, method: str, headers: dict[str, str], length: int | None
) -> tuple[bytes, bool]:
    """The request line and headers, and whether the body goes chunked: `length` None is a
    streamed body, chunked unless the provider gave its Content-Length."""
    lines = [f"{method} {route.target} HTTP/1.1\r\n"]
    given = set()
    for name, value in headers.items():
        if "\n" in value or "\r" in value:
            # What aiohttp refuses too: a value that would start another header.
            raise ValueError(f"Newline or carriage return in the value of header {name!r}")
        given.add(name.lower())
        lines.append(f"{name}: {value}\r\n")
    if "host" not in given:
        lines.insert(1, f"Host: {route.host_header}\r\n")
    if "accept" not in given:
        lines.append(_ACCEPT)
    if "accept-encoding" not in given:
        lines.append(_ACCEPT_ENCODING)
    if "content-type" not in given:
        lines.append(_OCTETS)
    chunked = False
    if "content-length" not in given:
        if length is not None:
            lines.append(f"Content-Length: {length}\r\n")
        elif "transfer-encoding" not in given:
            lines.append("Transfer-Encoding: chunked\r\n")
            chunked = True
        else:
            chunked = "chunked" in headers_value(headers, "transfer-encoding")
    lines.append("\r\n")
    return "".join(lines).encode(), chunked


def headers_value(headers: dict[str, str], name: str) -> str:
    return next((v for k, v in headers.items() if k.lower() == name), "").lower()


def _loopback(host: str) -> bool:
    """A loopback host is never proxied (as Go's ProxyFromEnvironment decides): a local model
    server behind a company's HTTP_PROXY is reached directly."""
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return False
