"""The clerk's content-verified sync against ``rclone sync``, in one run on the local Ceph.

    python -m bench.sync [--rounds 3] [--small 1000] [--large 5]

The tree is SMALL files of 64 KiB plus LARGE files of 40 MiB (multipart), local -> Ceph.
Each measured sync is its own process, timed from the outside (interpreter start and, for
the clerk, building its client included, as a user running a script sees it), interleaved
clerk / rclone, medians reported. Rows:

* first sync into an empty prefix;
* second sync, nothing changed: seconds, and the objects written (PutObject + UploadPart
  requests for the clerk, rclone's own transfer count);
* one large file changed in its middle, same size, mtime put back: what each re-uploads;
* peak RSS of the clerk's sync for 1,000 against 10,000 small files (4 KiB each).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench.one import raw_client, rss_mib
from bench.run import clerk_environment, rclone_environment
from tests.servers import empty_bucket, start_ceph

KiB, MiB = 1024, 1024 * 1024


def child(source: str, destination: str) -> None:
    """One clerk sync, in this process: prints seconds, writes, changes and peak RSS."""
    from object_clerk import ObjectClerk

    baseline = rss_mib()
    clerk = ObjectClerk.from_env()
    writes = [0]

    def count(**_: Any) -> None:
        writes[0] += 1

    for operation in ("PutObject", "UploadPart", "CopyObject"):
        clerk.client.meta.events.register(f"before-send.s3.{operation}", count)
    started = time.perf_counter()
    report = clerk.sync(source, destination)
    seconds = time.perf_counter() - started
    print(json.dumps({
        "seconds": seconds,
        "writes": writes[0],
        "changed": sorted(change.key for change in report),
        "bytes": report.bytes,
        "rss_mib": rss_mib(),
        "rss_growth_mib": rss_mib() - baseline,
    }))  # fmt: skip


def raw_child(source: str, bucket: str, prefix: str) -> None:
    """What a boto3 user without the clerk writes: upload_file for every file, 10 threads
    (the clerk's default concurrency), no comparison, no verification."""
    from concurrent.futures import ThreadPoolExecutor

    client = raw_client()
    root = Path(source)
    files = [path for path in root.rglob("*") if path.is_file()]
    started = time.perf_counter()
    with ThreadPoolExecutor(10) as pool:
        list(pool.map(lambda path: client.upload_file(
            str(path), bucket, prefix + path.relative_to(root).as_posix()), files))  # fmt: skip
    print(json.dumps({"seconds": time.perf_counter() - started, "writes": len(files)}))


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_child(args: list[str], env: dict[str, str] | None = None) -> tuple[str, str, float, float]:
    """Run a measured process: its stdout and stderr, wall seconds and CPU seconds."""
    cpu, started = children_cpu(), time.perf_counter()
    done = subprocess.run(args, check=False, capture_output=True, text=True, env=env)
    if done.returncode:
        raise SystemExit(f"{' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return done.stdout, done.stderr, time.perf_counter() - started, children_cpu() - cpu


def clerk_sync(source: Path, destination: str) -> dict[str, Any]:
    out, _, wall, cpu = run_child(
        [sys.executable, "-m", "bench.sync", "--child", str(source), destination]
    )
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    result.update(wall=wall, cpu=cpu)
    return result


def raw_upload(source: Path, bucket: str, prefix: str) -> dict[str, Any]:
    out, _, wall, cpu = run_child(
        [sys.executable, "-m", "bench.sync", "--raw-child", str(source), bucket, prefix]
    )
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    result.update(wall=wall, cpu=cpu)
    return result


def rclone_sync(source: Path, destination: str, *, checksum: bool) -> dict[str, Any]:
    """``rclone sync`` (with --checksum: MD5 and size; without: size and mtime)."""
    env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}  # see bench.one
    args = ["rclone", "sync", "-v", "--stats", "0", str(source), destination]
    if checksum:
        args.insert(2, "--checksum")
    _, err, wall, cpu = run_child(args, env)
    copied = sorted(match.group(1) for match in re.finditer(r"INFO\s*:\s*(.+?): Copied", err))
    return {"wall": wall, "cpu": cpu, "writes": len(copied), "changed": copied}


def remove_prefix(raw: Any, bucket: str, prefix: str) -> None:
    for page in raw.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
        if keys:
            raw.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})


def make_tree(root: Path, small: int, large: int, small_size: int) -> None:
    for n in range(small):
        path = root / f"small/{n % 20:02d}/f{n:05d}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(small_size))
    for n in range(large):
        (root / f"large-{n}.bin").write_bytes(os.urandom(40 * MiB))


