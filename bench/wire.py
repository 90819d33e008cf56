"""Just enough HTTP/1.1 for the mock upstream and the load generator.

Both share a core on a 2-core machine and must cost far less per request than the proxy they
measure; aiohttp's client and server cost several times more per request than these few
bytes operations (see bench/README.md), which would make them the bottleneck. So they speak
HTTP/1.1 over plain asyncio protocols with this module: keep-alive, Content-Length and
chunked bodies, nothing else (no pipelining beyond one request at a time per connection, no
upgrades, no compression). The proxies under test use their own full HTTP stacks.
"""

from __future__ import annotations

from typing import NamedTuple

MAX_HEAD = 64 * 1024
CRLF = b"\r\n"
END_HEAD = b"\r\n\r\n"


class ProtocolError(Exception):
    """The peer sent something this minimal HTTP/1.1 does not accept."""


class Head(NamedTuple):
    first: list[bytes]  # request: method, target, version; response: version, status, reason
    headers: dict[bytes, bytes]  # lower-cased names; a repeated header keeps its last value

    @property
    def chunked(self) -> bool:
        return b"chunked" in self.headers.get(b"transfer-encoding", b"").lower()

    @property
    def length(self) -> int | None:
        value = self.headers.get(b"content-length")
        return None if value is None else int(value)

    @property
    def close(self) -> bool:
        return self.headers.get(b"connection", b"").lower() == b"close"


def parse_head(buf: bytes | bytearray, end: int) -> Head:
    """Parse the head that ends at `end` (the index of the blank line's CRLFCRLF)."""
    lines = bytes(buf[:end]).split(CRLF)
    first = lines[0].split(b" ", 2)
    if len(first) < 2:
        raise ProtocolError(f"bad first line: {lines[0][:80]!r}")
    headers: dict[bytes, bytes] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep:
            raise ProtocolError(f"bad header line: {line[:80]!r}")
        headers[name.strip().lower()] = value.strip()
    return Head(first, headers)


def chunk(data: bytes) -> bytes:
    """One chunk of a chunked body (empty data would end the body, so callers skip it)."""
    return b"%x\r\n%b\r\n" % (len(data), data)


LAST_CHUNK = b"0\r\n\r\n"

_SIZE, _DATA, _DATA_END, _TRAILER, _DONE = range(5)


class ChunkedDecoder:
    """Incremental decoder of a chunked body: `feed(bytes)` returns the body pieces it frees.

    After the last chunk, `done` is True and `rest` holds bytes that followed the body.
    """

    __slots__ = ("_need", "_pending", "_state", "done", "rest")

    def __init__(self) -> None:
        self._state = _SIZE
        self._need = 0
        self._pending = b""  # an incomplete size line or CRLF, kept for the next feed
        self.done = False
        self.rest = b""

    def feed(self, data: bytes) -> list[bytes]:
        if self._pending:
            data = self._pending + data
            self._pending = b""
        out: list[bytes] = []
        pos, end = 0, len(data)
        while pos < end:
            state = self._state
            if state == _DATA:
                take = min(self._need, end - pos)
                out.append(data[pos : pos + take])
                pos += take
                self._need -= take
                if not self._need:
                    self._state = _DATA_END
            elif state in (_SIZE, _TRAILER):
                eol = data.find(CRLF, pos)
                if eol < 0:
                    if end - pos > MAX_HEAD:
                        raise ProtocolError("chunk size line too long")
                    self._pending = data[pos:]
                    return out
                line = data[pos:eol]
                pos = eol + 2
                if state == _TRAILER:
                    if not line:
                        self._state = _DONE
                        self.done = True
                        self.rest = data[pos:]
                        return out
                    continue
                try:
                    size = int(line.split(b";", 1)[0], 16)
                except ValueError:
                    raise ProtocolError(f"bad chunk size: {line[:40]!r}") from None
                if size:
                    self._state, self._need = _DATA, size
                else:
                    self._state = _TRAILER
            elif state == _DATA_END:
                if end - pos < 2:
                    self._pending = data[pos:]
                    return out
                if data[pos : pos + 2] != CRLF:
                    raise ProtocolError("chunk not followed by CRLF")
                pos += 2
                self._state = _SIZE
            else:  # fed after the end: it all belongs to what follows
                self.rest += data[pos:]
                return out
        return out
