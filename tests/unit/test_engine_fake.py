"""Server-free tests of the transfer engine's defects 1-9, over the in-memory FakeS3.

Each test's docstring says which defect it proves ("Defect N:") and the behaviour it asserts,
which is the behaviour after the fix. Names the fix adds to object_clerk (SourceChangedError,
LocalIOError) are looked up inside the tests, so this file collects on any version.
"""

from __future__ import annotations

import errno
import io
import logging
import os
import stat
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import unquote

import pytest

import object_clerk
from object_clerk import (
    PART_SIZE_METADATA,
    AccessDeniedError,
    ChecksumMismatchError,
    ClerkSettings,
    ConfigurationError,
    ConnectionFault,
    InvalidRequestError,
    ObjectClerk,
    ObjectClerkError,
    UnverifiableObjectWarning,
    copying,
    reads,
    uploads,
)
from tests.integration.faults import pipe_of
from tests.unit.fake_s3 import BUCKET, FakeS3, GiB, Lazy, MiB, client_error, make_clerk

B = BUCKET
pytestmark = pytest.mark.usefixtures("no_environment")


def new_error(name: str) -> type[BaseException]:
    """An error class the fix adds to object_clerk; a clear failure until it exists."""
    found = getattr(object_clerk, name, None)
    if found is None:
        pytest.fail(f"object_clerk.{name} does not exist yet")
    assert isinstance(found, type) and issubclass(found, ObjectClerkError)
    return found


def copy_source_keys(fake: FakeS3, op: str) -> list[str]:
    keys = []
    for params in fake.ops(op):
        source = params["CopySource"]
        text = source if isinstance(source, str) else ""
        keys.append(source["Key"] if isinstance(source, dict) else unquote(text.split("/", 1)[1]))
    return keys


# ------------------------------------------------------------------------ defect 1 ---


def _race_reads(fake: FakeS3, read, rounds: int, size: int = 64 * 1024) -> tuple[list[int], int]:
    data = os.urandom(size)
    fake.put_raw(B, "race", data)
    wrong: list[int] = []
    mismatches = 0
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        for _ in range(rounds):
            fake.corrupt_next_get(1000)
            try:
                got = read()
            except ChecksumMismatchError:
                mismatches += 1
                continue
            if got != data:
                wrong.append(len(got))
    finally:
        sys.setswitchinterval(previous)
    return wrong, mismatches


def test_defect1_iter_object_never_yields_wrong_bytes(fake, clerk, caplog):
    """Defect 1: iter_object yields exactly the object, or raises ChecksumMismatchError,
    when its first GET body was damaged: never extra or wrong bytes without an error."""
    caplog.set_level(logging.ERROR, logger="object_clerk")  # one retry warning per read
    # The brief's case (64 KiB in 512-byte chunks) first, then shapes that hit the race
    # (a reset racing the reader's first chunk) far more often on a 2-core machine.
    report = []
    for size, chunk, rounds in ((64 * 1024, 512, 600), (64 * 1024, 8192, 400), (4096, 512, 400)):
        wrong, mismatches = _race_reads(
            fake, lambda c=chunk: b"".join(clerk.iter_object(B, "race", chunk_size=c)), rounds,
            size=size,
        )  # fmt: skip
        if wrong:
            report.append(
                f"{len(wrong)} of {rounds} reads of a {size}-byte object in {chunk}-byte chunks"
                f" returned other bytes without an error (lengths {sorted(set(wrong))[:6]});"
                f" {mismatches} raised ChecksumMismatchError"
            )
    assert not report, "; ".join(report)


def test_defect1_open_object_never_reads_wrong_bytes(fake, clerk, caplog):
    """Defect 1: open_object().read() returns exactly the object, or raises
    ChecksumMismatchError, when its first GET body was damaged."""

    caplog.set_level(logging.ERROR, logger="object_clerk")

    def read() -> bytes:
        with clerk.open_object(B, "race") as handle:
            return handle.read()

    # open_object hands over 1 MiB chunks, so the object is one chunk: the race is rarer.
    wrong, mismatches = _race_reads(fake, read, 800)
    assert not wrong, (
        f"{len(wrong)} of 800 reads of a 65536-byte object returned other bytes without an"
        f" error (lengths {sorted(set(wrong))[:6]}); {mismatches} raised ChecksumMismatchError"
    )


