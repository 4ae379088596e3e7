"""The large-object engine against the real servers: parallel part-aligned reads verified per
part, per-part resume, atomic downloads to files, streaming reads, parallel uploads with a
damaged part retried alone, and copies that keep their ETag."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest

from object_clerk import ChecksumMismatchError, ObjectClerk, ObjectNotFoundError
from object_clerk.etag import MiB
from tests.integration.faults import (
    BreakResponseStreams,
    CorruptRequestBodies,
    CorruptResponseBodies,
    RequestLog,
)
from tests.integration.test_operations import payload, raw_upload
from tests.servers import Backend

pytestmark = pytest.mark.integration

PART = 5 * MiB
TRIES = 3


def big_clerk(backend: Backend, **kwargs: Any) -> ObjectClerk:
    """5 MiB parts up and down, 4 at a time, fast retries. No upload checksum unless asked:
    these tests read by the multipart ETag's part layout (test_checksums reads by CRC)."""
    kwargs.setdefault("upload_checksum", "off")
    return ObjectClerk(
        **backend.clerk_kwargs(),
        multipart_threshold=PART,
        upload_config={"max_concurrency": 4},
        download_config={"multipart_threshold": PART, "max_concurrency": 4},
        retry_tries=TRIES,
        retry_delay=0.01,
        retry_jitter=0.0,
        retry_max_delay=0.02,
        **kwargs,
    )


def ranges(log: RequestLog) -> list[str | None]:
    return log.ranges("GetObject")


def test_large_get_reads_parts_in_parallel_aligned_and_pinned(
    backend: Backend, bucket: str
) -> None:
    """A 4-part object is read with the first GET (unranged: it carries part 1 and any
    parts it reaches first) plus ranged GETs for the parts from the back, each aligned to
    the object's parts and pinned with If-Match."""
    clerk = big_clerk(backend)
    data = payload(3 * PART + 1234)
    up = clerk.upload_object(data, bucket, "k")
    log = RequestLog(clerk.client)
    assert clerk.get_object(bucket, "k") == data
    got = ranges(log)
    assert got[0] is None  # the whole object: its stream reads parts from the front
    assert log.first_gets() == 1
    expected = [
        f"bytes={PART}-{2 * PART - 1}",
        f"bytes={2 * PART}-{3 * PART - 1}",
        f"bytes={3 * PART}-{len(data) - 1}",
    ]
    # The workers took the parts from the back, each once, until they met the front (in
    # whatever order their threads happened to send them).
    assert got[1:]
    assert sorted(got[1:]) == sorted(expected[len(expected) - len(got[1:]) :])
    pins = {h.get("If-Match") for op, h in log.headers if op == "GetObject"} - {None}
    assert pins == {f'"{up.etag}"'}


def test_damaged_part_is_detected_and_the_object_read_again(backend: Backend, bucket: str) -> None:
    """A bit flipped in one part's body fails the combined ETag; the object is read again
    and returned right."""
    clerk = big_clerk(backend)
    data = payload(3 * PART + 7)
    clerk.upload_object(data, bucket, "k")
    damage = CorruptResponseBodies(clerk.client, times=1, at=100)
    assert clerk.get_object(bucket, "k") == data
    assert damage.remaining == 0


def test_cut_part_resumes_alone(backend: Backend, bucket: str) -> None:
    """A part whose stream is cut resumes from its own offset; no other part is refetched."""
    clerk = big_clerk(backend)
    data = payload(3 * PART + 7)
    clerk.upload_object(data, bucket, "k")
    BreakResponseStreams(clerk.client, times=1, after=MiB)  # hits the first GET: part 1
    log = RequestLog(clerk.client)
    assert clerk.get_object(bucket, "k") == data
    got = ranges(log)
    assert len(got) == 4 + 1  # four parts plus one resume
    part_starts = {0, PART, 2 * PART, 3 * PART}
    resumes = [r for r in got if r and int(r.split("=")[1].split("-")[0]) not in part_starts]
    assert len(resumes) == 1
    resumed_from = int(resumes[0].split("=")[1].split("-")[0])
    assert MiB <= resumed_from < PART


def test_download_to_path_is_atomic_and_verified(
    backend: Backend, bucket: str, tmp_path: Path
) -> None:
    """download_object writes the file under a temporary name and renames it once verified."""
    clerk = big_clerk(backend)
    data = payload(3 * PART + 99)
    clerk.upload_object(data, bucket, "k")
    target = tmp_path / "out.bin"
    result = clerk.download_object(bucket, "k", target)
    assert result.verification == "multipart-md5"
    assert result.size == len(data)
    assert target.read_bytes() == data
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]


def test_failed_download_leaves_no_file_and_keeps_the_old_one(
    backend: Backend, bucket: str, tmp_path: Path
) -> None:
    """A download that never verifies raises, leaves the previous file untouched and no
    temporary file behind."""
    clerk = big_clerk(backend)
    clerk.upload_object(payload(3 * PART), bucket, "k")
    target = tmp_path / "out.bin"
    target.write_bytes(b"previous contents")
    CorruptResponseBodies(clerk.client, times=1000, at=10)
    with pytest.raises(ChecksumMismatchError):
        clerk.download_object(bucket, "k", target)
    assert target.read_bytes() == b"previous contents"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]
    with pytest.raises(ObjectNotFoundError):
        clerk.download_object(bucket, "missing", tmp_path / "missing.bin")
    assert not (tmp_path / "missing.bin").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]


