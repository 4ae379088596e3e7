"""One benchmark cell, in its own process so its peak RSS is its own:

    python -m bench.one IMPL OP SIZE REPS BUCKET WORKDIR

IMPL is clerk, boto3 or rclone; OP one of OPERATIONS. Prints one JSON line: the seconds of
each repetition, HTTP requests per repetition, and peak RSS above the process's baseline.
Endpoint and keys come from OBJECT_CLERK_ENDPOINT_URL / _ACCESS_KEY / _SECRET_KEY.
"""

from __future__ import annotations

import io
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config

from object_clerk import ObjectClerk

OPERATIONS = (
    "upload-file",
    "upload-memory",
    "download-file",
    "download-stream",
    "get",
    "copy",
)


def rss_mib() -> float:
    """Peak RSS of this process so far. Not ru_maxrss: Linux carries the parent's ru_maxrss
    across fork and exec, so a child of a process that held 1 GiB would start at 1 GiB.
    VmHWM belongs to this address space, which exec made new."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def raw_client() -> Any:
    return boto3.client(
        "s3",
        endpoint_url=os.environ["OBJECT_CLERK_ENDPOINT_URL"],
        aws_access_key_id=os.environ["OBJECT_CLERK_ACCESS_KEY"],
        aws_secret_access_key=os.environ["OBJECT_CLERK_SECRET_KEY"],
        region_name="us-east-1",
        # As a boto3 user would on Ceph: no flexible checksums (see NOTES), defaults otherwise.
        config=Config(
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        ),
    )


def source_key(size: int) -> str:
    return f"bench/source-{size}"


def plan(impl: str, op: str, size: int, bucket: str, work: Path) -> Callable[[], None]:
    """The callable one repetition runs."""
    path = work / f"data-{size}.bin"
    out = work / f"out-{impl}-{size}.bin"
    key = f"bench/{impl}-{op}-{size}"
    if impl == "rclone":
        remote = f"oc:{bucket}/{key}"
        if op == "upload-file":
            # --no-check-dest: upload every time, never skip an identical destination
            args = ["rclone", "copyto", "--no-check-dest", str(path), remote]
        elif op == "download-file":
            args = [
                "rclone",
                "copyto",
                "--no-check-dest",
                f"oc:{bucket}/{source_key(size)}",
                str(out),
            ]
        else:
            raise SystemExit(f"rclone has no {op}")
        # aws-sdk-go inside rclone refuses AWS_CA_BUNDLE on an http endpoint ("unable to load
        # custom CA bundle"), and these machines set it.
        env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
        return lambda: subprocess.run(args, check=True, env=env, stderr=subprocess.DEVNULL)
    data = path.read_bytes() if op == "upload-memory" else b""
    if impl == "clerk":
        clerk = ObjectClerk.from_env()
        client = clerk.client
        actions: dict[str, Callable[[], object]] = {
            "upload-file": lambda: clerk.upload_object(path, bucket, key),
            "upload-memory": lambda: clerk.upload_object(data, bucket, key),
            "download-file": lambda: clerk.download_object(bucket, source_key(size), out),
            "download-stream": lambda: sum(
                len(c) for c in clerk.iter_object(bucket, source_key(size))
            ),
            "get": lambda: clerk.get_object(bucket, source_key(size)),
            "copy": lambda: clerk.copy_object(bucket, source_key(size), bucket, key),
        }
    else:
        client = raw_client()
        config = TransferConfig()

        def download_file() -> None:
            with out.open("wb") as handle:
                client.download_fileobj(bucket, source_key(size), handle, Config=config)

        def upload_file() -> None:
            with path.open("rb") as handle:
                client.upload_fileobj(handle, bucket, key, Config=config)

        actions = {
            "upload-file": upload_file,
            "upload-memory": lambda: client.upload_fileobj(
                io.BytesIO(data), bucket, key, Config=config
            ),
            "download-file": download_file,
            "download-stream": lambda: sum(
                len(c)
                for c in client.get_object(Bucket=bucket, Key=source_key(size))["Body"].iter_chunks(
                    1 << 20
                )
            ),
            "get": lambda: read_all(client, bucket, source_key(size)),
            "copy": lambda: client.copy(
                {"Bucket": bucket, "Key": source_key(size)}, bucket, key, Config=config
            ),
        }
    requests = _count_requests(client)
    action = actions[op]

    def run() -> None:
        action()

    run.requests = requests  # type: ignore[attr-defined]
    return run


def read_all(client: Any, bucket: str, key: str) -> bytes:
    body: bytes = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    return body


def _count_requests(client: Any) -> list[int]:
    counter = [0]

    def count(**_: Any) -> None:
        counter[0] += 1

    client.meta.events.register("before-send.s3", count)
    return counter


def main() -> None:
    impl, op, size_text, reps_text, bucket, workdir = sys.argv[1:7]
    size, reps = int(size_text), int(reps_text)
    run = plan(impl, op, size, bucket, Path(workdir))
    baseline = rss_mib()
    seconds = []
    before = resource.getrusage(resource.RUSAGE_SELF)
    before_children = resource.getrusage(resource.RUSAGE_CHILDREN)
    for _ in range(reps):
        started = time.perf_counter()
        run()
        seconds.append(time.perf_counter() - started)
    after = resource.getrusage(resource.RUSAGE_SELF)
    after_children = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (
        after.ru_utime
        + after.ru_stime
        - before.ru_utime
        - before.ru_stime
        + after_children.ru_utime
        + after_children.ru_stime
        - before_children.ru_utime
        - before_children.ru_stime
    )
    counter = getattr(run, "requests", [0])
    if impl == "rclone":  # the work happened in child processes
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        baseline = 0.0
    else:
        peak = rss_mib()
    print(
        json.dumps(
            {
                "seconds": seconds,
                "requests": counter[0] / reps if impl != "rclone" else None,
                "client_cpu_seconds": cpu,
                "peak_rss_mib": peak,
                "extra_rss_mib": peak - baseline,
            }
        )
    )


if __name__ == "__main__":
    main()
