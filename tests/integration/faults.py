"""In-process fault helpers for integration tests. Each acts on a real request to a real
server: it damages the real bytes on their way, or breaks the real socket mid-body, and the
real server (or the clerk) has to notice."""

from __future__ import annotations

import base64
import hashlib
import os
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, BinaryIO


@contextmanager
def pipe_of(data: bytes) -> Iterator[BinaryIO]:
    """A real, non-seekable pipe whose other end a thread fills with ``data``."""
    read_fd, write_fd = os.pipe()

    def feed() -> None:
        with os.fdopen(write_fd, "wb") as writer:
            writer.write(data)

    feeder = threading.Thread(target=feed)
    feeder.start()
    try:
        with os.fdopen(read_fd, "rb", buffering=0) as pipe:
            yield pipe
    finally:
        feeder.join()


class RequestLog:
    """Counts the HTTP requests a client sends, by operation name (botocore's before-send)."""

    def __init__(self, client: Any) -> None:
        self.counts: Counter[str] = Counter()
        self.headers: list[tuple[str, dict[str, str]]] = []
        self._lock = threading.Lock()
        client.meta.events.register("before-send.s3", self._record)

    def _record(self, request: Any, event_name: str, **_: Any) -> None:
        operation = event_name.rsplit(".", 1)[-1]
        with self._lock:
            self.counts[operation] += 1
            self.headers.append((operation, {k: _text(v) for k, v in request.headers.items()}))

    def ranges(self, operation: str = "GetObject") -> list[str | None]:
        return [h.get("Range") for op, h in self.headers if op == operation]

    def first_gets(self) -> int:
        """GETs that began a read: every continuation is pinned with If-Match, these not."""
        return sum(1 for op, h in self.headers if op == "GetObject" and "If-Match" not in h)


def _text(value: str | bytes) -> str:
    return value.decode("latin-1") if isinstance(value, bytes) else value


def _flip(body: bytes, at: int) -> bytes:
    damaged = bytearray(body)
    damaged[at % len(damaged)] ^= 0x01
    return bytes(damaged)


class CorruptRequestBodies:
    """Flips one bit in the body of the next ``times`` requests of ``operation``.

    By default the bytes are damaged on the wire, after signing (``before-send``): the
    server's own checks must refuse them. With ``fix_md5=True`` they are damaged before
    signing and Content-MD5 is recomputed to match, as a client-side bug would: the server
    accepts and stores the damaged bytes, and only an ETag comparison can catch that.
    """

    def __init__(self, client: Any, operation: str, times: int, *, fix_md5: bool = False) -> None:
        self.remaining = times
        self.done = 0
        self.fix_md5 = fix_md5
        self._lock = threading.Lock()
        event = "before-sign" if fix_md5 else "before-send"
        client.meta.events.register(f"{event}.s3.{operation}", self._damage)

    def _claim(self, content: bytes) -> bool:
        with self._lock:
            if self.remaining <= 0 or not content:
                return False
            self.remaining -= 1
            self.done += 1
            return True

    def _damage(self, request: Any, **_: Any) -> None:
        attribute = "data" if self.fix_md5 else "body"
        body = getattr(request, attribute)
        if hasattr(body, "read"):  # botocore wraps a bytes Body in a BytesIO
            start = body.tell()
            content = body.read()
            body.seek(start)
        else:
            content = bytes(body or b"")
        if not self._claim(content):
            return
        damaged = _flip(content, len(content) // 2)
        setattr(request, attribute, damaged)
        if self.fix_md5:
            digest = hashlib.md5(damaged).digest()
            # botocore's headers append on assignment: remove the old value first.
            del request.headers["Content-MD5"]
            request.headers["Content-MD5"] = base64.b64encode(digest).decode()


class _FlippingBody:
    def __init__(self, body: Any, at: int) -> None:
        self._body = body
        self._at = at
        self._seen = 0

    def read(self, amt: int | None = None) -> bytes:
        chunk: bytes = self._body.read(amt)
        start = self._seen
        self._seen += len(chunk)
        if start <= self._at < self._seen:
            chunk = _flip(chunk, self._at - start)
        return chunk

    def close(self) -> None:
        self._body.close()


class CorruptResponseBodies:
    """Flips one bit of the real response body of the next ``times`` GetObject calls."""

    def __init__(self, client: Any, times: int, at: int = 0) -> None:
        self.remaining = times
        self.at = at
        client.meta.events.register("after-call.s3.GetObject", self._wrap)

    def _wrap(self, parsed: dict[str, Any], **_: Any) -> None:
        if self.remaining > 0 and "Body" in parsed:
            self.remaining -= 1
            parsed["Body"] = _FlippingBody(parsed["Body"], self.at)


class _BreakingBody:
    """Reads ``after`` bytes of the real body, then closes the real HTTP response under it,
    so the next read hits a genuinely truncated stream (urllib3 raises IncompleteRead)."""

    def __init__(self, body: Any, after: int) -> None:
        self._body = body
        self._left = after
        self.broken = False

    def read(self, amt: int | None = None) -> bytes:
        if self._left <= 0 and not self.broken:
            self.broken = True
            self._body._raw_stream._fp.close()
        want = amt
        if self._left > 0 and (amt is None or amt > self._left):
            want = self._left
        chunk: bytes = self._body.read(want)
        self._left -= len(chunk)
        return chunk

    def close(self) -> None:
        self._body.close()


class BreakResponseStreams:
    """Cuts the real connection of the next ``times`` GetObject responses after ``after``
    body bytes, so reading the rest raises a genuine streaming error."""

    def __init__(self, client: Any, times: int, after: int) -> None:
        self.remaining = times
        self.after = after
        client.meta.events.register("after-call.s3.GetObject", self._wrap)

    def _wrap(self, parsed: dict[str, Any], **_: Any) -> None:
        if self.remaining > 0 and "Body" in parsed:
            self.remaining -= 1
            parsed["Body"] = _BreakingBody(parsed["Body"], self.after)
