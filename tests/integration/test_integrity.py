"""Integrity and retries against real servers: real bytes are damaged on their way and real
connections are cut, and the clerk must retry, resume, or fail typed with nothing lost."""

from __future__ import annotations

import logging
import warnings
from typing import Any

import boto3
import pytest
from botocore.config import Config

from object_clerk import (
    AccessDeniedError,
    ChecksumMismatchError,
    ConnectionFault,
    ObjectClerk,
    TLSError,
    UnverifiableObjectError,
    UnverifiableObjectWarning,
)
from object_clerk.etag import MiB
from tests.integration.faults import (
    BreakResponseStreams,
    CorruptRequestBodies,
    CorruptResponseBodies,
    RequestLog,
)
from tests.integration.test_operations import THRESHOLD, payload, raw_upload, small_clerk
from tests.servers import Backend, free_port

pytestmark = pytest.mark.integration

TRIES = 3


def fast_clerk(backend: Backend, **kwargs: Any) -> ObjectClerk:
    return small_clerk(backend, retry_tries=TRIES, **kwargs)


def assert_absent(backend: Backend, bucket: str, key: str) -> None:
    raw = backend.raw()
    listed = [o["Key"] for o in raw.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert key not in listed
    assert raw.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


# ----------------------------------------------------------------------- uploads ---


def test_damaged_put_body_is_refused_by_ceph_and_retried(ceph_any: Backend) -> None:
    """A PutObject body damaged in transit is refused by Ceph and the retry stores the right
    bytes."""
    ceph = ceph_any
    bucket = ceph.new_bucket()
    clerk = fast_clerk(ceph)
    damage = CorruptRequestBodies(clerk.client, "PutObject", times=1)
    log = RequestLog(clerk.client)
    data = payload(1000)
    result = clerk.upload_object(data, bucket, "k")
    assert damage.done == 1
    assert log.counts["PutObject"] == 2
    assert result.verification == "md5"
    assert ceph.raw().get_object(Bucket=bucket, Key="k")["Body"].read() == data


def test_persistently_damaged_put_fails_typed_after_exact_attempts_and_stores_nothing(
    ceph_any: Backend,
) -> None:
    """When every attempt's body is damaged, ChecksumMismatchError arrives after exactly
    `retry_tries` attempts, and nothing is stored under the key.

    Over HTTP SigV4 signs the payload's SHA-256, so Ceph refuses it for that; over HTTPS
    botocore sends UNSIGNED-PAYLOAD and only the clerk's Content-MD5 protects the body.
    """
    ceph = ceph_any
    bucket = ceph.new_bucket()
    clerk = fast_clerk(ceph)
    CorruptRequestBodies(clerk.client, "PutObject", times=100)
    log = RequestLog(clerk.client)
    with pytest.raises(ChecksumMismatchError) as info:
        clerk.upload_object(payload(1000), bucket, "k")
    expected_code = "BadDigest" if ceph.ca_bundle else "XAmzContentSHA256Mismatch"
    assert info.value.code == expected_code
    assert log.counts["PutObject"] == TRIES
    assert_absent(ceph, bucket, "k")


def test_stored_damage_is_caught_by_etag_and_retried(backend: Backend, bucket: str) -> None:
    """Bytes damaged *with* a matching Content-MD5 get stored by the server; the clerk's
    ETag comparison catches it and the retry stores the right bytes."""
    clerk = fast_clerk(backend)
    damage = CorruptRequestBodies(clerk.client, "PutObject", times=1, fix_md5=True)
    data = payload(2000)
    result = clerk.upload_object(data, bucket, "k")
    assert damage.done == 1
    assert result.verification == "md5"
    assert backend.raw().get_object(Bucket=bucket, Key="k")["Body"].read() == data


def test_persistent_stored_damage_removes_the_object(backend: Backend, bucket: str) -> None:
    """If stored bytes never verify, the object is removed and ChecksumMismatchError raised:
    no wrong bytes stay under the key."""
    clerk = fast_clerk(backend)
    CorruptRequestBodies(clerk.client, "PutObject", times=100, fix_md5=True)
    log = RequestLog(clerk.client)
    with pytest.raises(ChecksumMismatchError) as info:
        clerk.upload_object(payload(2000), bucket, "k")
    assert info.value.algorithm == "md5"
    assert info.value.expected != info.value.actual
    assert log.counts["PutObject"] == TRIES
    assert_absent(backend, bucket, "k")


def test_damaged_part_is_retried_alone(backend: Backend, bucket: str) -> None:
    """A damaged part is caught (BadDigest on Ceph; ETag check on moto) and only that part
    is sent again."""
    clerk = fast_clerk(backend)
    CorruptRequestBodies(clerk.client, "UploadPart", times=1, fix_md5=not backend.is_ceph)
    log = RequestLog(clerk.client)
    data = payload(3 * 5 * MiB + 5)  # 4 parts of the 5 MiB threshold
    result = clerk.upload_object(data, bucket, "mp")
    assert result.verification == "multipart-md5"
    assert log.counts["UploadPart"] == 4 + 1
    assert clerk.get_object(bucket, "mp") == data


def test_failed_multipart_upload_is_aborted(backend: Backend, bucket: str) -> None:
    """A multipart upload whose parts keep failing is aborted: no orphaned upload, no object,
    and the error is typed."""
    clerk = fast_clerk(backend)
    CorruptRequestBodies(clerk.client, "UploadPart", times=1000, fix_md5=not backend.is_ceph)
    log = RequestLog(clerk.client)
    with pytest.raises(ChecksumMismatchError):
        clerk.upload_object(payload(2 * 8 * MiB + 5), bucket, "mp")
    assert log.counts["AbortMultipartUpload"] == 1
    assert_absent(backend, bucket, "mp")


# ------------------------------------------------------------------------- reads ---


def test_damaged_response_body_is_detected_and_read_again(backend: Backend, bucket: str) -> None:
    """A bit flipped in a real GET body is caught by the MD5 computed while reading, and the
    object is read again: the caller gets the right bytes."""
    clerk = fast_clerk(backend)
    data = payload(100_000)
    clerk.upload_object(data, bucket, "k")
    damage = CorruptResponseBodies(clerk.client, times=1, at=5000)
    log = RequestLog(clerk.client)
    assert clerk.get_object(bucket, "k") == data
    assert damage.remaining == 0
    assert log.counts["GetObject"] == 2


@pytest.mark.parametrize("kind", ["single", "multipart-recorded", "multipart-foreign"])
def test_persistently_damaged_reads_raise_mismatch_after_exact_attempts(
    backend: Backend, bucket: str, kind: str
) -> None:
    """Bytes that never verify raise ChecksumMismatchError after exactly `retry_tries` GETs;
    the damaged bytes are never returned."""
    clerk = fast_clerk(backend)
    data = payload(2 * 8 * MiB + 3)
    if kind == "single":
        data = data[:1000]
        clerk.upload_object(data, bucket, "k")
    elif kind == "multipart-recorded":
        clerk.upload_object(data, bucket, "k")
    else:
        raw_upload(backend, bucket, "k", data, 8 * MiB)
    # Damage the first byte of every response: single streams and parallel parts alike.
    CorruptResponseBodies(clerk.client, times=100, at=0)
    log = RequestLog(clerk.client)
    if kind == "multipart-foreign" and backend.is_ceph:
        # Ceph cannot tell a foreign object's layout, so a failed match is not proof of
        # damage: it is reported unverifiable (strict mode raises), never as corrupt.
        strict = fast_clerk(backend, strict_verification=True)
        CorruptResponseBodies(strict.client, times=100, at=0)
        with pytest.raises(UnverifiableObjectError):
            strict.get_object(bucket, "k")
        return
    with pytest.raises(ChecksumMismatchError) as info:
        clerk.get_object(bucket, "k")
    # One whole read per attempt (its first GET is unranged; parallel parts are ranged).
    assert log.first_gets() == TRIES
    assert info.value.expected != info.value.actual


def test_cut_stream_resumes_from_offset_pinned_to_etag(backend: Backend, bucket: str) -> None:
    """A GET whose real connection is cut mid-body resumes with a ranged GET from the bytes
    already held, pinned with If-Match; the result verifies."""
    clerk = fast_clerk(backend)
    data = payload(3 * MiB)
    clerk.upload_object(data, bucket, "k")
    BreakResponseStreams(clerk.client, times=1, after=MiB)
    log = RequestLog(clerk.client)
    assert clerk.get_object(bucket, "k") == data
    ranges = log.ranges()
    assert len(ranges) == 2
    assert ranges[0] is None  # the first GET asks for the whole object
    assert ranges[1] is not None and ranges[1].endswith("-")
    resumed_from = int(ranges[1].split("=")[1].rstrip("-"))
    assert MiB <= resumed_from < len(data)
    resume_headers = [h for op, h in log.headers if op == "GetObject"][1]
    etag = clerk.get_object_info(bucket, "k")["etag"]
    assert resume_headers.get("If-Match", "").strip('"') == etag.strip('"')


def test_object_replaced_during_read_is_never_mixed(backend: Backend, bucket: str) -> None:
    """If the object is replaced between a cut read and its resume, the clerk does not mix
    versions: it returns the new version, verified, read from the start."""
    clerk = fast_clerk(backend)
    old, new = payload(2 * MiB, seed=1), payload(2 * MiB, seed=2)
    clerk.upload_object(old, bucket, "k")
    raw = backend.raw()

    def replace_object(**_: Any) -> None:
        raw.put_object(Bucket=bucket, Key="k", Body=new)

    breaker = BreakResponseStreams(clerk.client, times=1, after=MiB)
    original_wrap = breaker._wrap

    def wrap_and_replace(parsed: dict[str, Any], **kw: Any) -> None:
        if breaker.remaining:
            replace_object()
        original_wrap(parsed=parsed, **kw)

    clerk.client.meta.events.unregister("after-call.s3.GetObject", original_wrap)
    clerk.client.meta.events.register("after-call.s3.GetObject", wrap_and_replace)
    log = RequestLog(clerk.client)
    assert clerk.get_object(bucket, "k") == new
    last = [h for op, h in log.headers if op == "GetObject"][-1]
    assert "If-Match" not in last  # the final, successful read started over, unpinned...
    assert "Range" not in last  # ...for the whole object


def test_multipart_layout_found_by_partnumber_on_moto(moto: Backend) -> None:
    """On a store that honours HeadObject(PartNumber=1) (AWS, moto) a foreign multipart
    object's layout is found exactly, with one HEAD."""
    bucket = moto.new_bucket()
    data = payload(2 * 7 * MiB + 1)
    raw_upload(moto, bucket, "k", data, 7 * MiB)  # 7 MiB: a size no candidate list favours
    clerk = fast_clerk(moto)
    log = RequestLog(clerk.client)
    assert clerk.get_object(bucket, "k") == data
    assert log.counts["HeadObject"] == 1


# ----------------------------------------------------------------- unverifiable ---


def test_sse_kms_is_unverifiable_not_corrupt(moto: Backend) -> None:
    """An SSE-KMS object without a stored CRC is stored (its upload proven by Content-MD5),
    read back with an UnverifiableObjectWarning, and refused only in strict mode; it is never
    deleted. (With the clerk's upload checksum, its reads verify by CRC: test_core_correctness.)"""
    bucket = moto.new_bucket()
    clerk = fast_clerk(moto, upload_checksum="off")
    result = clerk.upload_object(
        b"secret data", bucket, "kms", extra_args={"ServerSideEncryption": "aws:kms"}
    )
    assert result.verification == "content-md5"
    with pytest.warns(UnverifiableObjectWarning, match="aws:kms") as caught:
        assert clerk.get_object(bucket, "kms") == b"secret data"
    assert caught[0].filename == __file__  # the warning points at the caller's line
    strict = fast_clerk(moto, strict_verification=True)
    with pytest.raises(UnverifiableObjectError):
        strict.get_object(bucket, "kms")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnverifiableObjectWarning)
        copied = clerk.copy_object(bucket, "kms", bucket, "kms-copy")
    assert copied.verification == "unverifiable"
    assert moto.raw().head_object(Bucket=bucket, Key="kms")["ContentLength"] == 11


