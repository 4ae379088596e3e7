"""Server-free regressions for defects found by review: each failed before its fix."""

from __future__ import annotations

import io
import os
import time

import pytest

from object_clerk import ChecksumMismatchError, ConfigurationError, TransientError, load_settings
from object_clerk import retry as retry_module
from tests.unit.fake_s3 import BUCKET, FakeS3, MiB, make_clerk

pytestmark = pytest.mark.usefixtures("no_environment")
B = BUCKET


def test_a_failed_layout_probe_never_leaves_the_read_unverified():
    """A transient failure of the HeadObject(PartNumber) probe used to leave the read pinned
    with no verifier: the retry then returned damaged bytes as good. It now starts afresh."""
    fake = FakeS3.aws()
    fake.create_bucket(B)
    data = os.urandom(12 * MiB)
    fake.put_raw(B, "k", data, part_size=5 * MiB)
    clerk = make_clerk(fake)
    fake.fail_next("HeadObject", "ServiceUnavailable", 503, when=lambda p: "PartNumber" in p)
    fake.corrupt_next_get(100, when=lambda p: "IfMatch" in p)
    assert clerk.get_object(B, "k") == data
    fake.fail_next("HeadObject", "ServiceUnavailable", 503, when=lambda p: "PartNumber" in p)
    fake.corrupt_next_get(100, when=lambda p: "IfMatch" in p)
    result = clerk.download_object(B, "k", io.BytesIO())
    assert result.verification == "multipart-md5"


def test_lost_complete_answers_are_not_taken_for_success_by_an_etag_alone(fake, clerk):
    """The key already held the same bytes; every CompleteMultipartUpload attempt failed
    before the server did anything. The HEAD's matching ETag used to be taken as success
    (new metadata lost, upload left open). Now the upload is found still open, aborted, and
    the error raised."""
    data = os.urandom(12 * MiB)
    clerk.upload_object(data, B, "k", metadata={"v": "1"})
    fake.fail_next("CompleteMultipartUpload", "ServiceUnavailable", 503, times=None)
    with pytest.raises(TransientError):
        clerk.upload_object(data, B, "k", metadata={"v": "2"})
    assert fake.open_uploads() == []
    assert fake.obj(B, "k").metadata["v"] == "1"


def test_a_lost_complete_answer_after_the_server_completed_is_a_success(fake, clerk):
    data = os.urandom(12 * MiB)
    fake.fail_next("CompleteMultipartUpload", "ServiceUnavailable", 503, after=True, times=None)
    result = clerk.upload_object(data, B, "k")
    assert result.verification == "multipart-md5"
    assert fake.data(B, "k") == data and fake.open_uploads() == []


class ShortWrites(io.RawIOBase):
    """A raw file that takes at most 64 KiB per write call."""

    def __init__(self) -> None:
        self.data = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:  # type: ignore[override]
        taken = bytes(memoryview(b)[: 64 * 1024])
        self.data += taken
        return len(taken)


def test_short_writes_of_a_raw_file_are_completed(fake, clerk):
    data = os.urandom(3 * MiB)
    fake.put_raw(B, "k", data)
    target = ShortWrites()
    assert clerk.download_object(B, "k", target).verification == "md5"
    assert bytes(target.data) == data


def test_unlimited_tries_still_end_persistent_mismatches(fake):
    """retry_tries=-1: every parallel read made progress, so a persistent mismatch used to
    be retried forever. Mismatches are now tried at most 3 times (1.x's default)."""
    clerk = make_clerk(fake, retry_tries=-1, retry_deadline=60.0)
    data = os.urandom(20 * MiB)
    clerk.upload_object(data, B, "k")
    fake.corrupt_next_get(10, times=None, when=lambda p: "Range" in p and "IfMatch" in p)
    started = time.monotonic()
    with pytest.raises(ChecksumMismatchError):
        clerk.get_object(B, "k")
    assert time.monotonic() - started < 30
    assert fake.count("GetObject") <= 3 * 4 + 1  # three whole reads of 3 parts, at most


@pytest.mark.parametrize("operation", ["upload", "copy", "move"])
def test_one_retry_budget_per_operation(fake, clerk, monkeypatch, operation):
    """An upload's create, parts and complete (a copy's, a move's) share one budget."""
    data = os.urandom(12 * MiB)
    clerk.upload_object(data, B, "src")
    made = []
    real = retry_module._Budget

    def counting(*args, **kwargs):
        made.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(retry_module, "_Budget", counting)
    if operation == "upload":
        clerk.upload_object(data, B, "dst")
    elif operation == "copy":
        clerk.copy_object(B, "src", B, "dst")
    else:
        clerk.move_object(B, "src", B, "dst")
    assert len(made) == 1


def test_configuration_errors_never_echo_a_url_with_a_password(monkeypatch):
    monkeypatch.setenv(
        "S3_CLIENT_CONFIG",
        '{"proxies": {"https": "http://bob:hunter2@proxy:3128"}, "retries": {"mode": "bogus"}}',
    )
    with pytest.raises(ConfigurationError) as info:
        load_settings()
    assert "hunter2" not in str(info.value)
