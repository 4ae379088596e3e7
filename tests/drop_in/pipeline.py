"""A data pipeline written against plain boto3: every call object_clerk hardens, once each.

Run it with either client; only the line that builds the client differs::

    python -m tests.drop_in.pipeline --client boto3 --endpoint http://127.0.0.1:7480
    python -m tests.drop_in.pipeline --client object_clerk --endpoint http://127.0.0.1:7480

Credentials come from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, as for boto3. Each step
makes its call(s) and then checks what the server holds (or what the call returned) with
``check``, a client that talks to the server directly: a step whose call succeeded but whose
bytes are wrong raises :class:`WrongBytes`, a silent corruption.

:data:`STEPS` names, for each call, the request the fault table (``tests/drop_in/
fault_table.py``) breaks, and :func:`run` runs the whole pipeline.
"""

from __future__ import annotations

import argparse
import io
import os
import random
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config

import object_clerk

MiB = 1024 * 1024
# boto3's own default transfer settings, said out loud: 8 MiB threshold and parts.
TRANSFER = TransferConfig(multipart_threshold=8 * MiB, multipart_chunksize=8 * MiB)


class WrongBytes(AssertionError):
    """A call succeeded, but the server holds (or the caller got) other bytes: silent."""


def make_client(
    kind: str,
    endpoint: str,
    *,
    access_key: str | None = None,
    secret_key: str | None = None,
    ca_bundle: str | None = None,
    signed_payload: bool = True,
    region: str = "us-east-1",
) -> Any:
    """The pipeline's client. Every argument is boto3's; ``kind`` picks the constructor."""
    config = Config(
        # What Ceph RGW needs of boto3 >= 1.36 (NOTES: 411 over HTTPS otherwise).
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        s3={"payload_signing_enabled": signed_payload},
        connect_timeout=5,
        read_timeout=20,
    )
    kwargs: dict[str, Any] = {
        "endpoint_url": endpoint,
        "aws_access_key_id": access_key,
        "aws_secret_access_key": secret_key,
        "region_name": region,
        "verify": ca_bundle,
        "config": config,
    }
    if kind == "boto3":
        return boto3.client("s3", **kwargs)
    return object_clerk.client("s3", **kwargs)  # the only line that differs


def payload(name: str, size: int) -> bytes:
    return random.Random(name).randbytes(size)


def stored(check: Any, bucket: str, key: str, expected: bytes) -> None:
    got = check.get_object(Bucket=bucket, Key=key)["Body"].read()
    if got != expected:
        raise WrongBytes(f"s3://{bucket}/{key} holds other bytes than were written")


def same(got: bytes, expected: bytes, what: str) -> None:
    if got != expected:
        raise WrongBytes(f"{what}: the bytes returned are not the object's")


# ---------------------------------------------------------------------- steps ---
# Each step: (s3, check, bucket, scratch directory). Setup uses `check`, never `s3`.


def get_object(s3: Any, check: Any, bucket: str, tmp: Path) -> None:
    data = payload("get", 2 * MiB)
    check.put_object(Bucket=bucket, Key="get", Body=data)
    same(s3.get_object(Bucket=bucket, Key="get")["Body"].read(), data, "get_object")


def put_object(s3: Any, check: Any, bucket: str, tmp: Path) -> None:
    data = payload("put", 2 * MiB)
    body = io.BytesIO(b"HEADER--" + data)
    body.seek(8)  # the body starts at offset 8: a retry must resend from there
    s3.put_object(Bucket=bucket, Key="put", Body=body)
    stored(check, bucket, "put", data)


def multipart(s3: Any, check: Any, bucket: str, tmp: Path) -> None:
    """create_multipart_upload, upload_part (twice), complete_multipart_upload."""
    parts = [payload("part1", 5 * MiB), payload("part2", MiB)]
    upload = s3.create_multipart_upload(Bucket=bucket, Key="multipart")
    done = []
    for number, data in enumerate(parts, start=1):
        answer = s3.upload_part(
            Bucket=bucket,
            Key="multipart",
            UploadId=upload["UploadId"],
            PartNumber=number,
            Body=data,
        )
        done.append({"PartNumber": number, "ETag": answer["ETag"]})
    s3.complete_multipart_upload(
        Bucket=bucket,
        Key="multipart",
        UploadId=upload["UploadId"],
        MultipartUpload={"Parts": done},
    )
    stored(check, bucket, "multipart", b"".join(parts))


def upload_file(s3: Any, check: Any, bucket: str, tmp: Path) -> None:
    data = payload("upload-file", 12 * MiB)
    path = tmp / "upload-file.bin"
    path.write_bytes(data)
    s3.upload_file(str(path), bucket, "upload-file", Config=TRANSFER)
    stored(check, bucket, "upload-file", data)


def upload_fileobj(s3: Any, check: Any, bucket: str, tmp: Path) -> None:
    data = payload("upload-fileobj", 12 * MiB)
    s3.upload_fileobj(io.BytesIO(data), bucket, "upload-fileobj", Config=TRANSFER)
    stored(check, bucket, "upload-fileobj", data)


def download_file(s3: Any, check: Any, bucket: str, tmp: Path) -> None:
    data = payload("download", 12 * MiB)
    check.upload_fileobj(io.BytesIO(data), bucket, "download-file", Config=TRANSFER)
    path = tmp / "download-file.bin"
    s3.download_file(bucket, "download-file", str(path), Config=TRANSFER)
    same(path.read_bytes(), data, "download_file")


