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
