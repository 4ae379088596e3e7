"""The helpers the seed packages offer, against the real servers: buckets (cloudgeass),
JSON and YAML documents (filecloudsync), store-to-store transfers (fluke's transfer_to),
and the library calls behind the command line: file checks, scrubs, prefix copies and
moves, deletion by prefix, and listings rolled up by a delimiter.
"""

from __future__ import annotations

import gzip
import hashlib
import os
from pathlib import Path
from typing import Any

import pytest

from object_clerk import (
    BucketNotFoundError,
    BulkTransferError,
    CheckStatus,
    ChecksumMismatchError,
    DataTypeError,
    InvalidRequestError,
    LocalIOError,
    ObjectClerk,
    RequestRejectedError,
    TransientError,
    UnverifiableObjectError,
    UnverifiableObjectWarning,
)
from object_clerk.engine import PART_SIZE_METADATA
from object_clerk.etag import MiB
from tests.faults.proxy import Fault, FaultProxy, Rule
from tests.servers import Backend, corrupt_at_rest

pytestmark = pytest.mark.integration


def clerk_on(backend: Backend, **kwargs: Any) -> ObjectClerk:
    options: dict[str, Any] = {
        **backend.clerk_kwargs(),
        "multipart_threshold": 5 * MiB,
        "retry_tries": 2,
        "retry_delay": 0.01,
        "retry_jitter": 0.0,
        **kwargs,
    }
    return ObjectClerk(**options)


def keys(backend: Backend, bucket: str) -> list[str]:
    pages = backend.raw().get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return [entry["Key"] for page in pages for entry in page.get("Contents", [])]


# ------------------------------------------------------------------ buckets ----


def test_buckets_create_list_delete(backend: Backend) -> None:
    clerk = clerk_on(backend)
    name = f"oc-buckets-{os.urandom(4).hex()}"
    assert clerk.create_bucket(name) is True
    backend.buckets.append(name)  # removed afterwards if a check below fails
    assert clerk.create_bucket(name) is False  # yours already: fine
    assert name in [bucket["Name"] for bucket in clerk.list_buckets()]

    raw = backend.raw()
    raw.put_object(Bucket=name, Key="a", Body=b"a")
    raw.create_multipart_upload(Bucket=name, Key="unfinished")
    with pytest.raises(RequestRejectedError, match="not empty"):
        clerk.delete_bucket(name)
    assert keys(backend, name) == ["a"]  # nothing deleted
    clerk.delete_bucket(name, empty=True)
    backend.buckets.remove(name)
    assert name not in [bucket["Name"] for bucket in clerk.list_buckets()]
    with pytest.raises(BucketNotFoundError):
        clerk.delete_bucket(name)


def test_delete_bucket_empties_versions_first(moto: Backend) -> None:
    clerk = clerk_on(moto)
    name = moto.new_bucket("versions")
    raw = moto.raw()
    raw.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    for body in (b"one", b"two"):
        raw.put_object(Bucket=name, Key="k", Body=body)
    raw.delete_object(Bucket=name, Key="k")  # a delete marker over two versions
    clerk.delete_bucket(name, empty=True)
    moto.buckets.remove(name)
    assert name not in [bucket["Name"] for bucket in raw.list_buckets()["Buckets"]]


def test_delete_bucket_pages_through_versions_while_deleting(backend: Backend) -> None:
    """One version a page: each page is deleted before the next is asked for, from a
    marker that names a version already gone."""
    clerk = ObjectClerk(**backend.clerk_kwargs(), list_objects_page_size=1)
    name = backend.new_bucket("pages")
    raw = backend.raw()
    raw.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    for key in ("a", "b", "c"):
        for body in (b"one", b"two"):
            raw.put_object(Bucket=name, Key=key, Body=body)
    raw.delete_object(Bucket=name, Key="b")  # and a delete marker
    clerk.delete_bucket(name, empty=True)
    backend.buckets.remove(name)
    assert name not in [bucket["Name"] for bucket in raw.list_buckets()["Buckets"]]


