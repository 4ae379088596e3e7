"""A seeded, reproducible soak: mixed operations through the fault proxy against Ceph RGW.

    python -m tests.faults.soak --ops 1000 --seed 1 --rate 0.1

It starts (or reuses) the project's Ceph RGW and prints a reliability table. Every result is
checked against a model of what each key must hold; at the end every key is read back
directly from Ceph (not through the proxy). A "silent corruption" is any returned or stored
byte that differs from the model; a typed failure leaves the key with its old or new value.
"""

from __future__ import annotations

import argparse
import random
import resource
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from object_clerk import ObjectClerk, ObjectClerkError, ObjectNotFoundError, RetryEvent
from object_clerk.etag import MiB
from tests.faults.conftest import READ_TIMEOUT, STALL, clerk_settings
from tests.faults.proxy import FaultProxy
from tests.servers import Backend, ceph_backends, empty_bucket, keep_ceph, start_ceph, stop_ceph

KEYS = [f"soak/{i:02d}" for i in range(24)]
WEIGHTS = {
    "upload": 28,
    "upload-multipart": 3,
    "get": 25,
    "info": 10,
    "copy": 8,
    "move": 5,
    "delete": 8,
    "list": 13,
}


@dataclass
class Report:
    operations: Counter[str] = field(default_factory=Counter)
    successes: int = 0
    typed_failures: Counter[str] = field(default_factory=Counter)
    retries: int = 0
    silent_corruptions: int = 0
    orphaned_uploads: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    requests: int = 0
    peak_rss_mib: float = 0.0
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)

    def table(self) -> str:
        rows = [
            ("operations", str(sum(self.operations.values()))),
            *((f"  {name}", str(count)) for name, count in sorted(self.operations.items())),
            ("requests seen by the proxy", str(self.requests)),
            ("faults injected", str(sum(self.faults.values()))),
            *((f"  {name}", str(count)) for name, count in sorted(self.faults.items())),
            ("retries", str(self.retries)),
            ("successes", str(self.successes)),
            ("typed failures", str(sum(self.typed_failures.values()))),
            *((f"  {name}", str(count)) for name, count in sorted(self.typed_failures.items())),
            ("silent corruptions", str(self.silent_corruptions)),
            ("orphaned uploads", str(self.orphaned_uploads)),
            ("peak RSS (MiB)", f"{self.peak_rss_mib:.0f}"),
            ("wall time (s)", f"{self.seconds:.1f}"),
        ]
        width = max(len(name) for name, _ in rows)
        lines = [f"{'metric':<{width}}  value", f"{'-' * width}  -----"]
        lines += [f"{name:<{width}}  {value}" for name, value in rows]
        return "\n".join(lines)


class Model:
    """What each key may hold: a set of acceptable contents (None: absent)."""

    def __init__(self) -> None:
        self.allowed: dict[str, set[bytes | None]] = {key: {None} for key in KEYS}

    def settle(self, key: str, value: bytes | None) -> None:
        self.allowed[key] = {value}

    def unsure(self, key: str, value: bytes | None) -> None:
        self.allowed[key] = self.allowed[key] | {value}


