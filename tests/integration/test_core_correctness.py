"""Issue 7's defects, shown against the real servers: a file that changes while it is
uploaded, SSE-KMS multipart uploads, local I/O errors, bad input refused before any request,
a failed part that stops a copy, the downloaded file's mode and configuration precedence."""

from __future__ import annotations

import errno
import io
import os
import stat
import threading
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from object_clerk import (
    AccessDeniedError,
    ConfigurationError,
    InvalidRequestError,
    LocalIOError,
    ObjectClerk,
    RequestRejectedError,
    SourceChangedError,
    UnverifiableObjectWarning,
    copying,
)
from object_clerk.etag import MiB
from tests.integration.faults import RequestLog
from tests.integration.test_operations import payload, small_clerk
from tests.servers import Backend

pytestmark = pytest.mark.integration


def _uploads_left(backend: Backend, bucket: str) -> list[Any]:
    return list(backend.raw().list_multipart_uploads(Bucket=bucket).get("Uploads", []))


def _on_part_sent(clerk: ObjectClerk, number: int, action: Callable[[], None]) -> None:
    """Run ``action`` once, just before UploadPart ``number`` goes to the server."""
    done = False

    def hook(request: Any, **_: Any) -> None:
        nonlocal done
        if not done and f"partNumber={number}&" in request.url + "&":
            done = True
            action()

    clerk.client.meta.events.register("before-send.s3.UploadPart", hook)


@pytest.mark.parametrize("change", ["truncate", "append", "replace"])
def test_file_changed_mid_upload_replaces_nothing(
    ceph_any: Backend, tmp_path: Path, change: str
) -> None:
    """Defect 2: a 20 MiB file truncated to 4 MiB, grown by 5 MiB, or replaced by another
    file after part 1 was read is refused with SourceChangedError naming the file; the
    previous object under the key keeps its bytes, and no upload is left behind."""
    bucket = ceph_any.new_bucket()
    clerk = small_clerk(ceph_any, upload_config={"max_concurrency": 1})
    previous = payload(64 * 1024, seed=9)
    clerk.upload_object(previous, bucket, "k")
    path = tmp_path / "data.bin"
    path.write_bytes(payload(20 * MiB))

    def act() -> None:
        if change == "truncate":
            os.truncate(path, 4 * MiB)
        elif change == "append":
            with path.open("ab") as handle:
                handle.write(payload(5 * MiB, seed=3))
        else:
            other = tmp_path / "other.bin"
            other.write_bytes(payload(20 * MiB, seed=4))
            os.replace(other, path)

    _on_part_sent(clerk, 1, act)
    log = RequestLog(clerk.client)
    with pytest.raises(SourceChangedError, match=r"data\.bin") as caught:
        clerk.upload_object(path, bucket, "k")
    assert caught.value.path == str(path)
    assert log.counts["CompleteMultipartUpload"] == 0
    assert log.counts["AbortMultipartUpload"] == 1
    assert clerk.get_object(bucket, "k") == previous
    assert _uploads_left(ceph_any, bucket) == []


def test_single_part_file_changed_before_put_is_refused(ceph: Backend, tmp_path: Path) -> None:
    """Defect 2, single part: a file whose size changes while it is being read is refused
    before the PutObject is sent."""
    bucket = ceph.new_bucket()
    clerk = small_clerk(ceph)
    path = tmp_path / "small.bin"
    path.write_bytes(payload(MiB))

    class Growing:
        """A file object over ``path`` that appends to it after its first read."""

        def __init__(self) -> None:
            self.handle = path.open("rb")
            self.name = str(path)

        def read(self, n: int = -1) -> bytes:
            data = self.handle.read(n)
            with path.open("ab") as grow:
                grow.write(b"more")
            return data

        def __getattr__(self, name: str) -> Any:
            return getattr(self.handle, name)

    log = RequestLog(clerk.client)
    source = Growing()
    try:
        with pytest.raises(SourceChangedError):
            clerk.upload_object(source, bucket, "k")
    finally:
        source.handle.close()
    assert log.counts["PutObject"] == 0


def test_stream_source_is_stored_as_read(ceph: Backend) -> None:
    """A generator has no state to compare: what was read is what is stored, verified."""
    bucket = ceph.new_bucket()
    clerk = small_clerk(ceph)
    data = payload(12 * MiB)
    result = clerk.upload_object((data[i : i + MiB] for i in range(0, len(data), MiB)), bucket, "g")
    assert result.verification == "multipart-md5"
    assert clerk.get_object(bucket, "g") == data


