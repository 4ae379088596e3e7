"""In-process fault helpers for integration tests. Each acts on a real request to a real
server: it damages the real bytes on their way, or breaks the real socket mid-body, and the
real server (or the clerk) has to notice."""

from __future__ import annotations

import base64
import hashlib
import socket
import threading
from collections import Counter
from typing import Any


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
            self.headers.append((operation, dict(request.headers)))

    def ranges(self, operation: str = "GetObject") -> list[str | None]:
        return [h.get("Range") for op, h in self.headers if op == operation]


def _flip(body: bytes, at: int) -> bytes:
    damaged = bytearray(body)
    damaged[at % len(damaged)] ^= 0x01
    return bytes(damaged)


class CorruptRequestBodies:
    """Flips one bit in the body of the next ``times`` requests of ``operation``.

    With ``fix_md5=True`` it also rewrites Content-MD5 to match the damaged body, so the
    server accepts and stores the damaged bytes: only an ETag comparison can catch that.
    """

    def __init__(self, client: Any, operation: str, times: int, *, fix_md5: bool = False) -> None:
        self.remaining = times
        self.done = 0
        self.fix_md5 = fix_md5
        self._lock = threading.Lock()
        client.meta.events.register(f"before-send.s3.{operation}", self._damage)

    def _damage(self, request: Any, **_: Any) -> None:
        with self._lock:
            if self.remaining <= 0 or not isinstance(request.body, (bytes, bytearray)):
                return
            if not request.body:
                return
            self.remaining -= 1
            self.done += 1
        request.body = _flip(bytes(request.body), len(request.body) // 2)
        if self.fix_md5:
            digest = hashlib.md5(request.body).digest()
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
    """Reads ``after`` bytes of the real body, then shuts the real socket down."""

    def __init__(self, body: Any, after: int) -> None:
        self._body = body
        self._left = after
        self.broken = False

    def read(self, amt: int | None = None) -> bytes:
        if self._left <= 0 and not self.broken:
            self.broken = True
            connection = getattr(self._body._raw_stream, "_connection", None)
            sock = getattr(connection, "sock", None)
            if sock is not None:
                sock.shutdown(socket.SHUT_RDWR)
        want = self._left if (amt is None or (0 < self._left < amt)) and self._left > 0 else amt
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