def run_soak(
    backend: Backend, *, ops: int, seed: int, rate: float, stall_seconds: float = STALL
) -> Report:
    rng = random.Random(seed)
    report = Report()
    upstream = urlsplit(backend.endpoint)
    assert upstream.hostname is not None and upstream.port is not None
    bucket = f"soak-{uuid.uuid4().hex[:10]}"
    raw = backend.raw()
    raw.create_bucket(Bucket=bucket)
    lock = threading.Lock()

    def count_retry(event: RetryEvent) -> None:
        with lock:
            report.retries += 1

    started = time.monotonic()
    try:
        with FaultProxy(
            (upstream.hostname, upstream.port), seed=seed, rate=rate, stall_seconds=stall_seconds
        ) as proxy:
            # Random faults include stalls: the clerk must give up on them, and quickly.
            settings = clerk_settings(
                proxy.endpoint, backend, read_timeout=READ_TIMEOUT, retry_tries=5
            )
            clerk = ObjectClerk(settings=settings, on_retry=count_retry)
            model = Model()
            names, weights = zip(*WEIGHTS.items(), strict=True)
            for _ in range(ops):
                name = rng.choices(names, weights)[0]
                report.operations[name] += 1
                try:
                    _one(name, clerk, bucket, rng, model, report)
                    report.successes += 1
                except ObjectClerkError as exc:
                    report.typed_failures[type(exc).__name__] += 1
            report.faults = Counter(proxy.stats.faults)
            report.requests = len(proxy.stats.records)
        for key in KEYS:
            try:
                stored: bytes | None = raw.get_object(Bucket=bucket, Key=key)["Body"].read()
            except raw.exceptions.NoSuchKey:
                stored = None
            if stored not in model.allowed[key]:
                report.silent_corruptions += 1
                report.problems.append(f"{key} holds bytes nobody wrote")
        report.orphaned_uploads = len(raw.list_multipart_uploads(Bucket=bucket).get("Uploads", []))
    finally:
        empty_bucket(raw, bucket)
        raw.delete_bucket(Bucket=bucket)
    report.seconds = time.monotonic() - started
    report.peak_rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return report


def _payload(rng: random.Random, size: int) -> bytes:
    return rng.randbytes(size)


def _one(
    name: str,
    clerk: ObjectClerk,
    bucket: str,
    rng: random.Random,
    model: Model,
    report: Report,
) -> None:
    key = rng.choice(KEYS)
    if name in ("upload", "upload-multipart"):
        size = (
            rng.randint(6 * MiB, 12 * MiB)
            if name == "upload-multipart"
            else rng.randint(0, 300_000)
        )
        data = _payload(rng, size)
        model.unsure(key, data)
        clerk.upload_object(data, bucket, key)
        model.settle(key, data)
    elif name == "get":
        try:
            got: bytes | None = clerk.get_object(bucket, key)
        except ObjectNotFoundError:
            got = None
        if got not in model.allowed[key]:
            report.silent_corruptions += 1
            report.problems.append(f"get {key} returned bytes nobody wrote")
        model.settle(key, got)
    elif name == "info":
        try:
            info: dict[str, Any] | None = clerk.get_object_info(bucket, key)
        except ObjectNotFoundError:
            info = None
        sizes = {None if v is None else len(v) for v in model.allowed[key]}
        if (None if info is None else int(info["content-length"])) not in sizes:
            report.silent_corruptions += 1
            report.problems.append(f"info {key} reported a size nobody wrote")
    elif name in ("copy", "move"):
        target = rng.choice([k for k in KEYS if k != key])
        sources = model.allowed[key]
        for value in sources:
            model.unsure(target, value)
        if name == "move":
            model.unsure(key, None)
        try:
            if name == "copy":
                clerk.copy_object(bucket, key, bucket, target)
            else:
                clerk.move_object(bucket, key, bucket, target)
                model.settle(key, None)
        except ObjectNotFoundError:
            return
    elif name == "delete":
        model.unsure(key, None)
        clerk.delete_object(bucket, key)
        model.settle(key, None)
    elif name == "list":
        listed = {entry["Key"] for entry in clerk.list_objects(bucket, 7, prefix="soak/")}
        for candidate in KEYS:
            present = candidate in listed
            allowed = model.allowed[candidate]
            if (present and allowed == {None}) or (not present and None not in allowed):
                report.silent_corruptions += 1
                report.problems.append(f"list disagreed about {candidate}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rate", type=float, default=0.1, help="share of requests faulted")
    args = parser.parse_args(argv)
    env, started = start_ceph()
    try:
        backend = next(b for b in ceph_backends(env) if b.name == "ceph-http")
        report = run_soak(backend, ops=args.ops, seed=args.seed, rate=args.rate)
    finally:
        if started and not keep_ceph():
            stop_ceph()
    print(f"soak: {args.ops} operations, seed {args.seed}, {args.rate:.0%} of requests faulted")
    print(report.table())
    for problem in report.problems:
        print("PROBLEM:", problem)
    return 0 if report.silent_corruptions == 0 and report.orphaned_uploads == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
