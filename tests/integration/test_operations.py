"""Every ObjectClerk operation against Ceph RGW over HTTP, Ceph RGW over HTTPS, and moto."""

from __future__ import annotations

import hashlib
import io
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from boto3.s3.transfer import TransferConfig

from object_clerk import (
    PART_SIZE_METADATA,
    BucketNotFoundError,
    InvalidRequestError,
    ObjectClerk,
    ObjectNotFoundError,
    ObjectSaveException,
)
from object_clerk.etag import MiB
from tests.integration.faults import RequestLog, pipe_of
from tests.servers import Backend

pytestmark = pytest.mark.integration

THRESHOLD = 5 * MiB


def payload(size: int, seed: int = 0) -> bytes:
    return hashlib.shake_256(f"{seed}:{size}".encode()).digest(size) if size else b""


def small_clerk(backend: Backend, **kwargs: Any) -> ObjectClerk:
    """A clerk with a 5 MiB threshold and 5 MiB parts, so multipart tests stay small."""
    return ObjectClerk(
        **backend.clerk_kwargs(),
        multipart_threshold=kwargs.pop("multipart_threshold", THRESHOLD),
        retry_delay=0.01,
        retry_jitter=0.0,
        retry_max_delay=0.05,
        **kwargs,
    )


def raw_upload(backend: Backend, bucket: str, key: str, data: bytes, part_size: int) -> str:
    """Upload with raw boto3's managed transfer (as the AWS CLI does), return the ETag."""
    raw = backend.raw()
    config = TransferConfig(multipart_threshold=part_size, multipart_chunksize=part_size)
    raw.upload_fileobj(io.BytesIO(data), bucket, key, Config=config)
    return str(raw.head_object(Bucket=bucket, Key=key)["ETag"]).strip('"')


def test_empty_upload_is_refused_and_empty_objects_read_verified(
    backend: Backend, bucket: str
) -> None:
    """upload_object refuses empty data (ObjectSaveException, as object-clerk 1.x) before
    any request, keeping what the key held; an empty object stored otherwise reads back
    verified."""
    clerk = small_clerk(backend)
    clerk.upload_object(b"kept", bucket, "obj")
    for empty in (b"", io.BytesIO(b""), iter([b""])):
        with pytest.raises(ObjectSaveException, match="empty"):
            clerk.upload_object(empty, bucket, "obj")
    assert clerk.get_object(bucket, "obj") == b"kept"
    backend.raw().put_object(Bucket=bucket, Key="empty", Body=b"")
    assert clerk.get_object(bucket, "empty") == b""


@pytest.mark.parametrize(
    "size",
    [1, THRESHOLD - 1, THRESHOLD, THRESHOLD + 1, 2 * THRESHOLD, 2 * THRESHOLD + 7],
    ids=["1B", "thr-1", "thr", "thr+1", "2thr", "2thr+7"],
)
def test_upload_then_get_round_trips_and_etag_matches_server(
    backend: Backend, bucket: str, size: int
) -> None:
    """Uploads of every size around the threshold verify, read back verified, and the
    ETag the clerk predicted is the one the server computed."""
    clerk = small_clerk(backend)
    data = payload(size)
    result = clerk.upload_object(data, bucket, "obj")
    server_etag = str(backend.raw().head_object(Bucket=bucket, Key="obj")["ETag"]).strip('"')
    assert result.etag == server_etag
    expected_kind = "multipart-md5" if size >= THRESHOLD else "md5"
    assert result.verification == expected_kind
    assert result.size == size
    assert clerk.get_object(bucket, "obj") == data
    raw_body = backend.raw().get_object(Bucket=bucket, Key="obj")["Body"].read()
    assert raw_body == data


@pytest.mark.parametrize("part_mib", [5, 8, 15, 16])
def test_objects_uploaded_by_other_tools_verify(
    backend: Backend, bucket: str, part_mib: int, recwarn: pytest.WarningsRecorder
) -> None:
    """Multipart objects uploaded by raw boto3 with 5, 8, 15 and 16 MiB parts read back and
    copy verified: no false mismatch, no 'unverifiable' warning."""
    part = part_mib * MiB
    data = payload(2 * part + 12345, seed=part_mib)
    etag = raw_upload(backend, bucket, "foreign", data, part)
    assert etag.endswith("-3")
    clerk = small_clerk(backend)
    assert clerk.get_object(bucket, "foreign") == data
    copied = clerk.copy_object(bucket, "foreign", bucket, "foreign-copy")
    assert copied.verification == "multipart-md5"
    assert copied.etag == etag
    assert backend.raw().get_object(Bucket=bucket, Key="foreign-copy")["Body"].read() == data
    assert not recwarn.list


