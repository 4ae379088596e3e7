"""A fault-injecting HTTP/1.1 proxy for tests: it sits on loopback between the clerk and a
real S3 server (Ceph RGW) and breaks chosen requests the way real networks and servers do.

Faults are chosen per request, either by rules ("the 2nd GET of key k", "every UploadPart")
or at random with a seed. The proxy counts every request it sees, by method and key, and the
body bytes it delivered, so tests can count attempts and prove a resume did not restart.

Only plain HTTP: TLS would have to be terminated here, and the faults are the same.

The faults are deterministic, whatever the load on the machine: a body cut with RST
(``RESET_MID_BODY``) is cut only once the client has read every byte sent before it (an RST
discards what is still queued, so otherwise what arrives would depend on scheduling), and a
``STALL`` lasts until the client gives up and closes, not for a fixed time that its read
timeout must beat. Both waits are bounded; a wait that hit its bound is recorded
(``Record.ending == "bound"``) so tests can refuse to draw conclusions from it.
"""

from __future__ import annotations

import enum
import fcntl
import random
import select
import socket
import struct
import termios
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit


class Fault(str, enum.Enum):
    """What the proxy can do to a request."""

    RESET_BEFORE_RESPONSE = "reset-before-response"  # request read, connection reset (RST)
    DROP_RESPONSE = "drop-response"  # request forwarded and served, its response lost (RST)
    RESET_MID_BODY = "reset-mid-body"  # headers and half the body, then RST
    SHORT_BODY = "short-body"  # headers and half the body, then a clean close (FIN)
    FLIP_RESPONSE = "flip-response"  # one bit flipped in the response body
    FLIP_REQUEST = "flip-request"  # one bit flipped in the request body, sent upstream
    STALL = "stall"  # nothing sent until the client gives up (at most `stall_seconds`), close
    INTERNAL_ERROR = "500"  # 500 InternalError, not forwarded
    SLOW_DOWN = "503"  # 503 SlowDown, not forwarded
    TOO_MANY_REQUESTS = "429"  # 429 TooManyRequests, not forwarded
    ERROR_IN_200 = "200-error"  # 200 OK whose body is an S3 error document, not forwarded
    BAD_REQUEST = "400"  # 400 InvalidArgument, not forwarded (a store refusing a feature)


# Faults that answer without forwarding the request: the server never sees it.
SYNTHETIC = {
    Fault.INTERNAL_ERROR: (500, "Internal Server Error", "InternalError"),
    Fault.SLOW_DOWN: (503, "Slow Down", "SlowDown"),
    Fault.TOO_MANY_REQUESTS: (429, "Too Many Requests", "TooManyRequests"),
    Fault.ERROR_IN_200: (200, "OK", "InternalError"),
    Fault.BAD_REQUEST: (400, "Bad Request", "InvalidArgument"),
}
NOT_FORWARDED = {*SYNTHETIC, Fault.RESET_BEFORE_RESPONSE, Fault.STALL}


@dataclass
class Rule:
    """Fault the requests that match: ``method`` (GET, PUT...), ``key`` (exact object key),
    ``query`` (a substring of the query string, e.g. "partNumber" or "uploadId"). ``nth``
    picks the nth matching request (1-based) and ``times`` how many from there (-1: all)."""

    fault: Fault
    method: str | None = None
    key: str | None = None
    query: str | None = None
    nth: int = 1
    times: int = 1
    seen: int = 0
    fired: int = 0

    def matches(self, request: Request) -> bool:
        if self.method is not None and request.method != self.method:
            return False
        if self.key is not None and request.key != self.key:
            return False
        return self.query is None or self.query in request.query

    def take(self, request: Request) -> bool:
        if not self.matches(request):
            return False
        self.seen += 1
        if self.seen < self.nth or (self.times >= 0 and self.fired >= self.times):
            return False
        self.fired += 1
        return True