def change_middle(path: Path) -> None:
    """Flip one byte in the middle; keep the size and put the mtime back."""
    stat = path.stat()
    with path.open("r+b") as handle:
        handle.seek(stat.st_size // 2)
        byte = handle.read(1)
        handle.seek(stat.st_size // 2)
        handle.write(bytes([byte[0] ^ 0xFF]))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def median(rows: list[dict[str, Any]], name: str = "wall") -> float:
    return statistics.median(row[name] for row in rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", nargs=2, metavar=("SOURCE", "DESTINATION"))
    parser.add_argument("--raw-child", nargs=3, metavar=("SOURCE", "BUCKET", "PREFIX"))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--small", type=int, default=1000)
    parser.add_argument("--large", type=int, default=5)
    parser.add_argument("--rss-counts", default="1000,10000")
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return 0
    if args.raw_child:
        raw_child(*args.raw_child)
        return 0
    if shutil.which("rclone") is None:
        raise SystemExit("rclone is not installed (apt-get install rclone)")
    env, _ = start_ceph()
    os.environ.update(clerk_environment(env), **rclone_environment(env))
    raw = raw_client()  # the environment now points at this Ceph
    bucket = f"bench-sync-{uuid.uuid4().hex[:8]}"
    raw.create_bucket(Bucket=bucket)
    work = Path(tempfile.mkdtemp(prefix="object-clerk-bench-sync-"))
    tree = work / "tree"
    make_tree(tree, args.small, args.large, 64 * KiB)
    first: dict[str, list[dict[str, Any]]] = {"clerk": [], "rclone": [], "boto3": []}
    second: dict[str, list[dict[str, Any]]] = {"clerk": [], "rclone": []}
    for n in range(args.rounds):
        first["clerk"].append(clerk_sync(tree, f"s3://{bucket}/clerk-{n}"))
        first["rclone"].append(rclone_sync(tree, f"oc:{bucket}/rclone-{n}", checksum=True))
        first["boto3"].append(raw_upload(tree, bucket, f"boto3-{n}/"))
        # Ceph's memstore holds every byte in RAM (8 GiB): keep only what later rows use.
        for prefix in ([f"clerk-{n}/", f"rclone-{n}/"] if n else []) + [f"boto3-{n}/"]:
            remove_prefix(raw, bucket, prefix)
    for _ in range(args.rounds):
        second["clerk"].append(clerk_sync(tree, f"s3://{bucket}/clerk-0"))
        second["rclone"].append(rclone_sync(tree, f"oc:{bucket}/rclone-0", checksum=True))
    rclone_sync(tree, f"oc:{bucket}/rclone-mtime", checksum=False)  # up to date, its way
    change_middle(tree / f"large-{args.large // 2}.bin")
    changed = {
        "clerk": clerk_sync(tree, f"s3://{bucket}/clerk-0"),
        "rclone --checksum": rclone_sync(tree, f"oc:{bucket}/rclone-0", checksum=True),
        "rclone (size, mtime)": rclone_sync(tree, f"oc:{bucket}/rclone-mtime", checksum=False),
    }
    rss = {}
    for count in [int(c) for c in args.rss_counts.split(",")]:
        small_tree = work / f"rss-{count}"
        make_tree(small_tree, count, 0, 4 * KiB)
        rss[count] = (
            clerk_sync(small_tree, f"s3://{bucket}/rss-{count}"),
            clerk_sync(small_tree, f"s3://{bucket}/rss-{count}"),
        )
        shutil.rmtree(small_tree)
    print(report(args, first, second, changed, rss))
    shutil.rmtree(work)
    empty_bucket(raw, bucket)
    raw.delete_bucket(Bucket=bucket)
    return 0


def report(
    args: argparse.Namespace,
    first: dict[str, list[dict[str, Any]]],
    second: dict[str, list[dict[str, Any]]],
    changed: dict[str, dict[str, Any]],
    rss: dict[int, tuple[dict[str, Any], dict[str, Any]]],
) -> str:
    mib = (args.small * 64 * KiB + args.large * 40 * MiB) / MiB
    clerk_first, rclone_first = median(first["clerk"]), median(first["rclone"])
    clerk_second, rclone_second = median(second["clerk"]), median(second["rclone"])
    raw_first = median(first["boto3"])
    lines = [
        f"Sync of {args.small} x 64 KiB + {args.large} x 40 MiB ({mib:.0f} MiB), local -> Ceph,"
        f" medians of {args.rounds}, each its own process, timed from outside (so"
        " interpreter start and client set-up count); CPU: the process's user + system:",
        "",
        "| run | clerk s | rclone --checksum s | clerk speed / rclone's | raw boto3 s"
        " | clerk CPU s | rclone CPU s | boto3 CPU s | clerk objects written |",
        "|---|---|---|---|---|---|---|---|---|",
        f"| first sync (empty prefix) | {clerk_first:.2f} | {rclone_first:.2f}"
        f" | {rclone_first / clerk_first:.2f} | {raw_first:.2f}"
        f" | {median(first['clerk'], 'cpu'):.2f} | {median(first['rclone'], 'cpu'):.2f}"
        f" | {median(first['boto3'], 'cpu'):.2f} | {first['clerk'][0]['writes']} |",
        f"| second sync, nothing changed | {clerk_second:.2f} | {rclone_second:.2f}"
        f" | {rclone_second / clerk_second:.2f} | - | {median(second['clerk'], 'cpu'):.2f}"
        f" | {median(second['rclone'], 'cpu'):.2f} | - |"
        f" {max(r['writes'] for r in second['clerk'])} |",
        "",
        f"Inside the clerk's process (the call alone):"
        f" first {median(first['clerk'], 'seconds'):.2f} s,"
        f" second {median(second['clerk'], 'seconds'):.2f} s; raw boto3's uploads alone:"
        f" {median(first['boto3'], 'seconds'):.2f} s. rclone objects written on the second"
        f" sync: {max(r['writes'] for r in second['rclone'])}.",
        "",
        "One 40 MiB file changed in its middle, same size, mtime put back:",
        "",
        "| tool | re-uploaded | seconds |",
        "|---|---|---|",
    ]
    for tool, result in changed.items():
        lines.append(
            f"| {tool} | {', '.join(result['changed']) or 'nothing'} | {result['wall']:.2f} |"
        )
    lines += [
        "",
        "Peak RSS of the clerk's sync (4 KiB files, whole process):",
        "",
        "| files | first sync MiB | second sync MiB | first sync s |",
        "|---|---|---|---|",
    ]
    for count, (one, two) in rss.items():
        lines.append(
            f"| {count} | {one['rss_mib']:.0f} | {two['rss_mib']:.0f} | {one['wall']:.1f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
