"""Verified reads: into memory, into a file, or as a stream.

Strategy: the first GET of the whole object answers small objects in one request. Its body
is hashed while it arrives and compared with the ETag of that same response. A body cut
short is resumed with a ranged GET pinned by ``If-Match`` to that ETag, so a read never
mixes two versions; if the object changed, the read starts over on the new version.

A large multipart object whose part layout is known is read in parallel instead: part 1
keeps flowing on the first response while parts 2..N are ranged GETs aligned to the
object's own parts. Each worker hashes its part as it arrives (MD5 then runs on every core),
resumes its own part when cut, and hands the part over in order; the part digests combine
into the ETag. At most ``max_concurrency`` parts are in flight, so memory stays near
``max_concurrency x part size`` whatever the object's size.

Everything is written into a :class:`Sink`. When the bytes do not verify, the sink is reset
and the object read again, as often as the retry policy allows, unless the sink already
delivered bytes onward (a stream): then the error is raised to the reader.
"""

from __future__ import annotations

import hashlib
import io
import os
import queue
import tempfile
import threading
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol

from object_clerk.engine import Engine, ObjectLayout, TransferResult, require_etag
from object_clerk.errors import (
    ChecksumMismatchError,
    ConnectionFault,
    InvalidRequestError,
    ObjectClerkError,
    PreconditionFailedError,
    TransientError,
    UnverifiableObjectError,
)
from object_clerk.etag import EtagCalculator, PartLayout, multipart_etag
from object_clerk.retry import is_retryable

__all__ = [
    "BytesSink",
    "FileSink",
    "ObjectReader",
    "ReadResult",
    "Sink",
    "StreamSink",
    "download",
    "read",
    "stream",
]


class Sink(Protocol):
    """Where a read writes, in order. ``reset`` discards everything written so far; a sink
    that cannot (its bytes went onward) raises :class:`CannotRestart`. ``presize`` is told
    the object's size once it is known. A sink that also has ``write_at(offset, data)``,
    safe from several threads, lets parallel workers write each chunk where it belongs."""

    def write(self, data: bytes | bytearray | memoryview) -> object: ...

    def reset(self) -> None: ...

    def presize(self, size: int) -> None: ...


class CannotRestart(Exception):
    """Raised by a sink asked to reset after it delivered bytes onward. Not an
    ObjectClerkError, so no retry loop catches it; :func:`read` raises the error that
    caused the reset instead."""