def test_kms_multipart_upload_is_proven_by_content_md5(moto: Backend) -> None:
    """Defect 6: a 12 MiB upload with SSE-KMS and no upload checksum goes up in parts, is
    reported "content-md5" (every part passed the Content-MD5 check; the ETag is not an
    MD5), is not deleted, and reads back (unverifiable, with a warning)."""
    bucket = moto.new_bucket()
    clerk = small_clerk(moto, upload_checksum="off")
    data = payload(12 * MiB)
    log = RequestLog(clerk.client)
    result = clerk.upload_object(
        data, bucket, "kms", extra_args={"ServerSideEncryption": "aws:kms"}
    )
    assert (result.verification, result.verified) == ("content-md5", True)
    assert "aws:kms" in result.reason
    assert log.counts["UploadPart"] == 3  # parts of the 5 MiB threshold
    assert log.counts["AbortMultipartUpload"] == 0 and log.counts["DeleteObject"] == 0
    with pytest.warns(UnverifiableObjectWarning, match="aws:kms"):
        assert clerk.get_object(bucket, "kms") == data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnverifiableObjectWarning)
        copied = clerk.copy_object(bucket, "kms", bucket, "kms-copy")
    assert copied.verification == "unverifiable"


def test_kms_multipart_upload_with_its_crc_is_proven_and_reads_verified(moto: Backend) -> None:
    """With the upload checksum (the default), the SSE-KMS upload is proven by the
    CRC64NVME the store kept, and so is its read: no warning on either."""
    bucket = moto.new_bucket()
    clerk = small_clerk(moto)
    data = payload(12 * MiB)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnverifiableObjectWarning)
        result = clerk.upload_object(
            data, bucket, "kms", extra_args={"ServerSideEncryption": "aws:kms"}
        )
        assert (result.verification, result.verified) == ("crc64nvme", True)
        assert clerk.download_object(bucket, "kms", io.BytesIO()).verification == "crc64nvme"