def test_multipart_upload_records_part_size_and_keeps_user_metadata(
    backend: Backend, bucket: str
) -> None:
    """A multipart upload records its part size, and keeps the caller's metadata and
    content type."""
    clerk = small_clerk(backend)
    data = payload(THRESHOLD + 10)
    clerk.upload_object(
        data, bucket, "meta", metadata={"origin": "test"}, content_type="application/x-test"
    )
    info = clerk.get_object_info(bucket, "meta")
    assert info["x-amz-meta-origin"] == "test"
    # The part size is MULTIPART_THRESHOLD, as in object-clerk 1.x.
    assert info[f"x-amz-meta-{PART_SIZE_METADATA}"] == str(THRESHOLD)
    assert info["content-type"] == "application/x-test"


def test_get_object_info_shape(backend: Backend, bucket: str) -> None:
    """get_object_info returns object-clerk 1.x's shape: HeadObject's HTTP response headers,
    lower-case, as strings (the ETag quoted, as S3 sends it)."""
    clerk = small_clerk(backend)
    clerk.upload_object(
        b"hello", bucket, "info.txt", metadata={"a": "b"}, content_type="text/plain"
    )
    info = clerk.get_object_info(bucket, "info.txt")
    assert info["content-length"] == "5"
    assert info["etag"] == f'"{hashlib.md5(b"hello").hexdigest()}"'
    assert info["content-type"] == "text/plain"
    assert info["x-amz-meta-a"] == "b"
    assert "GMT" in info["last-modified"]
    assert all(name == name.lower() and isinstance(v, str) for name, v in info.items())


def test_upload_sources_path_str_file_offset_and_stream(
    backend: Backend, bucket: str, tmp_path: Path
) -> None:
    """upload_object takes a str path, a Path, a file object (read from its current
    position, not 0) and a non-seekable stream; each stores exactly the intended bytes."""
    clerk = small_clerk(backend)
    data = payload(THRESHOLD + 3 * MiB + 1)
    path = tmp_path / "data.bin"
    path.write_bytes(data)
    clerk.upload_object(str(path), bucket, "from-str")
    clerk.upload_object(path, bucket, "from-path")
    with path.open("rb") as handle:
        handle.seek(8)
        result = clerk.upload_object(handle, bucket, "from-offset")
    assert result.size == len(data) - 8
    with pipe_of(data) as pipe:
        piped = clerk.upload_object(pipe, bucket, "from-pipe")
    assert piped.verification == "multipart-md5"
    raw = backend.raw()
    for key, expected in [
        ("from-str", data),
        ("from-path", data),
        ("from-offset", data[8:]),
        ("from-pipe", data),
    ]:
        assert raw.get_object(Bucket=bucket, Key=key)["Body"].read() == expected, key


def test_small_stream_of_unknown_size_is_one_put(backend: Backend, bucket: str) -> None:
    """A non-seekable stream shorter than the threshold becomes one verified PutObject."""
    clerk = small_clerk(backend)
    log = RequestLog(clerk.client)
    with pipe_of(b"tiny stream") as pipe:
        result = clerk.upload_object(pipe, bucket, "tiny")
    assert result.verification == "md5"
    assert log.counts == {"PutObject": 1}
    assert clerk.get_object(bucket, "tiny") == b"tiny stream"


def test_upload_refuses_unknown_extra_args(backend: Backend, bucket: str) -> None:
    """Pass-through arguments are checked against the allow-list before any request."""
    clerk = small_clerk(backend)
    with pytest.raises(InvalidRequestError, match="Bogus"):
        clerk.upload_object(b"x", bucket, "k", extra_args={"Bogus": 1})
    clerk.upload_object(b"x", bucket, "k", extra_args={"CacheControl": "no-cache"})
    assert clerk.get_object_info(bucket, "k")["cache-control"] == "no-cache"


def test_copy_single_and_multipart_keep_etag(backend: Backend, bucket: str) -> None:
    """Copies of single-part and clerk-uploaded multipart objects keep the source's ETag,
    across buckets too."""
    clerk = small_clerk(backend)
    other = backend.new_bucket()
    small, large = payload(1000), payload(2 * THRESHOLD + 99)
    small_up = clerk.upload_object(small, bucket, "small")
    large_up = clerk.upload_object(large, bucket, "large", content_type="application/x-big")
    small_copy = clerk.copy_object(bucket, "small", other, "small")
    large_copy = clerk.copy_object(bucket, "large", other, "large")
    assert (small_copy.etag, small_copy.verification) == (small_up.etag, "md5")
    assert (large_copy.etag, large_copy.verification) == (large_up.etag, "multipart-md5")
    assert clerk.get_object(other, "large") == large
    assert clerk.get_object_info(other, "large")["content-type"] == "application/x-big"


