"""object_clerk vs raw boto3 (and rclone), measured in one run against the local Ceph RGW.

    python -m bench.run                      # 1 MiB, 64 MiB and 1 GiB
    python -m bench.run --sizes 1MiB,64MiB   # quicker

Raw boto3 uses the default TransferConfig and no verification: upload_fileobj,
download_fileobj, get_object()["Body"].read() / iter_chunks() and the managed copy. The
clerk verifies everything. Each cell runs in its own process (bench/one.py) so its peak RSS
is its own; throughput is the median over the repetitions. Also: the latency of a small
verified get, and the ETag calculator's speed next to hashlib.md5 on one core.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from bench.one import OPERATIONS
from object_clerk import EtagCalculator, ObjectClerk

ROOT = Path(__file__).resolve().parent.parent
MiB = 1024 * 1024
SIZES = {"1MiB": MiB, "64MiB": 64 * MiB, "1GiB": 1024 * MiB}
REPS = {MiB: 15, 64 * MiB: 5, 1024 * MiB: 3}


def start_ceph() -> tuple[dict[str, str], bool]:
    script = ROOT / "scripts" / "ceph-rgw.sh"
    running = subprocess.run(["bash", str(script), "status"], check=False).returncode == 0
    out = subprocess.run(
        ["bash", str(script), "up"], check=True, capture_output=True, text=True
    ).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line), not running


def clerk_environment(env: dict[str, str]) -> dict[str, str]:
    """The OBJECT_CLERK_* variables that point a clerk at the Ceph ``start_ceph`` started."""
    return {
        "OBJECT_CLERK_ENDPOINT_URL": env["CEPH_RGW_ENDPOINT"],
        "OBJECT_CLERK_ACCESS_KEY": env["CEPH_RGW_ACCESS_KEY"],
        "OBJECT_CLERK_SECRET_KEY": env["CEPH_RGW_SECRET_KEY"],
        "OBJECT_CLERK_REGION": "us-east-1",
    }


def rclone_environment(env: dict[str, str]) -> dict[str, str]:
    """The variables that make ``oc:`` an rclone remote for the same Ceph."""
    return {
        "RCLONE_CONFIG_OC_TYPE": "s3",
        "RCLONE_CONFIG_OC_PROVIDER": "Ceph",
        "RCLONE_CONFIG_OC_ENDPOINT": env["CEPH_RGW_ENDPOINT"],
        "RCLONE_CONFIG_OC_ACCESS_KEY_ID": env["CEPH_RGW_ACCESS_KEY"],
        "RCLONE_CONFIG_OC_SECRET_ACCESS_KEY": env["CEPH_RGW_SECRET_KEY"],
    }


def server_cpu_seconds() -> float:
    """CPU seconds used so far by the Ceph daemons the project's script started."""
    default = Path(os.environ.get("TMPDIR", "/tmp")) / "object-clerk-ceph"
    pids = Path(os.environ.get("CEPH_RGW_DIR") or default) / "pids"
    total = 0
    for line in pids.read_text().splitlines():
        pid = line.split()[1]
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def cell(impl: str, op: str, size: int, reps: int, bucket: str, work: Path) -> dict[str, Any]:
    server_before = server_cpu_seconds()
    out = subprocess.run(
        [sys.executable, "-m", "bench.one", impl, op, str(size), str(reps), bucket, str(work)],
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    result["server_cpu_seconds"] = server_cpu_seconds() - server_before
    return result


def cpu_ms_per_mb(size: int, result: dict[str, Any]) -> float:
    """Client plus server CPU per MiB moved: what a 2-core machine has to spend."""
    mib = size / MiB * len(result["seconds"])
    return (result["client_cpu_seconds"] + result["server_cpu_seconds"]) * 1000 / mib


def etag_speed(size: int = 256 * MiB, rounds: int = 5) -> tuple[float, float]:
    data = memoryview(os.urandom(size))
    md5_times, calc_times = [], []
    for _ in range(rounds):
        started = time.perf_counter()
        hashlib.md5(data, usedforsecurity=False).hexdigest()
        md5_times.append(time.perf_counter() - started)
        started = time.perf_counter()
        calc = EtagCalculator(8 * MiB)
        for offset in range(0, size, MiB):  # as the reads feed it: 1 MiB at a time
            calc.update(data[offset : offset + MiB])
        calc.etag()
        calc_times.append(time.perf_counter() - started)
    return size / MiB / statistics.median(md5_times), size / MiB / statistics.median(calc_times)


def small_get_latency(
    clerk: ObjectClerk, raw: Any, bucket: str, rounds: int = 300
) -> tuple[float, float]:
    clerk.upload_object(os.urandom(1024), bucket, "bench/small")
    clerk_times, raw_times = [], []
    for _ in range(rounds):
        started = time.perf_counter()
        raw.get_object(Bucket=bucket, Key="bench/small")["Body"].read()
        raw_times.append(time.perf_counter() - started)
        started = time.perf_counter()
        clerk.get_object(bucket, "bench/small")
        clerk_times.append(time.perf_counter() - started)
    return statistics.median(raw_times) * 1000, statistics.median(clerk_times) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1MiB,64MiB,1GiB")
    parser.add_argument("--no-rclone", action="store_true")
    args = parser.parse_args()
    sizes = [SIZES[name] for name in args.sizes.split(",")]
    env, started = start_ceph()
    os.environ.update(clerk_environment(env), **rclone_environment(env))
    use_rclone = not args.no_rclone and shutil.which("rclone") is not None
    clerk = ObjectClerk.from_env()
    raw = boto3.client(
        "s3",
        endpoint_url=env["CEPH_RGW_ENDPOINT"],
        aws_access_key_id=env["CEPH_RGW_ACCESS_KEY"],
        aws_secret_access_key=env["CEPH_RGW_SECRET_KEY"],
        region_name="us-east-1",
        config=Config(request_checksum_calculation="when_required"),
    )
    bucket = f"bench-{uuid.uuid4().hex[:8]}"
    raw.create_bucket(Bucket=bucket)
    work = Path(tempfile.mkdtemp(prefix="object-clerk-bench-"))
    rows: list[dict[str, Any]] = []
    try:
        for size in sizes:
            (work / f"data-{size}.bin").write_bytes(os.urandom(size))
            clerk.upload_object(work / f"data-{size}.bin", bucket, f"bench/source-{size}")
            for op in OPERATIONS:
                reps = REPS[size]
                row: dict[str, Any] = {"op": op, "size": size}
                for impl in ("boto3", "clerk"):
                    row[impl] = cell(impl, op, size, reps, bucket, work)
                if use_rclone and op in ("upload-file", "download-file"):
                    row["rclone"] = cell("rclone", op, size, reps, bucket, work)
                rows.append(row)
                # Ceph's memstore keeps objects in RAM: drop what this cell wrote.
                for impl in ("boto3", "clerk", "rclone"):
                    raw.delete_object(Bucket=bucket, Key=f"bench/{impl}-{op}-{size}")
                print(render_row(row), flush=True)
        md5_mbs, calc_mbs = etag_speed()
        raw_ms, clerk_ms = small_get_latency(clerk, raw, bucket)
        from bench import reads  # it imports this module

        read_sizes = [size for size in sizes if size > MiB] or [64 * MiB]
        verified_reads = reads.report(
            read_sizes, 9 if max(read_sizes) <= 64 * MiB else 5, 300, work
        )
    finally:
        for entry in clerk.list_objects(bucket, 1000):
            raw.delete_object(Bucket=bucket, Key=entry["Key"])
        raw.delete_bucket(Bucket=bucket)
        shutil.rmtree(work, ignore_errors=True)
        if started and os.environ.get("OBJECT_CLERK_KEEP_CEPH") != "1":
            subprocess.run(["bash", str(ROOT / "scripts" / "ceph-rgw.sh"), "down"], check=False)
    print()
    print(report(rows, md5_mbs, calc_mbs, raw_ms, clerk_ms, use_rclone))
    print()
    print("Verified reads against the best verified raw boto3 read (bench/reads.py):")
    print()
    print(verified_reads)
    return 0


def mbs(size: int, result: dict[str, Any]) -> float:
    return size / MiB / statistics.median(result["seconds"])


def human(size: int) -> str:
    return f"{size // (1024 * MiB)} GiB" if size >= 1024 * MiB else f"{size // MiB} MiB"


def render_row(row: dict[str, Any]) -> str:
    size, boto, clerk = row["size"], row["boto3"], row["clerk"]
    rclone = f"{mbs(size, row['rclone']):8.0f}" if "rclone" in row else "       -"
    return (
        f"| {row['op']:<15} | {human(size):>6} | {mbs(size, boto):8.0f} | {mbs(size, clerk):8.0f}"
        f" | {mbs(size, clerk) / mbs(size, boto):5.2f} | {rclone} |"
        f" {boto['requests']:5.0f} | {clerk['requests']:5.0f} |"
        f" {boto['extra_rss_mib']:7.0f} | {clerk['extra_rss_mib']:7.0f} |"
        f" {cpu_ms_per_mb(size, boto):5.1f} | {cpu_ms_per_mb(size, clerk):5.1f} |"
    )


def report(
    rows: list[dict[str, Any]],
    md5_mbs: float,
    calc_mbs: float,
    raw_ms: float,
    clerk_ms: float,
    use_rclone: bool,
) -> str:
    header = (
        "| operation       |   size | boto3 MB/s | clerk MB/s | clerk/boto3 | rclone MB/s |"
        " boto3 req | clerk req | boto3 +RSS MiB | clerk +RSS MiB | boto3 CPU ms/MB |"
        " clerk CPU ms/MB |"
    )
    lines = [
        f"Machine: {platform.node()}, {os.cpu_count()} cores, Python {platform.python_version()},"
        f" boto3 {boto3.__version__}; Ceph RGW 16 (memstore) on loopback, same machine.",
        "Throughput: median MB/s (MiB/s); +RSS: peak RSS above the process's baseline;"
        " CPU ms/MB: client + Ceph CPU per MiB moved (2 cores = 2000 ms of CPU a second).",
        "",
        header,
        "|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|",
    ]
    lines += [render_row(row) for row in rows]
    lines += [
        "",
        f"Small verified get (1 KiB): boto3 {raw_ms:.2f} ms, clerk {clerk_ms:.2f} ms"
        f" (x{clerk_ms / raw_ms:.2f}), medians of 300.",
        f"ETag calculator: {calc_mbs:.0f} MB/s vs hashlib.md5 {md5_mbs:.0f} MB/s"
        f" (x{calc_mbs / md5_mbs:.2f}), one core, 256 MiB.",
    ]
    if not use_rclone:
        lines.append("rclone: not installed (apt-get install rclone).")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