class BytesSink:
    """Collects the bytes in memory (``get_object``)."""

    def __init__(self) -> None:
        self._buffer = io.BytesIO()
        self._lock = threading.Lock()

    def presize(self, size: int) -> None:
        # One allocation of the final size: writes then land in place instead of growing
        # (and copying) the buffer as they arrive.
        if size:
            with self._lock:
                position = self._buffer.tell()
                self._buffer.seek(size - 1)
                self._buffer.write(b"\0")
                self._buffer.seek(position)

    def write(self, data: bytes | bytearray | memoryview) -> object:
        with self._lock:
            return self._buffer.write(data)

    def write_at(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        with self._lock:
            self._buffer.seek(offset)
            self._buffer.write(data)

    def reset(self) -> None:
        with self._lock:
            self._buffer.seek(0)
            self._buffer.truncate()

    def getvalue(self) -> bytes:
        # No copy: BytesIO hands over its buffer when nothing else holds a view of it.
        return self._buffer.getvalue()


class FileSink:
    """Writes into a binary file object from its current position, in order."""

    def __init__(self, handle: IO[bytes]) -> None:
        self._handle = handle
        self._written = 0
        try:
            self._start: int | None = handle.tell() if handle.seekable() else None
        except (OSError, ValueError):
            self._start = None

    def presize(self, size: int) -> None:
        pass

    def write(self, data: bytes | bytearray | memoryview) -> object:
        self._written += len(data)
        return self._handle.write(data)

    def reset(self) -> None:
        if not self._written:
            return
        if self._start is None:
            raise CannotRestart("the file is not seekable and bytes were already written")
        self._handle.seek(self._start)
        self._handle.truncate()
        self._written = 0


class DiskFileSink:
    """A file this module opened itself (``download_object`` to a path): parallel workers
    write with ``os.pwrite`` at each chunk's offset."""

    def __init__(self, handle: IO[bytes]) -> None:
        self._handle = handle
        self._fd = handle.fileno()
        self._end = 0

    def presize(self, size: int) -> None:
        pass

    def write(self, data: bytes | bytearray | memoryview) -> object:
        self.write_at(self._end, data)
        return len(data)

    def write_at(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data)
        while view:
            written = os.pwrite(self._fd, view, offset)
            view, offset = view[written:], offset + written
        self._end = max(self._end, offset)

    def reset(self) -> None:
        os.ftruncate(self._fd, 0)
        self._end = 0


class StreamSink:
    """Hands the bytes to a consumer thread through a bounded queue (``iter_object``)."""

    _DONE = object()

    def __init__(self, max_items: int, chunk: int) -> None:
        self._queue: queue.Queue[object] = queue.Queue(max_items)
        self._chunk = chunk
        self._delivered = False
        self.closed = threading.Event()

    def presize(self, size: int) -> None:
        pass

    def write(self, data: bytes | bytearray | memoryview) -> object:
        view = memoryview(data)
        for start in range(0, len(view), self._chunk):
            self._put(bytes(view[start : start + self._chunk]))
        return len(data)

    def reset(self) -> None:
        if self._delivered:
            raise CannotRestart("bytes were already handed to the reader")
        while True:  # nothing was taken yet: drop what is queued
            try:
                self._queue.get_nowait()
            except queue.Empty:
                return

    def finish(self, error: BaseException | None) -> None:
        self._put(error if error is not None else self._DONE)

    def _put(self, item: object) -> None:
        while not self.closed.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue
        raise CannotRestart("the reader stopped reading")

    def __iter__(self) -> Iterator[bytes]:
        while True:
            item = self._queue.get()
            if item is self._DONE:
                return
            if isinstance(item, BaseException):
                raise item
            self._delivered = True
            assert isinstance(item, bytes)
            yield item


@dataclass
class ReadResult:
    """What a read returned: the first response's metadata and how it was verified."""

    response: dict[str, Any]
    verification: str


def read(
    engine: Engine,
    bucket: str,
    key: str,
    sink: Sink,
    *,
    verify: bool,
    operation: str = "get_object",
) -> ReadResult:
    """Read an object into ``sink``, verified; see the module docstring."""
    state = _ReadState()

    first_chunk = max(engine.transfer.download_chunksize, 1)

    def get() -> tuple[dict[str, Any], int | None]:
        """One GET: the first asks for the first chunk only (a small object arrives whole;
        a large one is not streamed to waste), the next ones continue, pinned by If-Match.
        Returns the response and the end of the range asked for (None: open-ended)."""
        params: dict[str, Any] = {"Bucket": bucket, "Key": key}
        end: int | None = None
        if state.etag is None:
            if not state.unranged:
                end = first_chunk - 1
                params["Range"] = f"bytes=0-{end}"
        else:
            params["IfMatch"] = state.etag
            if state.offset:
                params["Range"] = f"bytes={state.offset}-"
        try:
            return dict(engine.client.get_object(**params)), end
        except Exception as exc:
            if state.etag is None and _status(exc) == 416:
                # S3 answers any Range on an empty object with 416: ask again without one.
                state.unranged = True
                return dict(engine.client.get_object(Bucket=bucket, Key=key)), None
            if state.etag is not None and _status(exc) == 412:
                raise _object_changed(state, sink, bucket, key) from exc
            raise

    def attempt() -> ReadResult:
        if state.parallel:
            _restart(state, sink)  # parts resume themselves; a whole re-read starts afresh
        while True:
            response, end = get()
            body = response.pop("Body")
            with ExitStack() as stack:
                stack.callback(body.close)
                require_etag(response, "GetObject", bucket, key)
                if state.etag is None:
                    state.start(engine, bucket, key, response, verify, operation)
                    sink.presize(state.size)
                if state.parallel:
                    first_len = min(state.size, end + 1) if end is not None else state.size
                    _read_parts(engine, bucket, key, body, first_len, state, sink, verify)
                else:
                    _drain(engine, body, sink, state)
            if state.offset == state.size:
                break
            if end is None or state.offset != end + 1:
                raise ConnectionFault(
                    f"the body ended after {state.offset} of {state.size} bytes",
                    operation="GetObject",
                    bucket=bucket,
                    key=key,
                )
            # The first response carried the range it was asked for: continue after it.
        try:
            verification = state.check(bucket, key)
        except ChecksumMismatchError:
            _restart(state, sink)
            raise
        except UnverifiableObjectError as exc:
            engine.unverifiable(exc.message, operation=operation, bucket=bucket, key=key)
            verification = "unverifiable"
        return ReadResult(state.first_response, verification)

    def retryable(exc: BaseException) -> bool:
        # A part that used up its own retries must not be fetched again by this loop.
        return is_retryable(exc) and not state.parts_exhausted

    try:
        return engine.call("GetObject", bucket, key, attempt, retryable=retryable)
    except CannotRestart as exc:
        cause = exc.__context__
        if isinstance(cause, ObjectClerkError):
            raise cause from None
        raise


def _object_changed(state: _ReadState, sink: Sink, bucket: str, key: str) -> ConnectionFault:
    """A pinned request found the object changed since the first response (412): discard
    what was read and return the retryable error that starts over on the new version,
    rather than mix two versions' bytes."""
    _restart(state, sink)
    return ConnectionFault(
        "the object changed during the read; restarting from its new version",
        operation="GetObject",
        bucket=bucket,
        key=key,
    )


def _restart(state: _ReadState, sink: Sink) -> None:
    state.etag = None
    state.offset = 0
    state.checkers = []
    sink.reset()


def _drain(engine: Engine, body: Any, sink: Sink, state: _ReadState) -> None:
    chunk_size = engine.transfer.io_chunksize
    while True:
        chunk = body.read(chunk_size)
        if not chunk:
            return
        for checker in state.checkers:
            checker.update(chunk)
        sink.write(chunk)
        state.offset += len(chunk)


def _read_parts(
    engine: Engine,
    bucket: str,
    key: str,
    first_body: Any,
    first_len: int,
    state: _ReadState,
    sink: Sink,
    verify: bool,
) -> None:
    """Fetch the parts in parallel, write them in order. Part 1 starts with ``first_body``,
    the open first response carrying the object's first ``first_len`` bytes."""
    parts = list(PartLayout(state.size, state.part_size).parts())
    etag = state.etag
    assert etag is not None
    io_chunk = engine.transfer.io_chunksize
    write_at = getattr(sink, "write_at", None)

    # Without a positional sink, parts are buffered and written in order. The buffers are
    # allocated once and reused: allocating and freeing part-sized buffers from many threads
    # leaves glibc's per-thread arenas holding the memory, and RSS creeps far past the budget.
    spare: queue.SimpleQueue[bytearray] = queue.SimpleQueue()

    def fetch(number: int, offset: int, length: int) -> tuple[memoryview, bytes]:
        buffer = bytearray()
        if write_at is None:
            try:
                buffer = spare.get_nowait()
            except queue.Empty:
                buffer = bytearray(state.part_size)
        received = 0
        digest = hashlib.md5(usedforsecurity=False)
        open_body: list[Any] = [first_body if number == 1 else None]

        def attempt() -> None:
            nonlocal received
            while received < length:
                body = open_body[0]
                open_body[0] = None
                # The first response ends where its range did; past it, ask for the rest.
                limit = first_len if body is not None else length
                if body is None:
                    response = engine.client.get_object(
                        Bucket=bucket,
                        Key=key,
                        Range=f"bytes={offset + received}-{offset + length - 1}",
                        IfMatch=etag,
                    )
                    require_etag(response, "GetObject", bucket, key)
                    body = response["Body"]
                try:
                    while received < min(length, limit):
                        chunk = body.read(min(io_chunk, min(length, limit) - received))
                        if not chunk:
                            raise ConnectionFault(
                                f"part {number} ended after {received} of {length} bytes",
                                operation="GetObject",
                                bucket=bucket,
                                key=key,
                            )
                        if verify:
                            digest.update(chunk)
                        if write_at is not None:
                            write_at(offset + received, chunk)
                        else:
                            buffer[received : received + len(chunk)] = chunk
                        received += len(chunk)
                finally:
                    body.close()

        try:
            engine.call("GetObject", bucket, key, attempt)
        except TransientError:
            state.parts_exhausted = True
            raise
        return memoryview(buffer)[:received], digest.digest()

    concurrency = max(1, engine.transfer.download_concurrency)
    if write_at is None:
        # Buffered parts: the one being handed over counts against the budget too.
        concurrency = max(1, concurrency - 1)
    pending: deque[Future[tuple[memoryview, bytes]]] = deque()
    upcoming = iter(parts)
    digests: list[bytes] = []
    pool = ThreadPoolExecutor(concurrency, thread_name_prefix="object-clerk-read")
    try:
        for part in upcoming:
            pending.append(pool.submit(fetch, *part))
            if len(pending) >= concurrency:
                break
        while pending:
            try:
                buffer, digest = pending.popleft().result()
            except PreconditionFailedError as exc:
                raise _object_changed(state, sink, bucket, key) from exc
            if write_at is None:
                sink.write(buffer)
                state.offset += len(buffer)
                spare.put(buffer.obj)  # type: ignore[arg-type]
            buffer.release()
            digests.append(digest)
            del buffer
            following = next(upcoming, None)
            if following is not None:
                pending.append(pool.submit(fetch, *following))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    state.part_digests = digests
    if write_at is not None:
        state.offset = state.size


class _ReadState:
    """Per-read state: the pinned ETag, the offset reached and the running checksums."""

    def __init__(self) -> None:
        self.etag: str | None = None
        self.size = 0
        self.offset = 0
        self.checkers: list[EtagCalculator] = []
        self.layout: ObjectLayout | None = None
        self.first_response: dict[str, Any] = {}
        self.parallel = False
        self.part_size = 0
        self.part_digests: list[bytes] = []
        self.parts_exhausted = False
        self.verify = True
        self.unranged = False

    def start(
        self,
        engine: Engine,
        bucket: str,
        key: str,
        response: dict[str, Any],
        verify: bool,
        operation: str,
    ) -> None:
        self.etag = response.get("ETag")
        self.size = int(response.get("ContentLength") or 0)
        content_range = response.pop("ContentRange", None)
        if content_range:  # "bytes 0-8388607/67108864": the object's size is the total
            self.size = int(str(content_range).rsplit("/", 1)[-1])
        response["ContentLength"] = self.size
        self.first_response = response
        self.checkers = []
        self.layout = None
        self.parallel = False
        self.part_digests = []
        self.verify = verify
        settings = engine.transfer
        big = self.size >= settings.download_threshold and settings.download_concurrency > 1
        if not verify:
            if big:
                self.parallel = True
                self.part_size = max(settings.download_chunksize, 1)
            return
        layout = engine.discover_layout(bucket, key, response, nested=True)
        if isinstance(layout, str):
            engine.unverifiable(layout, operation=operation, bucket=bucket, key=key)
            return
        self.layout = layout
        if big and layout.authoritative and layout.etag.multipart and (layout.etag.parts or 0) > 1:
            self.parallel = True
            self.part_size = layout.part_sizes[0]
        else:
            self.checkers = [EtagCalculator(size) for size in layout.part_sizes]

    def check(self, bucket: str, key: str) -> str:
        """How the bytes read were verified; raises when they were not."""
        layout = self.layout
        if not self.verify:
            return "skipped"
        if layout is None:
            return "unverifiable"
        expected = str(layout.etag)
        kind = "multipart-md5" if layout.etag.multipart else "md5"
        if self.parallel:
            actual = multipart_etag(self.part_digests)
            if actual == expected:
                return kind
        else:
            for checker in self.checkers:
                if checker.etag() == expected:
                    return kind
            actual = self.checkers[0].etag()
        if layout.authoritative:
            raise ChecksumMismatchError(
                f"the bytes read do not match the object's ETag (layout: {layout.source})",
                expected=expected,
                actual=actual,
                algorithm=kind,
                operation="GetObject",
                bucket=bucket,
                key=key,
            )
        sizes = ", ".join(str(size) for size in layout.part_sizes)
        raise UnverifiableObjectError(
            f"the part layout is unknown and none of the candidate part sizes ({sizes})"
            f" reproduces ETag {expected}",
            operation="GetObject",
            bucket=bucket,
            key=key,
        )


def _status(exc: BaseException) -> int | None:
    """The HTTP status of a botocore error, if the server answered."""
    if isinstance(exc, ObjectClerkError):
        return exc.status
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return None
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return status if isinstance(status, int) else None


# ------------------------------------------------------------------ front ends ---


def download(
    engine: Engine,
    bucket: str,
    key: str,
    destination: str | os.PathLike[str] | IO[bytes],
    *,
    verify: bool,
) -> TransferResult:
    """Read an object into a file path (atomically) or a binary file object."""
    operation = "download_object"
    if isinstance(destination, (str, os.PathLike)):
        return _download_to_path(engine, bucket, key, Path(destination), verify=verify)
    if not callable(getattr(destination, "write", None)):
        raise InvalidRequestError(
            f"destination must be a path or a binary file object, not {type(destination).__name__}",
            operation=operation,
            bucket=bucket,
            key=key,
        )
    if isinstance(destination, io.TextIOBase):
        raise InvalidRequestError(
            "the destination file is in text mode: open it in binary mode ('wb')",
            operation=operation,
            bucket=bucket,
            key=key,
        )
    result = read(engine, bucket, key, FileSink(destination), verify=verify, operation=operation)
    return _transfer_result(bucket, key, result)


def _download_to_path(
    engine: Engine, bucket: str, key: str, path: Path, *, verify: bool
) -> TransferResult:
    """Write to a temporary name beside ``path`` and rename only once verified, so a failed
    or damaged download never leaves a file that looks complete."""
    operation = "download_object"
    if path.is_dir():
        raise InvalidRequestError(
            f"the destination is a directory: {path}", operation=operation, bucket=bucket, key=key
        )
    if not path.parent.is_dir():
        raise InvalidRequestError(
            f"the destination's directory does not exist: {path.parent}",
            operation=operation,
            bucket=bucket,
            key=key,
        )
    handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed or removed below
        dir=path.parent, prefix=f".{path.name}.", suffix=".object-clerk-part", delete=False
    )
    try:
        with handle:
            result = read(
                engine, bucket, key, DiskFileSink(handle), verify=verify, operation=operation
            )
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(handle.name, path)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise
    return _transfer_result(bucket, key, result)


