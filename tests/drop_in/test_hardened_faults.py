"""The hardened client against Ceph RGW through the fault proxy: real requests fail, real
bytes are corrupted, and the calls still return the right bytes with boto3's shapes."""

from __future__ import annotations

import io
import random
import warnings
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, FlexibleChecksumError

import object_clerk
from object_clerk import UnverifiableObjectWarning, verification_of
from tests.drop_in.pipeline import make_client
from tests.faults.proxy import Fault, FaultProxy, Rule
from tests.servers import RAW_CONFIG, Backend

pytestmark = pytest.mark.integration

MiB = 1024 * 1024
QUICK = {"retry_delay": 0.01, "retry_jitter": 0.0, "retry_max_delay": 0.05}


def hardened(proxy: FaultProxy, ceph: Backend, *, signed: bool = True, **options: Any) -> Any:
    s3 = make_client(
        "boto3",
        proxy.endpoint,
        access_key=ceph.access_key,
        secret_key=ceph.secret_key,
        signed_payload=signed,
    )
    return object_clerk.harden(s3, **{**QUICK, **options})


def data(size: int, seed: int = 7) -> bytes:
    return random.Random(seed).randbytes(size)


def stored(ceph: Backend, size: int) -> tuple[str, bytes]:
    """A new bucket holding ``size`` bytes under key "k", written directly: its bucket and
    the bytes."""
    bucket = ceph.new_bucket()
    payload = data(size)
    ceph.raw().put_object(Bucket=bucket, Key="k", Body=payload)
    return bucket, payload


@pytest.mark.parametrize("mode", ["legacy", "standard"])
def test_botocores_own_retries_are_off(proxy: FaultProxy, ceph: Backend, mode: str) -> None:
    """Each persistent 503 costs exactly the clerk's tries, whatever botocore's mode says."""
    bucket = ceph.new_bucket()
    raw = boto3.client(
        "s3",
        endpoint_url=proxy.endpoint,
        aws_access_key_id=ceph.access_key,
        aws_secret_access_key=ceph.secret_key,
        region_name="us-east-1",
        config=RAW_CONFIG.merge(Config(retries={"mode": mode, "max_attempts": 4})),
    )
    proxy.add(Rule(Fault.SLOW_DOWN, method="HEAD", key="k", times=-1))
    with pytest.raises(ClientError):
        raw.head_object(Bucket=bucket, Key="k")
    assert proxy.stats.count("HEAD", "k") == 5  # botocore's own: 1 + 4 retries
    s3 = object_clerk.harden(raw, retry_tries=3, **QUICK)
    with pytest.raises(ClientError) as raised:
        s3.head_object(Bucket=bucket, Key="k")
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    assert proxy.stats.count("HEAD", "k") == 5 + 3


def test_a_whole_read_of_flipped_bytes_is_fetched_again(proxy: FaultProxy, ceph: Backend) -> None:
    bucket, payload = stored(ceph, 3 * MiB)
    s3 = hardened(proxy, ceph)
    proxy.add(Rule(Fault.FLIP_RESPONSE, method="GET", key="k"))
    got = s3.get_object(Bucket=bucket, Key="k")
    assert got["Body"].read() == payload
    assert verification_of(got) == "md5"
    gets = proxy.stats.of("GET", "k")
    assert len(gets) == 2 and gets[1].if_match == got["ETag"]


def test_a_partial_read_of_flipped_bytes_raises_at_its_end(
    proxy: FaultProxy, ceph: Backend
) -> None:
    bucket, _ = stored(ceph, 2 * MiB)
    s3 = hardened(proxy, ceph)
    proxy.add(Rule(Fault.FLIP_RESPONSE, method="GET", key="k"))
    got = s3.get_object(Bucket=bucket, Key="k")
    with pytest.raises(FlexibleChecksumError) as raised:  # boto3's name for it
        for _ in got["Body"].iter_chunks(64 * 1024):
            pass
    assert isinstance(raised.value, object_clerk.ChecksumMismatchError)
    assert verification_of(got) == "mismatch"


def test_a_cut_body_is_resumed_from_where_it_broke(proxy: FaultProxy, ceph: Backend) -> None:
    bucket, payload = stored(ceph, 4 * MiB)
    s3 = hardened(proxy, ceph)
    proxy.add(Rule(Fault.RESET_MID_BODY, method="GET", key="k"))
    got = s3.get_object(Bucket=bucket, Key="k")
    assert b"".join(got["Body"].iter_chunks(256 * 1024)) == payload
    first, resumed = proxy.stats.of("GET", "k")
    assert first.ending == "consumed"
    assert resumed.if_match == got["ETag"]
    assert resumed.range is not None and resumed.range.startswith("bytes=")
    start = int(resumed.range.split("=")[1].split("-")[0])
    assert 0 < start <= first.body_bytes_sent