@dataclass
class Request:
    method: str
    target: str
    version: str
    headers: list[tuple[str, str]]
    body: bytes

    @property
    def path(self) -> str:
        return urlsplit(self.target).path

    @property
    def query(self) -> str:
        return urlsplit(self.target).query

    @property
    def bucket(self) -> str:
        return unquote(self.path.lstrip("/").split("/", 1)[0])

    @property
    def key(self) -> str:
        parts = self.path.lstrip("/").split("/", 1)
        return unquote(parts[1]) if len(parts) == 2 else ""

    def header(self, name: str) -> str | None:
        lowered = name.lower()
        return next((v for k, v in self.headers if k.lower() == lowered), None)

    def serialize(self) -> bytes:
        head = f"{self.method} {self.target} {self.version}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in self.headers) + "\r\n"
        return head.encode("latin-1") + self.body


@dataclass
class Record:
    """One request the proxy saw, and what it did with it.

    ``ending`` says how the wait before a fault ended: for ``RESET_MID_BODY``,
    ``"consumed"`` (the client had read every byte sent when the RST went out); for
    ``STALL``, ``"client-closed"`` (the client gave up, e.g. its read timeout fired); for
    either, ``"client-closed"`` when the client went away first, or ``"bound"`` when the
    proxy's wait bound passed and it applied the fault anyway. ``upstream_seconds`` is how
    long the upstream server took to answer a forwarded request, whole."""

    method: str
    key: str
    query: str
    range: str | None
    if_match: str | None
    fault: Fault | None
    status: int | None = None
    body_bytes_sent: int = 0
    ending: str | None = None
    upstream_seconds: float | None = None


@dataclass
class Stats:
    records: list[Record] = field(default_factory=list)
    faults: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def of(
        self, method: str | None = None, key: str | None = None, query: str = ""
    ) -> list[Record]:
        """The requests seen with this method, key and query substring, in order."""
        with self.lock:
            return [
                r
                for r in self.records
                if (method is None or r.method == method)
                and (key is None or r.key == key)
                and query in r.query
            ]

    def count(self, method: str | None = None, key: str | None = None, query: str = "") -> int:
        return len(self.of(method, key, query))


class _Closed(Exception):
    """The peer closed the connection."""