def test_download_small_and_single_part_objects(
    backend: Backend, bucket: str, tmp_path: Path
) -> None:
    """A small object downloads in one request, verified by MD5, and so does an empty one
    (the first GET has no Range, which S3 would answer with 416 for an empty object)."""
    clerk = big_clerk(backend)
    for key, data, requests in (("empty", b"", 1), ("small", payload(1000), 1)):
        backend.raw().put_object(Bucket=bucket, Key=key, Body=data)
        log = RequestLog(clerk.client)
        result = clerk.download_object(bucket, key, tmp_path / key)
        assert result.verification == "md5"
        assert (tmp_path / key).read_bytes() == data
        assert log.counts["GetObject"] == requests


def test_download_into_file_object_from_its_position(backend: Backend, bucket: str) -> None:
    """A file object receives the bytes from its current position."""
    clerk = big_clerk(backend)
    data = payload(2 * PART + 5)
    clerk.upload_object(data, bucket, "k")
    sink = io.BytesIO(b"HEADER")
    sink.seek(6)
    clerk.download_object(bucket, "k", sink)
    assert sink.getvalue() == b"HEADER" + data


def test_iter_object_streams_in_bounded_chunks(backend: Backend, bucket: str) -> None:
    """iter_object yields the whole object, in chunks of at most chunk_size."""
    clerk = big_clerk(backend)
    data = payload(3 * PART + 3)
    clerk.upload_object(data, bucket, "k")
    chunks = list(clerk.iter_object(bucket, "k", chunk_size=300_000))
    assert b"".join(chunks) == data
    assert max(len(c) for c in chunks) <= 300_000


def test_iter_object_of_damaged_bytes_raises_at_the_end(backend: Backend, bucket: str) -> None:
    """A stream whose bytes do not verify raises ChecksumMismatchError, never ends cleanly."""
    clerk = big_clerk(backend)
    clerk.upload_object(payload(2 * PART), bucket, "k")
    CorruptResponseBodies(clerk.client, times=1000, at=10)
    with pytest.raises(ChecksumMismatchError):
        for _ in clerk.iter_object(bucket, "k"):
            pass


def test_iter_object_stopped_early_releases_its_thread(backend: Backend, bucket: str) -> None:
    """Closing a half-read stream stops its reader thread."""
    import threading

    clerk = big_clerk(backend)
    clerk.upload_object(payload(3 * PART), bucket, "k")
    stream = clerk.iter_object(bucket, "k", chunk_size=64 * 1024)
    next(stream)
    stream.close()  # type: ignore[attr-defined]
    alive = [t for t in threading.enumerate() if t.name == "object-clerk-stream"]
    assert alive == []


def test_open_object_reads_like_a_file(backend: Backend, bucket: str) -> None:
    """open_object returns a binary file object: read(n), read() and readline work."""
    clerk = big_clerk(backend)
    data = b"first line\n" + payload(2 * PART)
    clerk.upload_object(data, bucket, "k")
    with clerk.open_object(bucket, "k") as handle:
        assert handle.readline() == b"first line\n"
        assert handle.read(10) == data[11:21]
        assert handle.read() == data[21:]


def test_foreign_object_on_ceph_reads_single_stream_verified(backend: Backend, bucket: str) -> None:
    """A foreign multipart object whose layout is only guessed is read in one stream and
    verified against the candidate layouts; on moto the probe makes it parallel."""
    clerk = big_clerk(backend)
    data = payload(2 * 8 * MiB + 5)
    raw_upload(backend, bucket, "k", data, 8 * MiB)
    log = RequestLog(clerk.client)
    assert clerk.get_object(bucket, "k") == data
    # Ceph: one GET, the whole object in one stream. moto: the first GET carries part 1
    # and parts 2 and 3 are fetched in parallel from the back.
    expected_gets = 1 if backend.is_ceph else 3
    assert log.counts["GetObject"] == expected_gets


def test_parallel_upload_retries_the_damaged_part_alone(backend: Backend, bucket: str) -> None:
    """Parts go up in parallel with their Content-MD5; one damaged part is retried alone."""
    clerk = big_clerk(backend)
    CorruptRequestBodies(clerk.client, "UploadPart", times=1, fix_md5=not backend.is_ceph)
    log = RequestLog(clerk.client)
    data = payload(4 * PART + 1)
    result = clerk.upload_object(data, bucket, "k")
    assert result.verification == "multipart-md5"
    assert log.counts["UploadPart"] == 5 + 1
    assert clerk.get_object(bucket, "k") == data


def test_large_multipart_copy_keeps_etag_with_zero_bytes_downloaded(
    backend: Backend, bucket: str
) -> None:
    """A multipart object is copied part by part (in parallel); the copy's ETag equals the
    source's and no GetObject is made."""
    clerk = big_clerk(backend)
    up = clerk.upload_object(payload(4 * PART + 3), bucket, "src")
    log = RequestLog(clerk.client)
    copied = clerk.copy_object(bucket, "src", bucket, "dst")
    assert copied.etag == up.etag
    assert copied.verification == "multipart-md5"
    assert log.counts["GetObject"] == 0
    assert log.counts["UploadPartCopy"] == 5
