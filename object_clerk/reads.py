"""Verified reads: into memory, into a file, or as a stream.

Strategy: the first GET asks for the whole object, with no Range, so a small object takes
one request, as a raw GET does. Its body is hashed while it arrives and compared with the
ETag of that same response. A body cut short is resumed with a ranged GET pinned by
``If-Match`` to that ETag, so a read never mixes two versions; if the object changed, the
read starts over on the new version.

A large multipart object whose part layout is known (its headers tell) is read in parallel
when the sink can write each part where it belongs (memory, a file the clerk opened): the
first response keeps flowing from the front while workers fetch parts from the back, and
they meet without either reading a byte twice (:func:`_read_parts`). Each reader hashes
its part as it arrives, so MD5 runs on every core, and the part digests combine into the
ETag. At most ``max_concurrency`` parts are in flight, and none is buffered: each chunk is
written in place. A sink that writes in order (a stream, the caller's file object) reads
the one stream.

Everything is written into a sink (:mod:`object_clerk.sinks`). The verdict comes from a
:class:`~object_clerk.verdict.ReadVerifier`, which sees the bytes (or the part digests) and
the headers, and nothing else. When the bytes do not verify, the sink is reset and the
object read again, as often as the retry policy allows, unless the sink already delivered
bytes onward (a stream): then the error is raised to the reader.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import secrets
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from object_clerk.engine import Engine, TransferResult, proof_name, require_etag, result_of
from object_clerk.errors import (
    ConnectionFault,
    InvalidRequestError,
    PreconditionFailedError,
    TransientError,
)
from object_clerk.etag import PartLayout
from object_clerk.retry import is_retryable
from object_clerk.runner import Progress, run_parts
from object_clerk.sinks import (
    BytesSink,
    CannotRestart,
    DiskFileSink,
    FileSink,
    IOContext,
    PositionalSink,
    Sink,
    StreamSink,
)
from object_clerk.verdict import ObjectLayout, PartHasher, ReadVerifier, Verdict, settle_suspect

__all__ = [
    "BytesSink",
    "ObjectReader",
    "ReadResult",
    "download",
    "read",
    "stream",
]


@dataclass
class ReadResult:
    """What a read returned: the first response's metadata and its verdict."""

    response: dict[str, Any]
    verdict: Verdict


def read(
    engine: Engine,
    bucket: str,
    key: str,
    sink: Sink,
    *,
    verify: bool,
    operation: str = "get_object",
    extra: Mapping[str, Any] = {},
    progress: Progress | None = None,
    report: bool = True,
) -> ReadResult:
    """Read an object into ``sink``, verified; see the module docstring.

    ``extra``: GetObject arguments every request repeats (boto3's download ``ExtraArgs``:
    VersionId, SSE-C key, RequestPayer, ExpectedBucketOwner, ChecksumMode, IfMatch).
    ``progress`` is told the bytes written, and told to rewind when the read starts over.
    ``report=False``: an unverifiable verdict is returned, not warned about (a scrub
    reports it itself).
    """
    state = _ReadState()
    # The caller's ChecksumMode goes with the first GET only: a continuation or a part is
    # a range, whose body botocore would check against the whole object's checksum.
    state.extra = {name: value for name, value in extra.items() if name != "ChecksumMode"}
    checksum_mode = extra.get("ChecksumMode") or ("ENABLED" if verify else None)
    state.progress = progress or Progress(None)

    def get() -> dict[str, Any]:
        """One GET: the first asks for the whole object, with no Range (a small object
        arrives whole in one request, as a raw GET would); the next ones continue from
        where the bytes stopped, pinned by If-Match."""
        params: dict[str, Any] = {"Bucket": bucket, "Key": key, **state.extra}
        if state.etag is None:
            # Where the store keeps a full-object checksum, it comes back and proves the
            # bytes for a tenth of an MD5's cost; stores that keep none ignore the header.
            if checksum_mode:
                params["ChecksumMode"] = checksum_mode
        else:
            params["IfMatch"] = state.etag
            if state.offset:
                params["Range"] = f"bytes={state.offset}-"
        try:
            return dict(engine.once("GetObject", bucket, key, lambda: client_get(params)))
        except PreconditionFailedError as exc:
            if state.etag is not None:
                raise _object_changed(state, sink, bucket, key, exc) from exc
            raise

    def client_get(params: dict[str, Any]) -> Any:
        return engine.client.get_object(**params)

    def read_once() -> None:
        """One pass over the object (its first GET and any continuation) into the sink."""
        response = get()
        body = response.pop("Body")
        with ExitStack() as stack:
            stack.callback(body.close)
            require_etag(response, "GetObject", bucket, key)
            if state.etag is None:
                state.start(engine, bucket, key, response, verify, operation, sink)
                sink.presize(state.size)
            if state.parallel:
                _read_parts(engine, bucket, key, body, state, sink, verify)
            else:
                _drain(engine, body, sink, state)
        if state.offset != state.size:
            raise ConnectionFault(
                f"the body ended after {state.offset} of {state.size} bytes",
                operation="GetObject",
                bucket=bucket,
                key=key,
            )

    def attempt() -> ReadResult:
        if state.parallel:
            # Parts resume themselves; a whole re-read starts afresh.
            _restart(state, sink, state.last_error)
        read_once()
        verdict = state.verifier.verdict()
        if verdict.suspect and state.suspect is None:
            # No candidate layout proves the bytes: read them again, within this attempt
            # (so it costs no retry, and a single try never turns it into a false alarm).
            # The same bytes twice mean an unknown layout; others mean damage.
            state.suspect = verdict.actual
            try:
                _restart(state, sink, None)
            except CannotRestart:
                pass  # delivered onward (a stream): reported unverifiable below
            else:
                read_once()
                verdict = state.verifier.verdict()
        verdict = settle_suspect(verdict, state.suspect)
        if not verdict.matched:
            layout = state.verifier.layout
            source = layout.source if isinstance(layout, ObjectLayout) else "?"
            error = verdict.mismatch(
                "two reads of the object differ and neither matches its ETag"
                if verdict.suspect
                else f"the bytes read do not match the object's {proof_name(verdict)}"
                f" (layout: {source})",
                operation="GetObject",
                bucket=bucket,
                key=key,
            )
            state.suspect = verdict.actual if verdict.suspect else None
            _restart(state, sink, error)
            raise error
        if report and not state.reported:
            engine.report(verdict, operation=operation, bucket=bucket, key=key)
        return ReadResult(state.first_response, verdict)

    def retryable(exc: BaseException) -> bool:
        state.last_error = exc
        # A part that used up its own retries must not be fetched again by this loop.
        return is_retryable(exc) and not state.parts_exhausted

    try:
        return engine.call("GetObject", bucket, key, attempt, retryable=retryable)
    except CannotRestart as exc:
        # The sink delivered bytes onward, so the read cannot start over: the reader gets
        # the error that needed the restart.
        error = exc.error or state.last_error
        if error is None:
            raise
        raise error from None


