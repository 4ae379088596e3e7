"""Server-free tests of the transfer engine's main paths, over the in-memory FakeS3: uploads,
reads, downloads, streams, copies, moves, deletes and listings, with the faults the engine
must survive (cut bodies, lost answers, damaged bytes, objects changing mid-read)."""

from __future__ import annotations

import io
import os
from typing import Any

import pytest
from botocore.exceptions import EndpointConnectionError, ReadTimeoutError

from object_clerk import (
    PART_SIZE_METADATA,
    AccessDeniedError,
    BucketNotFoundError,
    ChecksumMismatchError,
    InvalidRequestError,
    ObjectNotFoundError,
    PreconditionFailedError,
    RequestRejectedError,
    ServerError,
    TransientError,
    UnverifiableObjectError,
    UnverifiableObjectWarning,
)
from object_clerk.checksums import ALGORITHMS
from tests.integration.faults import pipe_of
from tests.unit.fake_s3 import BUCKET, FakeS3, GiB, Lazy, MiB, make_clerk

B = BUCKET
PARTS_5MIB = {PART_SIZE_METADATA: str(5 * MiB)}


pytestmark = pytest.mark.usefixtures("no_environment")


def wrong_etag(_params: dict[str, Any], response: dict[str, Any]) -> dict[str, Any]:
    return {**response, "ETag": '"' + "0" * 32 + '"'}


def wrong_copy_etag(_params: dict[str, Any], response: dict[str, Any]) -> dict[str, Any]:
    return {**response, "CopyObjectResult": {"ETag": '"' + "0" * 32 + '"'}}


def short_body(length: int):
    """A response hook: the body ends cleanly after ``length`` bytes (a short answer)."""
    return lambda _params, response: {**response, "Body": response["Body"][:length]}


def without(name: str):
    """A response hook dropping one field of the answer."""
    return lambda _params, response: {k: v for k, v in response.items() if k != name}


def get_ranges(fake: FakeS3) -> list[str | None]:
    return [p.get("Range") for p in fake.ops("GetObject")]


# --------------------------------------------------------------------- uploads ---


@pytest.mark.parametrize("size", [1, 100_000, 5 * MiB - 1])
def test_single_part_upload_of_bytes_is_md5_verified(fake, clerk, size):
    data = os.urandom(size)
    result = clerk.upload_object(data, B, "k")
    assert (result.verification, result.size, result.bucket, result.key) == ("md5", size, B, "k")
    assert result.etag == fake.obj(B, "k").etag
    assert fake.data(B, "k") == data
    assert fake.ops() == ["PutObject"]
    assert fake.ops("PutObject")[0]["ContentMD5"]


@pytest.mark.parametrize("size", [5 * MiB, 12 * MiB + 7])
def test_multipart_upload_records_part_size_and_verifies(fake, clerk, size):
    data = os.urandom(size)
    result = clerk.upload_object(bytearray(data), B, "k", metadata={"run": "42"})
    assert result.verification == "multipart-md5"
    assert result.etag == fake.obj(B, "k").etag
    assert result.etag.endswith(f"-{-(-size // (5 * MiB))}")
    assert fake.data(B, "k") == data
    assert fake.obj(B, "k").metadata == {"run": "42", PART_SIZE_METADATA: str(5 * MiB)}
    assert all(p["ContentMD5"] for p in fake.ops("UploadPart"))


def test_upload_from_path_single_and_multipart(fake, clerk, tmp_path):
    for name, size in (("small.bin", 3000), ("big.bin", 11 * MiB)):
        path = tmp_path / name
        data = os.urandom(size)
        path.write_bytes(data)
        result = clerk.upload_object(str(path) if size < MiB else path, B, name)
        assert fake.data(B, name) == data
        assert result.verified


def test_upload_from_file_object_starts_at_its_position(fake, clerk, tmp_path):
    data = os.urandom(6 * MiB)
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    with path.open("rb") as handle:
        handle.seek(1000)
        clerk.upload_object(handle, B, "big")
        assert handle.tell() == len(data)
    assert fake.data(B, "big") == data[1000:]
    stream = io.BytesIO(b"headerbody")
    stream.seek(6)
    clerk.upload_object(stream, B, "small")
    assert fake.data(B, "small") == b"body"


@pytest.mark.parametrize("size", [10, 5 * MiB, 11 * MiB + 1])
def test_upload_from_pipe(fake, clerk, size):
    data = os.urandom(size)
    with pipe_of(data) as pipe:
        result = clerk.upload_object(pipe, B, "k")
    assert fake.data(B, "k") == data
    assert result.verification == ("md5" if size < 5 * MiB else "multipart-md5")


def test_upload_from_generator_and_memoryviews(fake, clerk):
    data = os.urandom(6 * MiB)
    clerk.upload_object((data[i : i + 65536] for i in range(0, len(data), 65536)), B, "gen")
    assert fake.data(B, "gen") == data
    clerk.upload_object(iter([b"ab", bytearray(b"cd"), memoryview(b"ef")]), B, "few")
    assert fake.data(B, "few") == b"abcdef"
    strided = memoryview(b"0123456789")[::2]
    clerk.upload_object(strided, B, "strided")
    assert fake.data(B, "strided") == b"02468"


def test_upload_passes_extra_arguments(fake, clerk):
    clerk.upload_object(
        b"x", B, "k", content_type="text/plain", storage_class="STANDARD",
        extra_args={"CacheControl": "no-cache"},
    )  # fmt: skip
    sent = fake.ops("PutObject")[0]
    assert (sent["ContentType"], sent["StorageClass"], sent["CacheControl"]) == (
        "text/plain",
        "STANDARD",
        "no-cache",
    )
    with pytest.raises(InvalidRequestError, match="Bogus"):
        clerk.upload_object(b"x", B, "k", extra_args={"Bogus": 1})


