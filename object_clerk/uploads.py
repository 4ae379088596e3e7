"""Verified uploads.

Strategy: each part is read into memory once, hashed, and sent with its Content-MD5, so the
server refuses damaged bytes (Ceph, AWS) and a retry resends exactly the same bytes. Memory
is bounded by ``max_concurrency x part size`` for a multipart upload, and by the
threshold for a single-part one (the Content-MD5 must be known before the body is sent). The
expected ETag is built from the part digests already computed: no second pass over the data.
"""

from __future__ import annotations

import hashlib
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from typing import Any

from object_clerk.engine import (
    PART_SIZE_METADATA,
    Engine,
    TransferResult,
    b64,
    opaque_put,
    require_etag,
)
from object_clerk.errors import (
    ChecksumMismatchError,
    InvalidRequestError,
)
from object_clerk.etag import (
    MAX_PARTS,
    adjust_chunksize,
    multipart_etag,
    parse_etag,
    plan_parts,
)
from object_clerk.sources import Source, open_source

__all__ = ["upload"]

# Upload arguments that every UploadPart must repeat.
_PART_ARGS = {
    "SSECustomerAlgorithm",
    "SSECustomerKey",
    "SSECustomerKeyMD5",
    "RequestPayer",
    "ExpectedBucketOwner",
}


def upload(
    engine: Engine,
    data: object,
    bucket: str,
    key: str,
    *,
    extra_args: dict[str, Any],
    verify: bool,
) -> TransferResult:
    with ExitStack() as stack:
        source = open_source(data, stack, bucket=bucket, key=key)
        threshold = engine.transfer.multipart_threshold
        if source.size is not None:
            layout = plan_parts(source.size, threshold, engine.transfer.upload_chunksize)
            if not layout.multipart:
                return _put(
                    engine, source.read_exactly(source.size), bucket, key, extra_args, verify
                )
            return _multipart_upload(
                engine, source, layout.part_size, bucket, key, extra_args, verify
            )
        # A stream of unknown size: read up to the threshold to decide.
        head = source.read_exactly(threshold)
        if len(head) < threshold:
            return _put(engine, head, bucket, key, extra_args, verify)
        source.unread(head)
        part_size = adjust_chunksize(engine.transfer.upload_chunksize)
        return _multipart_upload(engine, source, part_size, bucket, key, extra_args, verify)


def _put(
    engine: Engine, body: bytes, bucket: str, key: str, extra_args: dict[str, Any], verify: bool
) -> TransferResult:
    params: dict[str, Any] = {"Bucket": bucket, "Key": key, "Body": body, **extra_args}
    expected = ""
    if verify:
        digest = hashlib.md5(body, usedforsecurity=False)
        expected = digest.hexdigest()
        params["ContentMD5"] = b64(digest.digest())
    stored_mismatch = False

    def attempt() -> dict[str, Any]:
        nonlocal stored_mismatch
        response: dict[str, Any] = dict(engine.client.put_object(**params))
        require_etag(response, "PutObject", bucket, key)
        stored_mismatch = False
        if verify:
            etag = parse_etag(response.get("ETag"))
            if etag is not None and not opaque_put(response, extra_args) and str(etag) != expected:
                stored_mismatch = True
                raise ChecksumMismatchError(
                    "the stored object's ETag does not match the bytes sent",
                    expected=expected,
                    actual=str(etag),
                    algorithm="md5",
                    operation="PutObject",
                    bucket=bucket,
                    key=key,
                )
        return response

    try:
        response = engine.call("PutObject", bucket, key, attempt)
    except ChecksumMismatchError:
        if stored_mismatch:
            engine.remove_corrupted(bucket, key)
        raise
    etag = str(response.get("ETag", "")).strip('"')
    if not verify:
        verification = "skipped"
    elif parse_etag(etag) is None or opaque_put(response, extra_args):
        verification = "content-md5"
    else:
        verification = "md5"
    return TransferResult(bucket, key, etag, len(body), response.get("VersionId"), verification)