def test_bucket_names_are_checked(ceph: Backend) -> None:
    clerk = clerk_on(ceph)
    for bad in ("", "UPPER", "a" * 64):
        with pytest.raises(InvalidRequestError):
            clerk.create_bucket(bad)


# ------------------------------------------------------------------ documents ----


def test_json_and_yaml_round_trip_gzip_by_suffix(backend: Backend) -> None:
    clerk = clerk_on(backend)
    bucket = backend.new_bucket()
    value = {"name": "clerk", "sizes": [1, 2, 3], "nested": {"ok": True, "none": None}}
    for key in ("doc.json", "doc.json.gz"):
        result = clerk.write_json(value, bucket, key, indent=2)
        assert result.verified
        assert clerk.read_json(bucket, key) == value
    for key in ("doc.yaml", "doc.yaml.gz"):
        clerk.write_yaml(value, bucket, key)
        assert clerk.read_yaml(bucket, key) == value
    raw = backend.raw()
    stored = raw.get_object(Bucket=bucket, Key="doc.json.gz")
    assert stored["ContentType"] == "application/gzip"
    assert gzip.decompress(stored["Body"].read()).startswith(b'{\n  "name"')
    assert raw.head_object(Bucket=bucket, Key="doc.yaml")["ContentType"] == "application/yaml"
    # The same document makes the same bytes (no gzip timestamp): the same ETag.
    first = raw.head_object(Bucket=bucket, Key="doc.json.gz")["ETag"]
    clerk.write_json(value, bucket, "doc.json.gz", indent=2)
    assert raw.head_object(Bucket=bucket, Key="doc.json.gz")["ETag"] == first


def test_documents_refuse_what_they_cannot_read_or_write(ceph: Backend) -> None:
    clerk = clerk_on(ceph)
    bucket = ceph.new_bucket()
    raw = ceph.raw()
    raw.put_object(Bucket=bucket, Key="bad.json", Body=b"{not json")
    raw.put_object(Bucket=bucket, Key="plain.json.gz", Body=b'{"not": "gzipped"}')
    with pytest.raises(InvalidRequestError, match="not valid JSON"):
        clerk.read_json(bucket, "bad.json")
    with pytest.raises(InvalidRequestError, match="gzip"):
        clerk.read_json(bucket, "plain.json.gz")
    with pytest.raises(InvalidRequestError, match="not valid YAML"):
        raw.put_object(Bucket=bucket, Key="bad.yaml", Body=b"a: [unclosed")
        clerk.read_yaml(bucket, "bad.yaml")
    with pytest.raises(DataTypeError, match="JSON"):
        clerk.write_json({"when": object()}, bucket, "x.json")
    assert keys(ceph, bucket) == ["bad.json", "bad.yaml", "plain.json.gz"]  # nothing written


# ------------------------------------------------------------------ transfer_to ----


def test_transfer_to_streams_ceph_to_moto_verified_with_metadata(
    ceph: Backend, moto: Backend
) -> None:
    source, destination = clerk_on(ceph), clerk_on(moto, multipart_threshold=6 * MiB)
    src_bucket, dst_bucket = ceph.new_bucket(), moto.new_bucket()
    data = os.urandom(17 * MiB + 3)
    source.upload_object(
        data, src_bucket, "in/data.bin", content_type="application/x-test",
        metadata={"origin": "ceph"},
        extra_args={"CacheControl": "max-age=60", "ContentDisposition": "inline"},
    )  # fmt: skip
    moved: list[int] = []
    result = source.transfer_to(
        destination, src_bucket, "in/data.bin", dst_bucket, "out/data.bin", callback=moved.append
    )
    assert result.verified and result.verification == "multipart-md5"
    assert result.etag.endswith("-3")  # the destination's own layout, 6 MiB parts
    assert sum(moved) == len(data)
    got = moto.raw().get_object(Bucket=dst_bucket, Key="out/data.bin")
    assert hashlib.md5(got["Body"].read()).digest() == hashlib.md5(data).digest()
    assert got["ContentType"] == "application/x-test"
    # The user's metadata, and the destination's own part size record (not the source's).
    assert got["Metadata"] == {"origin": "ceph", PART_SIZE_METADATA: str(6 * MiB)}
    assert got["CacheControl"] == "max-age=60" and got["ContentDisposition"] == "inline"

    # Defaults: the same bucket and key names on the other store; empty objects too.
    source.client.put_object(Bucket=src_bucket, Key="empty", Body=b"")
    moto.raw().create_bucket(Bucket=src_bucket)
    moto.buckets.append(src_bucket)
    assert source.transfer_to(destination, src_bucket, "empty").size == 0


