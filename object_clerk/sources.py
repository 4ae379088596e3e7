"""What ``upload_object`` accepts, read exactly: bytes, paths, binary files and streams.

Reading starts at a file's current position, not at 0: botocore's own rewind seeks to 0,
which would resend the wrong bytes for a file handed in at an offset. The uploader reads each
part into memory once, so a retry resends those very bytes and never seeks at all.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import IO, Any

from object_clerk.errors import (
    InvalidRequestError,
)

__all__ = ["Source", "open_source"]


class Source:
    """A body to upload: reads exactly ``n`` bytes at a time from bytes, a file or a stream."""

    def __init__(self, read: Callable[[int], bytes], size: int | None) -> None:
        self._read = read
        self.size = size
        self._pushback = b""

    def unread(self, data: bytes) -> None:
        """Put ``data`` back in front of what the source has left."""
        self._pushback = data + self._pushback

    def read_exactly(self, n: int) -> bytes:
        """Up to ``n`` bytes; fewer only at the end of the source."""
        chunks = [self._pushback] if self._pushback else []
        have = len(self._pushback)
        self._pushback = b""
        while have < n:
            chunk = self._read(n - have)
            if not chunk:
                break
            if not isinstance(chunk, (bytes, bytearray, memoryview)):
                raise InvalidRequestError(
                    f"the file object returned {type(chunk).__name__}, not bytes:"
                    " open it in binary mode ('rb')"
                )
            chunks.append(bytes(chunk))
            have += len(chunk)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def open_source(data: object, stack: ExitStack, *, bucket: str, key: str) -> Source:
    """Validate ``data`` and return a reader over it. Files opened here close with ``stack``."""
    context: dict[str, Any] = {"operation": "upload_object", "bucket": bucket, "key": key}
    if isinstance(data, (bytes, bytearray, memoryview)):
        view = memoryview(data)
        if not view.contiguous:  # a strided slice: cast() refuses it
            view = memoryview(view.tobytes())
        view = view.cast("B")
        position = 0

        def read_memory(n: int) -> bytes:
            nonlocal position
            chunk = view[position : position + n]
            position += len(chunk)
            return bytes(chunk)

        return Source(read_memory, len(view))
    if isinstance(data, (str, Path)):
        path = Path(data)
        if not path.exists():
            raise InvalidRequestError(f"no such file: {path}", **context)
        if path.is_dir():
            raise InvalidRequestError(f"is a directory, not a file: {path}", **context)
        handle = stack.enter_context(path.open("rb"))
        return Source(handle.read, os.fstat(handle.fileno()).st_size)
    if not callable(getattr(data, "read", None)) and isinstance(data, Iterable):
        return Source(_iterator_reader(iter(data), context), None)
    if data is None or not callable(getattr(data, "read", None)):
        raise InvalidRequestError(
            "data must be bytes, a path, a binary file object or an iterable of bytes,"
            f" not {type(data).__name__}",
            **context,
        )
    if getattr(data, "closed", False):
        raise InvalidRequestError("the file object is closed", **context)
    if isinstance(data, io.TextIOBase):
        raise InvalidRequestError(
            "the file object is in text mode: open it in binary mode ('rb')", **context
        )
    readable = getattr(data, "readable", None)
    if callable(readable) and not readable():
        # A file opened 'wb' or 'ab' would read as empty and overwrite the key with nothing.
        raise InvalidRequestError(
            "the file object is not readable: open it for reading ('rb')", **context
        )
    stream: IO[bytes] = data  # type: ignore[assignment]
    size = _remaining_size(stream)
    return Source(stream.read, size)


def _iterator_reader(chunks: Iterator[object], context: dict[str, Any]) -> Callable[[int], bytes]:
    """A read(n) over an iterator of bytes chunks (a generator, say): never more than ``n``
    bytes plus one chunk are held."""
    pending = bytearray()

    def read(n: int) -> bytes:
        while len(pending) < n:
            chunk = next(chunks, None)
            if chunk is None:
                break
            if not isinstance(chunk, (bytes, bytearray, memoryview)):
                raise InvalidRequestError(
                    f"the iterable yielded {type(chunk).__name__}, not bytes", **context
                )
            pending.extend(chunk)
        out = bytes(pending[:n])
        del pending[:n]
        return out

    return read


def _remaining_size(stream: IO[bytes]) -> int | None:
    """Bytes from the current position to the end, or None for a non-seekable stream.

    Reading starts at the current position, not at 0: botocore's own rewind seeks to 0, which
    would resend the wrong bytes for a stream handed in at an offset. Parts are read into
    memory once, so retries never seek at all.
    """
    try:
        if not stream.seekable():
            return None
        start = stream.tell()
        end = stream.seek(0, io.SEEK_END)
        stream.seek(start)
    except (OSError, ValueError, AttributeError):
        return None
    return max(0, end - start)
