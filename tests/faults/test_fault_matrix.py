"""Every operation meets every fault that applies to it, injected at the network between the
clerk and the real Ceph RGW.

- A transient fault (injected once): the operation succeeds and its data verifies.
- A persistent fault (every matching request): our typed error arrives after exactly
  ``TRIES`` attempts, counted at the proxy.
- Always: no wrong bytes returned or stored (read back directly from Ceph), no incomplete
  multipart upload left, and a failed move leaves its source intact.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import pytest

from object_clerk import (
    ChecksumMismatchError,
    ConnectionFault,
    ObjectClerk,
    ObjectClerkError,
    ServerError,
    ThrottledError,
)
from object_clerk.etag import MiB
from tests.faults.conftest import READ_TIMEOUT, TRIES
from tests.faults.proxy import Fault, FaultProxy, Rule
from tests.integration.test_operations import payload
from tests.servers import Backend

pytestmark = pytest.mark.integration

PART_SIZE = 5 * MiB  # the clerk's multipart_threshold (also its part size) in conftest.py
SMALL = payload(300_000, seed=1)
LARGE = payload(11 * MiB + 3, seed=2)  # three 5 MiB parts through the clerk's settings
NEW = payload(200_000, seed=3)

COMMON = (
    Fault.RESET_BEFORE_RESPONSE,
    Fault.DROP_RESPONSE,
    Fault.STALL,
    Fault.INTERNAL_ERROR,
    Fault.SLOW_DOWN,
    Fault.TOO_MANY_REQUESTS,
)
BODY = (Fault.RESET_MID_BODY, Fault.SHORT_BODY)
APPLICABLE = {
    "object-get": (*COMMON, *BODY, Fault.FLIP_RESPONSE, Fault.ERROR_IN_200),
    "list": (*COMMON, *BODY, Fault.ERROR_IN_200),
    "head": (*COMMON, Fault.ERROR_IN_200),
    "put-body": (*COMMON, Fault.FLIP_REQUEST, Fault.ERROR_IN_200),
    "answer": (*COMMON, Fault.ERROR_IN_200),  # Create/Complete/CopyObject/UploadPartCopy
    "delete": COMMON,  # S3 answers DeleteObject with 204 and no body
}
PERSISTENT_ERROR: dict[Fault, type[ObjectClerkError]] = {
    Fault.RESET_BEFORE_RESPONSE: ConnectionFault,
    Fault.DROP_RESPONSE: ConnectionFault,
    Fault.RESET_MID_BODY: ConnectionFault,
    Fault.SHORT_BODY: ConnectionFault,
    Fault.STALL: ConnectionFault,
    Fault.INTERNAL_ERROR: ServerError,
    Fault.SLOW_DOWN: ThrottledError,
    Fault.TOO_MANY_REQUESTS: ThrottledError,
    Fault.ERROR_IN_200: ServerError,
    Fault.FLIP_REQUEST: ChecksumMismatchError,
    Fault.FLIP_RESPONSE: ChecksumMismatchError,
}


@dataclass
class World:
    """One test's bucket, as seen directly (not through the proxy)."""

    backend: Backend
    bucket: str
    direct: ObjectClerk
    returned: dict[str, Any] = field(default_factory=dict)

    def stored(self, key: str) -> bytes | None:
        raw = self.backend.raw()
        try:
            return bytes(raw.get_object(Bucket=self.bucket, Key=key)["Body"].read())
        except raw.exceptions.NoSuchKey:
            return None

    def keys(self) -> list[str]:
        listing = self.backend.raw().list_objects_v2(Bucket=self.bucket)
        return [entry["Key"] for entry in listing.get("Contents", [])]

    def uploads(self) -> list[Any]:
        listing = self.backend.raw().list_multipart_uploads(Bucket=self.bucket)
        return list(listing.get("Uploads", []))


@dataclass(frozen=True)
class Operation:
    name: str
    setup: Callable[[World], None]
    run: Callable[[ObjectClerk, World], None]
    # What must hold afterwards: `succeeded` tells whether the call returned.
    check: Callable[[World, bool], None]


def _setup_source(world: World, data: bytes = SMALL) -> None:
    world.direct.upload_object(data, world.bucket, "src")


def _check_get(world: World, succeeded: bool) -> None:
    if succeeded:
        assert world.returned["data"] == LARGE


def _check_info(world: World, succeeded: bool) -> None:
    if succeeded:
        assert world.returned["info"]["content-length"] == str(len(SMALL))