def download_fileobj(s3: Any, check: Any, bucket: str, tmp: Path) -> None:
    data = payload("download", 12 * MiB)
    check.upload_fileobj(io.BytesIO(data), bucket, "download-fileobj", Config=TRANSFER)
    out = io.BytesIO()
    s3.download_fileobj(bucket, "download-fileobj", out, Config=TRANSFER)
    same(out.getvalue(), data, "download_fileobj")


def copy(s3: Any, check: Any, bucket: str, tmp: Path) -> None:
    data = payload("copy", 12 * MiB)
    check.upload_fileobj(io.BytesIO(data), bucket, "copy-source", Config=TRANSFER)
    s3.copy({"Bucket": bucket, "Key": "copy-source"}, bucket, "copy", Config=TRANSFER)
    stored(check, bucket, "copy", data)


def copy_object(s3: Any, check: Any, bucket: str, tmp: Path) -> None:
    data = payload("copy-object", 2 * MiB)
    check.put_object(Bucket=bucket, Key="copy-object-source", Body=data)
    s3.copy_object(
        Bucket=bucket, Key="copy-object", CopySource={"Bucket": bucket, "Key": "copy-object-source"}
    )
    stored(check, bucket, "copy-object", data)


def head_object(s3: Any, check: Any, bucket: str, tmp: Path) -> None:
    check.put_object(Bucket=bucket, Key="head", Body=b"x" * 1000)
    if s3.head_object(Bucket=bucket, Key="head")["ContentLength"] != 1000:
        raise WrongBytes("head_object: wrong ContentLength")


def list_objects_v2(s3: Any, check: Any, bucket: str, tmp: Path) -> None:
    keys = {f"listed/{n}" for n in range(5)}
    for key in keys:
        check.put_object(Bucket=bucket, Key=key, Body=b"")
    pages = s3.get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix="listed/", PaginationConfig={"PageSize": 2}
    )
    seen = {item["Key"] for page in pages for item in page.get("Contents", [])}
    if seen != keys:
        raise WrongBytes("list_objects_v2: the listing is not the bucket's")


def delete_object(s3: Any, check: Any, bucket: str, tmp: Path) -> None:
    check.put_object(Bucket=bucket, Key="delete", Body=b"x")
    s3.delete_object(Bucket=bucket, Key="delete")
    if check.list_objects_v2(Bucket=bucket, Prefix="delete").get("KeyCount"):
        raise WrongBytes("delete_object: the object is still there")


def delete_objects(s3: Any, check: Any, bucket: str, tmp: Path) -> None:
    keys = [f"batch/{n}" for n in range(3)]
    for key in keys:
        check.put_object(Bucket=bucket, Key=key, Body=b"x")
    answer = s3.delete_objects(
        Bucket=bucket, Delete={"Objects": [{"Key": key} for key in keys], "Quiet": True}
    )
    if answer.get("Errors") or check.list_objects_v2(Bucket=bucket, Prefix="batch/").get(
        "KeyCount"
    ):
        raise WrongBytes("delete_objects: objects are still there")


Step = Callable[[Any, Any, str, Path], None]


@dataclass(frozen=True)
class Target:
    """The request of a step that a fault hits: method, key ("" for the bucket), query."""

    method: str
    key: str | None
    query: str | None = None


# The calls of the table, the step that makes each, and the request a fault hits.
STEPS: dict[str, tuple[Step, Target]] = {
    "get_object": (get_object, Target("GET", "get")),
    "put_object": (put_object, Target("PUT", "put")),
    "create_multipart_upload": (multipart, Target("POST", "multipart", "uploads")),
    "upload_part": (multipart, Target("PUT", "multipart", "partNumber")),
    "complete_multipart_upload": (multipart, Target("POST", "multipart", "uploadId")),
    "upload_file": (upload_file, Target("PUT", "upload-file")),
    "upload_fileobj": (upload_fileobj, Target("PUT", "upload-fileobj")),
    "download_file": (download_file, Target("GET", "download-file")),
    "download_fileobj": (download_fileobj, Target("GET", "download-fileobj")),
    "copy": (copy, Target("PUT", "copy")),
    "copy_object": (copy_object, Target("PUT", "copy-object")),
    "head_object": (head_object, Target("HEAD", "head")),
    "list_objects_v2 (paginator)": (list_objects_v2, Target("GET", "", "list-type=2")),
    "delete_object": (delete_object, Target("DELETE", "delete")),
    "delete_objects": (delete_objects, Target("POST", "", "delete")),
}


def run(s3: Any, check: Any, bucket: str) -> None:
    """The whole pipeline, every step once (a step shared by several calls runs once)."""
    steps = list(dict.fromkeys(step for step, _ in STEPS.values()))
    with tempfile.TemporaryDirectory() as tmp:
        for step in steps:
            step(s3, check, bucket, Path(tmp))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--client", choices=("boto3", "object_clerk"), default="object_clerk")
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--ca-bundle")
    args = parser.parse_args()
    s3 = make_client(args.client, args.endpoint, ca_bundle=args.ca_bundle)
    check = make_client("boto3", args.endpoint, ca_bundle=args.ca_bundle)
    bucket = f"pipeline-{uuid.uuid4().hex[:12]}"
    check.create_bucket(Bucket=bucket)
    run(s3, check, bucket)
    print(f"pipeline passed with {args.client}.client against {args.endpoint} (bucket {bucket})")


if __name__ == "__main__":
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    main()
