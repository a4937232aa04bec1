"""Receiving one uploaded image: a streamed multipart body, a size cap, a format check.

The body is parsed while it arrives (python-multipart's streaming parser) and the file part
is written into a folder the caller owns (a :class:`tempfile.TemporaryDirectory`), so an
upload is never held whole in memory and never lands anywhere else. The cap is checked
against ``Content-Length`` before anything is read and against the bytes counted as they
arrive, so a body that lies about its length, or has none, is cut off at the cap too. The
whole body must arrive within a time limit (408 after it), so a stalled or trickling upload
cannot hold the server's resources (uvicorn has timeouts for idle connections, not for bodies).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import anyio
from python_multipart import MultipartParser
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import parse_options_header

from dermseg.errors import DermsegError

#: Form field that carries the image.
FIELD = "file"

#: Room allowed for the multipart framing around the file (boundaries, part headers).
FRAMING_BYTES = 64 * 1024

#: Leading bytes of the image formats dermseg reads, and the name shown for each.
_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)
ACCEPTED_FORMATS = "JPEG, PNG, TIFF, BMP or WebP"

_ISIC_ID = re.compile(r"ISIC_\d{7}")


class UploadError(DermsegError):
    """An upload the server refuses; ``status`` is the HTTP status to answer with.

    Args:
        message: what is wrong, in a sentence a person can act on.
        status: 400 (malformed or corrupt), 408 (too slow), 413 (too large) or 415 (not an image).
    """

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Upload:
    """An uploaded image file, written inside the caller's temporary folder.

    Attributes:
        path: where its bytes are.
        filename: the name the browser gave (for naming the results only, never as a path).
        size: bytes.
        format: the format its first bytes announce (``JPEG``, ``PNG``, ...).
    """

    path: Path
    filename: str
    size: int
    format: str


def sniff_format(head: bytes) -> str | None:
    """The image format announced by a file's first bytes, or ``None`` when it is not one we read."""
    if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP"
    return next((name for magic, name in _SIGNATURES if head.startswith(magic)), None)


def result_stem(filename: str) -> str:
    """The ``<id>`` of ``<id>_attribute_<name>.png`` for an uploaded file name.

    ``ISIC_0012345`` when the name holds an ISIC id, else the name's stem with everything but
    letters, digits, ``-`` and ``_`` replaced (at most 80 characters; ``image`` when nothing is left).
    """
    base = re.split(r"[\\/]", filename)[-1]
    match = _ISIC_ID.search(base)
    if match:
        return match.group(0)
    stem = base.rsplit(".", 1)[0] if "." in base.lstrip(".") else base
    clean = re.sub(r"[^A-Za-z0-9_-]+", "_", stem).strip("_-")[:80]
    return clean or "image"


def megabytes(n: int) -> str:
    """``n`` bytes as a short MB figure for messages (``50 MB``, ``0.5 MB``)."""
    return f"{n / 1_000_000:.3g} MB"


def too_large(max_bytes: int) -> UploadError:
    return UploadError(f"The file is larger than the upload limit of {megabytes(max_bytes)}.", 413)


async def receive_upload(
    headers: dict[str, str],
    body: AsyncIterator[bytes],
    folder: Path,
    max_bytes: int,
    timeout: float | None = None,
) -> Upload:
    """Stream a ``multipart/form-data`` body into ``folder`` and check that its file is an image.

    Args:
        headers: the request headers (lower-case names).
        body: the request body in chunks as they arrive.
        folder: an existing private temporary folder; the file is written as ``folder/upload``.
        max_bytes: the largest file accepted.
        timeout: seconds the whole body may take to arrive (``None``: no limit).

    Returns:
        The upload (its format sniffed from its first bytes, not from its name or claimed type).

    Raises:
        UploadError: 413 above ``max_bytes``; 415 not an image; 408 the body took longer than
            ``timeout``; 400 no file, empty, or malformed.
    """
    ctype, params = parse_options_header(headers.get("content-type", ""))
    if ctype != b"multipart/form-data" or b"boundary" not in params:
        raise UploadError(f"Send the image as multipart/form-data in a field named {FIELD!r}.", 400)
    declared = headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes + FRAMING_BYTES:
        raise too_large(max_bytes)  # refused before a byte of the body is read

    target = folder / "upload"
    state = _PartState()
    with open(target, "wb") as out:
        state.out = out
        parser = MultipartParser(params[b"boundary"], callbacks=state.callbacks())
        received = 0
        try:
            with anyio.fail_after(timeout):
                async for chunk in body:
                    received += len(chunk)
                    if received > max_bytes + FRAMING_BYTES:
                        raise too_large(max_bytes)
                    parser.write(chunk)
                    if state.written > max_bytes:
                        raise too_large(max_bytes)
            parser.finalize()
        except MultipartParseError:
            raise UploadError("The upload is not a well-formed multipart/form-data body.", 400) from None
        except TimeoutError:
            raise UploadError(
                f"The upload did not arrive within {timeout:g} s (--body-timeout).", 408
            ) from None
    if state.filename is None:
        raise UploadError(f"No file in the upload (expected a form field named {FIELD!r}).", 400)
    if state.written == 0:
        raise UploadError("The file is empty (0 bytes).", 400)
    fmt = sniff_format(state.head)
    if fmt is None:
        raise UploadError(
            f"{state.filename or 'The file'} is not an image dermseg reads; expected {ACCEPTED_FORMATS}.", 415
        )
    return Upload(path=target, filename=state.filename, size=state.written, format=fmt)


class _PartState:
    """Callbacks of the streaming parser: keep the ``file`` part's bytes, ignore other fields."""

    def __init__(self) -> None:
        self.out = None
        self.filename: str | None = None
        self.written = 0
        self.head = b""
        self._field = b""
        self._value = b""
        self._headers: dict[bytes, bytes] = {}
        self._in_file = False

    def callbacks(self) -> dict:
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": self._header_field,
            "on_header_value": self._header_value,
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
        }

    def _part_begin(self) -> None:
        self._headers, self._in_file = {}, False

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def _header_end(self) -> None:
        self._headers[self._field.lower()] = self._value
        self._field, self._value = b"", b""

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        # Only the first part named `file` is kept; a second one is ignored.
        if options.get(b"name") == FIELD.encode() and self.filename is None:
            self._in_file = True
            self.filename = options.get(b"filename", b"").decode("utf-8", "replace")

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if not self._in_file:
            return
        piece = data[start:end]
        if len(self.head) < 16:
            self.head += piece[: 16 - len(self.head)]
        self.out.write(piece)
        self.written += len(piece)