def _check_upload(data: bytes) -> Callable[[World, bool], None]:
    def check(world: World, succeeded: bool) -> None:
        stored = world.stored("k")
        assert stored in ((data,) if succeeded else (None, data))

    return check


def _check_copy(data: bytes) -> Callable[[World, bool], None]:
    def check(world: World, succeeded: bool) -> None:
        assert world.stored("src") == data
        assert world.stored("dst") in ((data,) if succeeded else (None, data))

    return check


def _check_move(world: World, succeeded: bool) -> None:
    source, dest = world.stored("src"), world.stored("dst")
    if succeeded:
        assert (source, dest) == (None, SMALL)
    else:
        assert source == SMALL  # a failed move never loses its source
        assert dest in (None, SMALL)


def _check_delete(world: World, succeeded: bool) -> None:
    if succeeded:
        assert world.stored("src") is None
    else:
        assert world.stored("src") in (None, SMALL)


def _check_list(world: World, succeeded: bool) -> None:
    if succeeded:
        assert world.returned["keys"] == [f"l/{i:02d}" for i in range(25)]


def _setup_list(world: World) -> None:
    raw = world.backend.raw()
    for i in range(25):
        raw.put_object(Bucket=world.bucket, Key=f"l/{i:02d}", Body=b"x")


OPERATIONS = {
    "get": Operation(
        "get",
        lambda w: w.direct.upload_object(LARGE, w.bucket, "k"),
        lambda c, w: w.returned.update(data=c.get_object(w.bucket, "k")),
        _check_get,
    ),
    "info": Operation(
        "info",
        _setup_source,
        lambda c, w: w.returned.update(info=c.get_object_info(w.bucket, "src")),
        _check_info,
    ),
    "upload-single": Operation(
        "upload-single",
        lambda w: None,
        lambda c, w: c.upload_object(NEW, w.bucket, "k"),
        _check_upload(NEW),
    ),
    "upload-multipart": Operation(
        "upload-multipart",
        lambda w: None,
        lambda c, w: c.upload_object(LARGE, w.bucket, "k"),
        _check_upload(LARGE),
    ),
    "copy-single": Operation(
        "copy-single",
        _setup_source,
        lambda c, w: c.copy_object(w.bucket, "src", w.bucket, "dst"),
        _check_copy(SMALL),
    ),
    "copy-multipart": Operation(
        "copy-multipart",
        lambda w: _setup_source(w, LARGE),
        lambda c, w: c.copy_object(w.bucket, "src", w.bucket, "dst"),
        _check_copy(LARGE),
    ),
    "move": Operation(
        "move",
        _setup_source,
        lambda c, w: c.move_object(w.bucket, "src", w.bucket, "dst"),
        _check_move,
    ),
    "delete": Operation(
        "delete",
        _setup_source,
        lambda c, w: c.delete_object(w.bucket, "src"),
        _check_delete,
    ),
    "list": Operation(
        "list",
        _setup_list,
        lambda c, w: w.returned.update(keys=[e["Key"] for e in c.list_objects(w.bucket, 10)]),
        _check_list,
    ),
}

# (operation, the request the fault hits, its kind, the rule's match arguments)
TARGETS: list[tuple[str, str, str, dict[str, Any]]] = [
    ("get", "GetObject", "object-get", {"method": "GET", "key": "k"}),
    ("info", "HeadObject", "head", {"method": "HEAD", "key": "src"}),
    ("upload-single", "PutObject", "put-body", {"method": "PUT", "key": "k"}),
    ("upload-multipart", "Create", "answer", {"method": "POST", "key": "k", "query": "uploads"}),
    ("upload-multipart", "UploadPart", "put-body", {"method": "PUT", "query": "partNumber"}),
    ("upload-multipart", "Complete", "answer", {"method": "POST", "query": "uploadId"}),
    ("copy-single", "CopyObject", "answer", {"method": "PUT", "key": "dst"}),
    ("copy-multipart", "UploadPartCopy", "answer", {"method": "PUT", "query": "partNumber"}),
    ("move", "CopyObject", "answer", {"method": "PUT", "key": "dst"}),
    ("move", "DeleteObject", "delete", {"method": "DELETE", "key": "src"}),
    ("delete", "DeleteObject", "delete", {"method": "DELETE", "key": "src"}),
    ("list", "ListObjectsV2", "list", {"method": "GET", "key": "", "query": "list-type"}),
]

# Persistent faults the clerk recovers from anyway, because the server did the work and only
# the answers were lost: a HEAD then shows the upload completed with the expected ETag, or
# the deleted key gone.
RECOVERS_FROM_PERSISTENT = {
    ("upload-multipart", "Complete", Fault.DROP_RESPONSE),
    ("move", "DeleteObject", Fault.DROP_RESPONSE),
    ("delete", "DeleteObject", Fault.DROP_RESPONSE),
}