def _object_changed(
    state: _ReadState, sink: Sink, bucket: str, key: str, cause: PreconditionFailedError
) -> ConnectionFault:
    """A pinned request found the object changed since the first response (412): discard
    what was read and return the retryable error that starts over on the new version,
    rather than mix two versions' bytes. A stream that already delivered bytes raises the
    412 itself (PreconditionFailedError): its reader holds bytes of the old version."""
    error = ConnectionFault(
        "the object changed during the read; restarting from its new version",
        operation="GetObject",
        bucket=bucket,
        key=key,
    )
    _restart(state, sink, cause)
    return error


def _restart(state: _ReadState, sink: Sink, error: BaseException | None) -> None:
    """Forget what was read and reset the sink. A sink that cannot reset raises
    CannotRestart carrying ``error``, the reason the read had to start over."""
    state.etag = None
    state.offset = 0
    state.verifier = ReadVerifier(None, verify=False)
    try:
        sink.reset()
    except CannotRestart as exc:
        exc.error = error
        raise
    state.progress.rewind()


def _drain(engine: Engine, body: Any, sink: Sink, state: _ReadState) -> None:
    """Read the body in order up to the object's size. It stops there, before the empty read
    at which botocore would check a ``ChecksumMode`` checksum a second time: the verifier
    checks the same one, and a failure raised after the last byte would resume past it."""
    chunk_size = engine.transfer.io_chunksize
    verifier = state.verifier
    while state.offset < state.size:
        chunk = body.read(min(chunk_size, state.size - state.offset))
        if not chunk:
            return
        verifier.update(chunk)
        sink.write(chunk)
        state.offset += len(chunk)
        state.progress.add(len(chunk))


class _Stopped(Exception):
    """A part gave up because another part failed: the runner raises that one instead."""


