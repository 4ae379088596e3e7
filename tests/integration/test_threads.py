"""Thread safety: one ObjectClerk shared by 16 threads doing mixed operations at once, on
every backend. Each thread owns its keys (its own prefix), so every result can be checked
exactly, and at the end the bucket must hold exactly what the threads say it should."""

from __future__ import annotations

import itertools
import random
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pytest

from object_clerk import ObjectClerk
from object_clerk.etag import MiB
from tests.integration.test_operations import THRESHOLD, payload, small_clerk
from tests.servers import Backend

pytestmark = pytest.mark.integration

THREADS = 16
# Two uploads first (so there is always something to read), then these in a per-thread
# random order: 13 operations per thread, 208 per backend.
MIXED_OPERATIONS = [
    "upload",
    "upload",
    "get",
    "get",
    "info",
    "info",
    "copy",
    "move",
    "delete",
    "list",
    "list",
]
OPERATIONS_PER_THREAD = 2 + len(MIXED_OPERATIONS)
# Threads whose first upload is multipart (5 to 12 MiB, over small_clerk's 5 MiB threshold).
MULTIPART_THREADS = {0, 3, 6, 9, 12, 15}


@dataclass
class Worker:
    """One thread's view: the keys it owns and the bytes and ETag each should have."""

    clerk: ObjectClerk
    bucket: str
    index: int
    start: threading.Barrier
    owned: dict[str, bytes] = field(default_factory=dict)
    etags: dict[str, str] = field(default_factory=dict)
    done: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.index)
        self.prefix = f"t{self.index:02d}/"
        self._serial = itertools.count()

    def fresh_key(self) -> str:
        return f"{self.prefix}{next(self._serial):03d}"

    def pick(self) -> str:
        return self.rng.choice(sorted(self.owned))

    def size(self, step: int) -> int:
        if step == 0 and self.index in MULTIPART_THREADS:
            return self.rng.randint(THRESHOLD, 12 * MiB)
        return self.rng.choice(
            [1, 2, self.rng.randint(3, 64 * 1024), self.rng.randint(64 * 1024, MiB)]
        )

    def run(self) -> Worker:
        plan = ["upload", "upload", *self.rng.sample(MIXED_OPERATIONS, len(MIXED_OPERATIONS))]
        self.start.wait(timeout=60)  # all 16 threads start together
        for step, operation in enumerate(plan):
            getattr(self, operation)(step)
            self.done[operation] += 1
        return self

    def upload(self, step: int) -> None:
        key = self.fresh_key()
        data = payload(self.size(step), seed=self.index * 100 + step)
        result = self.clerk.upload_object(data, self.bucket, key)
        assert result.verified, result
        assert (result.key, result.size) == (key, len(data))
        self.owned[key], self.etags[key] = data, result.etag
        if len(data) >= THRESHOLD:
            self.done["multipart upload"] += 1

    def get(self, step: int) -> None:
        key = self.pick()
        assert self.clerk.get_object(self.bucket, key) == self.owned[key], key
        if len(self.owned[key]) >= THRESHOLD:
            self.done["multipart get"] += 1

    def info(self, step: int) -> None:
        key = self.pick()
        info = self.clerk.get_object_info(self.bucket, key)
        assert info["content-length"] == str(len(self.owned[key])), key
        assert info["etag"].strip('"') == self.etags[key], key

    def copy(self, step: int) -> None:
        source, destination = self.pick(), self.fresh_key()
        result = self.clerk.copy_object(self.bucket, source, self.bucket, destination)
        assert result.verified, result
        assert result.etag == self.etags[source]
        self.owned[destination], self.etags[destination] = self.owned[source], result.etag
        if len(self.owned[source]) >= THRESHOLD:
            self.done["multipart copy"] += 1

    def move(self, step: int) -> None:
        source, destination = self.pick(), self.fresh_key()
        result = self.clerk.move_object(self.bucket, source, self.bucket, destination)
        assert result.verified, result
        assert result.etag == self.etags[source]
        self.owned[destination] = self.owned.pop(source)
        self.etags[destination] = self.etags.pop(source)

    def delete(self, step: int) -> None:
        key = self.pick()
        self.clerk.delete_object(self.bucket, key)
        del self.owned[key], self.etags[key]

    def list(self, step: int) -> None:
        listed = {
            entry["Key"]: entry["Size"]
            for entry in self.clerk.list_objects(self.bucket, 1000, prefix=self.prefix)
        }
        assert listed == {key: len(data) for key, data in self.owned.items()}


def test_one_clerk_shared_by_16_threads_stays_exact(backend: Backend, bucket: str) -> None:
    """One ObjectClerk shared by 16 threads running 208 mixed uploads (some multipart),
    gets, infos, copies, moves, deletes and lists: every call verifies, none raises, no
    multipart upload is left, and the bucket holds exactly the keys the threads own, each
    with its bytes."""
    clerk = small_clerk(backend)
    start = threading.Barrier(THREADS)
    workers = [Worker(clerk, bucket, index, start) for index in range(THREADS)]
    with ThreadPoolExecutor(THREADS) as pool:
        futures = [pool.submit(worker.run) for worker in workers]
    failures = {i: repr(f.exception()) for i, f in enumerate(futures) if f.exception()}
    assert failures == {}

    done: Counter[str] = sum((worker.done for worker in workers), Counter())
    operations = sum(done[name] for name in {"upload", *MIXED_OPERATIONS})
    assert operations == THREADS * OPERATIONS_PER_THREAD
    assert done["multipart upload"] == len(MULTIPART_THREADS)
    assert done["multipart get"] > 0
    assert done["multipart copy"] > 0

    expected = {key: data for worker in workers for key, data in worker.owned.items()}
    raw = backend.raw()
    assert raw.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    stored = [
        entry["Key"]
        for page in raw.get_paginator("list_objects_v2").paginate(Bucket=bucket)
        for entry in page.get("Contents", [])
    ]
    assert sorted(stored) == sorted(expected)

    def stored_bytes(key: str) -> bytes:
        return bytes(raw.get_object(Bucket=bucket, Key=key)["Body"].read())

    with ThreadPoolExecutor(8) as pool:
        stored_data = dict(zip(expected, pool.map(stored_bytes, expected), strict=True))
    assert [key for key, data in expected.items() if stored_data[key] != data] == []