CASES = [
    pytest.param(op, target, fault, match, id=f"{op}-{target}-{fault.value}")
    for op, target, kind, match in TARGETS
    for fault in APPLICABLE[kind]
]


@pytest.fixture
def world(ceph: Backend, direct_clerk: ObjectClerk) -> World:
    return World(ceph, ceph.new_bucket(), direct_clerk)


def attempts_per_request(proxy: FaultProxy) -> Counter[tuple[str, str, str]]:
    """How many faulted attempts each distinct request got. A request is identified by
    method, key and part: the part number of an upload, or for a read the end of the range
    it serves, which stays the same when a part is resumed. An unranged or open-ended GET
    serves part 1 (the first part of a parallel read, or the whole of a single stream), and
    so does the first GET of each read, the one not pinned with If-Match."""
    counts: Counter[tuple[str, str, str]] = Counter()
    for record in proxy.stats.records:
        if record.fault is None:
            continue
        part = parse_qs(record.query).get("partNumber", [""])[0]
        if record.method == "GET" and record.key:
            end = record.range.rsplit("-", 1)[1] if record.range and record.if_match else ""
            part = end or str(PART_SIZE - 1)
        counts[(record.method, record.key, part)] += 1
    return counts


def assert_faults_were_clean(proxy: FaultProxy) -> None:
    """The proxy never had to give up waiting before a fault: every stall ended with the
    clerk giving up on it (its read timeout), every cut body came after the clerk had read
    what was sent. So the faults were the ones meant, not whatever the scheduler allowed."""
    forced = [r for r in proxy.stats.records if r.ending == "bound"]
    assert forced == [], forced


def clerk_for(fault: Fault, make_clerk: Callable[..., ObjectClerk]) -> ObjectClerk:
    """A clerk that gives up on a stall after READ_TIMEOUT; for other faults, one patient
    enough that no slow answer on a loaded machine times out as an extra fault."""
    return make_clerk(read_timeout=READ_TIMEOUT) if fault is Fault.STALL else make_clerk()


def _run(operation: Operation, clerk: ObjectClerk, world: World) -> BaseException | None:
    try:
        operation.run(clerk, world)
    except ObjectClerkError as exc:
        return exc
    return None


@pytest.mark.parametrize(("op", "target", "fault", "match"), CASES)
def test_transient_fault_is_survived_and_verifies(
    op: str,
    target: str,
    fault: Fault,
    match: dict[str, Any],
    proxy: FaultProxy,
    make_clerk: Callable[..., ObjectClerk],
    world: World,
) -> None:
    """One fault on this request: the operation succeeds and its result verifies."""
    operation = OPERATIONS[op]
    operation.setup(world)
    rule = proxy.add(Rule(fault, times=1, **match))
    error = _run(operation, clerk_for(fault, make_clerk), world)
    assert rule.fired == 1, "the fault was never injected"
    assert error is None, f"{type(error).__name__}: {error}"
    assert_faults_were_clean(proxy)
    operation.check(world, True)
    assert world.uploads() == []


@pytest.mark.parametrize(("op", "target", "fault", "match"), CASES)
def test_persistent_fault_fails_typed_after_exact_attempts(
    op: str,
    target: str,
    fault: Fault,
    match: dict[str, Any],
    proxy: FaultProxy,
    make_clerk: Callable[..., ObjectClerk],
    world: World,
) -> None:
    """The fault on every attempt: our typed error after exactly TRIES attempts at the proxy,
    no wrong bytes stored, no orphaned upload, no lost source."""
    operation = OPERATIONS[op]
    operation.setup(world)
    rule = proxy.add(Rule(fault, times=-1, **match))
    error = _run(operation, clerk_for(fault, make_clerk), world)
    if (op, target, fault) in RECOVERS_FROM_PERSISTENT:
        assert error is None, f"{type(error).__name__}: {error}"
        operation.check(world, True)
    else:
        assert isinstance(error, PERSISTENT_ERROR[fault]), f"{type(error).__name__}: {error}"
        assert rule.fired >= TRIES
        # No request (each part is one) made more than TRIES attempts, and the one that
        # failed made exactly TRIES. (A part can finish on a faulted response that was cut
        # only after the part's own bytes.)
        attempts = attempts_per_request(proxy)
        assert max(attempts.values()) == TRIES, attempts
        operation.check(world, False)
    assert_faults_were_clean(proxy)
    assert world.uploads() == []
