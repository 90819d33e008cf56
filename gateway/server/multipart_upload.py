"""Multipart uploads (audio transcription and translation), streamed to the upstream.

The form fields before the file are read (they are small and name the model); from the file
part on, the body is re-framed for the upstream part by part as the client sends it, so no more
than one chunk of the file is held at a time. Only if the file comes before `model` (no common
client does that) is it held until the model is known.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import IO, TypeVar

from aiohttp import BodyPartReader, MultipartReader, web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError

from gateway.server.bodies import content_coding
from wire.errors import BadRequest, PayloadTooLarge

_FIELD_LIMIT = 64 * 1024  # a form field is a name, a number or a prompt: never megabytes
# A transcription form has about ten fields; Starlette and Werkzeug allow 1,000 for any form.
_MAX_FIELDS = 100
_CHUNK = 64 * 1024
_SPOOL_IN_MEMORY = 1024 * 1024  # a spooled upload past this goes to a temporary file

T = TypeVar("T")


class UploadTooLarge(PayloadTooLarge):
    pass


class MultipartUpload:
    """A client's multipart form: the fields read so far, and the file still to stream."""

    def __init__(self, reader: MultipartReader, limit: int, fields_limit: int) -> None:
        self.fields: list[tuple[str, str]] = []
        self._fields_limit = fields_limit  # the fields' total size: max_request_bytes
        self._fields_size = 0
        self.file_name = "audio"
        self.file_type = "application/octet-stream"
        self._reader = reader
        self._limit = limit
        self._file: BodyPartReader | None = None
        self._held: list[bytes] | None = None  # the file, when it came before the model
        self._spool: IO[bytes] | None = None  # the whole file, when it may be sent twice
        self._size = 0
        self._boundary = f"gateway-{os.urandom(12).hex()}"
        # Called for each chunk sent on: an upload in progress is not upstream silence.
        self.on_progress: Callable[[], None] = _nothing

    @property
    def content_type(self) -> str:
        return f"multipart/form-data; boundary={self._boundary}"

    def value(self, name: str) -> str | None:
        return next((value for key, value in self.fields if key == name), None)

    async def read_head(self) -> None:
        """Read the fields up to the file part (and past it, holding the file, if no model yet)."""
        while (part := await self._next_part()) is not None:
            if part.filename is not None or part.name == "file":
                self.file_name = part.filename or "audio"
                self.file_type = part.headers.get("Content-Type", self.file_type)
                if self.value("model") is not None:
                    self._file = part
                    return
                self._held = [chunk async for chunk in self._file_chunks(part)]
            else:
                await self._read_field(part)
        if self._file is None and self._held is None:
            raise BadRequest(
                "Missing required parameter: 'file'.",
                param="file",
                code="missing_required_parameter",
            )

    async def spool(self) -> None:
        """Read the rest of the upload now, so that `body` can be sent more than once (a
        request with several candidates): the file in memory up to 1 MiB, then on disk."""
        if self._spool is not None:
            return
        # Closed by `close()` when the request ends.
        self._spool = tempfile.SpooledTemporaryFile(max_size=_SPOOL_IN_MEMORY)  # noqa: SIM115
        if self._held is not None:
            for chunk in self._held:
                self._spool.write(chunk)
            self._held = None
        elif self._file is not None:
            async for chunk in self._file_chunks(self._file):
                self._spool.write(chunk)
            self._file = None
        while (part := await self._next_part()) is not None:  # after the file
            if part.filename is None:
                await self._read_field(part)

    def close(self) -> None:
        if self._spool is not None:
            self._spool.close()

    async def body(self, model: str) -> AsyncIterator[bytes]:
        """The upstream's multipart body, its `model` field set to the upstream's model name."""
        for name, value in self.fields:
            yield self._field(name, model if name == "model" else value)
        yield self._file_head()
        if self._spool is not None:
            self._spool.seek(0)
            while chunk := self._spool.read(_CHUNK):
                self.on_progress()
                yield chunk
            yield b"\r\n"
            yield f"--{self._boundary}--\r\n".encode()
            return
        if self._held is not None:
            for chunk in self._held:
                yield chunk
        elif self._file is not None:
            async for chunk in self._file_chunks(self._file):
                yield chunk
        yield b"\r\n"
        while (part := await self._next_part()) is not None:  # after the file
            if part.filename is None:
                name, value = await self._read_field(part)
                yield self._field(name, value)
        yield f"--{self._boundary}--\r\n".encode()

    async def _next_part(self) -> BodyPartReader | None:
        """The form's next part, its headers checked: they are copied into the upstream's
        form, so they must be text (UTF-8, no control characters)."""
        part = await _checked(self._reader.next())
        if part is None:
            return None
        if not isinstance(part, BodyPartReader):
            raise BadRequest("Nested multipart bodies are not supported.", param="file")
        for header in (part.name, part.filename, *part.headers.values()):
            if header is not None and not _is_text(header):
                raise BadRequest(
                    f"A part of the form has a header that is not UTF-8 text: {header!r}.",
                    param=part.name if part.name and _is_text(part.name) else None,
                    code="invalid_multipart_header",
                )
        return part

    async def _read_field(self, part: BodyPartReader) -> tuple[str, str]:
        """Read a form field into `fields`: its name and value. A second `model` is refused:
        the model was routed (and allowed to the key) by the first."""
        name = part.name or ""
        if len(self.fields) >= _MAX_FIELDS:
            raise BadRequest(f"The form has more than {_MAX_FIELDS} fields.", param=part.name)
        if name == "model" and self.value("model") is not None:
            raise BadRequest(
                "The form has more than one `model` field.",
                param="model",
                code="duplicate_parameter",
            )
        data = bytearray()
        while chunk := await _checked(part.read_chunk(_CHUNK)):
            data += chunk
            if len(data) > _FIELD_LIMIT:
                raise BadRequest(f"Form field {part.name!r} is too long.", param=part.name)
        self._fields_size += len(data)
        if self._fields_size > self._fields_limit:
            raise PayloadTooLarge(
                f"The form's fields are larger than the limit of {self._fields_limit} bytes."
            )
        try:
            value = data.decode(part.get_charset("utf-8"), "replace")
        except LookupError:  # a charset Python does not know
            raise BadRequest(f"Form field {name!r} names an unknown charset.", param=name) from None
        self.fields.append((name, value))
        return name, value

    async def _file_chunks(self, part: BodyPartReader) -> AsyncIterator[bytes]:
        while chunk := await _checked(part.read_chunk(_CHUNK)):
            self._size += len(chunk)
            if self._size > self._limit:
                raise UploadTooLarge(f"The uploaded file is larger than {self._limit} bytes.")
            self.on_progress()
            yield chunk

    def _field(self, name: str, value: str) -> bytes:
        return (
            f'--{self._boundary}\r\nContent-Disposition: form-data; name="{_quote(name)}"'
            f"\r\n\r\n{value}\r\n"
        ).encode()

    def _file_head(self) -> bytes:
        return (
            f'--{self._boundary}\r\nContent-Disposition: form-data; name="file"; '
            f'filename="{_quote(self.file_name)}"\r\nContent-Type: {self.file_type}\r\n\r\n'
        ).encode()