def _multipart_upload(
    engine: Engine,
    source: Source,
    part_size: int,
    bucket: str,
    key: str,
    extra_args: dict[str, Any],
    verify: bool,
) -> TransferResult:
    create_args = dict(extra_args)
    create_args["Metadata"] = {
        **(extra_args.get("Metadata") or {}),
        PART_SIZE_METADATA: str(part_size),
    }
    part_args = {k: v for k, v in extra_args.items() if k in _PART_ARGS}
    upload_id = engine.create_upload(bucket, key, create_args)
    try:
        parts, total = _upload_parts(
            engine, source, part_size, bucket, key, upload_id, part_args, verify
        )
        expected = multipart_etag(digest for _, _, digest in parts)
        response = engine.complete_upload(bucket, key, upload_id, parts, expected)
    except BaseException:
        engine.abort(bucket, key, upload_id)
        raise
    return engine.check_completed(
        bucket, key, response, expected, total, extra_args, verify, "multipart-md5"
    )


def _upload_parts(
    engine: Engine,
    source: Source,
    part_size: int,
    bucket: str,
    key: str,
    upload_id: str,
    part_args: dict[str, Any],
    verify: bool,
) -> tuple[list[tuple[int, str, bytes]], int]:
    concurrency = max(1, engine.transfer.upload_concurrency)
    # One slot per part held in memory, taken before the part is read and given back when
    # it is sent: at most `concurrency` parts exist at once, read or in flight.
    slots = threading.BoundedSemaphore(concurrency)
    futures: list[Future[tuple[int, str, bytes]]] = []
    total = 0
    failed = threading.Event()

    def send(number: int, body: bytes) -> tuple[int, str, bytes]:
        try:
            return _upload_part(engine, bucket, key, upload_id, number, body, part_args, verify)
        except BaseException:
            failed.set()
            raise
        finally:
            slots.release()

    with ThreadPoolExecutor(concurrency, thread_name_prefix="object-clerk-upload") as pool:
        number = 0
        while not failed.is_set():
            slots.acquire()
            body = source.read_exactly(part_size)
            if not body and number > 0:
                slots.release()
                break
            number += 1
            if number > MAX_PARTS:
                slots.release()
                raise InvalidRequestError(
                    f"the stream needs more than {MAX_PARTS} parts of {part_size} bytes:"
                    " raise multipart_chunksize in S3_UPLOAD_CONFIG",
                    operation="upload_object",
                    bucket=bucket,
                    key=key,
                )
            total += len(body)
            futures.append(pool.submit(send, number, body))
            del body
            if source.size is not None and total >= source.size:
                break
        results = [future.result() for future in futures]
    return results, total


def _upload_part(
    engine: Engine,
    bucket: str,
    key: str,
    upload_id: str,
    number: int,
    body: bytes,
    part_args: dict[str, Any],
    verify: bool,
) -> tuple[int, str, bytes]:
    digest = hashlib.md5(body, usedforsecurity=False).digest()
    params: dict[str, Any] = {
        "Bucket": bucket,
        "Key": key,
        "UploadId": upload_id,
        "PartNumber": number,
        "Body": body,
        **part_args,
    }
    if verify:
        params["ContentMD5"] = b64(digest)

    def attempt() -> str:
        etag = require_etag(engine.client.upload_part(**params), "UploadPart", bucket, key)
        parsed = parse_etag(etag)
        if (
            verify
            and parsed is not None
            and parsed.hexdigest != digest.hex()
            and "SSECustomerKey" not in part_args
        ):
            raise ChecksumMismatchError(
                f"part {number}'s ETag does not match the bytes sent",
                expected=digest.hex(),
                actual=str(parsed),
                algorithm="md5",
                operation="UploadPart",
                bucket=bucket,
                key=key,
            )
        return etag

    etag = engine.call("UploadPart", bucket, key, attempt)
    return number, etag, digest
