"""Verified reads against the best verified read raw boto3 can do, in one run on the local Ceph.

    python -m bench.reads                    # 64 MiB, 9 rounds
    python -m bench.reads --sizes 64MiB,1GiB --rounds 5

For each size, one object uploaded by the clerk (so its part layout is recorded) is read by:

* raw boto3 ``get_object()["Body"].read()``, unverified: the ceiling;
* raw boto3, streamed in 1 MiB chunks with ``hashlib.md5`` on each: a verified read;
* raw boto3, one ranged GET per part on 8 threads, MD5 per part: the other verified read;
* raw boto3 ``read()`` then MD5 of the result, and the stream + MD5 written to a file: the
  least a verified ``get_object`` and a verified download do (they must hold or write the
  bytes, which the stream + MD5 row does not);
* the clerk's ``get_object``, ``download_object`` (to a file) and ``iter_object``.

The rows run interleaved, one repetition of each in turn, so the machine's noise falls on
all of them; the figures are medians. CPU is the client process's own (``getrusage``, all
threads) per MiB read. "/ best" divides by the faster of the two raw verified reads.
Then the small verified get: one object of 1 KiB and one of 64 KiB, raw ``get_object``
against the clerk's, medians of many interleaved rounds.

Last, the flexible-checksum rows, on moto's server (Ceph RGW 16 keeps no checksums), run in
its own process: a 64 MiB object uploaded by boto3 with CRC64NVME, read by raw boto3
unverified, by raw boto3 with ``ChecksumMode="ENABLED"`` (botocore checks the CRC), and by
the clerk, which verifies with that CRC instead of MD5; then 64 MiB uploads to moto by raw
boto3 with and without ``ChecksumAlgorithm="CRC64NVME"`` and by the clerk (Content-MD5 plus
the CRC64NVME it sends) with and without its upload checksum.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from bench.one import raw_client
from bench.run import SIZES, clerk_environment, start_ceph
from object_clerk import ObjectClerk

MiB = 1024 * 1024
PART = 8 * MiB


@dataclass
class Row:
    name: str
    run: Callable[[], object]
    seconds: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def timed(row: Row) -> None:
    cpu, started = cpu_seconds(), time.perf_counter()
    row.run()
    row.seconds.append(time.perf_counter() - started)
    row.cpu.append(cpu_seconds() - cpu)


def interleaved(rows: list[Row], rounds: int) -> None:
    """One warm-up run of each row, then ``rounds`` timed runs of each in turn."""
    for row in rows:
        row.run()
    for _ in range(rounds):
        for row in rows:
            timed(row)


def raw_stream_md5(raw: Any, bucket: str, key: str) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    for chunk in raw.get_object(Bucket=bucket, Key=key)["Body"].iter_chunks(MiB):
        digest.update(chunk)
    return digest.hexdigest()


def raw_ranged_md5(raw: Any, pool: ThreadPoolExecutor, bucket: str, key: str, size: int) -> bytes:
    def part(offset: int) -> tuple[bytes, bytes]:
        end = min(offset + PART, size) - 1
        body = raw.get_object(Bucket=bucket, Key=key, Range=f"bytes={offset}-{end}")["Body"]
        data = body.read()
        return data, hashlib.md5(data, usedforsecurity=False).digest()

    parts = list(pool.map(part, range(0, size, PART)))
    return b"".join(data for data, _ in parts)


def read_rows(
    clerk: ObjectClerk, raw: Any, bucket: str, size: int, rounds: int, work: Path
) -> list[str]:
    key = f"bench/reads-{size}"
    clerk.upload_object(os.urandom(size), bucket, key)
    out = work / "out.bin"
    pool = ThreadPoolExecutor(8)
    rows = [
        Row("raw get_object().read(), unverified", lambda: raw_read(raw, bucket, key)),
        Row("raw stream + md5 per 1 MiB", lambda: raw_stream_md5(raw, bucket, key)),
        Row(
            "raw ranged GET per part, md5, 8 threads",
            lambda: raw_ranged_md5(raw, pool, bucket, key, size),
        ),
        Row("raw get_object().read(), then md5 of it", lambda: raw_read_md5(raw, bucket, key)),
        Row("raw stream + md5 per 1 MiB, to a file", lambda: raw_to_file(raw, bucket, key, out)),
        Row("clerk get_object", lambda: clerk.get_object(bucket, key)),
        Row("clerk download_object", lambda: clerk.download_object(bucket, key, out)),
        Row(
            "clerk iter_object",
            lambda: sum(len(chunk) for chunk in clerk.iter_object(bucket, key)),
        ),
    ]
    try:
        interleaved(rows, rounds)
    finally:
        pool.shutdown()
        clerk.client.delete_object(Bucket=bucket, Key=key)
        out.unlink(missing_ok=True)
    mib = size / MiB
    speed = {row.name: mib / statistics.median(row.seconds) for row in rows}
    best = max(speed[rows[1].name], speed[rows[2].name])
    ceiling = speed[rows[0].name]
    lines = [
        f"{mib:.0f} MiB, multipart, layout recorded; medians of {rounds}",
        "",
        "| read | MB/s | x raw | / best verified | client CPU ms/MiB |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        cpu = statistics.median(row.cpu) * 1000 / mib
        lines.append(
            f"| {row.name} | {speed[row.name]:.0f} | {speed[row.name] / ceiling:.2f}"
            f" | {speed[row.name] / best:.2f} | {cpu:.2f} |"
        )
    return lines


def raw_read_md5(raw: Any, bucket: str, key: str) -> str:
    """What a verified get_object must do at least: the object in memory, and its MD5."""
    return hashlib.md5(raw_read(raw, bucket, key), usedforsecurity=False).hexdigest()


def raw_to_file(raw: Any, bucket: str, key: str, out: Path) -> str:
    """What a verified download to a file must do at least (written, not yet fsynced)."""
    digest = hashlib.md5(usedforsecurity=False)
    with out.open("wb") as handle:
        for chunk in raw.get_object(Bucket=bucket, Key=key)["Body"].iter_chunks(MiB):
            digest.update(chunk)
            handle.write(chunk)
    return digest.hexdigest()


def raw_read(raw: Any, bucket: str, key: str) -> bytes:
    data: bytes = raw.get_object(Bucket=bucket, Key=key)["Body"].read()
    return data


def small_rows(clerk: ObjectClerk, raw: Any, bucket: str, rounds: int) -> list[str]:
    lines = [
        f"Small verified get, medians of {rounds} interleaved",
        "",
        "| object | raw boto3 ms | clerk ms | clerk / raw | clerk requests |",
        "|---|---|---|---|---|",
    ]
    requests = [0]

    def count(**_: Any) -> None:
        requests[0] += 1

    clerk.client.meta.events.register("before-send.s3", count)
    for size in (1024, 64 * 1024):
        key = f"bench/small-{size}"
        clerk.upload_object(os.urandom(size), bucket, key)
        raw_times, clerk_times = [], []
        requests[0] = 0
        for _ in range(rounds):
            started = time.perf_counter()
            raw.get_object(Bucket=bucket, Key=key)["Body"].read()
            raw_times.append(time.perf_counter() - started)
            started = time.perf_counter()
            clerk.get_object(bucket, key)
            clerk_times.append(time.perf_counter() - started)
        raw_ms = statistics.median(raw_times) * 1000
        clerk_ms = statistics.median(clerk_times) * 1000
        lines.append(
            f"| {size // 1024} KiB | {raw_ms:.2f} | {clerk_ms:.2f} | {clerk_ms / raw_ms:.2f}"
            f" | {requests[0] / rounds:.0f} |"
        )
        clerk.client.delete_object(Bucket=bucket, Key=key)
    return lines


def checksum_rows(rounds: int, size: int = 64 * MiB) -> list[str]:
    """The flexible-checksum rows, against a moto server started here in its own process."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        wait_for(endpoint)
        keys = {"aws_access_key_id": "bench", "aws_secret_access_key": "bench"}
        config = Config(
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        raw = boto3.client(
            "s3", endpoint_url=endpoint, region_name="us-east-1", config=config, **keys
        )
        raw.create_bucket(Bucket="bench")
        raw.upload_fileobj(
            io.BytesIO(os.urandom(size)),
            "bench",
            "crc",
            ExtraArgs={"ChecksumAlgorithm": "CRC64NVME"},
        )
        clerk = ObjectClerk(
            endpoint_url=endpoint, access_key="bench", secret_key="bench", region="us-east-1"
        )
        assert clerk.download_object("bench", "crc", io.BytesIO()).verification == "crc64nvme"

        def raw_checked() -> bytes:
            response = raw.get_object(Bucket="bench", Key="crc", ChecksumMode="ENABLED")
            data: bytes = response["Body"].read()
            return data

        rows = [
            Row("raw get_object().read(), unverified", lambda: raw_read(raw, "bench", "crc")),
            Row("raw get_object(ChecksumMode=ENABLED).read()", raw_checked),
            Row(
                "clerk get_object (verified by CRC64NVME)", lambda: clerk.get_object("bench", "crc")
            ),
            Row(
                "clerk iter_object (verified by CRC64NVME)",
                lambda: sum(len(chunk) for chunk in clerk.iter_object("bench", "crc")),
            ),
            Row(
                "raw download_fileobj (ranged GETs in parallel), unverified",
                lambda: raw.download_fileobj("bench", "crc", io.BytesIO()),
            ),
        ]
        interleaved(rows, rounds)
        upload_rows = checksum_upload_rows(raw, endpoint, size)
        interleaved(upload_rows, rounds)
    finally:
        server.terminate()
        server.wait()
    mib = size / MiB
    lines = [
        f"Flexible checksums: {mib:.0f} MiB, CRC64NVME, on moto's server; medians of {rounds}",
        "",
        *checksum_table("read", "x raw unverified", rows, mib),
        "",
        *checksum_table("upload", "x raw with CRC64NVME", upload_rows, mib),
    ]
    return lines


def checksum_upload_rows(raw: Any, endpoint: str, size: int) -> list[Row]:
    """Uploads of ``size`` bytes to moto: raw boto3 with and without a CRC64NVME, the clerk
    (Content-MD5 and CRC64NVME) and the clerk without its CRC. The first row is the 1.00."""
    data = os.urandom(size)
    clerks = {
        name: ObjectClerk(
            endpoint_url=endpoint,
            access_key="bench",
            secret_key="bench",
            region="us-east-1",
            upload_checksum=name,
        )
        for name in ("auto", "off")
    }
    assert clerks["auto"].upload_object(data, "bench", "up").verification == "multipart-md5"
    head = raw.head_object(Bucket="bench", Key="up", ChecksumMode="ENABLED")
    assert head.get("ChecksumType") == "FULL_OBJECT", head

    def raw_upload(**extra: str) -> None:
        raw.upload_fileobj(io.BytesIO(data), "bench", "up", ExtraArgs=extra)

    return [
        Row("raw upload_fileobj, ChecksumAlgorithm=CRC64NVME", lambda: raw_upload(
            ChecksumAlgorithm="CRC64NVME")),
        Row("raw upload_fileobj, no checksum", raw_upload),
        Row("clerk upload_object (Content-MD5 + CRC64NVME)", lambda: clerks["auto"].upload_object(
            data, "bench", "up")),
        Row("clerk upload_object, UPLOAD_CHECKSUM=off", lambda: clerks["off"].upload_object(
            data, "bench", "up")),
    ]  # fmt: skip


def checksum_table(what: str, ratio: str, rows: list[Row], mib: float) -> list[str]:
    ceiling = mib / statistics.median(rows[0].seconds)
    lines = [f"| {what} | MB/s | {ratio} | client CPU ms/MiB |", "|---|---|---|---|"]
    for row in rows:
        speed = mib / statistics.median(row.seconds)
        cpu = statistics.median(row.cpu) * 1000 / mib
        lines.append(f"| {row.name} | {speed:.0f} | {speed / ceiling:.2f} | {cpu:.2f} |")
    return lines


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for(endpoint: str, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            urllib.request.urlopen(endpoint, timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def report(sizes: list[int], rounds: int, small_rounds: int, work: Path) -> str:
    """Every section: the reads per size, the small get and the flexible-checksum rows.
    Ceph must be up, and OBJECT_CLERK_ENDPOINT_URL and the keys set."""
    clerk = ObjectClerk.from_env()
    raw = raw_client()
    bucket = f"bench-reads-{uuid.uuid4().hex[:8]}"
    raw.create_bucket(Bucket=bucket)
    lines: list[str] = []
    try:
        for size in sizes:
            lines += [*read_rows(clerk, raw, bucket, size, rounds, work), ""]
        lines += [*small_rows(clerk, raw, bucket, small_rounds), ""]
    finally:
        raw.delete_bucket(Bucket=bucket)
    lines += checksum_rows(rounds)
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="64MiB")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--small-rounds", type=int, default=300)
    args = parser.parse_args()
    env, _ = start_ceph()
    os.environ.update(clerk_environment(env))
    with tempfile.TemporaryDirectory(prefix="object-clerk-bench-") as work:
        sizes = [SIZES[name] for name in args.sizes.split(",")]
        print(report(sizes, args.rounds, args.small_rounds, Path(work)))


if __name__ == "__main__":
    main()