def test_upload_without_verification_is_skipped(fake, clerk):
    assert clerk.upload_object(b"x", B, "k", verify_checksum=False).verification == "skipped"
    assert "ContentMD5" not in fake.ops("PutObject")[0]
    big = clerk.upload_object(os.urandom(6 * MiB), B, "big", verify_checksum=False)
    assert big.verification == "skipped"


class TextLike:
    def read(self, n: int = -1) -> str:
        return "text"


class Unseekable(io.RawIOBase):
    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        return self._data.readinto(buffer)

    def seekable(self) -> bool:
        raise OSError("cannot tell")


def test_upload_refuses_bad_sources(fake, clerk, tmp_path):
    closed = io.BytesIO(b"x")
    closed.close()
    write_only = (tmp_path / "w.bin").open("wb")
    cases = [
        tmp_path / "missing.bin",
        tmp_path,
        io.StringIO("text"),
        closed,
        write_only,
        TextLike(),
        [b"ok", "text"],
        object(),
    ]
    try:
        for data in cases:
            with pytest.raises(InvalidRequestError):
                clerk.upload_object(data, B, "k")
    finally:
        write_only.close()
    assert fake.calls == []
    result = clerk.upload_object(Unseekable(b"stream"), B, "k")
    assert result.verification == "md5"


def test_put_mismatch_is_retried_then_the_object_removed(fake, clerk):
    fake.on_response("PutObject", wrong_etag, times=1)
    assert clerk.upload_object(b"data", B, "k").verification == "md5"
    assert fake.count("PutObject") == 2
    fake.on_response("PutObject", wrong_etag, times=None)
    with pytest.raises(ChecksumMismatchError) as info:
        clerk.upload_object(b"other", B, "k")
    assert info.value.algorithm == "md5"
    assert fake.obj(B, "k") is None  # removed, not left corrupt


def test_put_transient_faults_are_retried(fake, clerk):
    fake.fail_next("PutObject", "BadDigest", 400)
    fake.fail_next("PutObject", "SlowDown", 503)
    assert clerk.upload_object(b"data", B, "k").verified
    assert fake.count("PutObject") == 3
    fake.on_response("PutObject", lambda p, r: {**r, "ETag": ""})
    assert clerk.upload_object(b"data", B, "k2").verified  # no ETag: not a real answer
    fake.fail_next("PutObject", "AccessDenied", 403)
    with pytest.raises(AccessDeniedError):
        clerk.upload_object(b"data", B, "k3")


def test_put_with_non_md5_etag_is_content_md5(fake, clerk):
    fake.on_response("PutObject", lambda p, r: {**r, "ETag": '"not-an-md5"'})
    assert clerk.upload_object(b"data", B, "k").verification == "content-md5"


def test_part_faults_are_retried(fake, clerk):
    data = os.urandom(11 * MiB)
    fake.on_response("UploadPart", wrong_etag, when=lambda p: p["PartNumber"] == 2)
    fake.fail_next("UploadPart", "BadDigest", 400, when=lambda p: p["PartNumber"] == 3)
    fake.fail_next("UploadPart", exc=lambda: EndpointConnectionError(endpoint_url="http://x"))
    assert clerk.upload_object(data, B, "k").verification == "multipart-md5"
    assert fake.data(B, "k") == data
    assert fake.count("UploadPart") == 6


def test_sse_c_upload_sends_key_with_every_part(fake, clerk):
    sse_c = {
        "SSECustomerAlgorithm": "AES256",
        "SSECustomerKey": "k" * 32,
        "SSECustomerKeyMD5": "a2V5bWQ1",
    }
    result = clerk.upload_object(os.urandom(6 * MiB), B, "k", extra_args=sse_c)
    assert result.verification == "content-md5"
    assert all(p["SSECustomerKey"] == "k" * 32 for p in fake.ops("UploadPart"))
    assert clerk.upload_object(b"x", B, "k1", extra_args=sse_c).verification == "content-md5"


def test_lost_complete_answer_is_recovered_by_head(fake, clerk):
    data = os.urandom(6 * MiB)
    # The first Complete lands but its answer is lost; the retry finds NoSuchUpload.
    fake.fail_next("CompleteMultipartUpload", "InternalError", 500, after=True)
    result = clerk.upload_object(data, B, "k")
    assert result.verification == "multipart-md5"
    assert fake.data(B, "k") == data
    assert fake.count("CompleteMultipartUpload") == 2
    # Every answer lost: the HEAD after the last attempt proves it landed.
    fake.fail_next("CompleteMultipartUpload", "InternalError", 500, after=True)
    fake.fail_next("CompleteMultipartUpload", exc=lambda: ReadTimeoutError(endpoint_url="x"),
                   times=None)  # fmt: skip
    result = clerk.upload_object(data[::-1], B, "k2")
    assert result.verification == "multipart-md5"
    assert fake.data(B, "k2") == data[::-1]


def test_failed_complete_aborts_and_raises(fake, clerk):
    fake.fail_next("CompleteMultipartUpload", "InternalError", 500, times=None)
    with pytest.raises(ServerError):
        clerk.upload_object(os.urandom(6 * MiB), B, "k")
    assert fake.open_uploads() == []
    assert fake.obj(B, "k") is None


def test_completed_etag_mismatch_removes_the_object(fake, clerk):
    fake.on_response("CompleteMultipartUpload", lambda p, r: {**r, "ETag": '"' + "1" * 32 + '-2"'})
    with pytest.raises(ChecksumMismatchError):
        clerk.upload_object(os.urandom(6 * MiB), B, "k")
    assert fake.obj(B, "k") is None


def test_empty_complete_etag_is_fetched_with_head():
    fake = FakeS3(empty_complete_etag=True, versioning=True)
    fake.create_bucket(B)
    result = make_clerk(fake).upload_object(os.urandom(6 * MiB), B, "k")
    assert result.verification == "multipart-md5"
    assert result.version_id == fake.obj(B, "k").version_id
    assert fake.ops()[-1] == "HeadObject"


