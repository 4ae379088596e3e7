"""Where a read writes: memory, a file object, a file the clerk opened, or a stream.

Every sink writes in order and can be *reset* (everything written so far discarded) when a
read must start over: after a checksum mismatch, or when the object changed mid-read. A
sink whose bytes already went onward (a stream whose reader took a chunk, a pipe) cannot
reset and raises :class:`CannotRestart`, and the read raises its error instead.

Local I/O errors of a sink (disk full, read-only file, permission) are raised as
:class:`~object_clerk.LocalIOError`, which is never retried.
"""

from __future__ import annotations

import errno
import io
import os
import queue
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import IO, Protocol, runtime_checkable

from object_clerk.errors import local_io

__all__ = [
    "BytesSink",
    "CannotRestart",
    "DiscardSink",
    "DiskFileSink",
    "FileSink",
    "IOContext",
    "PositionalSink",
    "Sink",
    "StreamSink",
]


class Sink(Protocol):
    """Where a read writes, in order. ``reset`` discards everything written so far; a sink
    that cannot (its bytes went onward) raises :class:`CannotRestart`. ``presize`` is told
    the object's size once it is known. A sink that also has ``write_at(offset, data)``,
    safe from several threads, lets parallel workers write each chunk where it belongs."""

    def write(self, data: bytes | bytearray | memoryview) -> object: ...

    def reset(self) -> None: ...

    def presize(self, size: int) -> None: ...


@runtime_checkable
class PositionalSink(Sink, Protocol):
    """A sink whose ``write_at(offset, data)`` writes each chunk where it belongs, safe from
    several threads at once for ranges that do not overlap: parallel reads need one."""

    def write_at(self, offset: int, data: bytes | bytearray | memoryview) -> None: ...


class CannotRestart(Exception):
    """Raised by a sink asked to reset after it delivered bytes onward. Not an
    ObjectClerkError, so no retry loop catches it; the read raises ``error``, the reason it
    had to start over, instead."""

    error: BaseException | None = None


@dataclass(frozen=True)
class IOContext:
    """What a sink's LocalIOError names: the operation, the object and the local file."""

    operation: str
    bucket: str | None = None
    key: str | None = None
    path: str | None = None

    def guard(self) -> AbstractContextManager[None]:
        return local_io(self.operation, self.bucket, self.key, self.path)