def _read_parts(
    engine: Engine,
    bucket: str,
    key: str,
    first_body: Any,
    state: _ReadState,
    sink: Sink,
    verify: bool,
) -> None:
    """Read the object's parts in parallel, each written where it belongs.

    The first response, which asked for the whole object, keeps flowing: the *front* reads
    parts 1, 2, ... from it, while workers fetch parts from the back with ranged GETs, last
    part first. Each side claims a part just before reading it, so when they meet every part
    was read once and no byte of either stream is read for nothing. A front whose stream is
    cut finishes its part with a ranged GET and leaves the rest to the workers. Each part is
    hashed by whoever reads it, and the part digests combine into the ETag.
    """
    etag = state.etag
    assert etag is not None
    io_chunk = engine.transfer.io_chunksize
    assert isinstance(sink, PositionalSink)
    write_at = sink.write_at
    stop = threading.Event()
    parts = list(PartLayout(state.size, state.part_size).parts())
    claims = _Claims(len(parts))
    hashers: dict[int, PartHasher] = {}

    def fetch(number: int, offset: int, length: int, stream: list[Any]) -> None:
        """Read one part, from ``stream[0]`` while it lasts (left open for the next part),
        else from a ranged GET of what is missing, resumed when cut."""
        received = 0
        hasher = state.verifier.part_hasher()

        def attempt() -> None:
            nonlocal received
            while received < length:
                if stream[0] is None:
                    response = engine.client.get_object(
                        Bucket=bucket,
                        Key=key,
                        Range=f"bytes={offset + received}-{offset + length - 1}",
                        IfMatch=etag,
                        **state.extra,
                    )
                    require_etag(response, "GetObject", bucket, key)
                    stream[0] = response["Body"]
                body = stream[0]
                try:
                    while received < length:
                        if stop.is_set():
                            raise _Stopped
                        chunk = body.read(min(io_chunk, length - received))
                        if not chunk:
                            raise ConnectionFault(
                                f"part {number} ended after {received} of {length} bytes",
                                operation="GetObject",
                                bucket=bucket,
                                key=key,
                            )
                        if verify:
                            hasher.update(chunk)
                        write_at(offset + received, chunk)
                        received += len(chunk)
                        state.progress.add(len(chunk))
                except BaseException:
                    stream[0] = None
                    body.close()
                    raise

        try:
            engine.call("GetObject", bucket, key, attempt)
        except TransientError:
            state.parts_exhausted = True
            raise
        hashers[number] = hasher

    def front() -> None:
        stream, part = [first_body], first
        try:
            while part is not None:
                fetch(*parts[part], stream)
                # A cut stream's part was finished by a ranged GET: the rest is the workers'.
                part = claims.front() if stream[0] is first_body else None
        finally:
            if stream[0] is not None:
                stream[0].close()  # where the front stopped: its connection is not kept

    def back(part: int) -> None:
        stream: list[Any] = [None]
        fetch(*parts[part], stream)
        if stream[0] is not None:
            stream[0].close()

    first = claims.front()  # the first response's stream starts at part 1: the front's own

    def jobs() -> Iterator[Callable[[], None]]:
        yield front
        while (part := claims.back()) is not None:
            yield functools.partial(back, part)

    try:
        run_parts(
            jobs(),
            concurrency=max(1, engine.transfer.download_concurrency),
            name="object-clerk-read",
            stop=stop,
        )
    except PreconditionFailedError as exc:
        raise _object_changed(state, sink, bucket, key, exc) from exc
    state.verifier.set_parts([hashers[number] for number in sorted(hashers)])
    state.offset = state.size


class _Claims:
    """Which parts are still unread: the front takes them from the start, the workers from
    the end, until they meet."""

    def __init__(self, count: int) -> None:
        self._next, self._end = 0, count
        self._lock = threading.Lock()

    def front(self) -> int | None:
        with self._lock:
            if self._next >= self._end:
                return None
            self._next += 1
            return self._next - 1

    def back(self) -> int | None:
        with self._lock:
            if self._next >= self._end:
                return None
            self._end -= 1
            return self._end


class _ReadState:
    """Per-read state: the pinned ETag, the offset reached and the verifier."""

    def __init__(self) -> None:
        self.etag: str | None = None
        self.size = 0
        self.offset = 0
        self.verifier = ReadVerifier(None, verify=False)
        self.reported = False
        self.first_response: dict[str, Any] = {}
        self.parallel = False
        self.part_size = 0
        self.parts_exhausted = False
        self.last_error: BaseException | None = None
        self.extra: dict[str, Any] = {}
        self.progress = Progress(None)
        # What a read no candidate layout could prove computed, kept across restarts so the
        # next read can tell an unknown layout (same bytes) from damage (other bytes).
        self.suspect: str | None = None

    def start(
        self,
        engine: Engine,
        bucket: str,
        key: str,
        response: dict[str, Any],
        verify: bool,
        operation: str,
        sink: Sink,
    ) -> None:
        """Take the first response: its size, its layout and how to read the rest. The ETag
        is pinned last, once everything else is known: a layout probe that fails leaves the
        read unpinned, so the retry starts afresh instead of reading unverified."""
        size = int(response.get("ContentLength") or 0)
        content_range = response.pop("ContentRange", None)
        if content_range:  # "bytes 0-8388607/67108864": the object's size is the total
            size = int(str(content_range).rsplit("/", 1)[-1])
        response["ContentLength"] = size
        settings = engine.transfer
        # Parallel parts need a sink that writes each where it belongs; one that writes in
        # order (a stream, the caller's file object) reads the one stream from the front.
        big = (
            size >= settings.download_threshold
            and settings.download_concurrency > 1
            and isinstance(sink, PositionalSink)
        )
        parallel, part_size, reported = False, 0, False
        if not verify:
            verifier = ReadVerifier(None, verify=False)
        else:
            layout = engine.discover_layout(
                bucket, key, response, nested=True, args=self.extra, checksums=True
            )
            verifier = ReadVerifier(layout, verify=True)
            if isinstance(layout, str):
                # Said before the bytes are read: in strict mode, nothing is read for nothing.
                engine.unverifiable(layout, operation=operation, bucket=bucket, key=key)
                reported = True
        if big and verifier.parallel_parts:
            # Parts of the object's own layout, whose MD5s make its ETag; otherwise (a CRC,
            # or no verification) any part size will do.
            known = verifier.layout
            parallel, part_size = True, max(settings.download_chunksize, 1)
            if isinstance(known, ObjectLayout) and known.checksum is None:
                part_size = known.part_sizes[0]
        self.size = size
        self.first_response = response
        self.verifier = verifier
        self.parallel, self.part_size, self.reported = parallel, part_size, reported
        self.etag = response.get("ETag")


