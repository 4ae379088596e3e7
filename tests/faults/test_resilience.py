"""Resilience through the fault proxy: resumes that don't restart, bodies resent exactly,
permanent errors tried once, refused connections bounded."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from object_clerk import (
    AccessDeniedError,
    BucketNotFoundError,
    ConnectionFault,
    NotFoundError,
    ObjectClerk,
    ObjectNotFoundError,
    RequestRejectedError,
    RetryEvent,
)
from object_clerk.etag import MiB
from tests.faults.conftest import TRIES
from tests.faults.proxy import Fault, FaultProxy, Record, Rule
from tests.integration.faults import RequestLog, pipe_of
from tests.integration.test_operations import payload, raw_upload
from tests.servers import Backend

pytestmark = pytest.mark.integration


def get_records(proxy: FaultProxy, key: str) -> list[Record]:
    return proxy.stats.of("GET", key)


def test_cut_read_resumes_from_its_offset_not_zero(
    proxy: FaultProxy, make_clerk: Callable[..., ObjectClerk], ceph: Backend
) -> None:
    """A body reset mid-way is resumed with a ranged GET from the bytes already held; the
    proxy's byte counts show nothing was fetched twice beyond what was lost in flight.

    The proxy resets only once the clerk has read every byte it sent (an RST discards
    bytes still queued), so the clerk always holds some of the body when the cut comes,
    however loaded the machine: a resume from zero is a failure, not bad luck."""
    bucket = ceph.new_bucket()
    data = payload(12 * MiB)
    ceph.raw().put_object(Bucket=bucket, Key="k", Body=data)
    proxy.add(Rule(Fault.RESET_MID_BODY, method="GET", key="k"))
    clerk = make_clerk()
    assert clerk.get_object(bucket, "k") == data
    first, resume = get_records(proxy, "k")
    assert first.fault is Fault.RESET_MID_BODY
    assert first.ending == "consumed", first  # the RST came after the clerk read it all
    assert first.range is None  # the first GET asks for the whole object
    assert first.body_bytes_sent == 6 * MiB  # half of the 12 MiB it asked for
    assert resume.fault is None and resume.if_match == first_etag(data)
    assert resume.range is not None and resume.range.endswith("-"), resume
    offset = int(resume.range.removeprefix("bytes=").rstrip("-"))
    # Resumed from what had arrived, not from zero. The clerk may drop the bytes of the one
    # read call the reset interrupted (an io chunk, 1 MiB), so it may sit short of 4 MiB.
    assert first.body_bytes_sent // 2 < offset <= first.body_bytes_sent
    assert resume.body_bytes_sent == len(data) - offset
    assert first.body_bytes_sent + resume.body_bytes_sent < 2 * len(data)


def first_etag(data: bytes) -> str:
    return f'"{hashlib.md5(data).hexdigest()}"'


def test_object_replaced_between_attempts_is_read_fresh_never_mixed(
    proxy: FaultProxy, make_clerk: Callable[..., ObjectClerk], ceph: Backend
) -> None:
    """If the object changes between a cut read and its resume, the If-Match-pinned resume
    fails (412) and the clerk reads the new version from the start, verified."""
    bucket = ceph.new_bucket()
    old, new = payload(6 * MiB, seed=1), payload(6 * MiB, seed=2)
    raw = ceph.raw()
    raw.put_object(Bucket=bucket, Key="k", Body=old)
    proxy.add(Rule(Fault.RESET_MID_BODY, method="GET", key="k"))
    replaced = threading.Event()

    def replace_on_first_retry(event: RetryEvent) -> None:
        if not replaced.is_set():
            raw.put_object(Bucket=bucket, Key="k", Body=new)
            replaced.set()

    clerk = make_clerk()
    clerk.retrier.on_retry = replace_on_first_retry
    assert clerk.get_object(bucket, "k") == new
    records = get_records(proxy, "k")
    assert [r.status for r in records] == [200, 412, 200]
    old_etag = f'"{hashlib.md5(old).hexdigest()}"'
    assert records[1].if_match == old_etag  # the resume was pinned to the first version...
    assert records[2].if_match is None  # ...and the fresh read started over, unpinned
    assert records[2].range is None  # for the whole object


@pytest.mark.parametrize("size", [300_000, 11 * MiB], ids=["single", "multipart"])
def test_file_at_offset_is_resent_exactly_on_retry(
    size: int,
    tmp_path: Path,
    proxy: FaultProxy,
    make_clerk: Callable[..., ObjectClerk],
    ceph: Backend,
) -> None:
    """A file handed in at offset 8 uploads the bytes from offset 8, on the first attempt
    and on the retry after its body was damaged in transit; the stored object verifies."""
    bucket = ceph.new_bucket()
    data = payload(size + 8)
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    rule = proxy.add(Rule(Fault.FLIP_REQUEST, method="PUT", key="k"))
    with path.open("rb") as handle:
        handle.seek(8)
        result = make_clerk().upload_object(handle, bucket, "k")
    assert rule.fired == 1
    assert result.verified
    assert ceph.raw().get_object(Bucket=bucket, Key="k")["Body"].read() == data[8:]


def test_pipe_upload_survives_damaged_part(
    proxy: FaultProxy, make_clerk: Callable[..., ObjectClerk], ceph: Backend
) -> None:
    """A non-seekable stream is spooled part by part, so a damaged part is resent from
    memory and the stored object is exactly the stream."""
    bucket = ceph.new_bucket()
    data = payload(11 * MiB + 5)
    rule = proxy.add(Rule(Fault.FLIP_REQUEST, method="PUT", query="partNumber=2"))
    with pipe_of(data) as pipe:
        result = make_clerk().upload_object(pipe, bucket, "k")
    assert rule.fired == 1
    assert result.verification == "multipart-md5"
    assert ceph.raw().get_object(Bucket=bucket, Key="k")["Body"].read() == data


def test_generator_upload_is_spooled_and_verified(
    proxy: FaultProxy, make_clerk: Callable[..., ObjectClerk], ceph: Backend
) -> None:
    """A generator of chunks uploads in parts; a part lost in transit is resent."""
    bucket = ceph.new_bucket()
    data = payload(11 * MiB)
    proxy.add(Rule(Fault.RESET_BEFORE_RESPONSE, method="PUT", query="partNumber=1"))
    chunks = (data[i : i + 100_000] for i in range(0, len(data), 100_000))
    result = make_clerk().upload_object(chunks, bucket, "k")
    assert result.verified
    assert ceph.raw().get_object(Bucket=bucket, Key="k")["Body"].read() == data


def test_permanent_errors_are_tried_exactly_once(
    proxy: FaultProxy, make_clerk: Callable[..., ObjectClerk], ceph: Backend
) -> None:
    """404, 403 (bad credentials), 400 and a missing bucket each reach the server once."""
    bucket = ceph.new_bucket()
    clerk = make_clerk()
    with pytest.raises(ObjectNotFoundError):
        clerk.get_object(bucket, "missing")
    assert proxy.stats.count("GET", "missing") == 1
    with pytest.raises(BucketNotFoundError):
        clerk.get_object("no-such-bucket-at-all", "k")
    assert proxy.stats.count("GET", "k") == 1
    # A HEAD answer has no body: a missing bucket is a plain 404, like a missing key.
    with pytest.raises(NotFoundError):
        clerk.get_object_info("no-such-bucket-at-all", "k")
    assert proxy.stats.count("HEAD", "k") == 1
    with pytest.raises(RequestRejectedError) as rejected:
        clerk.upload_object(b"x", bucket, "bad-class", storage_class="NO_SUCH_CLASS")
    assert rejected.value.status == 400
    assert proxy.stats.count("PUT", "bad-class") == 1
    wrong = make_clerk(secret_key="not-the-right-secret")
    with pytest.raises(AccessDeniedError):
        wrong.upload_object(b"x", bucket, "denied")
    assert proxy.stats.count("PUT", "denied") == 1
    unknown = make_clerk(access_key="NOSUCHACCESSKEY00000")
    with pytest.raises(AccessDeniedError) as denied:
        unknown.get_object(bucket, "k2")
    assert denied.value.code == "InvalidAccessKeyId"
    assert proxy.stats.count("GET", "k2") == 1
    assert ceph.raw().list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0


def test_refused_connections_are_retried_a_bounded_number_of_times(
    proxy: FaultProxy, make_clerk: Callable[..., ObjectClerk], ceph: Backend
) -> None:
    """While the proxy refuses connections, an operation fails with ConnectionFault after
    exactly TRIES attempts; when refusal is brief, the retries ride it out."""
    bucket = ceph.new_bucket()
    ceph.raw().put_object(Bucket=bucket, Key="k", Body=b"data")
    clerk = make_clerk()
    log = RequestLog(clerk.client)
    with proxy.refusing():
        started = time.monotonic()
        with pytest.raises(ConnectionFault):
            clerk.get_object(bucket, "k")
        assert time.monotonic() - started < 5
    assert log.counts["GetObject"] == TRIES
    # A brief refusal: the proxy accepts again once two attempts were refused (at the second
    # retry, before its wait), whatever the time that took.
    patient = make_clerk(retry_tries=TRIES + 1)
    refused: list[RetryEvent] = []

    def accept_after_two_refusals(event: RetryEvent) -> None:
        refused.append(event)
        if len(refused) == 2:
            proxy.accept_again()

    patient.retrier.on_retry = accept_after_two_refusals
    patient_log = RequestLog(patient.client)
    with proxy.refusing():
        assert patient.get_object(bucket, "k") == b"data"
    assert len(refused) == 2
    assert all(isinstance(event.error, ConnectionFault) for event in refused)
    assert patient_log.counts["GetObject"] == 3  # two refused, the third answered


def test_store_refusing_partnumber_falls_back_to_candidate_layouts(
    proxy: FaultProxy, make_clerk: Callable[..., ObjectClerk], ceph: Backend
) -> None:
    """A store that answers HeadObject(PartNumber=1) with 400 does not fail the read: the
    clerk verifies a foreign multipart object against candidate layouts instead."""
    bucket = ceph.new_bucket()
    data = payload(2 * 8 * MiB + 5)
    raw_upload(ceph, bucket, "k", data, 8 * MiB)
    rule = proxy.add(Rule(Fault.BAD_REQUEST, method="HEAD", query="partNumber", times=-1))
    clerk = make_clerk()
    assert clerk.get_object(bucket, "k") == data
    assert clerk.get_object(bucket, "k") == data
    assert rule.fired == 1  # refused once, then not asked again