def test_lost_create_answer_leaves_no_stray_upload(fake, clerk):
    fake.fail_next("CreateMultipartUpload", "InternalError", 500, after=True)
    data = os.urandom(6 * MiB)
    assert clerk.upload_object(data, B, "k").verified
    assert fake.count("CreateMultipartUpload") == 2
    assert fake.count("ListMultipartUploads") == 1
    assert fake.count("AbortMultipartUpload") == 1
    assert fake.open_uploads() == []
    # Every answer lost: all the uploads it made are aborted, the error raised.
    fake.fail_next("CreateMultipartUpload", "InternalError", 500, after=True, times=None)
    with pytest.raises(ServerError):
        clerk.upload_object(data, B, "k2")
    assert fake.open_uploads() == []
    # A definite refusal (4xx) cannot hide an upload: no listing.
    fake.clear_faults()
    fake.calls.clear()
    fake.fail_next("CreateMultipartUpload", "AccessDenied", 403)
    with pytest.raises(AccessDeniedError):
        clerk.upload_object(data, B, "k3")
    assert fake.count("ListMultipartUploads") == 0


def test_stray_search_and_abort_failures_are_not_fatal(fake, clerk):
    fake.fail_next("CreateMultipartUpload", "InternalError", 500, after=True)
    fake.fail_next("ListMultipartUploads", "AccessDenied", 403)
    assert clerk.upload_object(os.urandom(6 * MiB), B, "k").verified
    assert len(fake.open_uploads()) == 1  # could not be found; logged
    fake.fail_next("UploadPart", "AccessDenied", 403, times=None)
    fake.fail_next("AbortMultipartUpload", "AccessDenied", 403)
    with pytest.raises(AccessDeniedError):
        clerk.upload_object(os.urandom(6 * MiB), B, "k2")


def test_create_answer_without_upload_id_is_retried(fake, clerk):
    fake.on_response("CreateMultipartUpload", lambda p, r: {**r, "UploadId": ""})
    assert clerk.upload_object(os.urandom(6 * MiB), B, "k").verified


def test_upload_to_missing_bucket(fake, clerk):
    with pytest.raises(BucketNotFoundError):
        clerk.upload_object(b"x", "nobucket", "k")
    with pytest.raises(BucketNotFoundError):
        clerk.upload_object(os.urandom(6 * MiB), "nobucket", "k")


# ----------------------------------------------------------------------- reads ---


def test_get_small_empty_and_info(fake, clerk):
    fake.put_raw(B, "small", b"hello", metadata={"a": "b"}, content_type="text/plain")
    fake.put_raw(B, "empty", b"")
    assert clerk.get_object(B, "small") == b"hello"
    assert clerk.get_object(B, "empty") == b""
    assert get_ranges(fake) == [None, None]
    info = clerk.get_object_info(B, "small")
    assert (info["content-length"], info["x-amz-meta-a"], info["content-type"]) == (
        "5",
        "b",
        "text/plain",
    )
    assert "x-amz-version-id" not in info


def test_get_missing_object_and_bucket(fake, clerk):
    with pytest.raises(ObjectNotFoundError):
        clerk.get_object(B, "missing")
    with pytest.raises(BucketNotFoundError):
        clerk.get_object("nobucket", "k")
    with pytest.raises(ObjectNotFoundError):
        clerk.get_object_info(B, "missing")
    assert fake.count("GetObject") == 2


def test_small_get_is_one_unranged_request(fake, clerk):
    fake.put_raw(B, "k", b"x" * 1000)
    assert clerk.get_object(B, "k") == b"x" * 1000
    assert fake.ops() == ["GetObject"]
    assert get_ranges(fake) == [None]


def test_large_single_part_object_is_one_unranged_get(fake, clerk):
    data = os.urandom(10 * MiB)  # a single-part ETag (one MD5): read in order, one stream
    fake.put_raw(B, "k", data)
    assert clerk.get_object(B, "k") == data
    assert get_ranges(fake) == [None]


def _parts_5mib(size: int) -> list[str]:
    return [f"bytes={start}-{min(start + 5 * MiB, size) - 1}" for start in range(0, size, 5 * MiB)]


@pytest.mark.parametrize("concurrency", [2, 3, 8])
def test_parallel_read_front_and_back_meet_reading_each_byte_once(fake, concurrency):
    size = 47 * MiB + 3  # 10 parts of 5 MiB
    data = os.urandom(size)
    fake.put_raw(B, "k", data, part_size=5 * MiB, metadata=PARTS_5MIB)
    clerk = make_clerk(fake, s3_download_config={"max_concurrency": concurrency})
    assert clerk.get_object(B, "k") == data
    first, *ranged = get_ranges(fake)
    assert first is None  # the first GET asks for the whole object
    parts = _parts_5mib(size)
    # The workers took the last parts, each once; the first response read the others.
    assert sorted(ranged, key=parts.index) == parts[len(parts) - len(ranged) :]
    front = len(parts) - len(ranged)  # at least part 1, its own from the start
    assert front >= 1
    assert fake.bodies[0].consumed == min(front * 5 * MiB, size)  # not a byte more


def test_parallel_read_front_cut_finishes_its_part_and_leaves_the_rest(fake):
    size = 50 * MiB
    data = os.urandom(size)
    fake.put_raw(B, "k", data, part_size=5 * MiB, metadata=PARTS_5MIB)
    clerk = make_clerk(fake, s3_download_config={"max_concurrency": 2})
    fake.cut_next_get(123, when=lambda p: "Range" not in p)  # in part 1, always the front's
    retries: list[object] = []
    clerk.retrier.on_retry = retries.append
    assert clerk.get_object(B, "k") == data
    assert len(retries) == 1  # the cut, and nothing read from the finished ranged body
    first, *ranged = get_ranges(fake)
    assert first is None
    assert f"bytes=123-{5 * MiB - 1}" in ranged  # part 1 finished, pinned
    assert len(ranged) == len(set(ranged)) == 10  # the workers read the other 9, once each
    assert all(p["IfMatch"] for p in fake.ops("GetObject")[1:])


