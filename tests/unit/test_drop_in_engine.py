"""Server-free tests of what issue 9 added to the engine: telling damaged bytes from an
unknown part layout, progress callbacks, and the clerk's copy arguments."""

from __future__ import annotations

import io
import warnings
from typing import Any

import pytest

from object_clerk import ObjectClerk, UnverifiableObjectWarning
from object_clerk.etag import MiB
from object_clerk.runner import Progress
from object_clerk.verdict import Verdict, settle_suspect
from tests.unit.fake_s3 import BUCKET, FakeS3

pytestmark = pytest.mark.usefixtures("no_environment")


def test_a_damaged_read_of_a_guessed_layout_is_read_again(fake: FakeS3, clerk: ObjectClerk) -> None:
    """8 MiB parts, recorded nowhere (another tool's upload, a store ignoring PartNumber):
    a flipped byte makes no candidate match. That is not reported unverifiable with the
    wrong bytes: the object is read again, and the second read verifies."""
    data = bytes(range(256)) * (40 * 1024)  # 10 MiB
    fake.put_raw(BUCKET, "k", data, part_size=8 * MiB)
    fake.corrupt_next_get(3 * MiB)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert clerk.get_object(BUCKET, "k") == data
    assert fake.count("GetObject") >= 2


def test_an_unknown_layout_read_twice_alike_is_reported(fake: FakeS3, clerk: ObjectClerk) -> None:
    data = bytes(range(256)) * (40 * 1024)
    fake.put_raw(BUCKET, "k", data, part_size=5 * MiB + 12345)  # no candidate is this
    with pytest.warns(UnverifiableObjectWarning, match="no candidate"):
        assert clerk.get_object(BUCKET, "k") == data
    first_gets = [p for p in fake.ops("GetObject") if "IfMatch" not in p]
    assert len(first_gets) == 2  # read twice, the same bytes: the layout is unknown


def test_a_stream_of_an_unknown_layout_reports_at_once(fake: FakeS3, clerk: ObjectClerk) -> None:
    data = bytes(range(256)) * (40 * 1024)
    fake.put_raw(BUCKET, "k", data, part_size=5 * MiB + 12345)
    with pytest.warns(UnverifiableObjectWarning):
        assert b"".join(clerk.iter_object(BUCKET, "k")) == data


def test_settle_suspect() -> None:
    suspect = Verdict("unverifiable", "r", expected="a-2", actual="b-2", suspect=True)
    assert not settle_suspect(suspect, None).matched  # first time: read again
    assert settle_suspect(suspect, "b-2") is suspect  # same bytes twice: unknown layout
    assert not settle_suspect(suspect, "c-2").matched  # other bytes: damage, again
    plain = Verdict("md5")
    assert settle_suspect(plain, None) is plain


def test_progress_reports_amounts_and_rewinds() -> None:
    seen: list[int] = []
    progress = Progress(seen.append)
    progress.add(5)
    progress.add(0)
    progress.add(7)
    progress.rewind()
    progress.rewind()
    assert seen == [5, 7, -12]
    Progress(None).add(3)  # no callback: nothing to do


def test_copy_arguments_reach_copy_object(fake: FakeS3, clerk: ObjectClerk) -> None:
    from object_clerk import copying

    fake.put_raw(BUCKET, "src", b"data")
    copying.copy(
        clerk._engine, BUCKET, "src", BUCKET, "dst", verify=True,
        extra_args={"MetadataDirective": "REPLACE", "Metadata": {"a": "b"}},
    )  # fmt: skip
    call: dict[str, Any] = fake.ops("CopyObject")[-1]
    assert call["MetadataDirective"] == "REPLACE" and call["Metadata"] == {"a": "b"}
    with pytest.raises(ValueError, match="CopySourceIfMatch"):
        copying.copy(
            clerk._engine, BUCKET, "src", BUCKET, "dst", verify=True,
            extra_args={"CopySourceIfMatch": "x"},
        )  # fmt: skip


def test_parse_copy_source() -> None:
    from object_clerk.copying import parse_copy_source

    assert parse_copy_source({"Bucket": "b", "Key": "k"}) == ("b", "k", None)
    assert parse_copy_source({"Bucket": "b", "Key": "k", "VersionId": "v"}) == ("b", "k", "v")
    assert parse_copy_source("b/dir/k?versionId=v") == ("b", "dir/k", "v")
    assert parse_copy_source("b/dir/k") == ("b", "dir/k", None)
    with pytest.raises(ValueError, match="CopySource"):
        parse_copy_source(42)


def test_one_try_never_turns_an_unknown_layout_into_a_false_alarm(fake: FakeS3) -> None:
    """The confirming second read is part of the same attempt: with retry_tries=1 an
    unknown layout is still reported unverifiable, never raised as a mismatch."""
    from tests.unit.fake_s3 import make_clerk

    clerk = make_clerk(fake, retry_tries=1)
    data = bytes(range(256)) * (40 * 1024)
    fake.put_raw(BUCKET, "k", data, part_size=5 * MiB + 12345)
    with pytest.warns(UnverifiableObjectWarning):
        assert clerk.get_object(BUCKET, "k") == data


def test_progress_of_a_stream_download_is_not_taken_back(fake: FakeS3, clerk: ObjectClerk) -> None:
    """A download into a file object that cannot be rewound reports its bytes once, even
    when the read asked to start over (an unknown layout's confirming read)."""
    import io

    from object_clerk import reads

    class Pipe(io.RawIOBase):
        def __init__(self) -> None:
            self.data = bytearray()

        def writable(self) -> bool:
            return True

        def write(self, b: Any) -> int:
            self.data += b
            return len(b)

    data = bytes(range(256)) * (40 * 1024)
    fake.put_raw(BUCKET, "k", data, part_size=5 * MiB + 12345)
    seen: list[int] = []
    out = Pipe()
    with pytest.warns(UnverifiableObjectWarning):
        reads.download(clerk._engine, BUCKET, "k", out, verify=True, progress=Progress(seen.append))
    assert bytes(out.data) == data and sum(seen) == len(data) and min(seen) > 0


def test_a_body_past_offset_zero_is_sent_through_a_window_that_starts_there() -> None:
    """botocore rewinds a body to 0 (its retries, and its awscrt signer whenever awscrt is
    installed): through the window, 0 is where the caller's file stood."""
    from object_clerk.hardened import _Window

    file = io.BytesIO(b"HEADER--payload")
    window = _Window(file, 8)
    assert (window.tell(), window.read(), window.tell()) == (0, b"payload", 7)
    assert window.seek(0) == 0 and window.read(3) == b"pay"
    assert window.seek(0, io.SEEK_END) == 7  # botocore's length probe
    assert window.seek(-100, io.SEEK_END) == 0  # never before the window's start
    buffer = bytearray(4)
    window.seek(0)
    assert window.readinto(buffer) == 4 and bytes(buffer) == b"payl"
