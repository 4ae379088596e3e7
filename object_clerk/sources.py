"""What ``upload_object`` accepts, read exactly: bytes, paths, binary files and streams.

Reading starts at a file's current position, not at 0: botocore's own rewind seeks to 0,
which would resend the wrong bytes for a file handed in at an offset. The uploader reads each
part into memory once, so a retry resends those very bytes and never seeks at all.

Strategy for sources that can change under us: a path or a seekable file is *snapshotted*
(its size, and for a real file its modification time and inode) before the first byte is
read, and :meth:`Source.check_unchanged` compares again before the object is committed (the
single PutObject is sent, or CompleteMultipartUpload). Any change raises
:class:`~object_clerk.SourceChangedError`: the stored bytes would match no state of the file.
A pipe, socket or generator has no state to compare: what was read is what is stored.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from object_clerk.errors import (
    DataTypeError,
    InvalidRequestError,
    ObjectSaveException,
    SourceChangedError,
    local_io,
)

__all__ = ["Source", "open_source"]


@dataclass(frozen=True)
class _Snapshot:
    """A file's state before its first byte was read."""

    size: int  # bytes from the starting position to the end
    mtime_ns: int | None = None
    inode: tuple[int, int] | None = None  # (st_dev, st_ino)


class Source:
    """A body to upload: reads exactly ``n`` bytes at a time from bytes, a file or a stream."""

    def __init__(
        self,
        read: Callable[[int], bytes],
        size: int | None,
        *,
        context: dict[str, Any],
        name: str | None = None,
        observe: Callable[[], _Snapshot] | None = None,
    ) -> None:
        self._read = read
        self.size = size
        self._pushback = b""
        self._context = context
        self._name = name
        self._observe = observe
        self._snapshot = observe() if observe is not None else None
        if size is None and self._snapshot is not None:
            self.size = self._snapshot.size
        self.consumed = 0  # bytes handed out by read_exactly, pushback excluded

    def check_unchanged(self) -> None:
        """Raise SourceChangedError if the file differs from its snapshot, or if reading it
        did not give exactly the size it had: the bytes read match no state of the file."""
        if self._snapshot is None or self._observe is None:
            return
        now = self._observe()
        before = self._snapshot
        change = None
        if now.inode != before.inode:
            change = "it was replaced by another file"
        elif now.size != before.size:
            change = f"its size went from {before.size} to {now.size} bytes"
        elif self.consumed != before.size:
            change = f"{self.consumed} bytes could be read of the {before.size} it had"
        elif now.mtime_ns != before.mtime_ns:
            change = "it was modified"
        if change is not None:
            raise SourceChangedError(
                f"{self._name or 'the source'} changed while it was being uploaded ({change});"
                " the upload was abandoned and nothing was replaced",
                path=self._name,
                **self._context,
            )

    def unread(self, data: bytes) -> None:
        """Put ``data`` back in front of what the source has left."""
        self._pushback = data + self._pushback
        self.consumed -= len(data)

    def read_exactly(self, n: int) -> bytes:
        """Up to ``n`` bytes; fewer only at the end of the source."""
        chunks = [self._pushback] if self._pushback else []
        have = len(self._pushback)
        pushed = have
        self._pushback = b""
        while have < n:
            with local_io(path=self._name, **self._context):
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
        self.consumed += have - pushed
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def open_source(
    data: object, stack: ExitStack, *, bucket: str, key: str, size: int | None = None
) -> Source:
    """Validate ``data`` and return a reader over it. Files opened here close with ``stack``.

    Only the documented types are data: bytes-like objects, a ``str`` or ``os.PathLike``
    path, a binary file object, an iterator (a generator) or a list or tuple of bytes
    chunks. Anything else (a dict, a set, a number) is refused, so that it can never
    replace an object with nothing. ``size``: the bytes an iterator will give, when known.
    """
    context: dict[str, Any] = {"operation": "upload_object", "bucket": bucket, "key": key}
    if isinstance(data, (bytes, bytearray, memoryview)):
        return _memory_source(data, context)
    if isinstance(data, (str, os.PathLike)):
        return _path_source(Path(data), stack, context)
    if callable(getattr(data, "read", None)):
        return _file_source(data, context)
    if isinstance(data, (Iterator, list, tuple)):
        return Source(_iterator_reader(iter(data), context), size, context=context)
    raise DataTypeError(
        "data must be bytes, a path, a binary file object, or an iterator, list or tuple of"
        f" bytes chunks, not {type(data).__name__}",
        **context,
    )


def _memory_source(data: bytes | bytearray | memoryview, context: dict[str, Any]) -> Source:
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

    return Source(read_memory, len(view), context=context)


def _path_source(path: Path, stack: ExitStack, context: dict[str, Any]) -> Source:
    if not path.exists():
        raise ObjectSaveException(f"no such file: {path}", **context)
    if path.is_dir():
        raise ObjectSaveException(f"is a directory, not a file: {path}", **context)
    try:
        handle = stack.enter_context(path.open("rb"))
    except OSError as exc:
        raise ObjectSaveException(f"cannot open {path}: {exc.strerror or exc}", **context) from exc
    fd = handle.fileno()

    def observe() -> _Snapshot:
        with local_io(path=str(path), **context):
            opened = os.fstat(fd)
            try:
                named = os.stat(path)
            except FileNotFoundError:
                inode = None  # deleted (or renamed away): a change too
            else:
                inode = (named.st_dev, named.st_ino)
        return _Snapshot(opened.st_size, opened.st_mtime_ns, inode)

    return Source(handle.read, None, context=context, name=str(path), observe=observe)


def _file_source(data: Any, context: dict[str, Any]) -> Source:
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
    stream: IO[bytes] = data
    name = getattr(stream, "name", None)
    label = name if isinstance(name, str) else None
    size = _remaining_size(stream)
    if size is None:
        return Source(stream.read, None, context=context, name=label)
    start = stream.tell()

    def observe() -> _Snapshot:
        with local_io(path=label, **context):
            try:
                stat = os.fstat(stream.fileno())
            except (OSError, ValueError, AttributeError):  # in memory (BytesIO) or no fd
                return _Snapshot(max(0, _end_of(stream) - start))
        return _Snapshot(max(0, stat.st_size - start), stat.st_mtime_ns)

    return Source(stream.read, size, context=context, name=label, observe=observe)


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
        return max(0, _end_of(stream) - stream.tell())
    except (OSError, ValueError, AttributeError):
        return None


def _end_of(stream: IO[bytes]) -> int:
    """The stream's end offset; its position is left where it was."""
    position = stream.tell()
    end = stream.seek(0, io.SEEK_END)
    stream.seek(position)
    return end