# ------------------------------------------------------------------------ defect 2 ---


def _change_file(path: Path, how: str) -> None:
    before = path.stat()
    with path.open("r+b") as handle:
        if how == "truncate":
            handle.truncate(4 * MiB)
        elif how == "append":
            handle.seek(0, io.SEEK_END)
            handle.write(os.urandom(5 * MiB))
        else:  # same size, other bytes, later mtime
            handle.write(os.urandom(before.st_size))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns + 2_000_000_000))


@pytest.mark.parametrize("how", ["truncate", "append"])
def test_defect2_file_changed_during_multipart_upload(fake, tmp_path, how):
    """Defect 2: a file truncated or grown while its parts are uploaded raises
    SourceChangedError naming it; the old object stays, nothing is completed, the upload
    is aborted."""
    source_changed = new_error("SourceChangedError")
    # One part in flight at a time, so part 2 is read after part 1 was sent, whatever the
    # thread timing: the change lands in the middle of the upload.
    clerk = make_clerk(fake, upload_concurrency=1)
    old = fake.put_raw(B, "k", os.urandom(64 * 1024))
    old_data, old_etag = old.data, old.etag
    path = tmp_path / "source.bin"
    path.write_bytes(os.urandom(20 * MiB))
    fake.on_call(
        "UploadPart", lambda _: _change_file(path, how), times=1,
        when=lambda p: p["PartNumber"] == 1,
    )  # fmt: skip
    with pytest.raises(source_changed) as info:
        clerk.upload_object(path, B, "k")
    assert str(path) in str(info.value)
    assert fake.data(B, "k") == old_data
    assert fake.obj(B, "k").etag == old_etag
    assert fake.count("CompleteMultipartUpload") == 0
    assert fake.count("AbortMultipartUpload") >= 1
    assert fake.open_uploads() == []


_READ_NAMES = {"read", "readinto", "readall", "read1", "readinto1", "pread", "preadv", "readv"}


def _reads_target(owner: object, target: str) -> bool:
    name = getattr(owner, "name", None)
    if name == target:
        return True
    fds = [name] if isinstance(name, int) else []
    if owner is os or getattr(owner, "__name__", None) == "posix":
        fds = [int(fd) for fd in os.listdir("/proc/self/fd")]
    for fd in fds:
        try:
            if os.readlink(f"/proc/self/fd/{fd}") == target:
                return True
        except OSError:
            continue
    return False


@contextmanager
def after_first_read_of(path: Path, change) -> Iterator[threading.Event]:
    """Run ``change()`` right after the first read call (file.read/readinto, os.pread...) that
    returns bytes of ``path``, in whichever thread makes it. The event tells it happened."""
    done = threading.Event()
    target = str(path.resolve())

    def profiler(frame, event, arg):
        if event != "c_return" or done.is_set() or getattr(arg, "__name__", "") not in _READ_NAMES:
            return
        if _reads_target(getattr(arg, "__self__", None), target) or _reads_target(
            getattr(arg, "__self__", None), str(path)
        ):
            done.set()
            change()

    sys.setprofile(profiler)
    threading.setprofile(profiler)
    try:
        yield done
    finally:
        sys.setprofile(None)
        threading.setprofile(None)  # type: ignore[arg-type]


@pytest.mark.parametrize("how", ["append", "rewrite"])
def test_defect2_file_changed_before_single_put(fake, clerk, tmp_path, how):
    """Defect 2: a 1 MiB file whose size or mtime changed after it was read raises
    SourceChangedError before any PutObject; the old object stays."""
    source_changed = new_error("SourceChangedError")
    old = fake.put_raw(B, "k", os.urandom(1000))
    path = tmp_path / "small.bin"
    path.write_bytes(os.urandom(1 * MiB))
    with (
        after_first_read_of(path, lambda: _change_file(path, how)) as changed,
        pytest.raises(source_changed) as info,
    ):
        clerk.upload_object(path, B, "k")
    assert changed.is_set(), "the test never saw the file being read"
    assert str(path) in str(info.value)
    assert fake.count("PutObject") == 0
    assert fake.obj(B, "k") is old