@pytest.mark.parametrize("mode", ["streaming", "protocol", "short"])
def test_cut_body_is_resumed_pinned(fake, clerk, mode):
    data = os.urandom(300_000)
    fake.put_raw(B, "k", data)
    fake.cut_next_get(100_000, mode=mode)
    assert clerk.get_object(B, "k") == data
    second = fake.ops("GetObject")[1]
    assert second["Range"] == "bytes=100000-"
    assert second["IfMatch"] == f'"{fake.obj(B, "k").etag}"'


def test_body_ending_early_without_error_is_resumed(fake, clerk):
    data = os.urandom(200_000)
    fake.put_raw(B, "k", data)
    fake.on_response("GetObject", short_body(50_000))
    assert clerk.get_object(B, "k") == data
    assert get_ranges(fake)[1] == "bytes=50000-"


def test_object_changed_mid_read_restarts_on_new_version(fake, clerk):
    fake.put_raw(B, "k", b"old" * 100_000)
    fake.cut_next_get(1000)
    fake.on_call(
        "GetObject", lambda p: fake.put_raw(B, "k", b"new" * 50_000), times=1,
        when=lambda p: "IfMatch" in p,
    )  # fmt: skip
    assert clerk.get_object(B, "k") == b"new" * 50_000
    assert fake.count("GetObject") == 3


def test_checksum_mismatch_is_retried_then_raised(fake, clerk):
    data = os.urandom(100_000)
    fake.put_raw(B, "k", data)
    fake.corrupt_next_get(5)
    assert clerk.get_object(B, "k") == data
    assert fake.count("GetObject") == 2
    fake.corrupt_next_get(5, times=None)
    with pytest.raises(ChecksumMismatchError) as info:
        clerk.get_object(B, "k")
    assert info.value.algorithm == "md5"
    assert fake.count("GetObject") == 2 + 3


def test_response_without_etag_is_retried(fake, clerk):
    fake.put_raw(B, "k", b"abc")
    fake.on_response("GetObject", lambda p, r: {**r, "ETag": ""})
    assert clerk.get_object(B, "k") == b"abc"


def test_read_without_verification(fake, clerk):
    data = os.urandom(20 * MiB)
    fake.put_raw(B, "big", data, part_size=5 * MiB)
    fake.put_raw(B, "small", b"abc")
    fake.corrupt_next_get(0)
    assert clerk.get_object(B, "small", verify_checksum=False) == b"\x9ebc"
    assert clerk.get_object(B, "big", verify_checksum=False) == data
    assert clerk.download_object(B, "big", io.BytesIO(), False).verification == "skipped"


@pytest.mark.parametrize("how", ["metadata", "part-number"])
def test_parallel_read_of_multipart_object(how, tmp_path):
    fake = FakeS3(part_number="honour" if how == "part-number" else "ignore")
    fake.create_bucket(B)
    clerk = make_clerk(fake)
    data = os.urandom(23 * MiB)
    fake.put_raw(B, "k", data, part_size=5 * MiB,
                 metadata=PARTS_5MIB if how == "metadata" else {})  # fmt: skip
    assert clerk.get_object(B, "k") == data
    ranged = [p for p in fake.ops("GetObject") if "IfMatch" in p]
    assert 1 <= len(ranged) <= 5  # ranged part reads, pinned to the first answer's ETag
    result = clerk.download_object(B, "k", tmp_path / "out.bin")
    assert result.verification == "multipart-md5"
    assert (tmp_path / "out.bin").read_bytes() == data
    handle = io.BytesIO()
    handle.write(b"prefix")
    assert clerk.download_object(B, "k", handle).size == len(data)
    assert handle.getvalue() == b"prefix" + data
    assert b"".join(clerk.iter_object(B, "k", chunk_size=3 * MiB)) == data
    with clerk.open_object(B, "k") as reader:
        assert reader.read(10) == data[:10]
        assert reader.read() == data[10:]


def test_part_number_probe_mismatch_and_refusal_fall_back_to_candidates():
    for behaviour in ("honour", "refuse"):
        fake = FakeS3(part_number=behaviour)
        fake.create_bucket(B)
        clerk = make_clerk(fake)
        data = os.urandom(20 * MiB)
        fake.put_raw(B, "k", data, part_size=8 * MiB)  # like the AWS CLI
        if behaviour == "honour":  # a PartsCount that contradicts the ETag is ignored
            fake.on_response("HeadObject", lambda p, r: {**r, "PartsCount": 9})
        assert clerk.get_object(B, "k") == data
        assert fake.count("HeadObject") == 1
        assert clerk.get_object(B, "k") == data  # the refusal was remembered
        assert fake.count("HeadObject") == (2 if behaviour == "honour" else 1)


def test_unknown_layout_guessed_from_candidates():
    fake = FakeS3()  # Ceph: PartNumber ignored
    fake.create_bucket(B)
    clerk = make_clerk(fake)
    data = os.urandom(20 * MiB)
    fake.put_raw(B, "k", data, part_size=8 * MiB)
    assert clerk.get_object(B, "k") == data
    assert clerk.download_object(B, "k", io.BytesIO()).verification == "multipart-md5"