class BytesSink:
    """Collects the bytes in memory (``get_object``).

    Once the size is known the buffer is allocated whole, and every write lands in place
    through a view of it: no growth, no copy when the bytes are handed over, and parallel
    parts write their own ranges without a lock (the ranges never overlap).
    """

    def __init__(self) -> None:
        self._buffer = io.BytesIO()
        self._view: memoryview | None = None
        self._end = 0
        self._lock = threading.Lock()

    def presize(self, size: int) -> None:
        self._release()
        self._buffer = io.BytesIO()
        self._end = 0
        if size:
            self._buffer.seek(size - 1)
            self._buffer.write(b"\0")
            self._view = self._buffer.getbuffer()

    def write(self, data: bytes | bytearray | memoryview) -> object:
        self.write_at(self._end, data)
        return len(data)

    def write_at(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        end = offset + len(data)
        view = self._view
        if view is not None and end <= len(view):
            view[offset:end] = data
        else:  # more than the size announced: grow, as a plain BytesIO would
            self._release()
            self._buffer.seek(offset)
            self._buffer.write(data)
        with self._lock:
            self._end = max(self._end, end)

    def reset(self) -> None:
        with self._lock:
            self._end = 0

    def getvalue(self) -> bytes:
        # No copy: BytesIO hands over its buffer when nothing else holds a view of it.
        self._release()
        if self._buffer.seek(0, io.SEEK_END) != self._end:
            self._buffer.truncate(self._end)
        return self._buffer.getvalue()

    def _release(self) -> None:
        if self._view is not None:
            self._view.release()
            self._view = None


class DiscardSink:
    """Keeps nothing: a read that only proves the bytes (a scrub)."""

    def presize(self, size: int) -> None:
        pass

    def write(self, data: bytes | bytearray | memoryview) -> object:
        return len(data)

    def write_at(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        pass

    def reset(self) -> None:
        pass


class FileSink:
    """Writes into the caller's binary file object from its current position, in order."""

    def __init__(self, handle: IO[bytes], context: IOContext) -> None:
        self._handle = handle
        self._context = context
        self._written = 0
        try:
            self._start: int | None = handle.tell() if handle.seekable() else None
        except (OSError, ValueError):
            self._start = None

    def presize(self, size: int) -> None:
        pass

    def write(self, data: bytes | bytearray | memoryview) -> object:
        view = memoryview(data).cast("B")
        with self._context.guard():
            while view:
                # A raw (unbuffered) file may take fewer bytes than given, or none (None)
                # when it would block: loop until all are written, never drop the rest.
                written = self._handle.write(view)
                if not written:
                    raise OSError(errno.EAGAIN, "the file object accepted no bytes")
                view = view[written:]
        self._written += len(data)
        return len(data)

    def reset(self) -> None:
        if not self._written:
            return
        if self._start is None:
            raise CannotRestart("the file is not seekable and bytes were already written")
        with self._context.guard():
            self._handle.seek(self._start)
            self._handle.truncate()
        self._written = 0


class DiskFileSink:
    """A file the clerk opened itself (``download_object`` to a path): parallel workers
    write with ``os.pwrite`` at each chunk's offset."""

    def __init__(self, fd: int, context: IOContext) -> None:
        self._fd = fd
        self._context = context
        self._end = 0
        self._lock = threading.Lock()

    def presize(self, size: int) -> None:
        pass

    def write(self, data: bytes | bytearray | memoryview) -> object:
        self.write_at(self._end, data)
        return len(data)

    def write_at(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data)
        with self._context.guard():
            while view:
                written = os.pwrite(self._fd, view, offset)
                view, offset = view[written:], offset + written
        with self._lock:
            self._end = max(self._end, offset)

    def reset(self) -> None:
        with self._context.guard():
            os.ftruncate(self._fd, 0)
        with self._lock:
            self._end = 0


class StreamSink:
    """Hands the bytes to a consumer thread through a bounded queue (``iter_object``).

    Invariant: a chunk reaches the consumer only if it belongs to the current *generation*,
    and "deliver this chunk" and "may the read still restart?" are decided under the same
    lock. So :meth:`reset` either finds that nothing was delivered (then it starts a new
    generation, and every chunk written before it is dropped, including one the consumer
    already took off the queue but had not yet delivered), or raises :class:`CannotRestart`.
    Either way the consumer never sees bytes from two reads.
    """

    _DONE = object()

    def __init__(self, max_items: int, chunk: int) -> None:
        self._queue: queue.Queue[tuple[int, object]] = queue.Queue(max_items)
        self._chunk = chunk
        self._lock = threading.Lock()
        self._generation = 0
        self._delivered = False
        self.closed = threading.Event()

    def presize(self, size: int) -> None:
        pass

    def write(self, data: bytes | bytearray | memoryview) -> object:
        if isinstance(data, bytes) and len(data) <= self._chunk:
            self._put(data)  # immutable already: handed over as it is, not copied
            return len(data)
        view = memoryview(data)
        for start in range(0, len(view), self._chunk):
            self._put(bytes(view[start : start + self._chunk]))
        return len(data)

    def reset(self) -> None:
        with self._lock:
            if self._delivered:
                raise CannotRestart("bytes were already handed to the reader")
            self._generation += 1
        while True:  # free the queue's room; stale chunks left in it are dropped anyway
            try:
                self._queue.get_nowait()
            except queue.Empty:
                return

    def finish(self, error: BaseException | None) -> None:
        self._put(error if error is not None else self._DONE)

    def _put(self, item: object) -> None:
        entry = (self._generation, item)
        while not self.closed.is_set():
            try:
                self._queue.put(entry, timeout=0.1)
                return
            except queue.Full:
                continue
        raise CannotRestart("the reader stopped reading")

    def __iter__(self) -> Iterator[bytes]:
        while True:
            generation, item = self._queue.get()
            with self._lock:
                if generation != self._generation:
                    continue  # written before a reset: never delivered
                if item is self._DONE:
                    return
                if isinstance(item, BaseException):
                    raise item
                assert isinstance(item, bytes)
                self._delivered = True
            yield item