def test_defect2_stream_and_generator_store_what_was_read(fake, clerk):
    """Defect 2: for a pipe and for a generator reusing its buffer, what was read is what is
    stored (no SourceChangedError: they cannot change under the reader)."""
    data = os.urandom(7 * MiB + 5)
    with pipe_of(data) as pipe:
        result = clerk.upload_object(pipe, B, "from-pipe")
    assert fake.data(B, "from-pipe") == data
    assert result.verification == "multipart-md5"

    def reused_buffer() -> Iterator[bytearray]:
        buffer = bytearray(64 * 1024)
        for start in range(0, len(data), len(buffer)):
            piece = data[start : start + len(buffer)]
            buffer[: len(piece)] = piece
            yield buffer if len(piece) == len(buffer) else bytearray(piece)
            buffer[:] = b"\xee" * len(buffer)  # the generator scribbles over what it gave

    result = clerk.upload_object(reused_buffer(), B, "from-generator")
    assert fake.data(B, "from-generator") == data
    assert result.verified


# ------------------------------------------------------------------------ defect 3 ---


@pytest.mark.parametrize(
    "data",
    [{}, set(), frozenset(), 5, None, {b"a": b"x"}, {b"x", b"y"}],
    ids=["dict", "set", "frozenset", "int", "None", "dict-of-bytes", "set-of-bytes"],
)
def test_defect3_non_chunk_data_is_refused_before_any_request(fake, clerk, data):
    """Defect 3: upload_object of a dict, set, int or None raises InvalidRequestError and
    sends nothing; the existing 64 KiB object is untouched."""
    old = fake.put_raw(B, "k", os.urandom(64 * 1024))
    with pytest.raises(InvalidRequestError):
        clerk.upload_object(data, B, "k")
    assert fake.calls == []
    assert fake.obj(B, "k") is old


@pytest.mark.parametrize("kind", ["list", "tuple", "generator"])
@pytest.mark.parametrize("size", [100_000, 6 * MiB + 3])
def test_defect3_sequences_and_generators_of_chunks_are_accepted(fake, clerk, kind, size):
    """Defect 3: lists, tuples and generators of bytes chunks are uploaded, verified."""
    data = os.urandom(size)
    chunks = [data[i : i + 300_000] for i in range(0, size, 300_000)]
    source = {"list": chunks, "tuple": tuple(chunks), "generator": (c for c in chunks)}[kind]
    result = clerk.upload_object(source, B, "k")
    assert fake.data(B, "k") == data
    assert result.size == size
    assert result.verification == ("md5" if size < 5 * MiB else "multipart-md5")


# ------------------------------------------------------------------------ defect 4 ---


def test_defect4_constructor_host_beats_environment_endpoint(monkeypatch):
    """Defect 4: host/port/use_ssl given to the constructor win over OBJECT_CLERK_ENDPOINT_URL
    from the environment."""
    monkeypatch.setenv("OBJECT_CLERK_ENDPOINT_URL", "http://127.0.0.1:1")
    clerk = ObjectClerk(host="127.0.0.2", port=9000, use_ssl=False, access_key="a", secret_key="b")
    assert clerk.client.meta.endpoint_url == "http://127.0.0.2:9000"


def test_defect4_constructor_endpoint_beats_environment_host(monkeypatch):
    """Defect 4: endpoint_url given to the constructor wins over OBJECT_CLERK_HOST/PORT from
    the environment (no conflict: the argument has precedence)."""
    monkeypatch.setenv("OBJECT_CLERK_HOST", "127.0.0.1")
    monkeypatch.setenv("OBJECT_CLERK_PORT", "1")
    clerk = ObjectClerk(endpoint_url="http://127.0.0.3:9001", access_key="a", secret_key="b")
    assert clerk.client.meta.endpoint_url == "http://127.0.0.3:9001"


def test_defect4_endpoint_url_and_host_together_are_refused():
    """Defect 4: endpoint_url and host both given to the constructor raise ConfigurationError
    naming both."""
    with pytest.raises(ConfigurationError) as info:
        ObjectClerk(endpoint_url="http://127.0.0.1:9000", host="127.0.0.2", client=FakeS3())
    assert "endpoint_url" in str(info.value)
    assert "host" in str(info.value)