def test_full_disk_on_download_is_local_and_not_retried(
    ceph: Backend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Defect 7: a full disk makes one GET, then LocalIOError (an OSError with ENOSPC),
    never ConnectionFault after every retry; no temporary file is left."""
    bucket = ceph.new_bucket()
    clerk = small_clerk(ceph)
    clerk.upload_object(payload(MiB), bucket, "k")
    log = RequestLog(clerk.client)

    def full(fd: int, data: Any, offset: int) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "pwrite", full)
    with pytest.raises(LocalIOError) as caught:
        clerk.download_object(bucket, "k", tmp_path / "out.bin")
    assert caught.value.errno == errno.ENOSPC
    assert isinstance(caught.value, OSError)
    assert log.counts["GetObject"] == 1
    assert list(tmp_path.iterdir()) == []


def test_download_into_read_only_file_is_refused_before_any_request(
    ceph: Backend, tmp_path: Path
) -> None:
    """Defect 7: a destination opened 'rb' is refused before any GET."""
    bucket = ceph.new_bucket()
    clerk = small_clerk(ceph)
    clerk.upload_object(b"data", bucket, "k")
    target = tmp_path / "existing.bin"
    target.write_bytes(b"keep")
    log = RequestLog(clerk.client)
    with target.open("rb") as handle, pytest.raises(InvalidRequestError, match="not writable"):
        clerk.download_object(bucket, "k", handle)
    assert sum(log.counts.values()) == 0
    assert target.read_bytes() == b"keep"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"metadata": {"note": "line\r\nx-amz-acl: public-read"}}, "control or non-ASCII"),
        ({"metadata": {"n": 1}}, "'n' must be a str"),
        ({"metadata": {"bad key": "v"}}, "not a valid header name"),
        ({"metadata": {"k": "caf\u00e9"}}, "US-ASCII"),
        ({"content_type": "text/plain\n"}, "ContentType"),
    ],
)
def test_bad_metadata_is_refused_before_any_request(
    ceph: Backend, kwargs: dict[str, Any], match: str
) -> None:
    """Defect 7: metadata that would become a broken header is refused, typed, with no
    request sent (it used to make 4 PutObject attempts, then ConnectionFault)."""
    bucket = ceph.new_bucket()
    clerk = small_clerk(ceph)
    log = RequestLog(clerk.client)
    with pytest.raises(InvalidRequestError, match=match):
        clerk.upload_object(b"data", bucket, "k", **kwargs)
    assert sum(log.counts.values()) == 0


@pytest.mark.parametrize("data", [{}, {"a": b"x"}, {b"x"}, 5, None, 1.5])
def test_undocumented_data_never_replaces_an_object(ceph: Backend, data: object) -> None:
    """Defect 3: `upload_object({}, ...)` used to replace a 64 KiB object with 0 bytes;
    only the documented types are data."""
    bucket = ceph.new_bucket()
    clerk = small_clerk(ceph)
    kept = payload(64 * 1024)
    clerk.upload_object(kept, bucket, "k")
    log = RequestLog(clerk.client)
    with pytest.raises(InvalidRequestError, match="data must be"):
        clerk.upload_object(data, bucket, "k")
    assert sum(log.counts.values()) == 0
    assert clerk.get_object(bucket, "k") == kept


def test_list_with_a_non_string_prefix_is_refused(ceph: Backend) -> None:
    bucket = ceph.new_bucket()
    clerk = small_clerk(ceph)
    with pytest.raises(InvalidRequestError, match="prefix must be a string"):
        list(clerk.list_objects(bucket, prefix=5))  # type: ignore[arg-type]


def test_failed_part_stops_a_multipart_copy(ceph: Backend, monkeypatch: pytest.MonkeyPatch) -> None:
    """Defect 8: once a part copy is refused (a damaged signature), the copy stops: the
    parts runner draws no further part, the upload is aborted and nothing is left.

    No timing is assumed: every part copy after the refused one waits (bounded) until the
    runner has seen the refusal and set its stop event, so none can finish first and make
    room for another. With 2 at a time, at most the refused part and one other are sent."""
    bucket = ceph.new_bucket()
    clerk = small_clerk(ceph, upload_config={"max_concurrency": 2})
    clerk.upload_object(payload(5 * MiB * 12), bucket, "src")
    stops: list[threading.Event] = []
    real_run_parts = copying.run_parts

    def run_parts_seen(jobs: Any, **kwargs: Any) -> Any:
        stops.append(threading.Event())
        return real_run_parts(jobs, **kwargs, stop=stops[-1])

    monkeypatch.setattr(copying, "run_parts", run_parts_seen)
    log = RequestLog(clerk.client)
    sent = 0
    lock = threading.Lock()

    def refuse_first_hold_the_rest(request: Any, **_: Any) -> None:
        nonlocal sent
        with lock:
            sent += 1
            first = sent == 1
        if first:  # damage its signature: the server refuses it (400 or 403)
            signed = str(request.headers["Authorization"])
            del request.headers["Authorization"]
            request.headers["Authorization"] = signed[:-8] + "00000000"
        else:
            assert stops[-1].wait(60), "the runner never saw the refused part"

    clerk.client.meta.events.register("before-send.s3.UploadPartCopy", refuse_first_hold_the_rest)
    with pytest.raises((AccessDeniedError, RequestRejectedError)):
        clerk.copy_object(bucket, "src", bucket, "dst")
    assert stops[-1].is_set()
    # The refused one, and the other if it had started (a drawn part not yet started is
    # cancelled); never a third.
    assert 1 <= log.counts["UploadPartCopy"] <= 2
    assert log.counts["AbortMultipartUpload"] == 1
    assert _uploads_left(ceph, bucket) == []


def test_downloaded_file_honours_the_umask(ceph: Backend, tmp_path: Path) -> None:
    """Defect 9: the file gets 0666 less the umask (0644 under 022), as open() gives."""
    bucket = ceph.new_bucket()
    clerk = small_clerk(ceph)
    clerk.upload_object(b"data", bucket, "k")
    previous = os.umask(0o022)
    try:
        clerk.download_object(bucket, "k", tmp_path / "a.bin")
        os.umask(0o077)
        clerk.download_object(bucket, "k", tmp_path / "b.bin")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "a.bin").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "b.bin").stat().st_mode) == 0o600


def test_explicit_host_beats_the_environments_endpoint(
    ceph: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Defect 4: with OBJECT_CLERK_ENDPOINT_URL pointing elsewhere, ObjectClerk(host=...,
    port=...) talks to that host and port; both ways at once are refused."""
    host, port = ceph.endpoint.removeprefix("http://").split(":")
    monkeypatch.setenv("OBJECT_CLERK_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing there
    clerk = ObjectClerk(
        host=host,
        port=int(port),
        access_key=ceph.access_key,
        secret_key=ceph.secret_key,
        use_ssl=False,
        region="us-east-1",
    )
    assert clerk.client.meta.endpoint_url == ceph.endpoint
    bucket = ceph.new_bucket()
    clerk.upload_object(b"here", bucket, "k")
    assert ceph.raw().get_object(Bucket=bucket, Key="k")["Body"].read() == b"here"
    with pytest.raises(ConfigurationError, match="endpoint_url and host"):
        ObjectClerk(host=host, port=int(port), endpoint_url=ceph.endpoint)