def test_transfer_to_refuses_a_source_rotten_at_rest(
    ceph: Backend, moto: Backend, ceph_env: dict[str, str]
) -> None:
    source, destination = clerk_on(ceph), clerk_on(moto)
    src_bucket, dst_bucket = ceph.new_bucket(), moto.new_bucket()
    for key, size in (("small.bin", 300_000), ("large.bin", 12 * MiB)):
        source.upload_object(os.urandom(size), src_bucket, key)
        corrupt_at_rest(ceph_env, src_bucket, key, offset=1000)
        with pytest.raises(ChecksumMismatchError):
            source.transfer_to(destination, src_bucket, key, dst_bucket, key)
    raw = moto.raw()
    assert keys(moto, dst_bucket) == []  # nothing written
    assert raw.list_multipart_uploads(Bucket=dst_bucket).get("Uploads", []) == []
    with pytest.raises(DataTypeError):
        source.transfer_to("not a clerk", src_bucket, "small.bin")  # type: ignore[arg-type]


def test_transfer_to_that_fails_midway_leaves_nothing(
    ceph: Backend, moto: Backend, ceph_proxy: FaultProxy
) -> None:
    """The source's GET is cut mid-body (part of it already sent on), and every read
    resuming it is answered 500 until the retries are spent: the transfer raises, typed,
    and the destination has no object and no upload."""
    writer = clerk_on(ceph)
    source = clerk_on(ceph, endpoint_url=ceph_proxy.endpoint)
    destination = clerk_on(moto)
    src_bucket, dst_bucket = ceph.new_bucket(), moto.new_bucket()
    writer.upload_object(os.urandom(16 * MiB), src_bucket, "big.bin")  # 4 parts, recorded
    ceph_proxy.add(Rule(Fault.RESET_MID_BODY, method="GET", key="big.bin"))
    ceph_proxy.add(Rule(Fault.INTERNAL_ERROR, method="GET", key="big.bin", times=-1))
    with pytest.raises(TransientError):
        source.transfer_to(destination, src_bucket, "big.bin", dst_bucket, "big.bin")
    assert keys(moto, dst_bucket) == []
    assert moto.raw().list_multipart_uploads(Bucket=dst_bucket).get("Uploads", []) == []