def test_defect4_precedence_argument_settings_environment_dotenv(monkeypatch, tmp_path):
    """Defect 4: constructor argument > settings= > environment > .env > defaults."""
    assert (
        ObjectClerk(
            settings=ClerkSettings(_env_file=None, retry_tries=2), retry_tries=7, client=FakeS3()
        ).settings.retry_tries
        == 7
    )
    monkeypatch.setenv("OBJECT_CLERK_RETRY_TRIES", "3")
    settings = ClerkSettings(_env_file=None, retry_tries=2)
    assert ObjectClerk(settings=settings, client=FakeS3()).settings.retry_tries == 2
    # Another constructor argument does not let the environment back in over settings=.
    clerk = ObjectClerk(settings=settings, retry_delay=0.25, client=FakeS3())
    assert (clerk.settings.retry_tries, clerk.settings.retry_delay) == (2, 0.25)
    (tmp_path / ".env").write_text("OBJECT_CLERK_RETRY_TRIES=4\nOBJECT_CLERK_RETRY_DELAY=0.75\n")
    clerk = ObjectClerk(client=FakeS3())
    assert (clerk.settings.retry_tries, clerk.settings.retry_delay) == (3, 0.75)
    monkeypatch.delenv("OBJECT_CLERK_RETRY_TRIES")
    assert ObjectClerk(client=FakeS3()).settings.retry_tries == 4
    assert ObjectClerk(client=FakeS3(), retry_tries=9).settings.retry_tries == 9
    (tmp_path / ".env").unlink()
    assert ObjectClerk(client=FakeS3()).settings.retry_tries == 5  # the default


# ------------------------------------------------------------------------ defect 5 ---


def test_defect5_multipart_copy_of_key_with_percent_uses_copy_object(fake, clerk):
    """Defect 5: a multipart source key containing '%' is never sent to UploadPartCopy; the
    copy is one verified CopyObject."""
    data = os.urandom(12 * MiB)
    source_key, destination_key = "reports/100% done.csv", "copies/100% done.csv"
    uploaded = clerk.upload_object(data, B, source_key)
    assert uploaded.verification == "multipart-md5"
    fake.calls.clear()
    result = clerk.copy_object(B, source_key, B, destination_key)
    assert [key for key in copy_source_keys(fake, "UploadPartCopy") if "%" in key] == []
    assert fake.count("CopyObject") == 1
    assert result.verified
    assert result.etag == uploaded.etag
    assert fake.data(B, destination_key) == data


# ------------------------------------------------------------------------ defect 6 ---


def test_defect6_multipart_upload_with_sse_kms(fake, clerk):
    """Defect 6: a 12 MiB SSE-KMS multipart upload succeeds as "content-md5" (every part
    carried its Content-MD5; the ETags are not MD5s); nothing aborted or deleted."""
    data = os.urandom(12 * MiB)
    result = clerk.upload_object(data, B, "kms", extra_args={"ServerSideEncryption": "aws:kms"})
    assert result.verification == "content-md5"
    assert result.verified
    assert fake.data(B, "kms") == data
    assert fake.obj(B, "kms").sse == "aws:kms"
    parts = fake.ops("UploadPart")
    assert len(parts) == 3
    assert all(p["ContentMD5"] for p in parts)
    assert fake.count("AbortMultipartUpload") == 0
    assert fake.count("DeleteObject") == 0


def test_defect6_single_part_upload_with_sse_kms(fake, clerk):
    """Defect 6: a single-part SSE-KMS upload is "content-md5", sent with its Content-MD5."""
    kms = {"ServerSideEncryption": "aws:kms"}
    result = clerk.upload_object(b"secret" * 1000, B, "kms1", extra_args=kms)
    assert result.verification == "content-md5"
    assert fake.ops("PutObject")[0]["ContentMD5"]
    assert fake.data(B, "kms1") == b"secret" * 1000


def test_defect6_multipart_copy_of_kms_object_is_unverifiable(fake, clerk):
    """Defect 6: copying a multipart SSE-KMS object succeeds and is reported "unverifiable"
    with UnverifiableObjectWarning, not as a mismatch."""
    data = os.urandom(12 * MiB)
    fake.put_raw(
        B, "kms-src", data, part_size=5 * MiB, sse="aws:kms",
        metadata={PART_SIZE_METADATA: str(5 * MiB)},
    )  # fmt: skip
    with pytest.warns(UnverifiableObjectWarning):
        result = clerk.copy_object(B, "kms-src", B, "kms-dst")
    assert result.verification == "unverifiable"
    assert fake.data(B, "kms-dst") == data
    assert fake.open_uploads() == []


# ------------------------------------------------------------------------ defect 7 ---


