"""Many objects at once, against the real servers: directory uploads, prefix downloads, the
content-verified sync (all three directions), stale multipart uploads, progress, pickling.

Failures are real: the fault proxy in front of Ceph answers one object's requests with 500s
until the clerk's retries are spent, and the tests check what is left on both sides.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import pytest
from boto3.s3.transfer import TransferConfig

from object_clerk import (
    BulkTransferError,
    ObjectClerk,
    Operation,
    StaleUploadsError,
    TransientError,
)
from object_clerk.etag import MiB
from tests.faults.proxy import Fault, FaultProxy, Rule
from tests.integration.faults import RequestLog
from tests.servers import Backend

pytestmark = pytest.mark.integration

THRESHOLD = 5 * MiB


def clerk_on(backend: Backend, endpoint: str | None = None, **kwargs: Any) -> ObjectClerk:
    options: dict[str, Any] = {
        **backend.clerk_kwargs(),
        "multipart_threshold": THRESHOLD,
        "retry_tries": 3,
        "retry_delay": 0.01,
        "retry_jitter": 0.0,
        "retry_max_delay": 0.02,
        **kwargs,
    }
    if endpoint is not None:
        options["endpoint_url"] = endpoint
    return ObjectClerk(**options)


def tree(root: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def keys_under(backend: Backend, bucket: str, prefix: str = "") -> dict[str, str]:
    """key -> ETag, through every page."""
    found: dict[str, str] = {}
    for page in (
        backend.raw().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    ):
        found.update({item["Key"]: item["ETag"] for item in page.get("Contents", [])})
    return found


def files_under(root: Path) -> dict[str, bytes]:
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file() and not path.is_symlink()
    }


def content(backend: Backend, bucket: str, key: str) -> bytes:
    body: bytes = backend.raw().get_object(Bucket=bucket, Key=key)["Body"].read()
    return body


@pytest.fixture
def sample(tmp_path: Path) -> dict[str, bytes]:
    return {
        "a.txt": b"alpha",
        "empty": b"",
        "dir/b.csv": b"x,y\n1,2\n",
        "dir/deeper/c.bin": os.urandom(1000),
        "big.bin": os.urandom(2 * THRESHOLD + 123),  # multipart: 3 parts
    }


# ------------------------------------------------------------------ upload_directory ----


def test_upload_directory_sends_every_file_verified_empty_included(
    backend: Backend, bucket: str, tmp_path: Path, sample: dict[str, bytes]
) -> None:
    root = tree(tmp_path / "src", sample)
    clerk = clerk_on(backend)
    moved: list[int] = []
    counts: list[tuple[int, int]] = []
    report = clerk.upload_directory(
        root, bucket, "backup", callback=moved.append, object_callback=lambda *c: counts.append(c)
    )
    assert sorted(r.key for r in report.transferred) == sorted(f"backup/{k}" for k in sample)
    assert all(r.verified for r in report.transferred)
    assert report.objects == len(sample) and report.bytes == sum(map(len, sample.values()))
    assert sum(moved) == report.bytes
    assert counts[0] == (0, None) and counts[-1] == (len(sample), len(sample))
    assert [done for done, _ in counts] == sorted(done for done, _ in counts)
    for rel, data in sample.items():
        assert content(backend, bucket, f"backup/{rel}") == data
    head = backend.raw().head_object(Bucket=bucket, Key="backup/dir/b.csv")
    assert head["ContentType"] == "text/csv"


def test_upload_directory_filters_and_symlinks(ceph: Backend, tmp_path: Path) -> None:
    bucket = ceph.new_bucket()
    outside = tmp_path / "outside"
    tree(outside, {"secret.txt": b"not for upload"})
    root = tree(tmp_path / "src", {"keep.csv": b"1", "drop.log": b"2", "sub/keep2.csv": b"3"})
    (root / "inside-link.csv").symlink_to(root / "keep.csv")
    (root / "outside-link.csv").symlink_to(outside / "secret.txt")
    (root / "outside-dir").symlink_to(outside, target_is_directory=True)
    (root / "loop").symlink_to(root, target_is_directory=True)
    clerk = clerk_on(ceph)

    report = clerk.upload_directory(root, bucket, include=["*.csv", "outside-dir/*"])
    assert set(keys_under(ceph, bucket)) == {"keep.csv", "sub/keep2.csv", "inside-link.csv"}
    reasons = {skip.name: skip.reason for skip in report.skipped}
    assert "leaves the directory" in reasons["outside-link.csv"]
    assert "leaves the directory" in reasons["outside-dir"]
    assert content(ceph, bucket, "inside-link.csv") == b"1"

    report = clerk.upload_directory(root, bucket, "all/", exclude="*.log", symlinks="follow")
    keys = set(keys_under(ceph, bucket, "all/"))
    assert "all/outside-dir/secret.txt" in keys and "all/drop.log" not in keys
    assert not any("loop" in key for key in keys)  # the directory was walked once

    report = clerk.upload_directory(root, bucket, "none/", symlinks="skip")
    assert set(keys_under(ceph, bucket, "none/")) == {
        "none/keep.csv", "none/drop.log", "none/sub/keep2.csv",
    }  # fmt: skip
    assert {s.name for s in report.skipped} >= {"inside-link.csv", "outside-link.csv", "loop"}


def test_bulk_calls_refuse_bad_arguments(ceph: Backend, tmp_path: Path) -> None:
    from object_clerk import InvalidRequestError

    clerk = clerk_on(ceph)
    (tmp_path / "file").write_bytes(b"x")
    with pytest.raises(InvalidRequestError, match="no such directory"):
        clerk.upload_directory(tmp_path / "missing", "bucket")
    with pytest.raises(InvalidRequestError, match="not a directory"):
        clerk.upload_directory(tmp_path / "file", "bucket")
    with pytest.raises(InvalidRequestError, match="symlinks must be"):
        clerk.upload_directory(tmp_path, "bucket", symlinks="sometimes")  # type: ignore[arg-type]
    with pytest.raises(InvalidRequestError, match="both are local"):
        clerk.sync(tmp_path, tmp_path / "other")
    with pytest.raises(InvalidRequestError, match="overlap"):
        clerk.sync("s3://bucket/a/", "s3://bucket/a/b/")
    with pytest.raises(InvalidRequestError, match="max_concurrency"):
        clerk.download_prefix("bucket", "", tmp_path, max_concurrency=0)
    with pytest.raises(InvalidRequestError, match="older_than"):
        clerk.abort_stale_uploads("bucket", -1)


# ------------------------------------------------------------------ download_prefix ----


def test_download_prefix_2600_keys_across_pages(ceph: Backend, tmp_path: Path) -> None:
    """2,600 keys in pages of 1,000: every one arrives, and a sync with delete=True, both
    ways, deletes nothing (a listing cut at 1,000 would make the rest look deleted)."""
    bucket = ceph.new_bucket()
    files = {f"d{n % 7}/f{n:05d}": f"{n}".encode() for n in range(2600)}
    root = tree(tmp_path / "src", files)
    clerk = clerk_on(ceph, upload_config={"max_concurrency": 16})
    clerk.upload_directory(root, bucket, "p")
    log = RequestLog(clerk.client)

    report = clerk.download_prefix(bucket, "p", tmp_path / "out")
    assert report.objects == 2600 and log.counts["ListObjectsV2"] == 3
    assert files_under(tmp_path / "out") == files

    assert list(clerk.sync(root, f"s3://{bucket}/p", delete=True)) == []
    assert list(clerk.sync(f"s3://{bucket}/p", tmp_path / "out", delete=True)) == []
    assert len(keys_under(ceph, bucket)) == 2600
    assert len(files_under(tmp_path / "out")) == 2600


def test_download_prefix_refuses_keys_that_escape(ceph: Backend, tmp_path: Path) -> None:
    """Keys a server holds are data: none is written outside the directory, whatever its
    form, including through a symlinked parent."""
    bucket = ceph.new_bucket()
    raw = ceph.raw()
    evil = [
        "p/../escaped.txt",
        "p/x/../../escaped2.txt",
        "p//etc/escaped3.txt",  # relative part "/etc/...": absolute
        "p/back\\..\\escaped4.txt",
        "p/./dot.txt",
        "p/link/escaped5.txt",  # through the symlink planted below
    ]
    for key in [*evil, "p/good.txt", "p/dir/"]:
        raw.put_object(Bucket=bucket, Key=key, Body=b"x")
    out = tmp_path / "deep" / "out"
    out.mkdir(parents=True)
    (out / "link").symlink_to(tmp_path, target_is_directory=True)
    before = {p for p in tmp_path.rglob("*")}

    report = clerk_on(ceph).download_prefix(bucket, "p/", out)
    assert [r.key for r in report.transferred] == ["p/good.txt"]
    reasons = {skip.name: skip.reason for skip in report.skipped}
    assert set(reasons) == {*evil, "p/dir/"}
    assert "'..'" in reasons["p/../escaped.txt"]
    assert "absolute" in reasons["p//etc/escaped3.txt"]
    assert "backslash" in reasons["p/back\\..\\escaped4.txt"]
    assert "symlinked parent" in reasons["p/link/escaped5.txt"]
    assert "directory marker" in reasons["p/dir/"]
    assert {p for p in tmp_path.rglob("*")} - before == {out / "good.txt"}

    # The same holds for a sync into the directory.
    sync = clerk_on(ceph).sync(f"s3://{bucket}/p", out)
    assert [c.key for c in sync] == [] and {s.name for s in sync.skipped} == {*evil, "p/dir/"}
    assert {p for p in tmp_path.rglob("*")} - before == {out / "good.txt"}


def test_nul_in_a_key_is_refused_before_any_file(moto: Backend, tmp_path: Path) -> None:
    """Ceph RGW refuses keys with a NUL (400); moto stores them, so a store can hold one."""
    bucket = moto.new_bucket()
    raw = moto.raw()
    raw.put_object(Bucket=bucket, Key="p/a\x00b", Body=b"x")
    try:
        report = clerk_on(moto).download_prefix(bucket, "p", tmp_path)
    finally:
        raw.delete_object(Bucket=bucket, Key="p/a\x00b")  # moto's DeleteObjects fails on it
    assert report.transferred == [] and "NUL" in report.skipped[0].reason
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------ sync ----


def test_sync_local_to_bucket_by_content(
    backend: Backend, bucket: str, tmp_path: Path, sample: dict[str, bytes]
) -> None:
    root = tree(tmp_path / "src", sample)
    clerk = clerk_on(backend)
    dest = f"s3://{bucket}/mirror"
    first = clerk.sync(root, dest)
    assert sorted(tuple(c)[:2] for c in first) == sorted((k, Operation.ADDED) for k in sample)

    log = RequestLog(clerk.client)
    second = clerk.sync(root, dest)
    assert list(second) == [] and second.transferred == []
    assert {u.key: u.basis for u in second.unchanged} == dict.fromkeys(sample, "etag")
    assert log.counts["PutObject"] == log.counts["UploadPart"] == 0

    # Same size, changed in the middle, mtime put back: only content can tell.
    for rel in ("dir/b.csv", "big.bin"):
        path = root / rel
        stat = path.stat()
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    third = clerk.sync(root, dest)
    assert sorted(c.key for c in third) == ["big.bin", "dir/b.csv"]
    assert {c.operation for c in third} == {Operation.MODIFIED}
    assert content(backend, bucket, "mirror/big.bin") == (root / "big.bin").read_bytes()

    # delete=True removes what the source lacks; dry_run reports and changes nothing.
    (root / "a.txt").unlink()
    dry = clerk.sync(root, dest, delete=True, dry_run=True)
    assert [(c.key, c.operation) for c in dry] == [("a.txt", Operation.DELETED)]
    assert "mirror/a.txt" in keys_under(backend, bucket)
    done = clerk.sync(root, dest, delete=True)
    assert [(c.key, c.operation) for c in done] == [("a.txt", Operation.DELETED)]
    assert "mirror/a.txt" not in keys_under(backend, bucket)


def test_sync_never_deletes_what_the_source_skipped(ceph: Backend, tmp_path: Path) -> None:
    """A symlink the sync does not follow (it leaves the directory) is not "missing" from
    the source: delete=True keeps what the destination holds under it."""
    bucket = ceph.new_bucket()
    outside = tree(tmp_path / "outside", {"secret.txt": b"s"})
    root = tree(tmp_path / "src", {"a.txt": b"a"})
    (root / "linked").symlink_to(outside, target_is_directory=True)
    (root / "linked.txt").symlink_to(outside / "secret.txt")
    clerk = clerk_on(ceph)
    clerk.sync(root, f"s3://{bucket}/m", symlinks="follow")
    assert set(keys_under(ceph, bucket)) == {"m/a.txt", "m/linked/secret.txt", "m/linked.txt"}
    report = clerk.sync(root, f"s3://{bucket}/m", delete=True)
    assert list(report) == [] and {s.name for s in report.skipped} == {"linked", "linked.txt"}
    assert set(keys_under(ceph, bucket)) == {"m/a.txt", "m/linked/secret.txt", "m/linked.txt"}


def test_sync_recognises_foreign_multipart_objects(ceph: Backend, tmp_path: Path) -> None:
    """An object boto3 uploaded in 8 MiB parts carries no recorded layout and Ceph ignores
    PartNumber: the candidate layouts still find it the same; a changed file is sent."""
    bucket = ceph.new_bucket()
    data = os.urandom(20 * MiB)
    root = tree(tmp_path / "src", {"f.bin": data})
    ceph.raw().upload_file(
        str(root / "f.bin"), bucket, "m/f.bin", Config=TransferConfig(multipart_threshold=MiB)
    )
    report = clerk_on(ceph).sync(root, f"s3://{bucket}/m")
    assert list(report) == [] and report.unchanged[0].basis == "etag"
    assert "candidate" in report.unchanged[0].reason

    # Changed in the middle, size and mtime kept: no candidate reproduces the ETag, so the
    # file is sent (never taken for the same by its mtime), and its layout recorded.
    path = root / "f.bin"
    stat = path.stat()
    path.write_bytes(data[: 10 * MiB] + bytes([data[10 * MiB] ^ 1]) + data[10 * MiB + 1 :])
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    report = clerk_on(ceph).sync(root, f"s3://{bucket}/m")
    assert [(c.key, c.operation) for c in report] == [("f.bin", Operation.MODIFIED)]
    assert content(ceph, bucket, "m/f.bin") == path.read_bytes()
    again = clerk_on(ceph).sync(root, f"s3://{bucket}/m")
    assert list(again) == [] and again.unchanged[0].basis == "etag"


def test_sync_walks_a_directory_and_a_link_to_it(ceph: Backend, tmp_path: Path) -> None:
    """An inside link to a directory ("a" -> "b", sorted first) is walked under its own
    name, and the real directory too: neither hides the other, nothing is deleted."""
    bucket = ceph.new_bucket()
    root = tree(tmp_path / "src", {"b/x.txt": b"x"})
    (root / "a").symlink_to(root / "b", target_is_directory=True)
    clerk = clerk_on(ceph)
    first = clerk.sync(root, f"s3://{bucket}/m", delete=True)
    assert sorted(c.key for c in first) == ["a/x.txt", "b/x.txt"]
    assert list(clerk.sync(root, f"s3://{bucket}/m", delete=True)) == []
    assert set(keys_under(ceph, bucket)) == {"m/a/x.txt", "m/b/x.txt"}


def test_a_dry_run_changes_nothing(ceph: Backend, tmp_path: Path) -> None:
    bucket = ceph.new_bucket()
    ceph.raw().put_object(Bucket=bucket, Key="p/k", Body=b"k")
    out = tmp_path / "not-yet"
    report = clerk_on(ceph).sync(f"s3://{bucket}/p", out, delete=True, dry_run=True)
    assert [(c.key, c.operation) for c in report] == [("k", Operation.ADDED)]
    assert report.transferred == [] and not out.exists()


def test_sync_bucket_to_local_and_bucket_to_bucket(
    backend: Backend, bucket: str, tmp_path: Path, sample: dict[str, bytes]
) -> None:
    root = tree(tmp_path / "src", sample)
    clerk = clerk_on(backend)
    clerk.upload_directory(root, bucket, "src")
    out = tmp_path / "out"
    first = clerk.sync(f"s3://{bucket}/src", out)
    assert sorted(c.key for c in first) == sorted(sample) and files_under(out) == sample
    assert list(clerk.sync(f"s3://{bucket}/src", out)) == []
    (out / "extra").write_bytes(b"local only")
    (out / "a.txt").write_bytes(b"ALPHA")  # same size, newer: content says it differs
    again = clerk.sync(f"s3://{bucket}/src", out, delete=True)
    assert sorted((c.key, c.operation) for c in again) == [
        ("a.txt", Operation.MODIFIED), ("extra", Operation.DELETED),
    ]  # fmt: skip
    assert files_under(out) == sample

    log = RequestLog(clerk.client)
    copied = clerk.sync(f"s3://{bucket}/src", f"s3://{bucket}/copy")
    assert sorted(c.key for c in copied) == sorted(sample)
    assert log.counts["GetObject"] == 0  # server-side copies
    assert all(r.verified for r in copied.transferred)
    assert list(clerk.sync(f"s3://{bucket}/src", f"s3://{bucket}/copy")) == []


def test_sync_that_fails_midway_leaves_nothing_half_done(
    ceph: Backend, ceph_proxy: FaultProxy, tmp_path: Path
) -> None:
    """One multipart file's parts are answered 500 until the retries are spent. The sync
    raises with every failure typed; that object keeps its old bytes, no multipart upload
    is left, and delete=True deleted nothing."""
    bucket = ceph.new_bucket()
    files = {f"small{n}": os.urandom(100) for n in range(20)}
    files["big.bin"] = os.urandom(3 * THRESHOLD)
    root = tree(tmp_path / "src", files)
    raw = ceph.raw()
    raw.put_object(Bucket=bucket, Key="m/big.bin", Body=b"old bytes")
    raw.put_object(Bucket=bucket, Key="m/not-in-source", Body=b"keep me")
    ceph_proxy.add(Rule(Fault.INTERNAL_ERROR, method="PUT", key="m/big.bin", query="partNumber",
                        nth=2, times=-1))  # fmt: skip
    clerk = clerk_on(ceph, ceph_proxy.endpoint, region="us-east-1")

    with pytest.raises(BulkTransferError) as caught:
        clerk.sync(root, f"s3://{bucket}/m", delete=True)
    error = caught.value
    assert [e.key for e in error.errors] == ["m/big.bin"]  # type: ignore[attr-defined]
    assert isinstance(error.errors[0], TransientError) and error.__cause__ is error.errors[0]
    assert "nothing was deleted" in str(error)
    stored = keys_under(ceph, bucket)
    assert "m/not-in-source" in stored
    assert content(ceph, bucket, "m/big.bin") == b"old bytes"
    assert raw.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    # What was transferred is whole, and the report says which.
    for result in error.report.transferred:
        assert content(ceph, bucket, result.key) == files[result.key[len("m/") :]]

    ceph_proxy.clear()
    report = clerk.sync(root, f"s3://{bucket}/m", delete=True)
    assert ("big.bin", Operation.MODIFIED) in [(c.key, c.operation) for c in report]
    assert ("not-in-source", Operation.DELETED) in [(c.key, c.operation) for c in report]


def test_download_sync_that_fails_leaves_no_partial_file(
    ceph: Backend, ceph_proxy: FaultProxy, tmp_path: Path
) -> None:
    bucket = ceph.new_bucket()
    raw = ceph.raw()
    for n in range(5):
        raw.put_object(Bucket=bucket, Key=f"p/f{n}", Body=os.urandom(2000))
    out = tree(tmp_path / "out", {"f3": b"old", "local-only": b"keep me"})
    ceph_proxy.add(Rule(Fault.INTERNAL_ERROR, method="GET", key="p/f3", times=-1))
    clerk = clerk_on(ceph, ceph_proxy.endpoint, region="us-east-1")
    with pytest.raises(BulkTransferError) as caught:
        clerk.sync(f"s3://{bucket}/p", out, delete=True)
    assert [e.key for e in caught.value.errors] == ["p/f3"]  # type: ignore[attr-defined]
    assert (out / "f3").read_bytes() == b"old" and (out / "local-only").exists()
    assert not [p for p in out.iterdir() if p.name.endswith(".object-clerk-part")]


# ------------------------------------------------------------------ stale uploads ----


def test_abort_failures_are_raised_typed(ceph: Backend, ceph_proxy: FaultProxy) -> None:
    bucket = ceph.new_bucket()
    raw = ceph.raw()
    kept = raw.create_multipart_upload(Bucket=bucket, Key="stuck")["UploadId"]
    ceph_proxy.add(Rule(Fault.INTERNAL_ERROR, method="DELETE", query="uploadId", times=-1))
    clerk = clerk_on(ceph, ceph_proxy.endpoint, region="us-east-1")
    with pytest.raises(StaleUploadsError) as caught:
        clerk.abort_stale_uploads(bucket, 0)
    assert isinstance(caught.value.errors[0], TransientError)
    assert [(u.upload_id, u.aborted) for u in caught.value.uploads] == [(kept, False)]
    ceph_proxy.clear()
    assert [u.aborted for u in clerk.abort_stale_uploads(bucket, 0)] == [True]


def test_abort_stale_uploads_across_pages(backend: Backend, bucket: str) -> None:
    raw = backend.raw()
    ids = {raw.create_multipart_upload(Bucket=bucket, Key=f"u/{n}")["UploadId"] for n in range(5)}
    raw.create_multipart_upload(Bucket=bucket, Key="other/x")
    clerk = clerk_on(backend, list_objects_page_size=2)
    if backend.is_ceph:  # moto dates every upload 2010-11-10T20:48:33Z
        assert clerk.abort_stale_uploads(bucket, 3600, prefix="u/") == []  # all too recent
    dry = clerk.abort_stale_uploads(bucket, 0, prefix="u/", dry_run=True)
    assert {s.upload_id for s in dry} == ids and not any(s.aborted for s in dry)
    done = clerk.abort_stale_uploads(bucket, 0, prefix="u/")
    assert {s.upload_id for s in done} == ids and all(s.aborted for s in done)
    left = raw.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    assert [u["Key"] for u in left] == ["other/x"]


# ------------------------------------------------------------------ single objects ----


def test_single_transfers_report_progress(backend: Backend, bucket: str, tmp_path: Path) -> None:
    clerk = clerk_on(backend)
    data = os.urandom(2 * THRESHOLD + 7)
    seen: dict[str, list[int]] = {}
    for name in ("upload", "get", "download", "iter", "copy", "move"):
        seen[name] = []
    clerk.upload_object(data, bucket, "k", callback=seen["upload"].append)
    clerk.get_object(bucket, "k", callback=seen["get"].append)
    clerk.download_object(bucket, "k", tmp_path / "f", callback=seen["download"].append)
    b"".join(clerk.iter_object(bucket, "k", callback=seen["iter"].append))
    clerk.copy_object(bucket, "k", bucket, "k2", callback=seen["copy"].append)
    clerk.move_object(bucket, "k2", bucket, "k3", callback=seen["move"].append)
    assert {name: sum(amounts) for name, amounts in seen.items()} == dict.fromkeys(seen, len(data))
    assert all(len(amounts) > 1 for amounts in seen.values())


# ------------------------------------------------------------------ pickling ----


def test_a_clerk_pickles_and_rebuilds_its_client(ceph: Backend) -> None:
    bucket = ceph.new_bucket()
    clerk = clerk_on(ceph)
    clerk.upload_object(b"pickled", bucket, "k")
    copy = pickle.loads(pickle.dumps(clerk))
    assert copy.get_object(bucket, "k") == b"pickled"
    assert copy.client is not clerk.client and copy.settings == clerk.settings
    again = pickle.loads(pickle.dumps(copy))
    assert again.client is copy.client  # one client per process for the same clerk
    with pytest.raises(TypeError, match="injected client"):
        pickle.dumps(ObjectClerk(client=ceph.raw()))
