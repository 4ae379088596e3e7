"""A demo of verified transfers: ``python -m object_clerk.demo``.

It reads its endpoint and credentials from the environment like any ObjectClerk
(``ObjectClerk.from_env()``); ``scripts/demo.sh`` starts a local Ceph RGW and sets them.
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

from object_clerk import ObjectClerk, ObjectClerkError, ObjectNotFoundError

MiB = 1024 * 1024


def main() -> int:
    clerk = ObjectClerk.from_env()
    print(f"object_clerk demo against {clerk.client.meta.endpoint_url}")
    print(f"  a failing request makes at most {clerk.max_http_attempts} HTTP attempts")
    bucket = f"object-clerk-demo-{uuid.uuid4().hex[:8]}"
    clerk.create_bucket(bucket)
    try:
        run(clerk, bucket)
    except ObjectClerkError as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    finally:
        clerk.delete_bucket(bucket, empty=True)
    print("all operations verified")
    return 0


def run(clerk: ObjectClerk, bucket: str) -> None:
    size = int(os.environ.get("OBJECT_CLERK_DEMO_SIZE", 40 * MiB))
    data = os.urandom(size)
    md5 = hashlib.md5(data, usedforsecurity=False).hexdigest()
    print(f"\n1. upload {size / MiB:.1f} MiB (md5 {md5})")
    started = time.perf_counter()
    up = clerk.upload_object(data, bucket, "demo/original.bin", metadata={"source": "demo"})
    took = time.perf_counter() - started
    print(f"   stored with ETag {up.etag}: verified by {up.verification} in {took:.2f}s")

    print("2. get it back, verified against the same response's ETag")
    started = time.perf_counter()
    body = clerk.get_object(bucket, "demo/original.bin")
    took = time.perf_counter() - started
    same = hashlib.md5(body, usedforsecurity=False).hexdigest() == md5
    print(f"   {len(body)} bytes in {took:.2f}s, identical to what was sent: {same}")
    if not same:
        raise SystemExit("the bytes read back differ")

    info = clerk.get_object_info(bucket, "demo/original.bin")
    metadata = {k: v for k, v in info.items() if k.startswith("x-amz-meta-")}
    print(f"3. info: {info['content-length']} bytes, ETag {info['etag']}, metadata {metadata}")

    copy = clerk.copy_object(bucket, "demo/original.bin", bucket, "demo/copy.bin")
    print(f"4. copy server-side: ETag {copy.etag} equals the source's ({copy.verification})")

    moved = clerk.move_object(bucket, "demo/copy.bin", bucket, "demo/moved.bin")
    try:
        clerk.get_object_info(bucket, "demo/copy.bin")
        raise SystemExit("the move left its source behind")
    except ObjectNotFoundError:
        pass
    print(f"5. move: copy verified ({moved.verification}), then the source was deleted")

    keys = [entry["Key"] for entry in clerk.list_objects(bucket, 1000, prefix="demo/")]
    print(f"6. list: {keys}")

    clerk.delete_object(bucket, "demo/moved.bin")
    left = [entry["Key"] for entry in clerk.list_objects(bucket, 1000)]
    print(f"7. delete demo/moved.bin: {left} remain")

    with tempfile.TemporaryDirectory() as work:
        tree = Path(work, "tree")
        for n in range(20):
            (tree / f"part-{n % 4}").mkdir(parents=True, exist_ok=True)
            (tree / f"part-{n % 4}" / f"{n:02d}.bin").write_bytes(os.urandom(64 * 1024))
        (tree / "large.bin").write_bytes(data)
        first = clerk.sync(tree, f"s3://{bucket}/tree")
        print(f"8. sync a directory up: {len(first)} objects added, each verified")
        changed = tree / "large.bin"
        stat = changed.stat()
        with changed.open("r+b") as handle:  # one byte in the middle; size and mtime kept
            handle.seek(size // 2)
            handle.write(bytes([data[size // 2] ^ 0xFF]))
        os.utime(changed, ns=(stat.st_atime_ns, stat.st_mtime_ns))
        second = clerk.sync(tree, f"s3://{bucket}/tree")
        sent = [(change.key, change.operation.value) for change in second]
        print(f"   one byte changed, size and mtime kept; the next sync sends {sent},")
        print("   found by content: the file's ETag computed in the object's own part layout")
        if sent != [("large.bin", "modified")]:
            raise SystemExit("the sync did not find exactly the changed file")
        down = clerk.download_prefix(bucket, "tree", Path(work, "restored"))
        print(f"9. download the prefix: {down.objects} files, {down.bytes / MiB:.1f} MiB, verified")

    scrub = clerk.verify_objects(bucket)
    print(f"10. scrub the bucket (on the command line: object-clerk verify s3://{bucket}/)")
    print(f"   every stored byte read back ({scrub.bytes / MiB:.1f} MiB, nothing kept):")
    print(f"   {scrub.ok} of {scrub.checked} objects proven, {len(scrub.problems)} problems")
    if scrub.problems or scrub.ok != scrub.checked:
        raise SystemExit(f"the scrub found problems: {scrub.problems}")


if __name__ == "__main__":
    sys.exit(main())