def test_unverifiable_layouts_warn(fake, clerk):
    data = os.urandom(22 * MiB)
    fake.put_raw(B, "odd", data, part_size=6029312)  # 5.75 MiB: no candidate matches
    with pytest.warns(UnverifiableObjectWarning):
        assert clerk.get_object(B, "odd") == data
    tiny = fake.put_raw(B, "tiny", b"ab")
    tiny.etag = "0" * 32 + "-3"  # no part size gives 3 parts for 2 bytes
    with pytest.warns(UnverifiableObjectWarning):
        assert clerk.get_object(B, "tiny") == b"ab"
    fake.put_raw(B, "kms", data[:1000], sse="aws:kms")
    with pytest.warns(UnverifiableObjectWarning):
        assert clerk.get_object(B, "kms") == data[:1000]
    with pytest.warns(UnverifiableObjectWarning):
        result = clerk.download_object(B, "kms", io.BytesIO())
    assert result.verification == "unverifiable"
    one = fake.put_raw(B, "one", data[:1000], part_size=5 * MiB)
    assert one.etag.endswith("-1")
    assert clerk.download_object(B, "one", io.BytesIO()).verification == "multipart-md5"


def test_strict_mode_raises_unverifiable(fake):
    clerk = make_clerk(fake, strict_verification=True)
    fake.put_raw(B, "kms", b"secret", sse="aws:kms")
    with pytest.raises(UnverifiableObjectError):
        clerk.get_object(B, "kms")


def test_sse_c_object_cannot_be_read_without_its_key(fake, clerk):
    fake.put_raw(B, "ssec", b"secret", ssec="AES256")
    with pytest.raises(RequestRejectedError):
        clerk.get_object(B, "ssec")


def test_parallel_part_faults(fake, clerk):
    data = os.urandom(23 * MiB)
    fake.put_raw(B, "k", data, part_size=5 * MiB, metadata=PARTS_5MIB)
    part3 = f"bytes={10 * MiB}-{15 * MiB - 1}"
    fake.cut_next_get(MiB, when=lambda p: p.get("Range") == part3)
    part4 = f"bytes={15 * MiB}-{20 * MiB - 1}"
    fake.on_response("GetObject", short_body(100), when=lambda p: p.get("Range") == part4)
    assert clerk.get_object(B, "k") == data
    ranges = get_ranges(fake)
    assert f"bytes={11 * MiB}-{15 * MiB - 1}" in ranges  # part 3 resumed on its own
    assert f"bytes={15 * MiB + 100}-{20 * MiB - 1}" in ranges
    fake.calls.clear()
    fake.corrupt_next_get(7, when=lambda p: p.get("Range") == part3)
    assert clerk.get_object(B, "k") == data  # a mismatch re-reads the whole object
    fake.corrupt_next_get(7, when=lambda p: p.get("Range") == part3, times=None)
    with pytest.raises(ChecksumMismatchError) as info:
        clerk.get_object(B, "k")
    assert info.value.algorithm == "multipart-md5"


def test_parallel_part_that_keeps_failing_is_not_refetched(fake, clerk):
    fake.put_raw(B, "k", os.urandom(23 * MiB), part_size=5 * MiB, metadata=PARTS_5MIB)
    part3 = f"bytes={10 * MiB}-{15 * MiB - 1}"
    fake.fail_next("GetObject", "InternalError", 500, times=None,
                   when=lambda p: p.get("Range") == part3)  # fmt: skip
    with pytest.raises(ServerError):
        clerk.get_object(B, "k")
    assert get_ranges(fake).count(part3) == 3  # its own tries, not 3 x 3


def test_object_changed_during_parallel_read(fake, clerk):
    old, new = os.urandom(23 * MiB), os.urandom(21 * MiB)
    fake.put_raw(B, "k", old, part_size=5 * MiB, metadata=PARTS_5MIB)
    fake.on_call("GetObject", lambda p: fake.put_raw(B, "k", new, part_size=5 * MiB,
                 metadata=PARTS_5MIB), times=1, when=lambda p: "IfMatch" in p)  # fmt: skip
    assert clerk.get_object(B, "k") == new


def test_download_to_path_replaces_only_when_verified(fake, clerk, tmp_path):
    data = os.urandom(100_000)
    fake.put_raw(B, "k", data)
    target = tmp_path / "out.bin"
    target.write_bytes(b"previous")
    fake.corrupt_next_get(3, times=3)
    with pytest.raises(ChecksumMismatchError):
        clerk.download_object(B, "k", target)
    assert target.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]
    fake.corrupt_next_get(3)
    result = clerk.download_object(B, "k", str(target))
    assert (result.verification, result.size) == ("md5", len(data))
    assert target.read_bytes() == data


def test_download_into_file_object_is_reset_on_retry(fake, clerk):
    data = os.urandom(100_000)
    fake.put_raw(B, "k", data)
    handle = io.BytesIO(b"head")
    handle.seek(4)
    fake.corrupt_next_get(99_999)
    clerk.download_object(B, "k", handle)
    assert handle.getvalue() == b"head" + data


class Pipeish(io.RawIOBase):
    def __init__(self) -> None:
        self.data = bytearray()

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def write(self, b) -> int:
        self.data += b
        return len(b)


def test_download_into_unseekable_file_cannot_restart(fake, clerk):
    data = os.urandom(100_000)
    fake.put_raw(B, "k", data)
    sink = Pipeish()
    fake.corrupt_next_get(10)
    try:
        clerk.download_object(B, "k", sink)
    except ChecksumMismatchError:  # written bytes cannot be taken back: no second read
        assert fake.count("GetObject") == 1
    else:  # held back until verified, then read again
        assert bytes(sink.data) == data
    sink = Pipeish()
    assert clerk.download_object(B, "k", sink).verification == "md5"
    assert bytes(sink.data) == data


def test_download_refuses_bad_destinations(fake, clerk, tmp_path):
    fake.put_raw(B, "k", b"abc")
    for destination in (tmp_path, tmp_path / "missing" / "f", io.StringIO(), 5):
        with pytest.raises(InvalidRequestError):
            clerk.download_object(B, "k", destination)
    assert fake.calls == []


