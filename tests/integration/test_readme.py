"""Every Python code block of our own README.rst runs as written, in order, against the
local Ceph RGW (whose endpoint and keys the README quotes), on the objects it names."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import object_clerk
from object_clerk import ObjectClerk
from tests.integration.test_operations import payload
from tests.servers import ROOT, Backend, empty_bucket

pytestmark = pytest.mark.integration

README = ROOT / "README.rst"
BUCKETS = ("bucket", "bucket_name", "quick-start")
MiB = 1024 * 1024


def python_blocks() -> list[str]:
    """The body of each ``.. code:: python`` block, dedented, in README order."""
    lines = README.read_text().splitlines()
    blocks: list[str] = []
    for number, line in enumerate(lines):
        if line.strip() != ".. code:: python":
            continue
        directive_indent = len(line) - len(line.lstrip())
        body: list[str] = []
        for following in lines[number + 1 :]:
            if following.strip() and len(following) - len(following.lstrip()) <= directive_indent:
                break
            body.append(following)
        indent = min(len(b) - len(b.lstrip()) for b in body if b.strip())
        blocks.append("\n".join(b[indent:] for b in body).strip() + "\n")
    return blocks


BLOCKS = python_blocks()


def test_the_parser_finds_every_block() -> None:
    """A parser that found nothing would pass vacuously."""
    assert len(BLOCKS) == README.read_text().count(".. code:: python") >= 12


def test_readme_names_every_public_name() -> None:
    text = README.read_text()
    missing = [name for name in object_clerk.__all__ if not re.search(rf"\b{name}\b", text)]
    assert missing == []


@pytest.fixture
def readme_world(
    ceph: Backend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, Any]]:
    """The buckets, objects and local files the README's examples name."""
    for name in [n for n in os.environ if n.startswith("OBJECT_CLERK_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    raw = ceph.raw()
    for name in BUCKETS:
        try:
            empty_bucket(raw, name)
            raw.delete_bucket(Bucket=name)
        except raw.exceptions.NoSuchBucket:
            pass
    raw.create_bucket(Bucket="bucket")
    raw.create_bucket(Bucket="bucket_name")
    setup = ObjectClerk(**ceph.clerk_kwargs())
    setup.upload_object(b"an object\n", "bucket", "object_key")
    setup.upload_object(payload(20 * MiB), "bucket", "big.parquet")  # 3 parts of 8 MiB
    setup.upload_object(b'{"n": 1}\n{"n": 2}\n', "bucket", "events.jsonl")
    for key in ("2026/a.csv", "2026/b.csv", "2025/old.csv"):
        raw.put_object(Bucket="bucket_name", Key=key, Body=b"x")
    Path("file").write_bytes(b"a local file\n" * 100)
    Path("data").mkdir()
    Path("data/part-0001.parquet").write_bytes(payload(MiB))
    Path("big.bin").write_bytes(payload(20 * MiB, seed=1))
    yield {"raw": raw}
    for name in BUCKETS:
        empty_bucket(raw, name)
        raw.delete_bucket(Bucket=name)


def test_every_block_runs_as_written(ceph: Backend, readme_world: dict[str, Any]) -> None:
    """The blocks run in order in one namespace, unchanged; their effects are checked."""
    # The README quotes the local Ceph RGW's endpoint and keys (scripts/ceph-rgw.sh's).
    quick_start = BLOCKS[0]
    assert ceph.endpoint == "http://127.0.0.1:7480"
    assert 'host="127.0.0.1", port=7480' in quick_start
    assert ceph.access_key in quick_start and ceph.secret_key in quick_start
    namespace: dict[str, Any] = {}
    for number, block in enumerate(BLOCKS):
        try:
            exec(compile(block, f"README block {number + 1}", "exec"), namespace)
        except Exception as exc:
            pytest.fail(f"README block {number + 1} failed: {exc!r}\n{block}")
    raw = readme_world["raw"]
    assert raw.get_object(Bucket="quick-start", Key="greeting.txt")["Body"].read() == b"hello"
    assert namespace["events"] == [b'{"n": 1}\n', b'{"n": 2}\n']
    assert namespace["total"] == 20 * MiB
    assert namespace["keys"] == ["2026/a.csv", "2026/b.csv"]
    # The boto3 drop-in block: a hardened client's writes landed, verified.
    assert raw.get_object(Bucket="quick-start", Key="boto3.txt")["Body"].read() == b"hello"
    assert raw.head_object(Bucket="quick-start", Key="big.bin")["ContentLength"] == MiB
    assert namespace["existing"] is namespace["s3"]
    assert re.fullmatch(r"[0-9a-f]{32}-3", namespace["etag"])
    assert Path("big.parquet").stat().st_size == 20 * MiB
    remaining = {o["Key"] for o in raw.list_objects_v2(Bucket="bucket").get("Contents", [])}
    assert "moved.parquet" not in remaining and "copy.parquet" not in remaining