# ----------------------------------------------------------- permanent failures ---


def test_wrong_credentials_fail_once_without_leaking(backend: Backend, bucket: str) -> None:
    """Wrong credentials give AccessDeniedError after one request; the secret appears in no
    error text or log line."""
    if backend.name == "moto":
        pytest.skip("moto's server does not check signatures")
    secret = "WRONG-secret-value-0123456789"
    kwargs = {**backend.clerk_kwargs(), "secret_key": secret}
    clerk = ObjectClerk(**kwargs, retry_delay=0, retry_jitter=0.0)
    log = RequestLog(clerk.client)
    with pytest.raises(AccessDeniedError) as info:
        clerk.get_object(bucket, "k")
    assert log.counts["GetObject"] == 1
    assert secret not in str(info.value)
    assert secret not in repr(info.value)
    assert secret not in repr(clerk)
    assert secret not in repr(clerk.settings)


def test_refused_connection_retries_exactly_then_fails_typed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An endpoint that refuses connections is tried exactly `retry_tries` times, each retry
    logged at WARNING without secrets, then ConnectionFault is raised."""
    secret = "never-log-this-secret"
    clerk = ObjectClerk(
        endpoint_url=f"http://127.0.0.1:{free_port()}",
        access_key="AKIDEXAMPLE",
        secret_key=secret,
        region="us-east-1",
        retry_tries=4,
        retry_delay=0.01,
        retry_jitter=0.0,
        retry_max_delay=0.02,
    )
    log = RequestLog(clerk.client)
    assert clerk.max_http_attempts == 4
    with caplog.at_level(logging.WARNING, logger="object_clerk"), pytest.raises(ConnectionFault):
        clerk.get_object("bucket", "key")
    assert log.counts["GetObject"] == 4
    retries = [r for r in caplog.records if hasattr(r, "retry")]
    assert [r.retry.attempt for r in retries] == [1, 2, 3]
    assert all(secret not in r.getMessage() for r in caplog.records)


def test_https_without_ca_bundle_is_a_tls_error_tried_once(
    ceph_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """HTTPS to a self-signed server without its CA bundle fails at once with TLSError."""
    monkeypatch.delenv("AWS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("OBJECT_CLERK_CA_BUNDLE", raising=False)
    clerk = ObjectClerk(
        endpoint_url=ceph_env["CEPH_RGW_HTTPS_ENDPOINT"],
        access_key=ceph_env["CEPH_RGW_ACCESS_KEY"],
        secret_key=ceph_env["CEPH_RGW_SECRET_KEY"],
        region="us-east-1",
        retry_delay=0,
        retry_jitter=0.0,
    )
    log = RequestLog(clerk.client)
    with pytest.raises(TLSError):
        clerk.get_object("bucket", "key")
    assert log.counts["GetObject"] == 1


def test_injected_client_is_used_and_its_retries_counted(ceph: Backend) -> None:
    """ObjectClerk(client=...) adopts an existing boto3 client; the clerk reports how its
    own retries multiply with the client's."""
    bucket = ceph.new_bucket()
    client = boto3.client(
        "s3",
        endpoint_url=ceph.endpoint,
        aws_access_key_id=ceph.access_key,
        aws_secret_access_key=ceph.secret_key,
        region_name="us-east-1",
        config=Config(retries={"mode": "standard"}),
    )
    clerk = ObjectClerk(client=client, retry_tries=2)
    assert clerk.client is client
    assert clerk.max_http_attempts == 2 * 3
    clerk.upload_object(b"adopted", bucket, "k")
    assert clerk.get_object(bucket, "k") == b"adopted"


def test_threshold_under_5mib_never_gives_false_mismatch(backend: Backend, bucket: str) -> None:
    """A 1 MiB threshold is legal: parts are raised to 5 MiB (as s3transfer does) and the
    upload and read verify."""
    clerk = small_clerk(backend, multipart_threshold=MiB)
    data = payload(THRESHOLD + MiB)
    result = clerk.upload_object(data, bucket, "k")
    assert result.verification == "multipart-md5"
    assert clerk.get_object(bucket, "k") == data