def _transfer_result(bucket: str, key: str, result: ReadResult) -> TransferResult:
    response = result.response
    return TransferResult(
        bucket,
        key,
        str(response.get("ETag") or "").strip('"'),
        int(response.get("ContentLength") or 0),
        response.get("VersionId"),
        result.verification,
    )


def stream(
    engine: Engine, bucket: str, key: str, *, verify: bool, chunk_size: int
) -> Iterator[bytes]:
    """Yield the object's bytes in order, read by a background thread with bounded memory.

    Bytes are handed over as they arrive, so the verdict comes at the end: a stream whose
    bytes did not verify raises ChecksumMismatchError after its last chunk. Until the
    iterator is exhausted without error, treat what it gave as unverified.
    """
    sink = StreamSink(max_items=max(2, (8 << 20) // max(chunk_size, 1)), chunk=chunk_size)

    def produce() -> None:
        error: BaseException | None = None
        try:
            read(engine, bucket, key, sink, verify=verify)
        except CannotRestart:
            return  # the reader went away
        except BaseException as exc:
            error = exc
        try:
            sink.finish(error)
        except CannotRestart:
            return

    producer = threading.Thread(target=produce, name="object-clerk-stream", daemon=True)
    producer.start()
    try:
        yield from sink
    finally:
        sink.closed.set()
        producer.join()


class ObjectReader(io.RawIOBase):
    """A read-only, non-seekable file object over :func:`stream`."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        super().__init__()
        self._chunks = chunks
        self._pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        if not self._pending:
            self._pending = next(self._chunks, b"")
        count = min(len(view), len(self._pending))
        view[:count] = self._pending[:count]
        self._pending = self._pending[count:]
        return count

    def close(self) -> None:
        if not self.closed:
            close = getattr(self._chunks, "close", None)
            if callable(close):
                close()
        super().close()