def test_copy_downloads_no_bytes(backend: Backend, bucket: str) -> None:
    """A verified copy of a multipart object makes no GetObject request at all."""
    clerk = small_clerk(backend)
    clerk.upload_object(payload(2 * THRESHOLD), bucket, "src")
    log = RequestLog(clerk.client)
    clerk.copy_object(bucket, "src", bucket, "dst")
    assert log.counts["GetObject"] == 0
    assert log.counts["UploadPartCopy"] == 2 or log.counts["CopyObject"] == 1


def test_move_deletes_source_only_after_verified_copy(backend: Backend, bucket: str) -> None:
    """move_object leaves a verified destination and no source."""
    clerk = small_clerk(backend)
    data = payload(THRESHOLD + 1)
    clerk.upload_object(data, bucket, "a")
    result = clerk.move_object(bucket, "a", bucket, "b")
    assert result.verified
    with pytest.raises(ObjectNotFoundError):
        clerk.get_object_info(bucket, "a")
    assert clerk.get_object(bucket, "b") == data


def test_move_onto_itself_is_refused_and_keeps_object(backend: Backend, bucket: str) -> None:
    """Moving an object onto itself is refused before anything is touched."""
    clerk = small_clerk(backend)
    clerk.upload_object(b"keep me", bucket, "same")
    with pytest.raises(InvalidRequestError, match="same object"):
        clerk.move_object(bucket, "same", bucket, "same")
    assert clerk.get_object(bucket, "same") == b"keep me"


def test_move_of_missing_source_fails_and_creates_nothing(backend: Backend, bucket: str) -> None:
    """A move from a missing source raises ObjectNotFoundError and leaves no destination."""
    clerk = small_clerk(backend)
    with pytest.raises(ObjectNotFoundError):
        clerk.move_object(bucket, "missing", bucket, "dest")
    assert backend.raw().list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0


def test_delete_object(backend: Backend, bucket: str) -> None:
    """delete_object removes the object; deleting it again is not an error."""
    clerk = small_clerk(backend)
    clerk.upload_object(b"x", bucket, "gone")
    clerk.delete_object(bucket, "gone")
    with pytest.raises(ObjectNotFoundError):
        clerk.get_object(bucket, "gone")
    clerk.delete_object(bucket, "gone")


def test_not_found_errors_are_typed_and_tried_once(backend: Backend, bucket: str) -> None:
    """A missing key or bucket is a typed error after exactly one request."""
    clerk = small_clerk(backend)
    log = RequestLog(clerk.client)
    with pytest.raises(ObjectNotFoundError) as missing_key:
        clerk.get_object(bucket, "nope")
    assert missing_key.value.status == 404
    assert missing_key.value.key == "nope"
    assert log.counts["GetObject"] == 1
    with pytest.raises(BucketNotFoundError):
        clerk.get_object("no-such-bucket-oc", "nope")
    assert log.counts["GetObject"] == 2
    with pytest.raises(BucketNotFoundError):
        list(clerk.list_objects("no-such-bucket-oc", 1000))


def test_list_2500_keys_lazily_page_by_page(backend: Backend, bucket: str) -> None:
    """Listing a bucket of 2,500 keys yields all 2,500, one request per page, lazily."""
    raw = backend.raw()
    keys = [f"k/{i:05d}" for i in range(2500)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda k: raw.put_object(Bucket=bucket, Key=k, Body=b""), keys))
    raw.put_object(Bucket=bucket, Key="other/x", Body=b"")
    clerk = small_clerk(backend)
    log = RequestLog(clerk.client)
    listing = clerk.list_objects(bucket, 1000)
    assert log.counts["ListObjectsV2"] == 0  # nothing fetched until iterated
    first = next(listing)
    assert first["Key"] == "k/00000"
    assert log.counts["ListObjectsV2"] == 1
    rest = [entry["Key"] for entry in listing]
    assert [first["Key"], *rest] == [*keys, "other/x"]
    assert log.counts["ListObjectsV2"] == 3
    assert [e["Key"] for e in clerk.list_objects(bucket, 1000, prefix="other/")] == ["other/x"]
    assert {"Key", "Size", "ETag", "LastModified"} <= set(first)