def test_iter_object_chunks_errors_and_early_close(fake, clerk):
    data = os.urandom(100_000)
    fake.put_raw(B, "k", data)
    chunks = list(clerk.iter_object(B, "k", chunk_size=30_000))
    assert max(len(c) for c in chunks) <= 30_000
    assert b"".join(chunks) == data
    for bad in (0, -1, 1.5, True, "10"):
        with pytest.raises(InvalidRequestError):
            clerk.iter_object(B, "k", chunk_size=bad)
    with pytest.raises(ObjectNotFoundError):
        list(clerk.iter_object(B, "missing"))
    fake.put_raw(B, "big", os.urandom(4 * MiB))
    stream = clerk.iter_object(B, "big", chunk_size=1024)
    assert len(next(stream)) == 1024
    stream.close()  # the reader stops: the producer thread must end
    with clerk.open_object(B, "big") as reader:
        assert len(reader.read(5)) == 5
    lines = b"one\ntwo\nthree"
    fake.put_raw(B, "lines", lines)
    with clerk.open_object(B, "lines") as reader:
        assert list(reader) == [b"one\n", b"two\n", b"three"]


def test_stream_mismatch_after_delivery_raises_at_the_end(fake, clerk):
    data = os.urandom(3 * MiB)
    fake.put_raw(B, "k", data)
    fake.corrupt_next_get(len(data) - 1)
    received = []
    try:
        for chunk in clerk.iter_object(B, "k", chunk_size=64 * 1024):
            received.append(chunk)
    except ChecksumMismatchError:  # bytes went to the reader: the verdict comes at the end
        assert len(b"".join(received)) <= len(data)
    else:  # nothing was handed over yet, so the stream could start again
        assert b"".join(received) == data


# ---------------------------------------------------------------------- copies ---


def test_single_part_copy_and_unverified_copy(fake, clerk):
    fake.put_raw(B, "src", b"payload", content_type="text/plain")
    result = clerk.copy_object(B, "src", B, "dst")
    assert (result.verification, result.size) == ("md5", 7)
    assert fake.data(B, "dst") == b"payload"
    assert fake.ops("CopyObject")[0]["CopySourceIfMatch"] == f'"{fake.obj(B, "src").etag}"'
    assert clerk.copy_object(B, "src", B, "dst2", False).verification == "skipped"


def test_multipart_copy_in_the_recorded_layout(fake, clerk):
    data = os.urandom(12 * MiB)
    uploaded = clerk.upload_object(data, B, "src", content_type="text/csv")
    fake.calls.clear()
    result = clerk.copy_object(B, "src", B, "dst")
    assert (result.verification, result.etag) == ("multipart-md5", uploaded.etag)
    assert fake.count("UploadPartCopy") == 3
    assert fake.count("CopyObject") == 0
    assert fake.data(B, "dst") == data
    assert fake.obj(B, "dst").content_type == "text/csv"
    assert clerk.copy_object(B, "src", B, "dst2", False).verification == "skipped"


def test_multipart_copy_tries_candidate_layouts(fake, clerk):
    data = os.urandom(20 * MiB)
    source = fake.put_raw(B, "src", data, part_size=6 * MiB)  # candidates: 5 MiB, then 6 MiB
    result = clerk.copy_object(B, "src", B, "dst")
    assert (result.verification, result.etag) == ("multipart-md5", source.etag)
    assert fake.count("CreateMultipartUpload") == 2
    assert fake.count("AbortMultipartUpload") == 1
    assert fake.obj(B, "dst").metadata[PART_SIZE_METADATA] == str(6 * MiB)


def test_multipart_copy_without_matching_layout_uses_copy_object(fake, clerk):
    data = os.urandom(22 * MiB)
    source = fake.put_raw(B, "src", data, part_size=6029312)  # 5.75 MiB: no candidate
    result = clerk.copy_object(B, "src", B, "dst")  # Ceph keeps the ETag on CopyObject
    assert (result.verification, result.etag) == ("multipart-md5", source.etag)
    assert fake.count("CopyObject") == 1
    assert fake.open_uploads() == []
    aws = FakeS3.aws(part_number="ignore")  # CopyObject gives the copy a single-part ETag
    aws.create_bucket(B)
    aws.put_raw(B, "src", data, part_size=6029312)
    with pytest.warns(UnverifiableObjectWarning):
        result = make_clerk(aws).copy_object(B, "src", B, "dst")
    assert result.verification == "unverifiable"
    assert aws.data(B, "dst") == data


def test_multipart_copy_of_key_with_percent_on_aws_goes_by_parts():
    fake = FakeS3.aws()
    fake.create_bucket(B)
    clerk = make_clerk(fake)
    data = os.urandom(12 * MiB)
    uploaded = clerk.upload_object(data, B, "100% done.csv")
    result = clerk.copy_object(B, "100% done.csv", B, "copy 100%.csv")
    assert (result.verification, result.etag) == ("multipart-md5", uploaded.etag)
    assert fake.count("UploadPartCopy") == 3
    assert fake.data(B, "copy 100%.csv") == data


def test_copy_mismatch_is_retried_then_the_copy_removed(fake, clerk):
    fake.put_raw(B, "src", b"payload")
    fake.on_response("CopyObject", wrong_copy_etag)
    assert clerk.copy_object(B, "src", B, "dst").verification == "md5"
    assert fake.count("HeadObject") == 2  # the source is read again before the retry
    fake.on_response("CopyObject", wrong_copy_etag, times=None)
    with pytest.raises(ChecksumMismatchError):
        clerk.copy_object(B, "src", B, "dst2")
    assert fake.obj(B, "dst2") is None