async def read_upload(
    request: web.Request, limit: int, fields_limit: int | None = None
) -> MultipartUpload:
    """Start reading a multipart upload; a body announced over `limit` bytes is a 413 at once.
    The form fields together may weigh `fields_limit` bytes (default: the request limit,
    max_request_bytes)."""
    if fields_limit is None:
        fields_limit = request.client_max_size
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"The upload is larger than the limit of {limit} bytes.")
    if not request.content_type.startswith("multipart/"):
        raise BadRequest("Expected a multipart/form-data upload with a `file` field.", param="file")
    content_coding(request, decodable=False)  # streamed as it comes: no coding to undo
    upload = MultipartUpload(await _checked(request.multipart()), limit, fields_limit)
    await upload.read_head()
    return upload


async def _checked(step: Awaitable[T]) -> T:
    """A step of aiohttp's multipart reader, its complaints about the body as a 400: they
    are the client's (a missing or wrong boundary, a cut body), never the upstream's."""
    try:
        return await step
    except ValueError as exc:
        raise BadRequest(_malformed(str(exc)), param="file") from None
    except (HttpProcessingError, RequestPayloadError):
        raise BadRequest(
            "The multipart body is malformed: a part's headers cannot be read.", param="file"
        ) from None


def _malformed(reason: str) -> str:
    if reason.startswith("boundary missed"):
        return "The multipart Content-Type has no boundary."
    if "starting boundary" in reason:
        return "The multipart body does not start with the boundary its Content-Type names."
    if "Reading after EOF" in reason or "EOF" in reason:
        return "The multipart body ends before its closing boundary."
    return "The multipart body is malformed (its boundary or a part's framing)."


def _nothing() -> None:
    pass


# Control characters (a tab is whitespace), and bytes that were not UTF-8: aiohttp keeps those
# as surrogates, which cannot be written again.
_NOT_TEXT = re.compile("[\x00-\x08\x0a-\x1f\x7f\ud800-\udfff]")


def _is_text(value: str) -> bool:
    return _NOT_TEXT.search(value) is None


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\r", "").replace("\n", "")
