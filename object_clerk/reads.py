"""Verified reads.

Strategy: the body is hashed while it arrives and compared with the ETag of that same
response. A body cut short is resumed with a ranged GET pinned by ``If-Match`` to that ETag,
so a read never mixes two versions of an object; if the object changed, the read starts over
on the new version. A mismatch discards what was written and reads again.
"""

from __future__ import annotations

import io
from contextlib import ExitStack
from typing import Any, Protocol

from object_clerk.engine import Engine, ObjectLayout, require_etag
from object_clerk.errors import (
    ChecksumMismatchError,
    ConnectionFault,
    PreconditionFailedError,
    UnverifiableObjectError,
)
from object_clerk.etag import (
    EtagCalculator,
)

__all__ = ["BytesSink", "Sink", "read"]


class Sink(Protocol):
    """Where a read writes: ``write`` appends, ``reset`` discards everything written."""

    def write(self, data: bytes) -> object: ...

    def reset(self) -> None: ...


class BytesSink:
    """A :class:`Sink` collecting bytes in memory."""

    def __init__(self) -> None:
        self._buffer = io.BytesIO()

    def write(self, data: bytes) -> object:
        return self._buffer.write(data)

    def reset(self) -> None:
        self._buffer.seek(0)
        self._buffer.truncate()

    def getvalue(self) -> bytes:
        return self._buffer.getvalue()


def read(
    engine: Engine,
    bucket: str,
    key: str,
    sink: Sink,
    *,
    verify: bool,
    operation: str = "get_object",
) -> dict[str, Any]:
    """Stream an object into ``sink``, verifying as it arrives; resume cut-short bodies.

    Returns the first GET response's metadata (without the body).
    """
    state = _ReadState()

    def attempt() -> dict[str, Any]:
        params: dict[str, Any] = {"Bucket": bucket, "Key": key}
        if state.etag is not None:
            params["IfMatch"] = state.etag
            if state.offset:
                params["Range"] = f"bytes={state.offset}-"
        try:
            response: dict[str, Any] = dict(engine.client.get_object(**params))
        except Exception as exc:
            if state.etag is not None and _is_precondition_failure(exc):
                # The object changed since the first response: start over on the new
                # version rather than mix two versions' bytes.
                state.restart(sink)
                raise ConnectionFault(
                    "the object changed during the read; restarting from its new version",
                    operation="GetObject",
                    bucket=bucket,
                    key=key,
                ) from exc
            raise
        body = response.pop("Body")
        with ExitStack() as stack:
            stack.callback(body.close)
            require_etag(response, "GetObject", bucket, key)
            if state.etag is None:
                state.start(engine, bucket, key, response, verify, operation)
            _drain(engine, body, sink, state)
        if state.offset != state.size:
            raise ConnectionFault(
                f"the body ended after {state.offset} of {state.size} bytes",
                operation="GetObject",
                bucket=bucket,
                key=key,
            )
        if state.checkers:
            try:
                state.check(bucket, key)
            except ChecksumMismatchError:
                state.restart(sink)
                raise
            except UnverifiableObjectError as exc:
                engine.unverifiable(exc.message, operation=operation, bucket=bucket, key=key)
        return state.first_response

    return engine.call("GetObject", bucket, key, attempt)


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


class _Checker:
    """One candidate layout's running ETag."""

    def __init__(self, part_size: int) -> None:
        self.part_size = part_size
        self.calculator = EtagCalculator(part_size)

    def update(self, data: bytes) -> None:
        self.calculator.update(data)


class _ReadState:
    """Per-read state: the pinned ETag, the offset reached and the running checksums."""

    def __init__(self) -> None:
        self.etag: str | None = None
        self.size = 0
        self.offset = 0
        self.checkers: list[_Checker] = []
        self.layout: ObjectLayout | None = None
        self.first_response: dict[str, Any] = {}

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
        self.first_response = response
        self.checkers = []
        self.layout = None
        if not verify:
            return
        layout = engine.discover_layout(bucket, key, response, nested=True)
        if isinstance(layout, str):
            engine.unverifiable(layout, operation=operation, bucket=bucket, key=key)
            return
        self.layout = layout
        self.checkers = [_Checker(size) for size in layout.part_sizes]

    def restart(self, sink: Sink) -> None:
        sink.reset()
        self.etag = None
        self.offset = 0
        self.checkers = []

    def check(self, bucket: str, key: str) -> None:
        layout = self.layout
        assert layout is not None
        expected = str(layout.etag)
        for checker in self.checkers:
            if checker.calculator.etag() == expected:
                return
        actual = self.checkers[0].calculator.etag()
        if layout.authoritative:
            raise ChecksumMismatchError(
                f"the bytes read do not match the object's ETag (layout: {layout.source})",
                expected=expected,
                actual=actual,
                algorithm="multipart-md5" if layout.etag.multipart else "md5",
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


def _is_precondition_failure(exc: BaseException) -> bool:
    if isinstance(exc, PreconditionFailedError):
        return True
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return False
    return bool(response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 412)
