"""OpenAI's chat stream, normalised: relayed as bytes, but for its finish and usage.

Each event is probed with a small typed msgspec decoder, and only the few that carry
`finish_reason`, `usage` or an error are parsed and rewritten, so that whatever the upstream
does, content comes in the chunks before the last and `finish_reason` and `usage` only in the
last chunk before `data: [DONE]`. The OpenAI-compatible providers' chat clients get their
upstream's bytes through it (`providers.openai`).
"""

from __future__ import annotations

import re
from typing import Any

import msgspec
import orjson

from formats.chat.from_chat import DONE
from formats.translator import StreamEnd
from wire.errors import UpstreamProtocolError, upstream_error_from_body
from wire.jsondepth import too_deep
from wire.operations import Operation
from wire.sse import Comment, Event, SSEDecoder, SSEProtocolError, encode, encode_data
from wire.usage import Usage, from_openai


class _ChoiceProbe(msgspec.Struct, gc=False):
    finish_reason: str | None = None


class _ChunkProbe(msgspec.Struct, gc=False):
    """Only what decides whether a chunk may pass untouched; msgspec skips the rest."""

    choices: list[_ChoiceProbe] | None = None  # some servers send null in a usage chunk
    usage: Any = None
    error: Any = None


_decode_probe = msgspec.json.Decoder(_ChunkProbe).decode
# msgspec recurses into what it skips: an event nested ~1,000 deep is a RecursionError.
_UNREADABLE = (msgspec.DecodeError, RecursionError)


def _passes(probe: _ChunkProbe) -> bool:
    if probe.usage is not None or probe.error is not None:
        return False
    for choice in probe.choices or ():  # noqa: SIM110 - no generator on the per-chunk path
        if choice.finish_reason is not None:
            return False
    return True


_HOLD_LIMIT = 1024 * 1024  # past this, the decoder (and its event-size bound) takes over


# Whole LF-only `data: {...}` blocks, one line each (JSON holds no raw newline, so a block's
# line ends at its first LF) that close their object.
_PLAIN_BLOCKS = re.compile(rb"(?:data: \{[^\n]*\}\n\n)*")
# What makes a chunk one to change: a finish_reason or a usage that is not null, or an error
# key, however a serialiser spaces them. A quoted name before a colon is a key: JSON escapes
# every quote inside a string, and a string value is never followed by a colon. (One regex
# search: as fast as the three `find`s it replaced, measured on a 100-token read.)
_TO_CHANGE = re.compile(rb'"(?:finish_reason"\s*:\s*"|usage"\s*:\s*\{|error"\s*:)')
_DEEP_RUN = b"[" * 32  # nesting no chat chunk has: the decoder, which bounds depth, reads it


def _plain_prefix(data: bytes) -> int:
    """Where the leading run of whole, plain `data: {...}` blocks of LF-only `data` ends.

    A block is plain when it is one `data: ` line holding an object with no finish_reason,
    usage or error to change: one regex match and one search over the whole read, in C, and
    no JSON decoded (issue 18: a plain content chunk is not validated further; an event that
    is not a JSON object is still caught). Measured on a 100-token read (25 KB): 35 us, where
    decoding each event took 70 us, a fifth of the gateway's CPU per request at 0 ms.
    """
    if _DEEP_RUN in data:
        return 0
    end = _PLAIN_BLOCKS.match(data).end()  # type: ignore[union-attr]  # `*` always matches
    if not end:
        return 0
    found = _TO_CHANGE.search(data, 0, end)
    if found is None:
        return end
    boundary = data.rfind(b"\n\n", 0, found.start())  # the end of the block before that one
    return boundary + 2 if boundary != -1 else 0


def _is_plain(item: Event | Comment) -> bool:
    """Whether an item may go to the client as the upstream sent it (per chunk: keep lean)."""
    if type(item) is not Event:
        return True
    data = item.data
    if data == "[DONE]":
        return False
    try:
        return _passes(_decode_probe(data))
    except _UNREADABLE:
        return False