def test_copy_of_missing_or_vanishing_source(fake, clerk):
    with pytest.raises(ObjectNotFoundError):
        clerk.copy_object(B, "missing", B, "dst")
    fake.put_raw(B, "src", b"payload")
    fake.on_call("CopyObject", lambda p: fake.delete_object(Bucket=B, Key="src"), times=1)
    with pytest.raises(ObjectNotFoundError) as info:
        clerk.copy_object(B, "src", B, "dst")
    assert info.value.key == "src"


def test_copy_into_encrypted_bucket_is_unverifiable():
    """A bucket encrypting by default gives copies non-MD5 ETags: unverifiable, not wrong."""
    fake = FakeS3(kms_etags="text")
    fake.create_bucket(B)
    clerk = make_clerk(fake)
    fake.create_bucket("enc", default_sse="aws:kms")
    fake.put_raw(B, "src", b"payload")
    with pytest.warns(UnverifiableObjectWarning):
        assert clerk.copy_object(B, "src", "enc", "dst").verification == "unverifiable"
    data = os.urandom(12 * MiB)
    clerk.upload_object(data, B, "big")
    with pytest.warns(UnverifiableObjectWarning):
        assert clerk.copy_object(B, "big", "enc", "big").verification == "unverifiable"
    assert fake.data("enc", "big") == data


def test_part_copy_with_wrong_part_etag_is_a_mismatch(fake, clerk):
    data = os.urandom(12 * MiB)
    clerk.upload_object(data, B, "src")

    def other(params, response):
        return {**response, "CopyPartResult": {"ETag": '"' + "2" * 32 + '"'}}

    fake.on_response("UploadPartCopy", other, when=lambda p: p["PartNumber"] == 2)
    with pytest.raises(ChecksumMismatchError):
        clerk.copy_object(B, "src", B, "dst")
    assert fake.open_uploads() == []
    assert fake.obj(B, "dst") is None


def test_part_copy_faults_are_retried(fake, clerk):
    data = os.urandom(12 * MiB)
    clerk.upload_object(data, B, "src")
    fake.fail_next("UploadPartCopy", "SlowDown", 503, when=lambda p: p["PartNumber"] == 2)
    assert clerk.copy_object(B, "src", B, "dst").verified
    assert fake.data(B, "dst") == data


def test_copy_over_5_gib_without_matching_layout():
    fake = FakeS3()
    fake.create_bucket(B)
    clerk = make_clerk(fake, s3_upload_config={"max_concurrency": 8})
    size = 5 * GiB + 300 * MiB
    fake.put_raw(B, "huge", Lazy(size), part_size=700 * MiB + 12345)  # no candidate matches
    with pytest.warns(UnverifiableObjectWarning):
        result = clerk.copy_object(B, "huge", B, "copy")
    assert (result.verification, result.size) == ("unverifiable", size)
    assert len(fake.obj(B, "copy").data) == size
    assert fake.count("CopyObject") == 0
    big = fake.put_raw(B, "huge2", Lazy(size), part_size=512 * MiB)  # a common size
    result = clerk.copy_object(B, "huge2", B, "copy2")
    assert (result.verification, result.etag) == ("multipart-md5", big.etag)


def test_move_deletes_the_source_only_after_the_copy(fake, clerk):
    fake.put_raw(B, "src", b"payload")
    result = clerk.move_object(B, "src", B, "dst")
    assert result.verification == "md5"
    assert fake.obj(B, "src") is None
    assert fake.data(B, "dst") == b"payload"
    fake.put_raw(B, "src", b"again")
    assert clerk.move_object(B, "src", B, "dst2", False).verification == "skipped"
    assert fake.obj(B, "src") is None
    with pytest.raises(InvalidRequestError):
        clerk.move_object(B, "dst", B, "dst")
    fake.put_raw(B, "src", b"third")
    fake.on_response("HeadObject", lambda p, r: {**r, "ContentLength": 1},
                     when=lambda p: p["Key"] == "dst3")  # fmt: skip
    with pytest.raises(ChecksumMismatchError, match="size differs"):
        clerk.move_object(B, "src", B, "dst3", False)
    assert fake.data(B, "src") == b"third"


def test_move_keeps_a_source_overwritten_while_it_was_copied(fake, clerk):
    fake.put_raw(B, "src", b"payload")

    def overwrite(params: dict[str, Any], response: dict[str, Any]) -> dict[str, Any]:
        fake.put_raw(B, "src", b"a newer version, written meanwhile")
        return response

    fake.on_response("CopyObject", overwrite)
    with pytest.raises(PreconditionFailedError, match="source changed"):
        clerk.move_object(B, "src", B, "dst")
    assert fake.data(B, "src") == b"a newer version, written meanwhile"
    assert fake.data(B, "dst") == b"payload"
    assert fake.count("DeleteObject") == 0


def test_failed_copy_never_deletes_the_source(fake, clerk):
    fake.put_raw(B, "src", b"payload")
    fake.fail_next("CopyObject", "AccessDenied", 403)
    with pytest.raises(AccessDeniedError):
        clerk.move_object(B, "src", B, "dst")
    assert fake.data(B, "src") == b"payload"
    assert fake.count("DeleteObject") == 0


# ------------------------------------------------------------ delete and list ---


def test_delete_and_lost_delete_answers(fake, clerk):
    fake.put_raw(B, "k", b"x")
    clerk.delete_object(B, "k")
    clerk.delete_object(B, "k")  # missing: not an error
    fake.put_raw(B, "k", b"x")
    fake.fail_next("DeleteObject", "InternalError", 500, after=True, times=None)
    clerk.delete_object(B, "k")  # every answer lost, but the key is gone
    assert fake.obj(B, "k") is None
    fake.clear_faults()
    fake.put_raw(B, "k", b"x")
    fake.fail_next("DeleteObject", "InternalError", 500, times=None)
    with pytest.raises(ServerError):
        clerk.delete_object(B, "k")  # still there: the error stands
    fake.clear_faults()
    fake.fail_next("DeleteObject", "InternalError", 500, times=3)
    fake.fail_next("HeadObject", "AccessDenied", 403)
    with pytest.raises(TransientError):
        clerk.delete_object(B, "k")
    fake.fail_next("DeleteObject", "AccessDenied", 403)
    with pytest.raises(AccessDeniedError):
        clerk.delete_object(B, "k")


