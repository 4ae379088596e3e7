"""A bulk call on a real Dask cluster (two worker processes) against the local Ceph: the
clerk and its jobs pickle, each worker builds its boto3 client once, and the result is the
thread pool's. Dask is the optional ``object-clerk[dask]`` extra; the tests install it."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import distributed
import pytest

from object_clerk import BulkTransferError, InvalidRequestError, Operation
from object_clerk.etag import MiB
from tests.integration.test_bulk import clerk_on, files_under, keys_under, tree
from tests.servers import Backend

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def dask_client() -> Iterator[distributed.Client]:
    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=2,
            processes=True,
            dashboard_address=None,
            silence_logs=logging.ERROR,
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        yield client


def worker_clients() -> int:
    from object_clerk import clerk

    return len(clerk._PROCESS_CLIENTS)


def test_sync_on_a_dask_cluster_gives_the_thread_pools_result(
    ceph: Backend, tmp_path: Path, dask_client: distributed.Client
) -> None:
    bucket = ceph.new_bucket()
    files = {f"d{n % 6}/f{n:03d}": os.urandom(n * 7) for n in range(300)}
    files["large.bin"] = os.urandom(12 * MiB)  # multipart: its parts run on its worker
    root = tree(tmp_path / "src", files)
    clerk = clerk_on(ceph)
    executor = dask_client.get_executor()

    on_dask = clerk.sync(root, f"s3://{bucket}/dask", executor=executor)
    on_threads = clerk.sync(root, f"s3://{bucket}/threads")
    assert sorted(tuple(c)[:2] for c in on_dask) == sorted(tuple(c)[:2] for c in on_threads)
    assert len(on_dask) == len(files) and all(r.verified for r in on_dask.transferred)
    dask_etags = {k[len("dask/") :]: e for k, e in keys_under(ceph, bucket, "dask/").items()}
    thread_etags = {
        k[len("threads/") :]: e for k, e in keys_under(ceph, bucket, "threads/").items()
    }
    assert dask_etags == thread_etags and len(dask_etags) == len(files)

    pids = dask_client.run(os.getpid)
    assert len(pids) == 2 and os.getpid() not in pids.values()
    built = dask_client.run(worker_clients)
    assert sum(built.values()) >= 1 and max(built.values()) == 1  # one client per process

    # Nothing changed: nothing is sent, by content, on the workers too.
    again = clerk.sync(root, f"s3://{bucket}/dask", executor=executor)
    assert list(again) == [] and {u.basis for u in again.unchanged} == {"etag"}

    # Back down, on the cluster, into a fresh directory.
    out = tmp_path / "out"
    down = clerk.sync(f"s3://{bucket}/dask", out, executor=executor)
    assert {c.operation for c in down} == {Operation.ADDED} and files_under(out) == files


def test_errors_come_back_from_the_workers_typed(
    ceph: Backend, tmp_path: Path, dask_client: distributed.Client
) -> None:
    bucket = ceph.new_bucket()
    raw = ceph.raw()
    for name in ("a", "b", "c"):
        raw.put_object(Bucket=bucket, Key=f"p/{name}", Body=name.encode())
    out = tmp_path / "out"
    (out / "b").mkdir(parents=True)  # a directory where the file "b" must go
    with pytest.raises(BulkTransferError) as caught:
        clerk_on(ceph).download_prefix(
            bucket, "p", out, executor=dask_client.get_executor(), max_concurrency=1
        )
    (error,) = caught.value.errors
    assert isinstance(error, InvalidRequestError) and error.key == "p/b"
    assert "is a directory" in str(error)
    assert [r.key for r in caught.value.report.transferred] == ["p/a"]


def test_after_a_failure_the_running_jobs_end_before_the_call_returns(
    ceph: Backend, tmp_path: Path, dask_client: distributed.Client
) -> None:
    """Dask's futures say "cancelled" while their task runs on: the clerk waits for them
    instead, so the report holds every file the workers wrote."""
    bucket = ceph.new_bucket()
    raw = ceph.raw()
    names = [f"f{n:02d}" for n in range(12)]
    for name in names:
        raw.put_object(Bucket=bucket, Key=f"p/{name}", Body=os.urandom(300_000))
    out = tmp_path / "out"
    (out / "f03").mkdir(parents=True)  # a directory where the file "f03" must go
    with pytest.raises(BulkTransferError) as caught:
        clerk_on(ceph).download_prefix(
            bucket, "p", out, executor=dask_client.get_executor(), max_concurrency=4
        )
    reported = {r.key[len("p/") :] for r in caught.value.report.transferred}
    on_disk = {p.name for p in out.iterdir() if p.is_file()}
    assert on_disk == reported and "f03" not in reported
    assert [e.key for e in caught.value.errors] == ["p/f03"]  # type: ignore[attr-defined]
    assert not dask_client.processing() or not any(dask_client.processing().values())


def test_every_job_is_a_distinct_task() -> None:
    """Dask submits with pure=True: two equal tasks would run once. Jobs carry a nonce."""
    from dask.base import tokenize

    from object_clerk.bulk import Job

    def same() -> None:
        return None

    assert tokenize(Job(same, 1, "a-1")) != tokenize(Job(same, 1, "a-2"))