# ------------------------------------------------------------------ front ends ---


def download(
    engine: Engine,
    bucket: str,
    key: str,
    destination: str | os.PathLike[str] | IO[bytes],
    *,
    verify: bool,
    extra: Mapping[str, Any] = {},
    progress: Progress | None = None,
    operation: str = "download_object",
) -> TransferResult:
    """Read an object into a file path (atomically) or a binary file object. ``extra``
    and ``progress``: as for :func:`read`."""
    options: dict[str, Any] = {"extra": extra, "progress": progress, "operation": operation}
    if isinstance(destination, (str, os.PathLike)):
        return _download_to_path(engine, bucket, key, Path(destination), verify, options)
    problem = _unwritable(destination)
    if problem is not None:
        raise InvalidRequestError(problem, operation=operation, bucket=bucket, key=key)
    sink = FileSink(destination, IOContext(operation, bucket, key, _name_of(destination)))
    result = read(engine, bucket, key, sink, verify=verify, **options)
    return _transfer_result(bucket, key, result)


def _unwritable(destination: object) -> str | None:
    """Why ``destination`` cannot take a download, or None: checked before any request."""
    if not callable(getattr(destination, "write", None)):
        return (
            f"destination must be a path or a binary file object, not {type(destination).__name__}"
        )
    if getattr(destination, "closed", False):
        return "the destination file is closed"
    if isinstance(destination, io.TextIOBase):
        return "the destination file is in text mode: open it in binary mode ('wb')"
    writable = getattr(destination, "writable", None)
    if callable(writable) and not writable():
        return "the destination file is not writable: open it for writing ('wb')"
    return None


def _name_of(handle: object) -> str | None:
    name = getattr(handle, "name", None)
    return name if isinstance(name, str) else None


def _download_to_path(
    engine: Engine, bucket: str, key: str, path: Path, verify: bool, options: dict[str, Any]
) -> TransferResult:
    """Write to a temporary name beside ``path`` and rename only once verified, so a failed
    or damaged download never leaves a file that looks complete. The file is created with
    mode 0666 less the umask, as ``open()`` and the AWS CLI create theirs."""
    operation = str(options["operation"])
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
    context = IOContext(operation, bucket, key, str(path))
    temporary = path.parent / f".{path.name}.{secrets.token_hex(6)}.object-clerk-part"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    with context.guard():
        fd = os.open(temporary, flags, 0o666)
    try:
        try:
            result = read(engine, bucket, key, DiskFileSink(fd, context), verify=verify, **options)
            with context.guard():
                os.fsync(fd)
        finally:
            os.close(fd)
        with context.guard():
            os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return _transfer_result(bucket, key, result)


def _transfer_result(bucket: str, key: str, result: ReadResult) -> TransferResult:
    response = result.response
    return result_of(
        bucket,
        key,
        str(response.get("ETag") or ""),
        int(response.get("ContentLength") or 0),
        response.get("VersionId"),
        result.verdict,
    )


def stream(
    engine: Engine,
    bucket: str,
    key: str,
    *,
    verify: bool,
    chunk_size: int,
    progress: Progress | None = None,
    extra: Mapping[str, Any] = {},
    on_verdict: Callable[[Verdict], object] | None = None,
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
            result = read(engine, bucket, key, sink, verify=verify, extra=extra, progress=progress)
            if on_verdict is not None:
                on_verdict(result.verdict)
        except BaseException as exc:
            if sink.closed.is_set():
                return  # the reader went away
            error = exc
        with contextlib.suppress(CannotRestart):  # the reader went away meanwhile
            sink.finish(error)

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