class FullDisk(io.BytesIO):
    def write(self, data) -> int:  # type: ignore[override]
        raise OSError(errno.ENOSPC, "No space left on device")


def test_defect7a_full_disk_on_file_object_is_local_and_not_retried(fake, clerk):
    """Defect 7a: ENOSPC writing the destination raises LocalIOError (errno ENOSPC) after
    exactly one GET, never ConnectionFault."""
    local_io = new_error("LocalIOError")
    fake.put_raw(B, "k", os.urandom(64 * 1024))
    with pytest.raises(local_io) as info:
        clerk.download_object(B, "k", FullDisk())
    assert isinstance(info.value, OSError)
    assert info.value.errno == errno.ENOSPC
    assert not isinstance(info.value, ConnectionFault)
    assert fake.count("GetObject") == 1


@pytest.mark.parametrize("size", [64 * 1024, 12 * MiB], ids=["single", "parallel"])
def test_defect7a_full_disk_on_path_is_local_and_leaves_no_file(fake, tmp_path, monkeypatch, size):
    """Defect 7a: ENOSPC from os.pwrite during a path download raises LocalIOError (errno
    ENOSPC), never ConnectionFault, with one GET per part at most and no temporary file."""
    local_io = new_error("LocalIOError")
    clerk = make_clerk(fake)
    fake.put_raw(B, "k", os.urandom(size), part_size=5 * MiB if size > 5 * MiB else None,
                 metadata={PART_SIZE_METADATA: str(5 * MiB)})  # fmt: skip
    calls = []

    def full(fd, data, offset):
        calls.append(offset)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "pwrite", full)
    destination = tmp_path / "out" / "file.bin"
    destination.parent.mkdir()
    with pytest.raises(local_io) as info:
        clerk.download_object(B, "k", destination)
    monkeypatch.undo()
    assert calls, "os.pwrite was never called: the test no longer reaches the disk write"
    assert info.value.errno == errno.ENOSPC
    assert not isinstance(info.value, ConnectionFault)
    parts = -(-size // (5 * MiB)) if size > 5 * MiB else 1
    assert fake.count("GetObject") <= parts
    assert list(destination.parent.iterdir()) == []


def test_defect7b_download_into_read_only_file_is_typed(fake, clerk, tmp_path):
    """Defect 7b: downloading into a file opened 'rb' raises InvalidRequestError or
    LocalIOError after at most one GET, never ConnectionFault."""
    local_io = new_error("LocalIOError")
    fake.put_raw(B, "k", os.urandom(64 * 1024))
    path = tmp_path / "ro.bin"
    path.write_bytes(b"keep")
    with path.open("rb") as handle, pytest.raises(ObjectClerkError) as info:
        clerk.download_object(B, "k", handle)
    assert isinstance(info.value, (InvalidRequestError, local_io)), repr(info.value)
    assert fake.count("GetObject") <= 1
    assert path.read_bytes() == b"keep"


@pytest.mark.parametrize("size", [1000, 6 * MiB])
def test_defect7c_metadata_with_newline_is_refused_before_sending(fake, clerk, size):
    """Defect 7c: a metadata value with CR LF raises InvalidRequestError; no request sent."""
    with pytest.raises(InvalidRequestError):
        clerk.upload_object(os.urandom(size), B, "k", metadata={"note": "a\r\nX-Evil: 1"})
    assert fake.calls == []


@pytest.mark.parametrize("size", [1, 6 * MiB])
def test_defect7d_non_string_metadata_is_refused_naming_the_key(fake, clerk, size):
    """Defect 7d: a metadata value that is not a str (an int) raises InvalidRequestError
    naming its key; no request is sent."""
    with pytest.raises(InvalidRequestError) as info:
        clerk.upload_object(b"x" * size, B, "k", metadata={"fine": "ok", "run-number": 1})
    assert "run-number" in str(info.value)
    assert fake.calls == []


def test_defect7e_non_string_prefix_is_refused_before_listing(fake, clerk):
    """Defect 7e: list_objects(prefix=5) raises InvalidRequestError; no request sent."""
    with pytest.raises(InvalidRequestError):
        list(clerk.list_objects(B, prefix=5))
    assert fake.calls == []


class FailingSource(io.RawIOBase):
    """A stream that gives ``good`` bytes, then fails with EIO (a bad disk sector)."""

    def __init__(self, good: int) -> None:
        self.left, self.reads_after_error, self.failed = good, 0, False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self.failed:
            self.reads_after_error += 1
        if self.left <= 0:
            self.failed = True
            raise OSError(errno.EIO, "Input/output error")
        n = min(len(buffer), self.left)
        buffer[:n] = b"\x5a" * n
        self.left -= n
        return n


@pytest.mark.parametrize("good", [0, 7 * MiB], ids=["single-part", "multipart"])
def test_defect7f_source_read_error_is_local_and_aborts(fake, clerk, good):
    """Defect 7f: an upload source whose read raises OSError(EIO) raises LocalIOError (errno
    EIO), is not retried, and leaves no multipart upload behind."""
    local_io = new_error("LocalIOError")
    source = FailingSource(good)
    with pytest.raises(local_io) as info:
        clerk.upload_object(source, B, "k")
    assert info.value.errno == errno.EIO
    assert source.reads_after_error == 0
    assert fake.count("PutObject") == 0
    assert fake.count("CompleteMultipartUpload") == 0
    assert fake.open_uploads() == []
    assert fake.count("CreateMultipartUpload") == fake.count("AbortMultipartUpload")


# ------------------------------------------------------------------------ defect 8 ---


@contextmanager
def refuse_first_hold_the_rest(
    fake: FakeS3, op: str, module: object, monkeypatch: pytest.MonkeyPatch, when=None
) -> Iterator[list[int]]:
    """The first ``op`` call is refused (403); every later one waits (bounded) until the
    parts runner of ``module`` has seen the refusal and set its stop event. So no part
    can finish first and make room for another, whatever the scheduling: the count of
    calls sent is exact. Yields the count."""
    stops: list[threading.Event] = []
    real_run_parts = module.run_parts  # type: ignore[attr-defined]

    def run_parts_seen(jobs, **kwargs):
        stops.append(kwargs.pop("stop", None) or threading.Event())
        return real_run_parts(jobs, **kwargs, stop=stops[-1])

    monkeypatch.setattr(module, "run_parts", run_parts_seen)
    sent = [0]
    lock = threading.Lock()

    def refuse_or_hold(params) -> None:
        with lock:
            sent[0] += 1
            first = sent[0] == 1
        if first:
            raise client_error(op, "AccessDenied", 403)
        assert stops[-1].wait(60), "the runner never saw the refused part"

    fake.on_call(op, refuse_or_hold, when=when)
    yield sent


def test_defect8_failed_part_stops_multipart_copy(fake, monkeypatch):
    """Defect 8: the first UploadPartCopy of a 200-part copy answering 403 raises
    AccessDeniedError once the part copies in flight end: no more than max_concurrency
    sent (fewer when a drawn part is cancelled before it starts); the upload is aborted."""
    concurrency = 2
    clerk = make_clerk(fake, upload_concurrency=concurrency)
    fake.put_raw(B, "src", Lazy(200 * 5 * MiB), part_size=5 * MiB,
                 metadata={PART_SIZE_METADATA: str(5 * MiB)})  # fmt: skip
    with (
        refuse_first_hold_the_rest(fake, "UploadPartCopy", copying, monkeypatch) as sent,
        pytest.raises(AccessDeniedError),
    ):
        clerk.copy_object(B, "src", B, "dst")
    assert 1 <= sent[0] <= concurrency
    assert fake.open_uploads() == []
    assert fake.obj(B, "dst") is None


def test_defect8_failed_part_stops_multipart_upload(fake, clerk, monkeypatch):
    """Defect 8: UploadPart 403 on the first part stops the upload: max_concurrency parts
    read, no more sent, the source not read to the end, the upload aborted."""
    concurrency = 4
    produced = []

    def parts() -> Iterator[bytes]:
        for number in range(20):
            produced.append(number)
            yield bytes([number]) * (5 * MiB)

    with (
        refuse_first_hold_the_rest(fake, "UploadPart", uploads, monkeypatch) as sent,
        pytest.raises(AccessDeniedError),
    ):
        clerk.upload_object(parts(), B, "k")
    assert 1 <= sent[0] <= concurrency
    assert len(produced) == concurrency
    assert fake.open_uploads() == []
    assert fake.count("CompleteMultipartUpload") == 0


def test_defect8_failed_ranged_get_stops_parallel_read(fake, clerk, monkeypatch):
    """Defect 8: a 403 on one ranged GET of a parallel read raises AccessDeniedError and
    stops the other parts. Part 1 flows on the first response, so it may finish and make
    room for one more part: at most max_concurrency ranged GETs."""
    concurrency = 4
    fake.put_raw(B, "big", os.urandom(12 * 5 * MiB), part_size=5 * MiB,
                 metadata={PART_SIZE_METADATA: str(5 * MiB)})  # fmt: skip
    pinned = lambda params: "IfMatch" in params  # noqa: E731
    with (
        refuse_first_hold_the_rest(fake, "GetObject", reads, monkeypatch, when=pinned) as sent,
        pytest.raises(AccessDeniedError),
    ):
        clerk.get_object(B, "big")
    assert 1 <= sent[0] <= concurrency
    assert fake.count("GetObject") == 1 + sent[0]


def test_defect8_copy_over_5_gib_with_sse_kms_unverified(fake, clerk):
    """Defect 8: a source over 5 GiB with SSE-KMS copies part by part with
    verify_checksum=False ("skipped"); no CopyObject (S3 refuses it over 5 GiB)."""
    size = 5 * GiB + 7 * MiB
    fake.put_raw(B, "huge", Lazy(size), part_size=64 * MiB, sse="aws:kms")
    result = clerk.copy_object(B, "huge", B, "huge-copy", verify_checksum=False)
    assert result.verification == "skipped"
    assert result.size == size
    assert len(fake.obj(B, "huge-copy").data) == size
    assert fake.count("CopyObject") == 0
    assert fake.open_uploads() == []


# ------------------------------------------------------------------------ defect 9 ---


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o027, 0o640)])
def test_defect9_downloaded_file_honours_umask(fake, clerk, tmp_path, umask, mode):
    """Defect 9: download_object creates the file with mode 0o666 & ~umask, not 0o600."""
    fake.put_raw(B, "k", b"data" * 100)
    previous = os.umask(umask)
    try:
        clerk.download_object(B, "k", tmp_path / "out.bin")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "out.bin").stat().st_mode) == mode
    assert (tmp_path / "out.bin").read_bytes() == b"data" * 100