def test_transfer_to_says_when_the_source_could_not_be_proven(ceph: Backend, moto: Backend) -> None:
    """A multipart source in a layout no candidate reproduces (Ceph ignores PartNumber):
    the destination verifies what it got, but the result says the source was unproven."""
    source, destination = clerk_on(ceph), clerk_on(moto)
    src_bucket, dst_bucket = ceph.new_bucket(), moto.new_bucket()
    raw = ceph.raw()
    data = os.urandom(11 * MiB)
    upload = raw.create_multipart_upload(Bucket=src_bucket, Key="foreign")["UploadId"]
    parts = []
    for number, start in enumerate(range(0, len(data), 5 * MiB + 777), 1):
        body = data[start : start + 5 * MiB + 777]
        etag = raw.upload_part(
            Bucket=src_bucket, Key="foreign", UploadId=upload, PartNumber=number, Body=body
        )["ETag"]
        parts.append({"PartNumber": number, "ETag": etag})
    raw.complete_multipart_upload(
        Bucket=src_bucket, Key="foreign", UploadId=upload, MultipartUpload={"Parts": parts}
    )
    with pytest.warns(UnverifiableObjectWarning):
        result = source.transfer_to(destination, src_bucket, "foreign", dst_bucket, "foreign")
    assert result.verification == "unverifiable" and not result.verified
    assert "source could not be proven" in result.reason
    got = moto.raw().get_object(Bucket=dst_bucket, Key="foreign")["Body"].read()
    assert got == data
    # In strict mode nothing unproven is written.
    strict = clerk_on(ceph, strict_verification=True)
    with pytest.raises(UnverifiableObjectError):
        strict.transfer_to(destination, src_bucket, "foreign", dst_bucket, "strict")
    assert keys(moto, dst_bucket) == ["foreign"]
    assert moto.raw().list_multipart_uploads(Bucket=dst_bucket).get("Uploads", []) == []


# ------------------------------------------------------------------ checks ----


def test_verify_file_and_scrub_library_calls(ceph: Backend, tmp_path: Path) -> None:
    clerk = clerk_on(ceph)
    bucket = ceph.new_bucket()
    data = os.urandom(6 * MiB)
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    clerk.upload_object(path, bucket, "f.bin")
    check = clerk.verify_file(path, bucket, "f.bin")
    assert check.status is CheckStatus.OK and check.local_etag == check.etag
    path.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    assert clerk.verify_file(path, bucket, "f.bin").status is CheckStatus.MISMATCH
    with pytest.raises(InvalidRequestError, match="not a regular file"):
        clerk.verify_file(tmp_path, bucket, "f.bin")

    seen: list[str] = []
    report = clerk.verify_objects(bucket, on_check=lambda c: seen.append(c.key))
    assert (report.checked, report.ok, report.bytes, seen) == (1, 1, len(data), ["f.bin"])
    with pytest.raises(BucketNotFoundError):
        clerk.verify_objects("no-such-bucket-here")


# ------------------------------------------------------------------ prefixes ----


def test_copy_prefix_and_moves(backend: Backend, tmp_path: Path) -> None:
    clerk = clerk_on(backend)
    bucket = backend.new_bucket()
    raw = backend.raw()
    for key in ("src/a.txt", "src/d/b.txt", "srcx/not-under.txt"):
        raw.put_object(Bucket=bucket, Key=key, Body=key.encode())
    report = clerk.copy_prefix(bucket, "src", bucket, "dst")
    assert sorted(r.key for r in report.transferred) == ["dst/a.txt", "dst/d/b.txt"]
    assert all(r.verified for r in report.transferred)
    with pytest.raises(InvalidRequestError, match="overlap"):
        clerk.copy_prefix(bucket, "src", bucket, "src/inner")
    clerk.copy_prefix(bucket, "dst", bucket, "moved", delete_source=True)
    assert sorted(keys(backend, bucket)) == [
        "moved/a.txt", "moved/d/b.txt", "src/a.txt", "src/d/b.txt", "srcx/not-under.txt",
    ]  # fmt: skip

    down = tmp_path / "down"
    clerk.download_prefix(bucket, "moved", down, delete_source=True)
    assert (down / "d" / "b.txt").read_bytes() == b"src/d/b.txt"  # copied twice, unchanged
    assert not [k for k in keys(backend, bucket) if k.startswith("moved/")]
    clerk.upload_directory(down, bucket, "up", delete_source=True)
    assert not (down / "a.txt").exists() and (down / "d").is_dir()  # files go, dirs stay
    assert sorted(k for k in keys(backend, bucket) if k.startswith("up/")) == [
        "up/a.txt", "up/d/b.txt",
    ]  # fmt: skip