class _Reader:
    """Buffered reads of HTTP framing from a socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = bytearray()

    def _fill(self) -> None:
        chunk = self.sock.recv(1 << 16)
        if not chunk:
            raise _Closed()
        self.buffer.extend(chunk)

    def line_block(self) -> bytes:
        """Everything up to and including the blank line that ends a header block."""
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end >= 0:
                block = bytes(self.buffer[: end + 4])
                del self.buffer[: end + 4]
                return block
            self._fill()

    def exactly(self, n: int) -> bytes:
        while len(self.buffer) < n:
            self._fill()
        data = bytes(self.buffer[:n])
        del self.buffer[:n]
        return data

    def line(self) -> bytes:
        while b"\r\n" not in self.buffer:
            self._fill()
        end = self.buffer.find(b"\r\n") + 2
        data = bytes(self.buffer[:end])
        del self.buffer[:end]
        return data

    def chunked(self) -> bytes:
        """A chunked body, returned raw (framing included) for relaying."""
        out = bytearray()
        while True:
            size_line = self.line()
            out.extend(size_line)
            size = int(size_line.split(b";")[0].strip(), 16)
            if size == 0:
                while True:  # trailers, then the blank line
                    trailer = self.line()
                    out.extend(trailer)
                    if trailer == b"\r\n":
                        return bytes(out)
            out.extend(self.exactly(size + 2))


def _parse_headers(block: bytes) -> tuple[str, list[tuple[str, str]]]:
    lines = block.decode("latin-1").split("\r\n")
    headers = []
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers.append((name.strip(), value.strip()))
    return lines[0], headers


def _get(headers: list[tuple[str, str]], name: str) -> str | None:
    return next((v for k, v in headers if k.lower() == name.lower()), None)


def _proc_address(address: tuple[str, int]) -> str:
    """An address as /proc/net/tcp{,6} prints it: the address's 32-bit words in host byte
    order, hex, then the port in hex (e.g. ``0100007F:1F90`` for 127.0.0.1:8080)."""
    host, port = address[0], address[1]
    if ":" in host:
        words = struct.unpack("=4I", socket.inet_pton(socket.AF_INET6, host))
        return "".join(f"{word:08X}" for word in words) + f":{port:04X}"
    return f"{struct.unpack('=I', socket.inet_aton(host))[0]:08X}:{port:04X}"


def _receive_queue(local: tuple[str, int], remote: tuple[str, int]) -> int | None:
    """Bytes received but not yet read by the application on the ESTABLISHED TCP socket of
    this machine bound to ``local`` and connected to ``remote``; None if there is none (it
    closed). From /proc/net/tcp{,6}, column ``tx_queue:rx_queue``."""
    table = "/proc/net/tcp6" if ":" in local[0] else "/proc/net/tcp"
    want = (_proc_address(local), _proc_address(remote))
    with open(table) as lines:
        next(lines)
        for line in lines:
            fields = line.split()
            # An old TIME_WAIT entry can share the 4-tuple: only an established one counts.
            if (fields[1], fields[2]) == want and fields[3] == "01":
                return int(fields[4].split(":")[1], 16)
    return None


def _unacknowledged(sock: socket.socket) -> int:
    """Bytes written to ``sock`` that its peer has not acknowledged yet (SIOCOUTQ)."""
    answer = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, struct.pack("i", 0))
    return int(struct.unpack("i", answer)[0])


def _reset(sock: socket.socket) -> None:
    """Close with RST instead of FIN."""
    with suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def _flip(data: bytes, at: int) -> bytes:
    damaged = bytearray(data)
    damaged[at] ^= 0x01
    return bytes(damaged)


def _error_document(code: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>injected by the fault proxy</Message>"
        "<RequestId>fault-proxy</RequestId></Error>"
    ).encode()


class FaultProxy:
    """Proxy ``127.0.0.1:<port>`` to ``upstream``, injecting faults.

    Example::

        with FaultProxy(("127.0.0.1", 7480)) as proxy:
            proxy.add(Rule(Fault.RESET_MID_BODY, method="GET", key="k", nth=2))
            clerk = ObjectClerk(endpoint_url=proxy.endpoint, ...)

    ``rate`` > 0 faults that share of requests at random (seeded by ``seed``), choosing
    among ``random_faults`` those that make sense for the request.

    ``stall_seconds`` bounds a ``STALL`` (which normally ends when the client gives up) and
    ``cut_wait_seconds`` bounds the wait, before a ``RESET_MID_BODY``, for the client to
    read what was sent. Both only matter when something is wrong: keep them generous.
    Client and proxy must share the machine (loopback): the proxy looks at the client's
    socket in /proc/net/tcp.
    """

    def __init__(
        self,
        upstream: tuple[str, int],
        *,
        seed: int = 0,
        rate: float = 0.0,
        random_faults: tuple[Fault, ...] = tuple(f for f in Fault if f is not Fault.BAD_REQUEST),
        stall_seconds: float = 30.0,
        cut_wait_seconds: float = 30.0,
    ) -> None:
        self.upstream = upstream
        self.rules: list[Rule] = []
        self.stats = Stats()
        self.rate = rate
        self.random_faults = random_faults
        self.stall_seconds = stall_seconds
        self.cut_wait_seconds = cut_wait_seconds
        self._random = random.Random(seed)
        self._rules_lock = threading.Lock()
        self._listener_lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._port = 0
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()
        self._refusing = threading.Event()

    # ------------------------------------------------------------------ control ----

    @property
    def port(self) -> int:
        return self._port

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    def add(self, rule: Rule) -> Rule:
        with self._rules_lock:
            self.rules.append(rule)
        return rule

    def clear(self) -> None:
        with self._rules_lock:
            self.rules.clear()
        self.rate = 0.0

    @contextmanager
    def refusing(self) -> Iterator[None]:
        """Close the listening socket, so new connections are refused (ECONNREFUSED) until
        the block ends or :meth:`accept_again` is called: from a retry hook, say, so the
        refusal ends at a chosen attempt, not after a time the client may or may not beat."""
        with self._listener_lock:
            self._close_listener()
            self._refusing.set()
        try:
            yield
        finally:
            self.accept_again()

    def accept_again(self) -> None:
        """End a refusal early (nothing if none is going on)."""
        with self._listener_lock:
            if self._refusing.is_set():
                self._refusing.clear()
                if not self._stopping.is_set():
                    self._open_listener()

    def start(self) -> FaultProxy:
        self._open_listener()
        thread = threading.Thread(target=self._accept_loop, name="fault-proxy", daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def stop(self) -> None:
        self._stopping.set()
        with self._listener_lock:
            self._close_listener()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ----------------------------------------------------------------- plumbing ----

    def _open_listener(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self._port))
        listener.listen(64)
        listener.settimeout(0.2)
        self._port = listener.getsockname()[1]
        self._listener = listener

    def _close_listener(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            listener = self._listener
            if listener is None:
                time.sleep(0.01)
                continue
            try:
                client, _ = listener.accept()
            except (TimeoutError, OSError):
                continue
            thread = threading.Thread(target=self._serve, args=(client,), daemon=True)
            thread.start()

    def _choose(self, request: Request) -> Fault | None:
        with self._rules_lock:
            for rule in self.rules:
                if rule.take(request):
                    return rule.fault
            if self.rate and self._random.random() < self.rate:
                options = [f for f in self.random_faults if self._applies(f, request)]
                return self._random.choice(options) if options else None
        return None

    @staticmethod
    def _applies(fault: Fault, request: Request) -> bool:
        if fault is Fault.FLIP_REQUEST:
            return len(request.body) > 0
        if fault in (Fault.FLIP_RESPONSE, Fault.RESET_MID_BODY, Fault.SHORT_BODY):
            return request.method == "GET" and bool(request.key)
        return True

    def _serve(self, client: socket.socket) -> None:
        reader = _Reader(client)
        upstream: socket.socket | None = None
        upstream_reader: _Reader | None = None
        try:
            while not self._stopping.is_set():
                try:
                    request = self._read_request(reader)
                except (_Closed, OSError):
                    return
                fault = self._choose(request)
                record = Record(
                    request.method,
                    request.key,
                    request.query,
                    request.header("Range"),
                    request.header("If-Match"),
                    fault,
                )
                with self.stats.lock:
                    self.stats.records.append(record)
                    if fault is not None:
                        self.stats.faults[fault.value] += 1
                if fault is Fault.RESET_BEFORE_RESPONSE:
                    _reset(client)
                    return
                if fault is Fault.STALL:
                    record.ending = self._stall(client)
                    client.close()
                    return
                if fault in SYNTHETIC:
                    status, reason, code = SYNTHETIC[fault]  # type: ignore[index]
                    body = _error_document(code)
                    head = (
                        f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/xml\r\n"
                        f"Content-Length: {len(body)}\r\nx-amz-request-id: fault-proxy\r\n\r\n"
                    )
                    client.sendall(head.encode() + (b"" if request.method == "HEAD" else body))
                    record.status = status
                    record.body_bytes_sent = len(body)
                    continue
                if fault is Fault.FLIP_REQUEST:
                    request.body = _flip(request.body, len(request.body) // 2)
                if upstream is None:
                    upstream = socket.create_connection(self.upstream, timeout=60)
                    upstream_reader = _Reader(upstream)
                assert upstream_reader is not None
                asked = time.monotonic()
                upstream.sendall(request.serialize())
                status_line, headers, body = self._read_response(upstream_reader, request.method)
                record.upstream_seconds = time.monotonic() - asked
                record.status = int(status_line.split()[1])
                head = status_line + "\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers)
                head_bytes = (head + "\r\n").encode("latin-1")
                if fault is Fault.FLIP_RESPONSE and body:
                    body = _flip(body, len(body) // 2)
                if fault in (Fault.RESET_MID_BODY, Fault.SHORT_BODY) and len(body) > 1:
                    half = body[: len(body) // 2]
                    client.sendall(head_bytes + half)
                    record.body_bytes_sent = len(half)
                    if fault is Fault.RESET_MID_BODY:
                        record.ending = self._wait_until_read(client)
                        _reset(client)
                    else:
                        client.shutdown(socket.SHUT_WR)
                        client.close()
                    return
                if fault is Fault.DROP_RESPONSE:
                    _reset(client)
                    return
                client.sendall(head_bytes + body)
                record.body_bytes_sent = len(body)
                if (_get(headers, "Connection") or "").lower() == "close":
                    return
        except OSError:
            return
        finally:
            for sock in (client, upstream):
                if sock is not None:
                    with suppress(OSError):
                        sock.close()

    def _stall(self, client: socket.socket) -> str:
        """Send nothing until the client closes its end (it gave up: its read timeout fired),
        at most ``stall_seconds``. Whatever else the client sends is ignored."""
        deadline = time.monotonic() + self.stall_seconds
        poller = select.poll()
        poller.register(client, select.POLLIN | select.POLLERR | select.POLLHUP)
        while not self._stopping.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return "bound"
            if poller.poll(min(remaining, 0.1) * 1000):
                try:
                    if not client.recv(1 << 16):
                        return "client-closed"
                except OSError:
                    return "client-closed"
        return "bound"

    def _wait_until_read(self, client: socket.socket) -> str:
        """Before a reset: wait until the client has read every byte sent to it. An RST
        discards what the proxy's socket still holds (sendall returns once the bytes are
        queued, not delivered), so without this wait how much of the body reaches the clerk
        depends on how far its thread got. Done is when the proxy's socket has nothing
        unacknowledged (everything reached the client's socket) and then the client's socket
        (local address: our peer's) has nothing unread. No timing assumption: only a bound,
        ``cut_wait_seconds``, for a client that stopped reading."""
        ours, theirs = client.getsockname()[:2], client.getpeername()[:2]
        deadline = time.monotonic() + self.cut_wait_seconds
        pause = 0.0005
        while True:
            unacknowledged = _unacknowledged(client)  # first: nothing more can arrive after
            unread = _receive_queue(theirs, ours)
            if unread is None:
                return "client-closed"
            if unacknowledged == 0 and unread == 0:
                return "consumed"
            if time.monotonic() >= deadline or self._stopping.is_set():
                return "bound"
            time.sleep(pause)
            pause = min(2 * pause, 0.01)

    @staticmethod
    def _read_request(reader: _Reader) -> Request:
        block = reader.line_block()
        request_line, headers = _parse_headers(block)
        method, target, version = request_line.split(" ", 2)
        if (_get(headers, "Expect") or "").lower() == "100-continue":
            # botocore sends large bodies only after an interim 100 Continue: give it here and
            # forward the request whole, without the Expect header.
            reader.sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
            headers = [(k, v) for k, v in headers if k.lower() != "expect"]
        if (_get(headers, "Transfer-Encoding") or "").lower() == "chunked":
            body = reader.chunked()
        else:
            body = reader.exactly(int(_get(headers, "Content-Length") or 0))
        return Request(method, target, version, headers, body)

    @staticmethod
    def _read_response(reader: _Reader, method: str) -> tuple[str, list[tuple[str, str]], bytes]:
        block = reader.line_block()
        status_line, headers = _parse_headers(block)
        status = int(status_line.split()[1])
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            return status_line, headers, b""
        if (_get(headers, "Transfer-Encoding") or "").lower() == "chunked":
            return status_line, headers, reader.chunked()
        length = _get(headers, "Content-Length")
        if length is None:  # read to close
            chunks = []
            try:
                while True:
                    reader._fill()
                    chunks.append(bytes(reader.buffer))
                    reader.buffer.clear()
            except _Closed:
                pass
            return status_line, headers, b"".join(chunks)
        return status_line, headers, reader.exactly(int(length))
