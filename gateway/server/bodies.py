"""A request's body, read whole and decoded per its Content-Encoding: the one place a route
reads its body from.

aiohttp's own decoding is off (`GuardedHandler`): it fails a bad gzip body deep in its reader,
logs a traceback for it, and refuses `br` or `zstd` while parsing the head, before the gateway
knows the route whose error shape the answer needs. Here instead:

- no coding, or `identity`: the body as it came;
- `gzip` (`x-gzip`) and `deflate` (zlib-wrapped, or raw as some clients send it): inflated, at
  most `max_request_bytes` of it (413 past that: a small bomb cannot inflate to gigabytes); a
  body that does not inflate is a 400;
- any other coding (`br`, `zstd`, `compress`, several at once) is a 415 with `Accept-Encoding:
  gzip, deflate`, as RFC 9110 (15.5.16) and RFC 7694 ask. Uploads take none: audio is
  compressed already, and a multipart form is streamed to the upstream as it arrives.
"""

from __future__ import annotations

import zlib

from aiohttp import web

from wire.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType

ACCEPTED = "gzip, deflate"
_IDENTITY = frozenset({"", "identity"})
_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


def content_coding(request: web.Request, *, decodable: bool = True) -> str | None:
    """The body's coding (lower case), None for none; a 415 for one the gateway cannot decode
    (`decodable=False`: for any)."""
    coding = request.headers.get("Content-Encoding", "").strip().lower()
    if coding in _IDENTITY:
        return None
    if decodable and coding in _WBITS:
        return coding
    accepted = ACCEPTED if decodable else "identity"
    error = UnsupportedMediaType(
        f"Unsupported Content-Encoding {coding!r}: {request.path} takes "
        + ("a body with no coding, gzip or deflate." if decodable else "a body with no coding."),
        code="unsupported_content_encoding",
    )
    error.headers["Accept-Encoding"] = accepted
    raise error


async def read_body(request: web.Request) -> bytes:
    """The whole body, decoded, at most `client_max_size` (max_request_bytes) bytes of it as
    sent (past it, aiohttp's own 413).

    Read from the stream, not with `request.read()`: aiohttp keeps what that returns on the
    request, and keeps a kept-alive connection's last request (and its response) until the
    next request arrives, so each idle connection held its last body (ten 31 MiB requests
    at once left 310 MiB held by idle connections). Read this way, the body goes with the
    handler's references to it.
    """
    coding = content_coding(request)
    limit = request.client_max_size
    length = request.content_length
    if length is not None and length > limit:
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=length)
    body = bytearray()
    async for chunk in request.content.iter_any():
        body += chunk
        if len(body) > limit:
            raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=len(body))
    if coding is None:
        return bytes(body)
    return inflate(body, coding, limit)


def inflate(data: bytes | bytearray, coding: str, limit: int) -> bytes:
    """`data` inflated, at most `limit` bytes of it; gzip members one after another are read
    as one body (RFC 1952)."""
    wbits = _WBITS[coding]
    if coding == "deflate" and data[:1] and data[0] & 0x0F != zlib.DEFLATED:
        wbits = -zlib.MAX_WBITS  # raw deflate, without zlib's header
    out = bytearray()
    rest = data
    while True:
        inflater = zlib.decompressobj(wbits)
        try:
            out += inflater.decompress(rest, limit + 1 - len(out))
        except zlib.error:
            raise _undecodable(coding) from None
        if len(out) > limit:
            raise PayloadTooLarge(
                f"The request body inflates to more than the limit of {limit} bytes."
            )
        if not inflater.eof:
            raise _undecodable(coding)  # cut short
        rest = inflater.unused_data
        if not rest or wbits != _WBITS["gzip"]:
            break
    if rest.strip(b"\x00"):
        raise _undecodable(coding)  # bytes after the end of the compressed data
    return bytes(out)


def _undecodable(coding: str) -> BadRequest:
    return BadRequest(
        f"The request body is not valid {coding} data (its Content-Encoding).",
        code="invalid_content_encoding",
    )