def test_single_moves_keep_the_source_when_the_transfer_fails(
    ceph: Backend, tmp_path: Path
) -> None:
    clerk = clerk_on(ceph)
    bucket = ceph.new_bucket()
    path = tmp_path / "f.txt"
    path.write_text("kept")
    with pytest.raises(BucketNotFoundError):
        clerk.upload_object(path, "no-such-bucket-here", "f.txt", delete_source=True)
    assert path.read_text() == "kept"
    with pytest.raises(InvalidRequestError, match="path"):
        clerk.upload_object(b"bytes", bucket, "f.txt", delete_source=True)
    clerk.upload_object(path, bucket, "f.txt", delete_source=True)
    assert not path.exists()
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a directory")
    with pytest.raises((InvalidRequestError, LocalIOError)):
        clerk.download_object(bucket, "f.txt", blocker / "x", delete_source=True)
    assert keys(ceph, bucket) == ["f.txt"]
    clerk.download_object(bucket, "f.txt", path, delete_source=True)
    assert path.read_text() == "kept" and keys(ceph, bucket) == []


def test_delete_prefix_in_batches(backend: Backend) -> None:
    clerk = ObjectClerk(**backend.clerk_kwargs(), list_objects_page_size=2)
    bucket = backend.new_bucket()
    raw = backend.raw()
    for n in range(5):
        raw.put_object(Bucket=bucket, Key=f"logs/{n}", Body=b"x")
    raw.put_object(Bucket=bucket, Key="logsx", Body=b"x")
    told: list[str] = []
    assert clerk.delete_prefix(bucket, "logs/", dry_run=True, on_deleted=told.append) == 5
    assert len(keys(backend, bucket)) == 6
    assert clerk.delete_prefix(bucket, "logs/") == 5
    assert keys(backend, bucket) == ["logsx"]
    assert told == [f"logs/{n}" for n in range(5)]
    with pytest.raises(BucketNotFoundError):
        clerk.delete_prefix("no-such-bucket-here", "")


def test_keys_that_cannot_be_deleted_are_reported(moto: Backend) -> None:
    """A version under a legal hold: DeleteObjects refuses it, the rest go, and the call
    names the key it could not delete."""
    clerk = clerk_on(moto)
    raw = moto.raw()
    name = f"oc-locked-{os.urandom(4).hex()}"
    raw.create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
    raw.put_object(Bucket=name, Key="free", Body=b"x")
    held = raw.put_object(
        Bucket=name, Key="held", Body=b"x", ObjectLockLegalHoldStatus="ON",
        ChecksumAlgorithm="SHA256",
    )  # fmt: skip
    try:
        with pytest.raises(BulkTransferError) as caught:
            clerk.delete_bucket(name, empty=True)
        assert [getattr(error, "key", None) for error in caught.value.errors] == ["held"]
        assert "1 key(s) could not be deleted" in str(caught.value)
        versions = raw.list_object_versions(Bucket=name).get("Versions", [])
        assert [v["Key"] for v in versions] == ["held"]
    finally:
        raw.put_object_legal_hold(
            Bucket=name, Key="held", VersionId=held["VersionId"], LegalHold={"Status": "OFF"}
        )
        clerk.delete_bucket(name, empty=True)


def test_list_objects_with_a_delimiter_through_pages(backend: Backend) -> None:
    clerk = ObjectClerk(**backend.clerk_kwargs(), list_objects_page_size=1)
    bucket = backend.new_bucket()
    raw = backend.raw()
    for key in ("a.txt", "d/1", "d/2", "e/f/3", "z"):
        raw.put_object(Bucket=bucket, Key=key, Body=b"x")
    listed = [e.get("Key") or e["Prefix"] for e in clerk.list_objects(bucket, delimiter="/")]
    assert listed == ["a.txt", "d/", "e/", "z"]
    under = [e.get("Key") or e["Prefix"] for e in clerk.list_objects(bucket, "e/", delimiter="/")]
    assert under == ["e/f/"]
    with pytest.raises(InvalidRequestError):
        list(clerk.list_objects(bucket, delimiter=""))