def test_a_retried_put_resends_from_the_bodys_start(proxy: FaultProxy, ceph: Backend) -> None:
    bucket = ceph.new_bucket()
    s3 = hardened(proxy, ceph)
    body = io.BytesIO(b"HEADER--" + data(MiB))
    body.seek(8)
    proxy.add(Rule(Fault.SLOW_DOWN, method="PUT", key="k"))
    answer = s3.put_object(Bucket=bucket, Key="k", Body=body)
    assert verification_of(answer) == "md5"
    assert proxy.stats.count("PUT", "k") == 2
    assert ceph.raw().get_object(Bucket=bucket, Key="k")["Body"].read() == data(MiB)


def test_a_damaged_unsigned_part_is_refused_and_sent_again(
    proxy: FaultProxy, ceph: Backend
) -> None:
    bucket = ceph.new_bucket()
    s3 = hardened(proxy, ceph, signed=False)
    upload = s3.create_multipart_upload(Bucket=bucket, Key="k")
    proxy.add(Rule(Fault.FLIP_REQUEST, method="PUT", key="k", query="partNumber"))
    part = s3.upload_part(
        Bucket=bucket, Key="k", UploadId=upload["UploadId"], PartNumber=1, Body=data(MiB)
    )
    assert verification_of(part) == "md5"
    assert [r.status for r in proxy.stats.of("PUT")] == [400, 200]
    done = s3.complete_multipart_upload(
        Bucket=bucket,
        Key="k",
        UploadId=upload["UploadId"],
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]},
    )
    assert verification_of(done) == "multipart-md5"
    assert done["ETag"].endswith('-1"')  # Ceph answers with an empty ETag; it is filled in


def test_a_lost_create_answer_leaves_no_orphan(proxy: FaultProxy, ceph: Backend) -> None:
    bucket = ceph.new_bucket()
    s3 = hardened(proxy, ceph)
    proxy.add(Rule(Fault.DROP_RESPONSE, method="POST", key="k", query="uploads"))
    upload = s3.create_multipart_upload(Bucket=bucket, Key="k")
    open_uploads = ceph.raw().list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    assert [u["UploadId"] for u in open_uploads] == [upload["UploadId"]]


def test_a_lost_complete_answer_is_confirmed_not_failed(proxy: FaultProxy, ceph: Backend) -> None:
    bucket = ceph.new_bucket()
    s3 = hardened(proxy, ceph)
    upload = s3.create_multipart_upload(Bucket=bucket, Key="k")
    part = s3.upload_part(
        Bucket=bucket, Key="k", UploadId=upload["UploadId"], PartNumber=1, Body=data(MiB)
    )
    proxy.add(Rule(Fault.DROP_RESPONSE, method="POST", key="k", query="uploadId"))
    done = s3.complete_multipart_upload(
        Bucket=bucket,
        Key="k",
        UploadId=upload["UploadId"],
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]},
    )
    assert verification_of(done) == "multipart-md5"
    assert ceph.raw().get_object(Bucket=bucket, Key="k")["Body"].read() == data(MiB)


def test_an_unknown_layout_is_read_twice_then_reported(proxy: FaultProxy, ceph: Backend) -> None:
    """Parts of 5.5 MiB are no candidate layout: a read that no candidate proves is read
    again; the same bytes twice mean the layout is unknown (reported), not damage."""
    bucket = ceph.new_bucket()
    raw = ceph.raw()
    parts = [data(5 * MiB + MiB // 2, 1), data(MiB, 2)]
    upload = raw.create_multipart_upload(Bucket=bucket, Key="k")
    done = [
        {
            "PartNumber": n,
            "ETag": raw.upload_part(
                Bucket=bucket, Key="k", UploadId=upload["UploadId"], PartNumber=n, Body=body
            )["ETag"],
        }
        for n, body in enumerate(parts, start=1)
    ]
    raw.complete_multipart_upload(
        Bucket=bucket, Key="k", UploadId=upload["UploadId"], MultipartUpload={"Parts": done}
    )
    s3 = hardened(proxy, ceph)
    got = s3.get_object(Bucket=bucket, Key="k")
    with pytest.warns(UnverifiableObjectWarning, match="no candidate"):
        assert got["Body"].read() == b"".join(parts)
    assert verification_of(got) == "unverifiable"
    assert proxy.stats.count("GET", "k") == 2


def test_copy_object_compares_the_destination_with_the_source(
    proxy: FaultProxy, ceph: Backend
) -> None:
    bucket = ceph.new_bucket()
    ceph.raw().put_object(Bucket=bucket, Key="src", Body=data(MiB))
    s3 = hardened(proxy, ceph)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        answer = s3.copy_object(
            Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": "src"}
        )
    assert verification_of(answer) == "md5"
    copies = proxy.stats.of("PUT", "dst")
    assert len(copies) == 1
