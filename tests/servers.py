"""The real S3 servers the tests run against, started by the suite itself.

* Ceph RGW 16 (scripts/ceph-rgw.sh): over HTTP and over HTTPS with a generated certificate.
* moto's server: AWS semantics (PartNumber on HEAD, SSE headers, flexible checksums).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

ROOT = Path(__file__).resolve().parent.parent
CEPH_SCRIPT = ROOT / "scripts" / "ceph-rgw.sh"

# A raw client for checking what the server really holds, bypassing the clerk. No retries
# (a check must not hide a fault) and no flexible checksums (Ceph 16 + HTTPS: see NOTES).
RAW_CONFIG = Config(
    retries={"max_attempts": 0},
    request_checksum_calculation="when_required",
    response_checksum_validation="when_required",
    connect_timeout=10,
    read_timeout=60,
)


@dataclass
class Backend:
    """One S3 server as the tests see it."""

    name: str
    endpoint: str
    access_key: str
    secret_key: str
    ca_bundle: str | None = None
    region: str = "us-east-1"
    buckets: list[str] = field(default_factory=list)

    def clerk_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "endpoint_url": self.endpoint,
            "access_key": self.access_key,
            "secret_key": self.secret_key,
            "region": self.region,
        }
        if self.ca_bundle:
            kwargs["ca_bundle"] = self.ca_bundle
        return kwargs

    def raw(self, config: Config = RAW_CONFIG) -> Any:
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
            verify=self.ca_bundle if self.ca_bundle else None,
            config=config,
        )

    @property
    def is_ceph(self) -> bool:
        return self.name.startswith("ceph")

    def new_bucket(self, prefix: str = "oc") -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:12]}"
        self.raw().create_bucket(Bucket=name)
        self.buckets.append(name)
        return name

    def cleanup(self) -> None:
        raw = self.raw()
        for bucket in self.buckets:
            empty_bucket(raw, bucket)
            raw.delete_bucket(Bucket=bucket)
        self.buckets.clear()


def empty_bucket(raw: Any, bucket: str) -> None:
    for upload in raw.list_multipart_uploads(Bucket=bucket).get("Uploads", []):
        raw.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
    paginator = raw.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket):
        keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
        if keys:
            raw.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})


def start_ceph() -> tuple[dict[str, str], bool]:
    """Start the project's Ceph RGW (installing it if needed). Returns its env and whether
    this call started it."""
    already = subprocess.run(["bash", str(CEPH_SCRIPT), "status"], check=False).returncode == 0
    out = subprocess.run(
        ["bash", str(CEPH_SCRIPT), "up"], check=True, capture_output=True, text=True
    ).stdout
    env = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    return env, not already


def stop_ceph() -> None:
    subprocess.run(["bash", str(CEPH_SCRIPT), "down"], check=False, capture_output=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class MotoServer:
    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        self.port = free_port()
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)

    def __enter__(self) -> MotoServer:
        self._server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.stop()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def ceph_backends(env: dict[str, str]) -> Iterator[Backend]:
    yield Backend(
        "ceph-http",
        env["CEPH_RGW_ENDPOINT"],
        env["CEPH_RGW_ACCESS_KEY"],
        env["CEPH_RGW_SECRET_KEY"],
    )
    yield Backend(
        "ceph-https",
        env["CEPH_RGW_HTTPS_ENDPOINT"],
        env["CEPH_RGW_ACCESS_KEY"],
        env["CEPH_RGW_SECRET_KEY"],
        ca_bundle=env["CEPH_RGW_CA_BUNDLE"],
    )


def keep_ceph() -> bool:
    return os.environ.get("OBJECT_CLERK_KEEP_CEPH") == "1"


def corrupt_at_rest(env: dict[str, str], bucket: str, key: str, offset: int = 0) -> None:
    """Flip one stored byte of a Ceph object below S3, as bit rot would: the byte changes in
    RADOS while the object's ETag, size and metadata stay. ``offset`` must fall in the
    object's head (its first 4 MiB), where RGW keeps a small object whole."""
    tools = {**os.environ, "CEPH_CONF": env["CEPH_RGW_CONF"]}

    def run(*args: str) -> bytes:
        return subprocess.run(args, check=True, capture_output=True, env=tools).stdout

    stats = json.loads(run("radosgw-admin", "bucket", "stats", "--bucket", bucket))
    pool = "default.rgw.buckets.data"
    name = f"{stats['marker']}_{key}"
    with tempfile.TemporaryDirectory() as scratch:
        head = Path(scratch) / "head"
        run("rados", "-p", pool, "get", name, str(head))
        data = head.read_bytes()
        if not data:  # a multipart object: its bytes start in part 1's own RADOS object
            part = f"{stats['marker']}__multipart_{key}."
            [name] = [
                line for line in run("rados", "-p", pool, "ls").decode().splitlines()
                if line.startswith(part) and line.endswith(".1")
            ]  # fmt: skip
            run("rados", "-p", pool, "get", name, str(head))
            data = head.read_bytes()
        assert offset < len(data), f"offset {offset} is past the head's {len(data)} bytes"
        patch = Path(scratch) / "patch"
        patch.write_bytes(bytes([data[offset] ^ 0xFF]))
        run("rados", "-p", pool, "put", name, str(patch), "--offset", str(offset))
