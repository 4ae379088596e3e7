"""Type-checked by ``mypy --strict`` in CI (``.ci/run``), never run: a hardened client is
accepted wherever boto3-stubs' ``S3Client`` is expected, and keeps its precise types."""

from __future__ import annotations

import boto3
from mypy_boto3_s3.client import S3Client
from mypy_boto3_s3.type_defs import GetObjectOutputTypeDef
from typing_extensions import assert_type

import object_clerk


def read(s3: S3Client, bucket: str, key: str) -> bytes:
    response: GetObjectOutputTypeDef = s3.get_object(Bucket=bucket, Key=key)
    verdict: object_clerk.CallVerification | None = object_clerk.verification_of(response)
    assert verdict in (None, "md5", "multipart-md5", "content-md5", "unverifiable", "pending")
    return response["Body"].read()


def pipeline() -> None:
    # assert_type fails on Any too: the types are S3Client itself, not merely compatible.
    made = assert_type(object_clerk.client("s3", region_name="us-east-1"), S3Client)
    read(made, "bucket", "key")
    read(assert_type(object_clerk.harden(boto3.client("s3")), S3Client), "bucket", "key")
    read(assert_type(object_clerk.ObjectClerk().s3, S3Client), "bucket", "key")