class ChunkNormaliser(StreamEnd):
    """One stream's state: holds back the finish and usage until `[DONE]`, then sends them as
    one last chunk. Everything else passes as the upstream's own bytes."""

    def __init__(self, operation: Operation, provider: str) -> None:
        super().__init__(provider)
        self._chat = operation is Operation.CHAT
        self._decoder = SSEDecoder()
        # The unfinished last block of an LF-only read, not yet given to the decoder: the
        # decoder only ever sees whole blocks, so every block boundary is one in the bytes.
        self._held: list[bytes] = []
        self._held_size = 0
        self._template: dict[str, Any] | None = None  # id, model, created, ... for the last chunk
        self._finishes: dict[int, dict[str, Any]] = {}  # choice index -> its final choice
        self._usage: Any = None

    def feed(self, data: bytes) -> bytes:
        if self._held:
            if b"\n\n" not in data and not (data[:1] == b"\n" and self._held[-1][-1:] == b"\n"):
                # Still inside the held block: keep the pieces, join them once it ends.
                self._held.append(data)
                self._held_size += len(data)
                if self._held_size <= _HOLD_LIMIT:
                    return b""
                data = b""
            data = b"".join((*self._held, data))
            self._held = []
            self._held_size = 0
        if b"\r" in data or self._decoder.pending or len(data) > _HOLD_LIMIT:
            return self._decode(data)  # the general path: any line ending, any split
        # LF-only bytes at a block boundary: the leading run of plain `data:` blocks goes out
        # as the upstream's bytes without building a single event.
        plain_end = _plain_prefix(data)
        if plain_end == len(data):
            return data
        last = data.rfind(b"\n\n", plain_end) + 2
        if last < plain_end + 2:  # no whole block after the plain run: wait for the rest
            self._hold(data[plain_end:])
            return data[:plain_end]
        self._hold(data[last:])
        return data[:plain_end] + self._decode(data[plain_end:last])

    def _hold(self, rest: bytes) -> None:
        if rest:
            self._held.append(rest)
            self._held_size = len(rest)

    def _decode(self, data: bytes) -> bytes:
        try:
            items = self._decoder.feed(data)
        except SSEProtocolError as exc:
            return self.error_event(UpstreamProtocolError(str(exc)))
        if self._decoder.aligned and all(map(_is_plain, items)):
            return data  # the upstream's bytes, unchanged
        if not items:
            return b""
        out = []
        for item in items:
            out.append(self._render(item))
            if self.finished:
                break
        return b"".join(out)

    def end(self) -> bytes:
        if self._held and not self.finished:
            held = b"".join(self._held)
            self._held = []
            out = self._decode(held)  # an unfinished block: the decoder keeps it pending
            if self.finished:
                return out
        if self.finished:
            return b""
        if self._decoder.pending:
            return self.error_event(
                UpstreamProtocolError("The upstream closed the stream in the middle of an event.")
            )
        if self._finishes:  # some servers never send [DONE]; the stream did finish
            return self._last_chunk()
        return self.error_event(
            UpstreamProtocolError("The upstream closed the stream before it finished.")
        )

    def _render(self, item: Event | Comment) -> bytes:
        if isinstance(item, Comment):
            return encode(item)
        data = item.data
        if data == "[DONE]":
            return self._last_chunk()
        try:
            probe = _decode_probe(data)
        except msgspec.ValidationError:
            if data.lstrip().startswith("{"):  # valid JSON of an unusual shape: not ours to fix
                return self.nested_too_deep() if too_deep(data.encode()) else encode(item)
            return self._malformed(data)
        except msgspec.DecodeError:
            return self._malformed(data)
        except RecursionError:
            return self.nested_too_deep()
        if probe.error is not None:
            return self.error_event(upstream_error_from_body(502, data.encode(), self.provider))
        if _passes(probe):
            return encode(item)
        if too_deep(data.encode()):  # parsed and written again below: bounded first
            return self.nested_too_deep()
        return self._hold_back(orjson.loads(data))

    def _malformed(self, data: str) -> bytes:
        return self.error_event(
            UpstreamProtocolError(f"The upstream sent a malformed event: {data[:200]!r}")
        )

    def _hold_back(self, chunk: dict[str, Any]) -> bytes:
        """Keep this chunk's finish_reason and usage for the last chunk; send its content now."""
        if chunk.get("usage") is not None:
            self._usage = chunk["usage"]
        if self._template is None:
            self._template = {k: v for k, v in chunk.items() if k not in ("choices", "usage")}
        choices: list[dict[str, Any]] = chunk.get("choices") or []
        has_content = False
        for choice in choices:
            has_content = has_content or self._has_content(choice)
            if choice.get("finish_reason") is not None:
                self._finishes[choice.get("index", 0)] = self._final_choice(choice)
                choice["finish_reason"] = None
        if not has_content:
            return b""
        if "usage" in chunk:
            chunk["usage"] = None
        return encode_data(orjson.dumps(chunk))

    def _has_content(self, choice: dict[str, Any]) -> bool:
        if self._chat:
            delta = choice.get("delta") or {}
            return any(value for key, value in delta.items() if key != "role")
        return bool(choice.get("text")) or choice.get("logprobs") is not None

    def _final_choice(self, choice: dict[str, Any]) -> dict[str, Any]:
        final = dict(choice)
        final["logprobs"] = None  # they belong to the content, sent before
        if self._chat:
            final["delta"] = {}
        else:
            final["text"] = ""
        return final

    @property
    def usage(self) -> Usage | None:
        """The usage the upstream reported, read once it is asked for (its object goes to the
        client as it came)."""
        return from_openai(self._usage) if isinstance(self._usage, dict) else None

    @property
    def finish_reasons(self) -> tuple[str, ...]:
        """The finish_reason of each choice, in their order, as held for the last chunk."""
        finishes = self._finishes
        return tuple(str(finishes[index]["finish_reason"]) for index in sorted(finishes))

    def _last_chunk(self) -> bytes:
        self.finished = True
        if self._template is None:
            return DONE  # the upstream gave neither finish_reason nor usage: nothing to add
        chunk = dict(self._template)
        chunk["choices"] = [self._finishes[index] for index in sorted(self._finishes)]
        chunk["usage"] = self._usage
        return encode_data(orjson.dumps(chunk)) + DONE