# ----------------------------------------------------------- beyond the brief ---


def test_beyond_brief_multipart_upload_into_kms_default_bucket(fake, clerk):
    """Beyond the brief (defect 6's cause, without extra_args): a bucket encrypting with
    SSE-KMS by default gives parts opaque ETags, which UploadPart's answer says
    (ServerSideEncryption); a multipart upload into it is "content-md5", not a mismatch."""
    fake.create_bucket("enc", default_sse="aws:kms")
    data = os.urandom(12 * MiB)
    result = clerk.upload_object(data, "enc", "k")
    assert result.verification == "content-md5"
    assert fake.data("enc", "k") == data
    assert clerk.upload_object(b"small", "enc", "s").verification == "content-md5"


def test_beyond_brief_multipart_copy_into_kms_default_bucket(fake, clerk):
    """Beyond the brief (like defect 6): a multipart copy into a bucket encrypting with
    SSE-KMS by default (part ETags MD5-shaped but opaque) succeeds as "unverifiable",
    not as a ChecksumMismatchError."""
    fake.create_bucket("enc", default_sse="aws:kms")
    data = os.urandom(12 * MiB)
    clerk.upload_object(data, B, "src")
    with pytest.warns(UnverifiableObjectWarning):
        result = clerk.copy_object(B, "src", "enc", "dst")
    assert result.verification == "unverifiable"
    assert fake.data("enc", "dst") == data
    assert fake.open_uploads() == []


def test_beyond_brief_sse_c_multipart_upload_on_rgw():
    """Beyond the brief: on Ceph RGW (an empty ETag in CompleteMultipartUpload's answer) an
    SSE-C multipart upload succeeds as "content-md5": the HEAD that fetches the ETag must
    carry the customer key (a HEAD without it is refused with 400)."""
    fake = FakeS3(empty_complete_etag=True)
    fake.create_bucket(B)
    sse_c = {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": "k" * 32}
    result = make_clerk(fake).upload_object(os.urandom(6 * MiB), B, "k", extra_args=sse_c)
    assert result.verification == "content-md5"
    assert all(p.get("SSECustomerKey") == "k" * 32 for p in fake.ops("HeadObject"))
