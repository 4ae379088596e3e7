"""Reads proven by the store's full-object CRC, on moto's server (which keeps checksums,
computed with awscrt and crc32c) and on Ceph RGW 16 (which keeps none: the ETag stays).

The damage tests flip a real bit with the fault proxy in front of moto, on a ranged part
GET: botocore checks no checksum there (none was asked for), so only the clerk's own CRC
of the parts can catch it.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from boto3.s3.transfer import TransferConfig

from object_clerk import ChecksumMismatchError, ObjectClerk
from object_clerk.checksums import ALGORITHMS
from object_clerk.etag import MiB
from tests.faults.proxy import Fault, FaultProxy, Rule
from tests.integration.faults import RequestLog
from tests.integration.test_operations import payload
from tests.servers import Backend

pytestmark = pytest.mark.integration

PART = 5 * MiB
# The names S3 gives the algorithms the clerk can compute here.
S3_NAMES = {"crc64nvme": "CRC64NVME", "crc32c": "CRC32C", "crc32": "CRC32"}


def clerk_for(endpoint: str, backend: Backend, **kwargs: object) -> ObjectClerk:
    return ObjectClerk(
        endpoint_url=endpoint,
        access_key=backend.access_key,
        secret_key=backend.secret_key,
        region="us-east-1",
        download_config={"multipart_threshold": PART, "multipart_chunksize": PART},
        retry_tries=3,
        retry_delay=0.01,
        retry_jitter=0.0,
        retry_max_delay=0.02,
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.fixture
def moto_proxy(moto: Backend) -> Iterator[FaultProxy]:
    upstream = urlsplit(moto.endpoint)
    assert upstream.hostname is not None and upstream.port is not None
    with FaultProxy((upstream.hostname, upstream.port)) as running:
        yield running


def put_with_checksum(backend: Backend, bucket: str, key: str, data: bytes, name: str) -> None:
    """Upload as boto3 does with a checksum: multipart past 5 MiB (full-object for
    CRC64NVME, composite for CRC32 and CRC32C)."""
    backend.raw().upload_fileobj(
        io.BytesIO(data),
        bucket,
        key,
        ExtraArgs={"ChecksumAlgorithm": S3_NAMES[name]},
        Config=TransferConfig(multipart_threshold=PART, multipart_chunksize=PART),
    )


def crc_object(backend: Backend) -> tuple[str, bytes]:
    """A bucket holding "k": a 5-part object boto3 uploaded with a full-object CRC64NVME."""
    bucket = backend.new_bucket()
    data = payload(4 * PART + 77)
    put_with_checksum(backend, bucket, "k", data, "crc64nvme")
    return bucket, data


@pytest.mark.parametrize("name", sorted(ALGORITHMS))
def test_single_part_object_is_proven_by_its_crc(moto: Backend, name: str, tmp_path: Path) -> None:
    bucket = moto.new_bucket()
    data = payload(300_000)
    moto.raw().put_object(Bucket=bucket, Key="k", Body=data, ChecksumAlgorithm=S3_NAMES[name])
    clerk = clerk_for(moto.endpoint, moto)
    log = RequestLog(clerk.client)
    result = clerk.download_object(bucket, "k", tmp_path / "k")
    assert (result.verification, (tmp_path / "k").read_bytes()) == (name, data)
    assert log.headers[0][1].get("x-amz-checksum-mode") == "ENABLED"
    assert clerk.get_object(bucket, "k") == data


def test_multipart_full_object_crc_reads_in_parallel_without_a_layout(
    moto: Backend, tmp_path: Path
) -> None:
    """A boto3-uploaded CRC64NVME multipart object: no layout probe (the CRC covers the
    whole content), parts read in parallel and their CRCs combined."""
    bucket, data = crc_object(moto)
    clerk = clerk_for(moto.endpoint, moto)
    log = RequestLog(clerk.client)
    result = clerk.download_object(bucket, "k", tmp_path / "k")
    assert result.verification == "crc64nvme"
    assert (tmp_path / "k").read_bytes() == data
    assert log.counts["HeadObject"] == 0
    assert log.counts["GetObject"] > 1  # the front and at least one part from the back


def test_composite_crc_falls_back_to_the_etag(moto: Backend) -> None:
    """A composite CRC32C (``-N``) needs the part layout: the ETag proves the read instead."""
    bucket = moto.new_bucket()
    data = payload(2 * PART + 5)
    put_with_checksum(moto, bucket, "k", data, "crc32c")
    clerk = clerk_for(moto.endpoint, moto)
    assert clerk.download_object(bucket, "k", io.BytesIO()).verification == "multipart-md5"


def test_ceph_keeps_no_checksum_so_the_etag_proves_the_read(ceph_any: Backend) -> None:
    bucket = ceph_any.new_bucket()
    data = payload(300_000)
    ceph_any.raw().put_object(Bucket=bucket, Key="k", Body=data)
    clerk = ObjectClerk(**ceph_any.clerk_kwargs())
    log = RequestLog(clerk.client)
    assert clerk.download_object(bucket, "k", io.BytesIO()).verification == "md5"
    assert log.headers[0][1].get("x-amz-checksum-mode") == "ENABLED"  # ignored by Ceph 16


def test_a_part_damaged_in_transit_fails_the_crc_and_is_read_again(
    moto: Backend, moto_proxy: FaultProxy
) -> None:
    bucket, data = crc_object(moto)
    clerk = clerk_for(moto_proxy.endpoint, moto)
    moto_proxy.add(Rule(Fault.FLIP_RESPONSE, method="GET", key="k", nth=2))  # a part GET
    assert clerk.get_object(bucket, "k") == data
    assert moto_proxy.stats.faults[Fault.FLIP_RESPONSE.value] == 1
    assert moto_proxy.stats.count("GET", "k") > 5  # the damaged read, then a whole new one


def test_a_part_damaged_on_every_read_raises_naming_the_crc(
    moto: Backend, moto_proxy: FaultProxy
) -> None:
    bucket, _ = crc_object(moto)
    clerk = clerk_for(moto_proxy.endpoint, moto)
    # Every GET after the first is damaged: the parts from the back, and every re-read.
    moto_proxy.add(Rule(Fault.FLIP_RESPONSE, method="GET", key="k", nth=2, times=-1))
    with pytest.raises(ChecksumMismatchError) as info:
        clerk.get_object(bucket, "k")
    assert info.value.algorithm == "crc64nvme"
    assert info.value.expected != info.value.actual
    assert "do not match the object's checksum (layout: full-object crc64nvme)" in str(info.value)


def test_uploads_store_a_full_object_crc_that_proves_their_reads(
    moto: Backend, tmp_path: Path
) -> None:
    """Single-part and multipart (created FULL_OBJECT): moto keeps the CRC64NVME sent, and
    the read is proven by it without a layout probe."""
    bucket = moto.new_bucket()
    clerk = clerk_for(moto.endpoint, moto, multipart_threshold=PART)
    small, large = payload(300_000), payload(2 * PART + 9)
    assert clerk.upload_object(small, bucket, "small").verification == "md5"
    assert clerk.upload_object(large, bucket, "large").verification == "multipart-md5"
    crc = ALGORITHMS["crc64nvme"]
    for key, data in (("small", small), ("large", large)):
        head = moto.raw().head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
        assert head["ChecksumCRC64NVME"] == crc.of(data)
        assert head.get("ChecksumType", "FULL_OBJECT") == "FULL_OBJECT"
    log = RequestLog(clerk.client)
    assert clerk.download_object(bucket, "large", tmp_path / "large").verification == "crc64nvme"
    assert (tmp_path / "large").read_bytes() == large
    assert log.counts["HeadObject"] == 0


def test_a_store_that_keeps_no_checksums_is_sent_one_only_once(ceph_any: Backend) -> None:
    """Ceph RGW 16 answers without a checksum: the clerk stops computing and sending them."""
    bucket = ceph_any.new_bucket()
    clerk = ObjectClerk(**ceph_any.clerk_kwargs(), multipart_threshold=PART)
    log = RequestLog(clerk.client)
    for key, size in (("a", 1000), ("b", 1000), ("c", 2 * PART + 1)):
        assert clerk.upload_object(payload(size), bucket, key).verified
    sent = [op for op, headers in log.headers if "x-amz-checksum-crc64nvme" in headers]
    assert sent == ["PutObject"]
    # A clerk whose first upload is multipart: Create, parts and Complete carry it, once.
    clerk = ObjectClerk(**ceph_any.clerk_kwargs(), multipart_threshold=PART)
    log = RequestLog(clerk.client)
    for key, size in (("d", 2 * PART + 1), ("e", 2 * PART + 1)):
        assert clerk.upload_object(payload(size), bucket, key).verification == "multipart-md5"
    assert ceph_any.raw().get_object(Bucket=bucket, Key="d")["Body"].read() == payload(size)
    sent = [op for op, headers in log.headers if "x-amz-checksum-crc64nvme" in headers]
    assert sent == ["UploadPart"] * 3 + ["CompleteMultipartUpload"]
    create = [h for op, h in log.headers if op == "CreateMultipartUpload"]
    assert create[0].get("x-amz-checksum-type") == "FULL_OBJECT"
    assert "x-amz-checksum-type" not in create[1]


def test_a_damaged_part_the_store_did_not_check_fails_the_stored_crc(
    moto: Backend, moto_proxy: FaultProxy
) -> None:
    """SSE-C makes the ETag no MD5, and moto checks no Content-MD5: a part flipped on its
    way in is stored. The whole-object CRC moto computes from its parts then differs from
    the one sent: the object is removed, no upload is left, and the error names the CRC."""
    bucket = moto.new_bucket()
    clerk = clerk_for(moto_proxy.endpoint, moto, multipart_threshold=PART)
    sse_c = {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": "k" * 32}
    data = payload(2 * PART + 9)
    assert clerk.upload_object(data, bucket, "ok", extra_args=sse_c).verification == "crc64nvme"
    moto_proxy.add(Rule(Fault.FLIP_REQUEST, method="PUT", key="k", query="partNumber=2"))
    with pytest.raises(ChecksumMismatchError) as info:
        clerk.upload_object(data, bucket, "k", extra_args=sse_c)
    assert moto_proxy.stats.faults[Fault.FLIP_REQUEST.value] == 1
    assert info.value.algorithm == "crc64nvme"
    assert info.value.actual == ALGORITHMS["crc64nvme"].of(data)
    raw = moto.raw()
    assert [item["Key"] for item in raw.list_objects_v2(Bucket=bucket).get("Contents", [])] == [
        "ok"
    ]
    assert not raw.list_multipart_uploads(Bucket=bucket).get("Uploads")
