"""Verified server-side copies.

Strategy: the destination's ETag must equal the source's. A multipart source is copied part
by part in its own layout (UploadPartCopy), so the server computes each part's digest and
the ETags stay comparable with zero bytes downloaded. Ceph RGW 16 and moto ignore
``CopySourceIfMatch``, so the ETag comparison is also what catches a source that changed
mid-copy.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

from botocore.exceptions import ClientError

from object_clerk.engine import (
    OPAQUE_SSE,
    PART_SIZE_METADATA,
    Engine,
    ObjectLayout,
    TransferResult,
    opaque_etag_reason,
    quoted,
    require_etag,
)
from object_clerk.errors import (
    ChecksumMismatchError,
    InvalidRequestError,
    ObjectNotFoundError,
)
from object_clerk.etag import (
    MAX_PART_SIZE,
    PartLayout,
    multipart_etag,
    parse_etag,
)

__all__ = ["copy"]

logger = logging.getLogger("object_clerk")

# How many candidate layouts a copy of an unknown-layout source may try server-side.
_COPY_CANDIDATES = 4
# Headers CopyObject would carry over with MetadataDirective=COPY; a part-by-part copy must
# set them on the new upload itself.
_COPIED_HEADERS = (
    "CacheControl",
    "ContentDisposition",
    "ContentEncoding",
    "ContentLanguage",
    "ContentType",
    "Expires",
    "WebsiteRedirectLocation",
)


def copy(
    engine: Engine,
    source_bucket: str,
    source_key: str,
    bucket: str,
    key: str,
    *,
    verify: bool,
    operation: str = "copy_object",
) -> TransferResult:
    """Copy server-side and prove the destination's ETag equals the source's.

    A multipart source (or one over 5 GiB) is copied part by part in its own layout when
    that layout can be found; each part is retried on its own. Otherwise one CopyObject
    call is made, and the unit "read the source's ETag, copy, compare" is what is retried,
    so a source that changed mid-copy is read again rather than reported as corrupt.
    """
    head = engine.head(source_bucket, source_key)
    source_etag = parse_etag(head.get("ETag"))
    size = int(head.get("ContentLength") or 0)
    multipart = source_etag is not None and source_etag.multipart
    if size and ((verify and multipart) or size > MAX_PART_SIZE):
        layout = engine.discover_layout(source_bucket, source_key, head)
        if isinstance(layout, ObjectLayout):
            try:
                copied = _copy_by_parts(
                    engine, source_bucket, source_key, head, layout, bucket, key, verify=verify
                )
            except (ObjectNotFoundError, ChecksumMismatchError) as exc:
                # Ceph RGW 16 URL-decodes UploadPartCopy's copy source twice: a key with '%'
                # is not found, or another object is copied (caught by the ETag check, with
                # nothing completed). CopyObject decodes it once; fall back to it.
                if "%" not in source_key or size > MAX_PART_SIZE:
                    raise
                logger.warning("part copy of a key with '%%' failed (%s); using CopyObject", exc)
                copied = None
            if copied is not None:
                return copied
    heads = [dict(head)]
    stored_mismatch = False

    def attempt() -> TransferResult:
        nonlocal stored_mismatch
        current = heads.pop() if heads else engine.head(source_bucket, source_key, nested=True)
        try:
            return _copy_whole(
                engine, source_bucket, source_key, current, bucket, key, verify, operation
            )
        except ChecksumMismatchError:
            stored_mismatch = True
            raise

    try:
        return engine.call("CopyObject", bucket, key, attempt)
    except ChecksumMismatchError:
        if stored_mismatch:
            engine.remove_corrupted(bucket, key)
        raise


def _copy_whole(
    engine: Engine,
    source_bucket: str,
    source_key: str,
    head: dict[str, Any],
    bucket: str,
    key: str,
    verify: bool,
    operation: str,
) -> TransferResult:
    """One CopyObject call and the comparison of its ETag: one attempt, not retried here."""
    size = int(head.get("ContentLength") or 0)
    if size > MAX_PART_SIZE:
        raise InvalidRequestError(
            f"cannot copy {size} bytes in one CopyObject call and the source's part layout"
            " is unknown",
            operation=operation,
            bucket=source_bucket,
            key=source_key,
        )
    source_text = str(head.get("ETag") or "")
    with _source_not_found(source_bucket, source_key):
        response = engine.client.copy_object(
            Bucket=bucket,
            Key=key,
            CopySource={"Bucket": source_bucket, "Key": source_key},
            # Pinned to what we read. Ceph RGW 16 and moto ignore this header, which is why
            # the destination's ETag is compared with this one below.
            CopySourceIfMatch=quoted(source_text.strip('"')),
        )
    dest_text = require_etag(response.get("CopyObjectResult", {}), "CopyObject", bucket, key)
    dest_text = dest_text.strip('"')
    version_id = response.get("VersionId")
    if not verify:
        return TransferResult(bucket, key, dest_text, size, version_id, "skipped")
    reason = opaque_etag_reason(head)
    if reason is None and (
        parse_etag(dest_text) is None or response.get("ServerSideEncryption") in OPAQUE_SSE
    ):
        reason = "the destination's ETag is not an MD5 (encrypted by the bucket's default?)"
    if reason is not None:
        engine.unverifiable(reason, operation=operation, bucket=bucket, key=key)
        return TransferResult(bucket, key, dest_text, size, version_id, "unverifiable")
    source, dest = parse_etag(source_text), parse_etag(dest_text)
    assert source is not None and dest is not None
    if dest == source:
        kind = "multipart-md5" if source.multipart else "md5"
        return TransferResult(bucket, key, dest_text, size, version_id, kind)
    if source.multipart and not dest.multipart:
        # The store recomputed a single-part ETag (AWS, moto) for a source whose layout we
        # could not find: the two ETags measure different things.
        engine.unverifiable(
            "the store gave the copy a single-part ETag and the source's part layout is"
            " unknown, so the two cannot be compared",
            operation=operation,
            bucket=bucket,
            key=key,
        )
        return TransferResult(bucket, key, dest_text, size, version_id, "unverifiable")
    raise ChecksumMismatchError(
        "the copy's ETag does not match the source's (the source changed, or the copy was damaged)",
        expected=str(source),
        actual=str(dest),
        algorithm="multipart-md5" if source.multipart else "md5",
        operation="CopyObject",
        bucket=bucket,
        key=key,
    )


def _copy_by_parts(
    engine: Engine,
    source_bucket: str,
    source_key: str,
    head: dict[str, Any],
    layout: ObjectLayout,
    bucket: str,
    key: str,
    *,
    verify: bool,
) -> TransferResult | None:
    """Copy part by part in the source's layout, so the copy's ETag equals the source's.

    Each candidate layout is tried in turn (only one when the layout is known): the
    server's digests of the copied ranges must reproduce the source's ETag before the
    upload is completed. Returns None when no candidate does and the object fits in one
    CopyObject call; an object over 5 GiB is then copied in the first candidate layout
    and reported unverifiable.
    """
    candidates = layout.part_sizes
    if not layout.authoritative:
        candidates = candidates[:_COPY_CANDIDATES]
    if not verify:
        candidates = candidates[:1]
    for part_size in candidates:
        copied = _copy_in_layout(
            engine, source_bucket, source_key, head, layout, part_size, bucket, key, verify
        )
        if copied is not None:
            return copied
    if layout.size <= MAX_PART_SIZE:
        return None
    engine.unverifiable(
        "no candidate part layout reproduces the source's ETag",
        operation="copy_object",
        bucket=bucket,
        key=key,
    )
    copied = _copy_in_layout(
        engine, source_bucket, source_key, head, layout, candidates[0], bucket, key, False
    )
    assert copied is not None
    return dataclasses.replace(copied, verification="unverifiable")


def _copy_in_layout(
    engine: Engine,
    source_bucket: str,
    source_key: str,
    head: dict[str, Any],
    layout: ObjectLayout,
    part_size: int,
    bucket: str,
    key: str,
    verify: bool,
) -> TransferResult | None:
    """One part-by-part copy. None (upload aborted) when a guessed layout does not match."""
    create_args: dict[str, Any] = {h: head[h] for h in _COPIED_HEADERS if head.get(h)}
    create_args["Metadata"] = {
        **(head.get("Metadata") or {}),
        PART_SIZE_METADATA: str(part_size),
    }
    upload_id = engine.create_upload(bucket, key, create_args)
    try:
        parts = _copy_parts(
            engine, source_bucket, source_key, str(head["ETag"]), layout.size, part_size,
            bucket, key, upload_id,
        )  # fmt: skip
        digests = [digest for _, _, digest in parts]
        combined = multipart_etag(digests) if all(digests) else None
        if verify and combined is not None and combined != str(layout.etag):
            # The server's own digests of these ranges do not reproduce the source's ETag.
            if layout.authoritative:
                raise ChecksumMismatchError(
                    "the copied parts do not reproduce the source's ETag (did the source"
                    " change during the copy?)",
                    expected=str(layout.etag),
                    actual=combined,
                    algorithm="multipart-md5",
                    operation="UploadPartCopy",
                    bucket=bucket,
                    key=key,
                )
            engine.abort(bucket, key, upload_id)
            return None
        response = engine.complete_upload(bucket, key, upload_id, parts, combined or "")
    except BaseException:
        engine.abort(bucket, key, upload_id)
        raise
    if verify and combined is None:
        engine.unverifiable(
            "the store's part ETags are not MD5s (is the bucket encrypted with SSE-KMS?)",
            operation="copy_object",
            bucket=bucket,
            key=key,
        )
        copied = engine.check_completed(
            bucket, key, response, "", layout.size, {}, False, "multipart-md5"
        )
        return dataclasses.replace(copied, verification="unverifiable")
    return engine.check_completed(
        bucket, key, response, combined or "", layout.size, {}, verify, "multipart-md5"
    )


def _copy_parts(
    engine: Engine,
    source_bucket: str,
    source_key: str,
    source_etag: str,
    size: int,
    part_size: int,
    bucket: str,
    key: str,
    upload_id: str,
) -> list[tuple[int, str, bytes]]:
    """UploadPartCopy every part, in parallel, each retried on its own. A part whose
    ETag is not an MD5 gets an empty digest."""

    def copy_part(number: int, offset: int, length: int) -> tuple[int, str, bytes]:
        def attempt() -> tuple[int, str, bytes]:
            with _source_not_found(source_bucket, source_key):
                response = engine.client.upload_part_copy(
                    Bucket=bucket,
                    Key=key,
                    UploadId=upload_id,
                    PartNumber=number,
                    CopySource={"Bucket": source_bucket, "Key": source_key},
                    CopySourceRange=f"bytes={offset}-{offset + length - 1}",
                    CopySourceIfMatch=source_etag,
                )
            etag = require_etag(response["CopyPartResult"], "UploadPartCopy", bucket, key)
            parsed = parse_etag(etag)
            if parsed is None or parsed.multipart:
                return number, etag, b""
            return number, etag, bytes.fromhex(parsed.hexdigest)

        return engine.call("UploadPartCopy", bucket, key, attempt)

    layout = PartLayout(size, part_size)
    concurrency = max(1, engine.transfer.upload_concurrency)
    with ThreadPoolExecutor(concurrency, thread_name_prefix="object-clerk-copy") as pool:
        futures = [pool.submit(copy_part, *part) for part in layout.parts()]
        return [future.result() for future in futures]


@contextmanager
def _source_not_found(source_bucket: str, source_key: str) -> Iterator[None]:
    """S3's NoSuchKey answer to a copy is about the source: say so, naming the source."""
    try:
        yield
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "NoSuchKey":
            raise
        raise ObjectNotFoundError(
            "the copy's source does not exist",
            operation="CopyObject",
            bucket=source_bucket,
            key=source_key,
            code="NoSuchKey",
            status=exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode"),
            request_id=exc.response.get("ResponseMetadata", {}).get("RequestId"),
        ) from exc