def test_remove_corrupted_failure_is_logged_not_raised(fake, clerk):
    fake.on_response("PutObject", wrong_etag, times=None)
    fake.fail_next("DeleteObject", "AccessDenied", 403)
    with pytest.raises(ChecksumMismatchError):
        clerk.upload_object(b"x", B, "k")


def test_list_pages_prefix_and_faults(fake, clerk):
    for i in range(25):
        fake.put_raw(B, f"a/{i:02}", b"x" * i)
    fake.put_raw(B, "b/other", b"")
    keys = [entry["Key"] for entry in clerk.list_objects(B, 10, prefix="a/")]
    assert keys == [f"a/{i:02}" for i in range(25)]
    assert [p.get("ContinuationToken") for p in fake.ops("ListObjectsV2")] == [
        None,
        "token:a/09",
        "token:a/19",
    ]
    assert len(list(clerk.list_objects(B))) == 26
    fake.calls.clear()
    fake.on_response("ListObjectsV2", without("IsTruncated"))
    fake.fail_next("ListObjectsV2", "SlowDown", 503, when=lambda p: "ContinuationToken" in p)
    assert len(list(clerk.list_objects(B, 10))) == 26
    assert fake.count("ListObjectsV2") == 5
    fake.calls.clear()
    fake.on_response("ListObjectsV2", without("NextContinuationToken"), times=None)
    assert len(list(clerk.list_objects(B, 10))) == 26  # StartAfter the last key instead
    assert fake.ops("ListObjectsV2")[1]["StartAfter"] == "a/09"
    # Truncated with nothing to continue from: refused, not silently cut short.
    fake.on_response("ListObjectsV2", lambda p, r: {"IsTruncated": True, "KeyCount": 0})
    with pytest.raises(ServerError, match="no way to continue"):
        list(clerk.list_objects(B, 10))
    with pytest.raises(BucketNotFoundError):
        list(clerk.list_objects("nobucket"))
    with pytest.raises(InvalidRequestError):
        clerk.list_objects(B, 0)


def test_head_with_versioning_probes_the_version():
    fake = FakeS3(part_number="honour", versioning=True)
    fake.create_bucket(B)
    clerk = make_clerk(fake)
    data = os.urandom(20 * MiB)
    fake.put_raw(B, "k", data, part_size=8 * MiB, version_id="v7")
    assert clerk.get_object(B, "k") == data
    assert fake.ops("HeadObject")[0]["VersionId"] == "v7"
    assert clerk.get_object_info(B, "k")["x-amz-version-id"] == "v7"


def _keeps_checksum(params: dict[str, Any], response: dict[str, Any]) -> dict[str, Any]:
    """Answer as AWS does: with the checksum that was sent."""
    return {**response, "ChecksumCRC32": params["ChecksumCRC32"]}


def test_uploads_send_a_crc_until_the_store_answers_without_one(fake):
    """The first answer without a checksum (Ceph RGW 16) stops the clerk sending them; a
    store that keeps them goes on getting them, parts included."""
    clerk = make_clerk(fake, upload_checksum="crc32")
    clerk.upload_object(b"one", B, "a")
    clerk.upload_object(b"two", B, "b")
    puts = fake.ops("PutObject")
    assert [p.get("ChecksumCRC32") for p in puts] == [crc32_of(b"one"), None]
    assert puts[0]["ChecksumAlgorithm"] == "CRC32" and puts[0]["ContentMD5"]
    data = os.urandom(10 * MiB + 3)
    keeping = make_clerk(FakeS3(), upload_checksum="crc32")
    store = keeping.client
    store.create_bucket(B)
    store.on_response("PutObject", _keeps_checksum, times=None)
    store.on_response("UploadPart", _keeps_checksum, times=None)
    keeping.upload_object(b"one", B, "a")
    keeping.upload_object(b"two", B, "b")
    assert [p["ChecksumCRC32"] for p in store.ops("PutObject")] == [
        crc32_of(b"one"),
        crc32_of(b"two"),
    ]
    assert keeping.upload_object(data, B, "big").verification == "multipart-md5"
    assert store.ops("CreateMultipartUpload")[0]["ChecksumType"] == "FULL_OBJECT"
    parts = store.ops("CompleteMultipartUpload")[0]["MultipartUpload"]["Parts"]
    assert [p["ChecksumCRC32"] for p in parts] == [
        crc32_of(data[: 5 * MiB]),
        crc32_of(data[5 * MiB : 10 * MiB]),
        crc32_of(data[10 * MiB :]),
    ]
    assert store.ops("CompleteMultipartUpload")[0]["ChecksumCRC32"] == crc32_of(data)


def test_a_stored_checksum_unlike_the_one_sent_removes_the_object(fake):
    clerk = make_clerk(fake, upload_checksum="crc32")
    fake.on_response(
        "PutObject", lambda p, r: {**r, "ChecksumCRC32": crc32_of(b"other")}, times=None
    )
    with pytest.raises(ChecksumMismatchError) as info:
        clerk.upload_object(b"one", B, "a")
    assert info.value.algorithm == "crc32"
    assert "checksum does not match the bytes sent" in str(info.value)
    assert fake.obj(B, "a") is None


def test_upload_checksum_off_sends_none(fake):
    clerk = make_clerk(fake, upload_checksum="off")
    clerk.upload_object(b"one", B, "a")
    assert not any(name.startswith("Checksum") for name in fake.ops("PutObject")[0])


def crc32_of(data: bytes) -> str:
    return ALGORITHMS["crc32"].of(data)
