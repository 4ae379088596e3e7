"""The bad-input catalogue, against the real servers.

For every kind of bad input the clerk must give a clear typed error that names the problem,
make no retry storm (no request at all for input it can refuse up front, exactly one for a
permanent server error) and lose nothing (no object created, changed or deleted, no multipart
upload left behind). Input that is merely unusual (odd keys, chunk iterables, a threshold
under 5 MiB) must simply work.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from urllib3.exceptions import InsecureRequestWarning

from object_clerk import (
    PART_SIZE_METADATA,
    AccessDeniedError,
    BucketNotFoundError,
    ConfigurationError,
    ConnectionFault,
    InvalidRequestError,
    NotFoundError,
    ObjectClerk,
    ObjectNotFoundError,
    TLSError,
)
from object_clerk.etag import MiB
from tests.integration.faults import RequestLog
from tests.integration.test_operations import THRESHOLD, payload, small_clerk
from tests.servers import Backend, ceph_backends, free_port

pytestmark = pytest.mark.integration

KEY = "kept/original.bin"
ORIGINAL = b"original bytes that must survive every refused call"
MISSING_BUCKET = "oc-no-such-bucket-bad-input"


# ------------------------------------------------------------------------ helpers ---


def seed(backend: Backend, bucket: str, key: str = KEY, data: bytes = ORIGINAL) -> None:
    """Store an object with raw boto3, so a refused call has something it could damage."""
    backend.raw().put_object(Bucket=bucket, Key=key, Body=data)


def assert_holds_exactly(backend: Backend, bucket: str, expected: dict[str, bytes]) -> None:
    """The bucket holds exactly these objects, with these bytes, and no multipart upload."""
    raw = backend.raw()
    listed = raw.list_objects_v2(Bucket=bucket).get("Contents", [])
    assert sorted(entry["Key"] for entry in listed) == sorted(expected)
    for key, data in expected.items():
        assert raw.get_object(Bucket=bucket, Key=key)["Body"].read() == data, key
    assert raw.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def total(log: RequestLog) -> int:
    return sum(log.counts.values())


@pytest.fixture(scope="module")
def ceph_clerk(ceph_env: dict[str, str]) -> ObjectClerk:
    """One clerk on Ceph over HTTP, shared by the tests of input refused before any request
    (building a clerk costs ~0.1 s: each one gets a fresh boto3 session)."""
    return small_clerk(next(b for b in ceph_backends(ceph_env) if b.name == "ceph-http"))


# ---------------------------------------------------------------- bucket names ---

BAD_BUCKETS: list[Any] = ["", "ab", "UPPER bucket", "has/slash", "-lead", "a..b", None, 123]
METHODS = [
    "get_object",
    "upload_object",
    "copy_object",
    "move_object",
    "delete_object",
    "list_objects",
    "get_object_info",
]


def calls_with_bucket(
    clerk: ObjectClerk, method: str, bad: Any, good: str
) -> list[tuple[str, Callable[[], object]]]:
    """Calls of ``method`` naming the bad bucket; copies and moves on either side, with the
    good bucket (holding KEY) on the other."""
    if method == "get_object":
        return [("get", lambda: clerk.get_object(bad, KEY))]
    if method == "upload_object":
        return [("upload", lambda: clerk.upload_object(b"new bytes", bad, KEY))]
    if method in ("copy_object", "move_object"):
        fn = getattr(clerk, method)
        return [
            ("bad source bucket", lambda: fn(bad, KEY, good, "dest")),
            ("bad destination bucket", lambda: fn(good, KEY, bad, KEY)),
        ]
    if method == "delete_object":
        return [("delete", lambda: clerk.delete_object(bad, KEY))]
    if method == "list_objects":
        return [("list", lambda: list(clerk.list_objects(bad)))]
    return [("info", lambda: clerk.get_object_info(bad, KEY))]


@pytest.mark.parametrize("method", METHODS)
def test_invalid_bucket_names_are_refused_before_any_request(
    ceph: Backend, ceph_clerk: ObjectClerk, method: str
) -> None:
    """Every malformed bucket name ('', too short, spaces, slash, leading '-', '..', None,
    an int) is refused with InvalidRequestError naming it, with zero requests, and the
    object on the other side of a copy or move is untouched."""
    backend, bucket = ceph, ceph.new_bucket()
    seed(backend, bucket)
    clerk = ceph_clerk
    log = RequestLog(clerk.client)
    for bad in BAD_BUCKETS:
        for label, call in calls_with_bucket(clerk, method, bad, bucket):
            with pytest.raises(InvalidRequestError, match="invalid bucket name") as info:
                call()
            assert repr(bad) in str(info.value), (bad, label)
            assert total(log) == 0, (bad, label, log.counts)
    assert_holds_exactly(backend, bucket, {KEY: ORIGINAL})


# ------------------------------------------------------------------------ keys ---

TOO_LONG_KEYS = {
    "e-acute-x513 (1026 bytes)": "é" * 513,
    "1025 bytes": "é" * 512 + "a",
}
BAD_KEYS: list[tuple[str, Any, str]] = [
    ("empty", "", "non-empty string"),
    ("None", None, "non-empty string"),
    ("int", 123, "non-empty string"),
    *((name, key, "bytes long in UTF-8; S3 allows 1024") for name, key in TOO_LONG_KEYS.items()),
]


def calls_with_key(
    clerk: ObjectClerk, method: str, bad: Any, bucket: str
) -> list[tuple[str, Callable[[], object]]]:
    if method == "get_object":
        return [("get", lambda: clerk.get_object(bucket, bad))]
    if method == "upload_object":
        return [("upload", lambda: clerk.upload_object(b"new bytes", bucket, bad))]
    if method in ("copy_object", "move_object"):
        fn = getattr(clerk, method)
        return [
            ("bad source key", lambda: fn(bucket, bad, bucket, "dest")),
            ("bad destination key", lambda: fn(bucket, KEY, bucket, bad)),
        ]
    if method == "delete_object":
        return [("delete", lambda: clerk.delete_object(bucket, bad))]
    return [("info", lambda: clerk.get_object_info(bucket, bad))]


@pytest.mark.parametrize("method", [m for m in METHODS if m != "list_objects"])
def test_invalid_keys_are_refused_before_any_request(
    ceph: Backend, ceph_clerk: ObjectClerk, method: str
) -> None:
    """An empty key, a non-string key and keys of 1025 and 1026 UTF-8 bytes are refused with
    InvalidRequestError saying why, with zero requests; the existing object is untouched."""
    assert [len(k.encode()) for k in TOO_LONG_KEYS.values()] == [1026, 1025]
    backend, bucket = ceph, ceph.new_bucket()
    seed(backend, bucket)
    clerk = ceph_clerk
    log = RequestLog(clerk.client)
    for name, bad, reason in BAD_KEYS:
        for label, call in calls_with_key(clerk, method, bad, bucket):
            with pytest.raises(InvalidRequestError, match=reason):
                call()
            assert total(log) == 0, (name, label, log.counts)
    assert_holds_exactly(backend, bucket, {KEY: ORIGINAL})


def test_keys_of_exactly_1024_bytes_round_trip(backend: Backend, bucket: str) -> None:
    """Keys of exactly 1024 UTF-8 bytes (S3's limit; two-byte and one-byte characters)
    upload, read back and list."""
    keys = {"é" * 512: b"two-byte characters", "k" * 1024: b"one-byte characters"}
    assert {len(key.encode("utf-8")) for key in keys} == {1024}
    clerk = small_clerk(backend)
    for key, data in keys.items():
        assert clerk.upload_object(data, bucket, key).verified
        assert clerk.get_object(bucket, key) == data
    assert sorted(entry["Key"] for entry in clerk.list_objects(bucket)) == sorted(keys)
    assert_holds_exactly(backend, bucket, keys)


ODD_KEYS = [
    "unicodé/ключ/鍵.txt",
    "with space.txt",
    "plus+sign",
    "per%cent",
    "question?mark",
    "hash#tag",
    "dir/../escape",
    "/leading-slash",
    "a//double",
]

CEPH_DOUBLE_DECODE = (
    "Ceph RGW 16 bug, not object_clerk's: UploadPartCopy URL-decodes x-amz-copy-source twice"
    " (CopyObject decodes it once), so a multipart source key containing '%' is not found;"
    " raw boto3 upload_part_copy fails the same way (NoSuchKey)"
)


def odd_key_round_trip(clerk: ObjectClerk, bucket: str, key: str, data: bytes) -> None:
    """Upload, get, describe, copy, move and list one key; every step must verify."""
    uploaded = clerk.upload_object(data, bucket, key)
    multipart = len(data) >= MiB
    assert uploaded.verification == ("multipart-md5" if multipart else "md5")
    assert clerk.get_object(bucket, key) == data
    info = clerk.get_object_info(bucket, key)
    assert info["content-length"] == str(len(data))
    assert info["etag"].strip('"') == uploaded.etag
    copied = clerk.copy_object(bucket, key, bucket, key + ".copy")
    assert (copied.verified, copied.etag) == (True, uploaded.etag)
    moved = clerk.move_object(bucket, key + ".copy", bucket, key + ".moved")
    assert (moved.verified, moved.etag) == (True, uploaded.etag)
    listed = [entry["Key"] for entry in clerk.list_objects(bucket, prefix=key)]
    assert listed == [key, key + ".moved"]


@pytest.mark.parametrize("kind", ["single-part", "multipart"])
def test_odd_keys_work_exactly(backend: Backend, bucket: str, kind: str) -> None:
    """Keys with unicode, spaces, '+', '%', '?', '#', '..', a leading '/' and '//' upload,
    read back, describe, copy, move, list under their exact name and delete, on every
    backend. The multipart kind (1-part multipart objects) copies through UploadPartCopy,
    except for '%' keys on Ceph (see test_percent_key_multipart_copy)."""
    clerk = small_clerk(backend, multipart_threshold=MiB)
    keys = list(ODD_KEYS)
    size = MiB + 17 if kind == "multipart" else 1000
    data = {key: payload(size, seed=i) for i, key in enumerate(keys)}
    with ThreadPoolExecutor(len(keys)) as pool:
        futures = {
            key: pool.submit(odd_key_round_trip, clerk, bucket, key, data[key]) for key in keys
        }
    failures = {key: repr(f.exception()) for key, f in futures.items() if f.exception()}
    assert failures == {}
    expected = {**data, **{key + ".moved": value for key, value in data.items()}}
    assert sorted(entry["Key"] for entry in clerk.list_objects(bucket)) == sorted(expected)
    assert_holds_exactly(backend, bucket, expected)
    with ThreadPoolExecutor(len(keys)) as pool:
        list(pool.map(lambda key: clerk.delete_object(bucket, key), expected))
    assert_holds_exactly(backend, bucket, {})


def _part_copy_sources(log: RequestLog) -> list[str]:
    return [h.get("x-amz-copy-source", "") for op, h in log.headers if op == "UploadPartCopy"]


@pytest.mark.parametrize("key", ["per%cent", "reports/100% done.csv", "x%41y"])
def test_percent_key_multipart_copy(backend: Backend, bucket: str, key: str) -> None:
    """A multipart object whose key contains '%' copies and moves verified. On Ceph RGW no
    UploadPartCopy with such a source is ever sent: RGW 16 decodes its copy source twice
    (copying another object), and a '%' not followed by two hex digits makes radosgw abort.
    One CopyObject copies it, and the server is still up afterwards."""
    clerk = small_clerk(backend, multipart_threshold=MiB)
    log = RequestLog(clerk.client)
    odd_key_round_trip(clerk, bucket, key, payload(MiB + 17))
    if backend.is_ceph:
        assert _part_copy_sources(log) == []
        assert log.counts["CopyObject"] >= 2  # the copy, and the move's copy
    else:
        assert log.counts["UploadPartCopy"] >= 2  # elsewhere the layout is kept part by part
    assert backend.raw().list_objects_v2(Bucket=bucket)["KeyCount"] == 2  # the server is up


def test_multipart_copy_never_stores_another_objects_bytes(backend: Backend, bucket: str) -> None:
    """Copying the multipart object 'x%41y' while 'xAy' also exists stores x%41y's bytes,
    verified. (Ceph RGW 16's UploadPartCopy decodes the copy source twice and would copy
    xAy's bytes: on Ceph the clerk copies such keys with CopyObject.)"""
    clerk = small_clerk(backend, multipart_threshold=MiB)
    literal, decoded = payload(MiB + 1, seed=1), payload(MiB + 1, seed=2)
    clerk.upload_object(literal, bucket, "x%41y")
    clerk.upload_object(decoded, bucket, "xAy")
    result = clerk.copy_object(bucket, "x%41y", bucket, "dest")
    assert result.verified
    assert_holds_exactly(backend, bucket, {"x%41y": literal, "xAy": decoded, "dest": literal})


# --------------------------------------------------------------- data arguments ---


def _closed_file(tmp_path: Path) -> Any:
    path = tmp_path / "closed.bin"
    path.write_bytes(b"data")
    handle = path.open("rb")
    handle.close()
    return handle


def _text_file(tmp_path: Path, stack: list[Any]) -> Any:
    path = tmp_path / "text.txt"
    path.write_text("some text")
    handle = path.open("r")  # closed by the test
    stack.append(handle)
    return handle


def _str_chunks() -> Iterator[str]:
    yield "not"
    yield "bytes"


BAD_DATA = ["None", "int", "missing path", "directory", "closed file", "text file", "str chunks"]
BAD_DATA_REASONS = {
    "None": "data must be bytes, a path, a binary file object, or an iterator, list or tuple",
    "int": "not int",
    "missing path": "no such file",
    "directory": "is a directory",
    "closed file": "closed",
    "text file": "binary mode",
    "str chunks": "not bytes",
}


@pytest.mark.parametrize("case", BAD_DATA)
def test_bad_data_is_refused_and_existing_object_kept(
    ceph: Backend, ceph_clerk: ObjectClerk, tmp_path: Path, case: str
) -> None:
    """Data that is not bytes, a readable path, an open binary file or an iterable of bytes
    is refused with InvalidRequestError naming the problem, before any request; the object
    already under the key keeps its bytes."""
    backend, bucket = ceph, ceph.new_bucket()
    seed(backend, bucket)
    open_files: list[Any] = []
    data: Any = {
        "None": lambda: None,
        "int": lambda: 42,
        "missing path": lambda: str(tmp_path / "no-such-file.bin"),
        "directory": lambda: str(tmp_path),
        "closed file": lambda: _closed_file(tmp_path),
        "text file": lambda: _text_file(tmp_path, open_files),
        "str chunks": _str_chunks,
    }[case]()
    clerk = ceph_clerk
    log = RequestLog(clerk.client)
    try:
        with pytest.raises(InvalidRequestError, match=BAD_DATA_REASONS[case]) as info:
            clerk.upload_object(data, bucket, KEY)
    finally:
        for handle in open_files:
            handle.close()
    assert (info.value.bucket, info.value.key) == (bucket, KEY)
    assert total(log) == 0, log.counts
    assert_holds_exactly(backend, bucket, {KEY: ORIGINAL})


def test_unknown_extra_args_are_refused_before_any_request(
    ceph: Backend, ceph_clerk: ObjectClerk
) -> None:
    """extra_args outside the allow-list are refused, naming them, with zero requests."""
    backend, bucket = ceph, ceph.new_bucket()
    seed(backend, bucket)
    clerk = ceph_clerk
    log = RequestLog(clerk.client)
    with pytest.raises(InvalidRequestError, match=r"unknown upload arguments \['NoSuchArg'\]"):
        clerk.upload_object(b"new bytes", bucket, KEY, extra_args={"NoSuchArg": "x"})
    assert total(log) == 0
    assert_holds_exactly(backend, bucket, {KEY: ORIGINAL})


def test_chunk_list_and_chunk_generator_upload_exactly(backend: Backend, bucket: str) -> None:
    """A list of bytes chunks and a generator of bytes chunks (here longer than the
    threshold, so it goes multipart) store exactly their concatenation, verified."""
    clerk = small_clerk(backend)
    small = [b"first,", b"", bytearray(b"second,"), memoryview(b"third")]
    big = payload(THRESHOLD + 3 * MiB + 11, seed=7)

    def generate() -> Iterator[bytes]:
        for offset in range(0, len(big), 300_000):
            yield big[offset : offset + 300_000]

    listed = clerk.upload_object(small, bucket, "from-list")
    generated = clerk.upload_object(generate(), bucket, "from-generator")
    assert listed.verification == "md5"
    assert generated.verification == "multipart-md5"
    assert (listed.size, generated.size) == (len(b"first,second,third"), len(big))
    assert_holds_exactly(
        backend, bucket, {"from-list": b"first,second,third", "from-generator": big}
    )


def test_generator_turning_bad_after_threshold_aborts_the_upload(
    backend: Backend, bucket: str
) -> None:
    """A generator that yields a str after enough bytes to start a multipart upload gets
    InvalidRequestError; the started upload is aborted and the existing object is kept."""
    seed(backend, bucket)
    clerk = small_clerk(backend)
    log = RequestLog(clerk.client)

    def generate() -> Iterator[object]:
        yield payload(THRESHOLD + MiB)
        yield "oops"

    with pytest.raises(InvalidRequestError, match="yielded str, not bytes"):
        clerk.upload_object(generate(), bucket, KEY)
    assert log.counts["CreateMultipartUpload"] == 1
    assert log.counts["AbortMultipartUpload"] == 1
    assert log.counts["CompleteMultipartUpload"] == 0
    assert_holds_exactly(backend, bucket, {KEY: ORIGINAL})


def test_generator_raising_midway_propagates_and_aborts(backend: Backend, bucket: str) -> None:
    """An exception raised by the caller's generator mid-upload reaches the caller
    unchanged; the multipart upload is aborted and the existing object is kept."""
    seed(backend, bucket)
    clerk = small_clerk(backend)

    class ProducerFailed(Exception):
        pass

    def generate() -> Iterator[bytes]:
        yield payload(THRESHOLD + MiB)
        raise ProducerFailed("the producer broke")

    with pytest.raises(ProducerFailed):
        clerk.upload_object(generate(), bucket, KEY)
    assert_holds_exactly(backend, bucket, {KEY: ORIGINAL})


@pytest.mark.parametrize("mode", ["wb", "ab"])
def test_write_only_file_is_refused_not_uploaded_empty(
    ceph: Backend, ceph_clerk: ObjectClerk, tmp_path: Path, mode: str
) -> None:
    """A file object opened for writing only ('wb', 'ab') is refused with
    InvalidRequestError before any request; the existing object keeps its bytes."""
    backend, bucket = ceph, ceph.new_bucket()
    seed(backend, bucket)
    clerk = ceph_clerk
    log = RequestLog(clerk.client)
    path = tmp_path / "out.bin"
    with path.open(mode) as handle:
        handle.write(b"the data the caller meant to upload")
        with pytest.raises(InvalidRequestError, match=r"(?i)read|writ"):
            clerk.upload_object(handle, bucket, KEY)
    assert total(log) == 0
    assert_holds_exactly(backend, bucket, {KEY: ORIGINAL})


def test_non_contiguous_memoryview_is_uploaded_or_refused_typed(
    ceph: Backend, ceph_clerk: ObjectClerk
) -> None:
    """A non-contiguous memoryview (bytes-like) either uploads its bytes or is refused with
    InvalidRequestError; never a bare TypeError, never wrong bytes."""
    backend, bucket = ceph, ceph.new_bucket()
    clerk = ceph_clerk
    view = memoryview(b"a-b-c-d-")[::2]
    try:
        clerk.upload_object(view, bucket, "view")
    except InvalidRequestError:
        assert_holds_exactly(backend, bucket, {})
    else:
        assert_holds_exactly(backend, bucket, {"view": b"abcd"})


# --------------------------------------------------------------------- settings ---

BAD_SETTINGS = [
    ("retry_tries", 0),
    ("retry_tries", -2),
    ("retry_delay", -1),
    ("retry_backoff", 0.5),
    ("retry_max_delay", -1),
    ("retry_jitter", (3, 1)),
    ("retry_deadline", 0),
    ("multipart_threshold", 0),
]


@pytest.mark.parametrize(("name", "value"), BAD_SETTINGS, ids=[f"{n}={v}" for n, v in BAD_SETTINGS])
def test_bad_settings_raise_configuration_error_naming_them(
    ceph: Backend, name: str, value: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """An invalid retry or threshold setting raises ConfigurationError whose .variable and
    message name the setting."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigurationError, match=name) as info:
        ObjectClerk(**ceph.clerk_kwargs(), **{name: value})
    assert info.value.variable == name
    assert isinstance(info.value, ValueError)


def test_malformed_s3_client_config_names_the_variable(
    backend: Backend, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """S3_CLIENT_CONFIG that is not JSON raises ConfigurationError naming S3_CLIENT_CONFIG."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("S3_CLIENT_CONFIG", "{not json")
    with pytest.raises(ConfigurationError, match="S3_CLIENT_CONFIG is not valid JSON") as info:
        ObjectClerk(**backend.clerk_kwargs())
    assert info.value.variable == "S3_CLIENT_CONFIG"


def test_threshold_under_5mib_uploads_and_reads_back_verified(
    backend: Backend, bucket: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """With a threshold under S3's 5 MiB minimum part (1 and 2 MiB) a 6 MiB upload goes
    multipart, in parts raised to 5 MiB (the threshold is the part size, as in 1.x),
    verifies against the server's ETag and reads back (no false mismatch)."""
    monkeypatch.chdir(tmp_path)
    for threshold_mib in (1, 2):
        clerk = small_clerk(backend, multipart_threshold=threshold_mib * MiB)
        key, data = f"chunk-{threshold_mib}", payload(6 * MiB, seed=threshold_mib)
        result = clerk.upload_object(data, bucket, key)
        part = 5 * MiB
        head = backend.raw().head_object(Bucket=bucket, Key=key)
        assert result.verification == "multipart-md5"
        assert result.etag == head["ETag"].strip('"')
        assert result.etag.endswith(f"-{-(-len(data) // part)}")
        assert head["Metadata"][PART_SIZE_METADATA] == str(part)
        assert clerk.get_object(bucket, key) == data
    assert_holds_exactly(
        backend, bucket, {"chunk-1": payload(6 * MiB, seed=1), "chunk-2": payload(6 * MiB, seed=2)}
    )


# ------------------------------------------------------------------ connections ---


def test_wrong_secret_is_access_denied_after_one_request_each(ceph: Backend) -> None:
    """With a wrong secret key Ceph refuses get, upload and delete with AccessDeniedError
    after exactly one request each; the stored object is untouched."""
    bucket = ceph.new_bucket()
    seed(ceph, bucket)
    clerk = ObjectClerk(
        **{**ceph.clerk_kwargs(), "secret_key": "wrong-secret-0000000000000000000000000000"},
        retry_tries=5,
        retry_delay=0.01,
        retry_jitter=0.0,
    )
    log = RequestLog(clerk.client)
    with pytest.raises(AccessDeniedError, match="access denied") as got:
        clerk.get_object(bucket, KEY)
    assert got.value.status == 403
    with pytest.raises(AccessDeniedError, match="access denied"):
        clerk.upload_object(b"new bytes", bucket, KEY)
    with pytest.raises(AccessDeniedError, match="access denied"):
        clerk.delete_object(bucket, KEY)
    assert log.counts == {"GetObject": 1, "PutObject": 1, "DeleteObject": 1}
    assert_holds_exactly(ceph, bucket, {KEY: ORIGINAL})


def test_missing_bucket_fails_typed_after_one_request(backend: Backend, bucket: str) -> None:
    """A bucket that does not exist gives BucketNotFoundError after exactly one request for
    get, upload, list and delete. (HeadObject's 404 has no body, so get_object_info can only
    say NotFoundError.)"""
    seed(backend, bucket)
    clerk = small_clerk(backend)
    cases: list[tuple[str, Callable[[], object], type[Exception]]] = [
        ("GetObject", lambda: clerk.get_object(MISSING_BUCKET, KEY), BucketNotFoundError),
        ("PutObject", lambda: clerk.upload_object(b"x", MISSING_BUCKET, KEY), BucketNotFoundError),
        ("ListObjectsV2", lambda: list(clerk.list_objects(MISSING_BUCKET)), BucketNotFoundError),
        ("DeleteObject", lambda: clerk.delete_object(MISSING_BUCKET, KEY), BucketNotFoundError),
        ("HeadObject", lambda: clerk.get_object_info(MISSING_BUCKET, KEY), NotFoundError),
    ]
    log = RequestLog(clerk.client)
    for operation, call, error in cases:
        log.counts.clear()
        with pytest.raises(error) as info:
            call()
        if error is BucketNotFoundError:
            assert "bucket does not exist" in str(info.value)
            assert info.value.bucket == MISSING_BUCKET
        assert log.counts == {operation: 1}, operation
    assert_holds_exactly(backend, bucket, {KEY: ORIGINAL})


def test_missing_bucket_multipart_upload_fails_after_one_request(
    backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    """A multipart upload into a bucket that does not exist gives BucketNotFoundError after
    exactly one request (CreateMultipartUpload) and logs no error."""
    clerk = small_clerk(backend)
    log = RequestLog(clerk.client)
    with pytest.raises(BucketNotFoundError, match="bucket does not exist"):
        clerk.upload_object(payload(THRESHOLD), MISSING_BUCKET, KEY)
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert log.counts == {"CreateMultipartUpload": 1}


def test_refused_connection_gives_up_after_exact_tries_quickly() -> None:
    """An endpoint that refuses connections is tried exactly retry_tries=3 times, then
    ConnectionFault; with tiny delays the whole call takes well under 5 s."""
    clerk = ObjectClerk(
        endpoint_url=f"http://127.0.0.1:{free_port()}",
        access_key="AKIDEXAMPLE",
        secret_key="example-secret",
        region="us-east-1",
        retry_tries=3,
        retry_delay=0.01,
        retry_jitter=0.0,
        retry_max_delay=0.02,
    )
    log = RequestLog(clerk.client)
    for operation, call in [
        ("GetObject", lambda: clerk.get_object("some-bucket", "k")),
        ("PutObject", lambda: clerk.upload_object(b"x", "some-bucket", "k")),
    ]:
        started = time.monotonic()
        with pytest.raises(ConnectionFault, match="Could not connect to the endpoint URL"):
            call()
        assert time.monotonic() - started < 5
        assert log.counts[operation] == 3
    assert total(log) == 6


def test_https_without_ca_is_tls_error_once_and_verify_tls_false_works(
    ceph: Backend, ceph_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """HTTPS to Ceph's self-signed certificate without a CA bundle raises TLSError after
    exactly one request (not retried) and stores nothing; verify_tls=False works, with
    urllib3's InsecureRequestWarning."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("AWS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("OBJECT_CLERK_CA_BUNDLE", raising=False)
    bucket = ceph.new_bucket()
    kwargs: dict[str, Any] = {
        "endpoint_url": ceph_env["CEPH_RGW_HTTPS_ENDPOINT"],
        "access_key": ceph_env["CEPH_RGW_ACCESS_KEY"],
        "secret_key": ceph_env["CEPH_RGW_SECRET_KEY"],
        "region": "us-east-1",
        "retry_tries": 4,
        "retry_delay": 0.01,
        "retry_jitter": 0.0,
    }
    clerk = ObjectClerk(**kwargs)
    log = RequestLog(clerk.client)
    with pytest.raises(TLSError, match="certificate verification failed"):
        clerk.upload_object(b"over tls", bucket, "tls")
    with pytest.raises(TLSError, match="certificate verification failed"):
        clerk.get_object(bucket, "tls")
    assert log.counts == {"PutObject": 1, "GetObject": 1}
    assert_holds_exactly(ceph, bucket, {})
    insecure = ObjectClerk(**kwargs, verify_tls=False)
    with pytest.warns(InsecureRequestWarning):
        assert insecure.upload_object(b"over tls", bucket, "tls").verified
        assert insecure.get_object(bucket, "tls") == b"over tls"
    assert_holds_exactly(ceph, bucket, {"tls": b"over tls"})


# ------------------------------------------------------------------ move safety ---


def test_move_from_missing_source_creates_nothing(backend: Backend, bucket: str) -> None:
    """Moving a missing object raises ObjectNotFoundError naming the source after one
    HeadObject; no destination appears and nothing else changes."""
    seed(backend, bucket)
    clerk = small_clerk(backend)
    log = RequestLog(clerk.client)
    with pytest.raises(ObjectNotFoundError) as info:
        clerk.move_object(bucket, "missing", bucket, "dest")
    assert info.value.key == "missing"
    assert "missing" in str(info.value)
    assert log.counts == {"HeadObject": 1}
    assert_holds_exactly(backend, bucket, {KEY: ORIGINAL})


def test_move_onto_itself_is_refused_and_object_intact(
    ceph: Backend, ceph_clerk: ObjectClerk
) -> None:
    """A move onto itself is refused with InvalidRequestError before any request; the
    object keeps its bytes."""
    backend, bucket = ceph, ceph.new_bucket()
    seed(backend, bucket)
    clerk = ceph_clerk
    log = RequestLog(clerk.client)
    with pytest.raises(InvalidRequestError, match="a move onto itself would delete it"):
        clerk.move_object(bucket, KEY, bucket, KEY)
    assert total(log) == 0
    assert_holds_exactly(backend, bucket, {KEY: ORIGINAL})


def test_move_to_missing_bucket_keeps_the_source(backend: Backend, bucket: str) -> None:
    """A move of a single-part or multipart object into a bucket that does not exist fails
    with BucketNotFoundError and never deletes the source."""
    clerk = small_clerk(backend, multipart_threshold=MiB)
    objects = {"single": payload(1000), "multi": payload(MiB + 1)}
    for key, data in objects.items():
        clerk.upload_object(data, bucket, key)
    log = RequestLog(clerk.client)
    for key in objects:
        with pytest.raises(BucketNotFoundError):
            clerk.move_object(bucket, key, MISSING_BUCKET, key)
    assert log.counts["DeleteObject"] == 0
    assert_holds_exactly(backend, bucket, objects)


def _vanish_on(clerk: ObjectClerk, backend: Backend, bucket: str, operation: str) -> None:
    """Delete the source (with raw boto3) just before the clerk's first `operation` call."""
    raw = backend.raw()
    fired: list[bool] = []

    def vanish(**_: Any) -> None:
        if not fired:
            fired.append(True)
            raw.delete_object(Bucket=bucket, Key="src")

    clerk.client.meta.events.register(f"before-call.s3.{operation}", vanish)


VANISHING = [(1000, "CopyObject"), (MiB + 1, "UploadPartCopy")]


def test_source_vanishing_mid_copy_leaves_nothing(backend: Backend, bucket: str) -> None:
    """A source deleted between the copy's HeadObject and its CopyObject (single-part) or
    UploadPartCopy (multipart) gives ObjectNotFoundError, with no destination object and no
    multipart upload left."""
    for size, operation in VANISHING:
        clerk = small_clerk(backend, multipart_threshold=MiB)
        clerk.upload_object(payload(size), bucket, "src")
        _vanish_on(clerk, backend, bucket, operation)
        with pytest.raises(ObjectNotFoundError):
            clerk.copy_object(bucket, "src", bucket, "dst")
        assert_holds_exactly(backend, bucket, {})


@pytest.mark.parametrize(("size", "operation"), VANISHING, ids=["single-part", "multipart"])
def test_source_vanishing_mid_copy_error_names_the_source(
    ceph: Backend, size: int, operation: str
) -> None:
    """When the source vanishes mid-copy, the ObjectNotFoundError names the source that is
    missing, not the destination the caller is creating."""
    backend, bucket = ceph, ceph.new_bucket()
    clerk = small_clerk(backend, multipart_threshold=MiB)
    clerk.upload_object(payload(size), bucket, "src")
    _vanish_on(clerk, backend, bucket, operation)
    with pytest.raises(ObjectNotFoundError) as info:
        clerk.copy_object(bucket, "src", bucket, "dst")
    assert info.value.key == "src"
    assert "/dst" not in str(info.value)
