"""The hardened boto3 client against raw boto3, call for call, in one run on the local Ceph.

    python -m bench.drop_in                 # 1 MiB and 64 MiB
    python -m bench.drop_in --reps 5

Both clients are built by tests/drop_in/pipeline.py's make_client (the same Config; only
the constructor differs) and run alternately, one repetition each in turn, so the machine's
noise falls on both. Prints the median MB/s of each and the ratio hardened / raw.
"""

from __future__ import annotations

import argparse
import io
import statistics
import time
import uuid
from collections.abc import Callable
from typing import Any

from bench.run import start_ceph
from tests.drop_in.pipeline import make_client

MiB = 1024 * 1024


def operations(size: int) -> dict[str, Callable[[Any, str, bytes], None]]:
    def get_read(s3: Any, bucket: str, data: bytes) -> None:
        assert len(s3.get_object(Bucket=bucket, Key="src")["Body"].read()) == size

    def get_chunks(s3: Any, bucket: str, data: bytes) -> None:
        body = s3.get_object(Bucket=bucket, Key="src")["Body"]
        assert sum(len(c) for c in body.iter_chunks(MiB)) == size

    def put(s3: Any, bucket: str, data: bytes) -> None:
        s3.put_object(Bucket=bucket, Key="put", Body=data)

    def upload_fileobj(s3: Any, bucket: str, data: bytes) -> None:
        s3.upload_fileobj(io.BytesIO(data), bucket, "up")

    def download_fileobj(s3: Any, bucket: str, data: bytes) -> None:
        out = io.BytesIO()
        s3.download_fileobj(bucket, "src", out)
        assert len(out.getbuffer()) == size

    return {
        "get_object().read()": get_read,
        "get_object() iter_chunks": get_chunks,
        "put_object": put,
        "upload_fileobj": upload_fileobj,
        "download_fileobj": download_fileobj,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=0, help="default: 21 at 1 MiB, 7 at 64 MiB")
    args = parser.parse_args()
    env, _ = start_ceph()
    keys = {"access_key": env["CEPH_RGW_ACCESS_KEY"], "secret_key": env["CEPH_RGW_SECRET_KEY"]}
    clients = {
        kind: make_client(kind, env["CEPH_RGW_ENDPOINT"], **keys)
        for kind in ("boto3", "object_clerk")
    }
    check = clients["boto3"]
    bucket = f"bench-{uuid.uuid4().hex[:10]}"
    check.create_bucket(Bucket=bucket)
    print("| operation | size | boto3 MB/s | hardened MB/s | hardened/boto3 |")
    print("|---|---|---|---|---|")
    try:
        for size in (MiB, 64 * MiB):
            data = bytes(range(256)) * (size // 256)
            check.upload_fileobj(io.BytesIO(data), bucket, "src")
            reps = args.reps or (21 if size == MiB else 7)
            for name, operation in operations(size).items():
                seconds: dict[str, list[float]] = {kind: [] for kind in clients}
                for _ in range(reps):
                    for kind, s3 in clients.items():
                        began = time.perf_counter()
                        operation(s3, bucket, data)
                        seconds[kind].append(time.perf_counter() - began)
                rate = {k: size / statistics.median(v) / 1e6 for k, v in seconds.items()}
                print(
                    f"| {name} | {size // MiB} MiB | {rate['boto3']:.0f} |"
                    f" {rate['object_clerk']:.0f} | {rate['object_clerk'] / rate['boto3']:.2f} |"
                )
    finally:
        listing = check.list_objects_v2(Bucket=bucket).get("Contents", [])
        for item in listing:
            check.delete_object(Bucket=bucket, Key=item["Key"])
        check.delete_bucket(Bucket=bucket)


if __name__ == "__main__":
    main()
