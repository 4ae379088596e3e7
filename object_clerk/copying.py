"""Verified server-side copies.

Strategy: the destination's ETag must equal the source's. A multipart source is copied part
by part in its own layout (UploadPartCopy), so the server computes each part's digest and
the ETags stay comparable with zero bytes downloaded. Ceph RGW 16 and moto ignore
``CopySourceIfMatch``, so the ETag comparison is also what catches a source that changed
mid-copy.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from object_clerk.engine import (
    PART_SIZE_METADATA,
    Engine,
    TransferResult,
    quoted,
    require_etag,
    result_of,
)
from object_clerk.errors import ChecksumMismatchError, InvalidRequestError, ObjectNotFoundError
from object_clerk.etag import MAX_PART_SIZE, PartLayout, multipart_etag, parse_etag, plan_parts
from object_clerk.runner import run_parts
from object_clerk.verdict import ObjectLayout, Verdict, etag_opacity, judge

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
    """Copy server-side, verified (see :func:`_copy`), under one retry budget."""
    with engine.retrier.scope():
        return _copy(engine, source_bucket, source_key, bucket, key, verify, operation)


def _copy(
    engine: Engine,
    source_bucket: str,
    source_key: str,
    bucket: str,
    key: str,
    verify: bool,
    operation: str,
) -> TransferResult:
    """Copy server-side and prove the destination's ETag equals the source's.

    A multipart source (or one over 5 GiB) is copied part by part in its own layout when
    that layout can be found; each part is retried on its own. Otherwise one CopyObject
    call is made, and the unit "read the source's ETag, copy, compare" is what is retried,
    so a source that changed mid-copy is read again rather than reported as corrupt.

    On Ceph RGW, a source key with ``%`` is never copied with UploadPartCopy: RGW 16
    URL-decodes that request's copy source twice, so it copies another object or, for a
    ``%`` not followed by two hex digits, aborts the radosgw process. One CopyObject copies
    it instead.
    """
    head = engine.head(source_bucket, source_key)
    source_etag = parse_etag(head.get("ETag"))
    size = int(head.get("ContentLength") or 0)
    multipart = source_etag is not None and source_etag.multipart
    if "%" in source_key and _is_rgw(head):
        if size > MAX_PART_SIZE:
            raise InvalidRequestError(
                "a source over 5 GiB whose key contains '%' cannot be copied safely: it needs"
                " UploadPartCopy, which Ceph RGW decodes twice (another object is copied, or"
                " the server crashes); rename the source, or download and upload it",
                operation=operation,
                bucket=source_bucket,
                key=source_key,
            )
    elif size and ((verify and multipart) or size > MAX_PART_SIZE):
        copied = _copy_by_parts(engine, source_bucket, source_key, head, bucket, key, verify=verify)
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
    """One CopyObject call and the verdict on its ETag: one attempt, not retried here."""
    size = int(head.get("ContentLength") or 0)
    source_text = str(head.get("ETag") or "")
    with _source_not_found(source_bucket, source_key):
        response = engine.once(
            "CopyObject",
            bucket,
            key,
            lambda: engine.client.copy_object(
                Bucket=bucket,
                Key=key,
                CopySource={"Bucket": source_bucket, "Key": source_key},
                # Pinned to what we read. Ceph RGW 16 and moto ignore this header, which is
                # why the destination's ETag is compared with this one below.
                CopySourceIfMatch=quoted(source_text.strip('"')),
            ),
        )
    dest_text = require_etag(response.get("CopyObjectResult", {}), "CopyObject", bucket, key)
    verdict = judge(
        verify=verify,
        etag=dest_text,
        computed=_comparable(head, dest_text),
        evidence=[head, response],
        unknown="the store gave the copy a single-part ETag and the source's part layout is"
        " unknown, so the two cannot be compared",
    )
    if not verdict.matched:
        raise verdict.mismatch(
            "the copy's ETag does not match the source's (the source changed, or the copy"
            " was damaged)",
            operation="CopyObject",
            bucket=bucket,
            key=key,
        )
    engine.report(verdict, operation=operation, bucket=bucket, key=key)
    return result_of(bucket, key, dest_text, size, response.get("VersionId"), verdict)


# Ceph RGW's request ids: "tx" + hex, "-" + hex timestamp, "-" + hex, "-" + zone group.
_RGW_REQUEST_ID = re.compile(r"tx[0-9a-f]+-[0-9a-f]+-[0-9a-f]+-")


def _is_rgw(head: dict[str, Any]) -> bool:
    """Whether a HeadObject answer came from Ceph RGW: it sends ``x-rgw-object-type``, and
    its request ids have their own shape."""
    headers = head.get("ResponseMetadata", {}).get("HTTPHeaders", {})
    request_id = str(headers.get("x-amz-request-id", ""))
    return "x-rgw-object-type" in headers or bool(_RGW_REQUEST_ID.match(request_id))


def _comparable(head: dict[str, Any], dest_text: str) -> list[str]:
    """What a one-call copy's ETag should be: the source's, when the two measure the same
    thing. A store that recomputes a single-part ETag for a multipart source (AWS, moto)
    makes them incomparable; so does a source ETag that is not an MD5."""
    source, dest = parse_etag(head.get("ETag")), parse_etag(dest_text)
    if source is None or (dest is not None and source.multipart and not dest.multipart):
        return []
    return [str(source)]


def _copy_by_parts(
    engine: Engine,
    source_bucket: str,
    source_key: str,
    head: dict[str, Any],
    bucket: str,
    key: str,
    *,
    verify: bool,
) -> TransferResult | None:
    """Copy part by part in the source's layout, so the copy's ETag equals the source's.

    Each candidate layout is tried in turn (only one when the layout is known): the
    server's digests of the copied ranges must reproduce the source's ETag before the
    upload is completed. Returns None when no candidate does and the object fits in one
    CopyObject call. An object over 5 GiB is otherwise copied in the first candidate layout
    (or, when its ETag proves nothing, in the layout an upload would get) and reported
    unverifiable.
    """
    size = int(head.get("ContentLength") or 0)
    layout = engine.discover_layout(source_bucket, source_key, head)
    if not isinstance(layout, ObjectLayout):
        if size <= MAX_PART_SIZE:
            return None  # one CopyObject call, whose verdict says why it is unverifiable
        settings = engine.transfer
        planned = plan_parts(size, settings.multipart_threshold, settings.upload_chunksize)
        return _copy_in_layout(
            engine, source_bucket, source_key, head, None, planned.part_size, bucket, key,
            verify=verify,
        )  # fmt: skip
    candidates = layout.part_sizes
    if not layout.authoritative:
        candidates = candidates[:_COPY_CANDIDATES]
    if not verify:
        candidates = candidates[:1]
    for part_size in candidates:
        copied = _copy_in_layout(
            engine, source_bucket, source_key, head, layout, part_size, bucket, key,
            verify=verify,
        )  # fmt: skip
        if copied is not None:
            return copied
    if size <= MAX_PART_SIZE:
        return None
    copied = _copy_in_layout(
        engine, source_bucket, source_key, head, None, candidates[0], bucket, key,
        verify=verify,
        unknown="no candidate part layout reproduces the source's ETag",
    )  # fmt: skip
    assert copied is not None
    return copied


def _copy_in_layout(
    engine: Engine,
    source_bucket: str,
    source_key: str,
    head: dict[str, Any],
    layout: ObjectLayout | None,
    part_size: int,
    bucket: str,
    key: str,
    *,
    verify: bool,
    unknown: str = "",
) -> TransferResult | None:
    """One part-by-part copy. ``layout`` is the source's layout this part size is checked
    against before completing (None: nothing to check against). Returns None, with the
    upload aborted, when a guessed layout does not reproduce the source's ETag."""
    size = int(head.get("ContentLength") or 0)
    create_args: dict[str, Any] = {h: head[h] for h in _COPIED_HEADERS if head.get(h)}
    create_args["Metadata"] = {
        **(head.get("Metadata") or {}),
        PART_SIZE_METADATA: str(part_size),
    }
    upload_id = engine.create_upload(bucket, key, create_args)
    try:
        parts = run_parts(
            _part_copy_jobs(
                engine, source_bucket, source_key, str(head["ETag"]), size, part_size,
                bucket, key, upload_id,
            ),
            concurrency=max(1, engine.transfer.upload_concurrency),
            name="object-clerk-copy",
        )  # fmt: skip
        digests = [digest for _, _, digest in parts]
        combined = multipart_etag(digests) if all(digests) else None
        if verify and layout is not None and combined is not None:
            candidate = _candidate_verdict(layout, combined)
            if not candidate.matched:
                raise candidate.mismatch(
                    "the copied parts do not reproduce the source's ETag (did the source"
                    " change during the copy?)",
                    operation="UploadPartCopy",
                    bucket=bucket,
                    key=key,
                )
            if candidate.kind == "unverifiable":  # a guessed layout that is not the one
                engine.abort(bucket, key, upload_id)
                return None
        response = engine.complete_upload(bucket, key, upload_id, parts, combined or "")
    except BaseException:
        engine.abort(bucket, key, upload_id)
        raise
    return engine.check_completed(
        bucket,
        key,
        response,
        computed=combined if layout is not None else None,
        size=size,
        evidence=[head],
        verify=verify,
        content_md5=False,
        unknown=unknown or "the store's part ETags are not MD5s, so the copy cannot be compared",
        operation="copy_object",
    )


def _candidate_verdict(layout: ObjectLayout, combined: str) -> Verdict:
    return judge(
        verify=True, etag=str(layout.etag), computed=[combined], authoritative=layout.authoritative
    )


def _part_copy_jobs(
    engine: Engine,
    source_bucket: str,
    source_key: str,
    source_etag: str,
    size: int,
    part_size: int,
    bucket: str,
    key: str,
    upload_id: str,
) -> Iterator[Callable[[], tuple[int, str, bytes]]]:
    """One UploadPartCopy job per part, each retried on its own. A part whose ETag is not
    an MD5 gets an empty digest."""

    def copy_part(number: int, offset: int, length: int) -> tuple[int, str, bytes]:
        def attempt() -> tuple[int, str, bytes]:
            with _source_not_found(source_bucket, source_key):
                response = engine.once(
                    "UploadPartCopy",
                    bucket,
                    key,
                    lambda: engine.client.upload_part_copy(
                        Bucket=bucket,
                        Key=key,
                        UploadId=upload_id,
                        PartNumber=number,
                        CopySource={"Bucket": source_bucket, "Key": source_key},
                        CopySourceRange=f"bytes={offset}-{offset + length - 1}",
                        CopySourceIfMatch=source_etag,
                    ),
                )
            etag = require_etag(response["CopyPartResult"], "UploadPartCopy", bucket, key)
            parsed = parse_etag(etag)
            if parsed is None or parsed.multipart or etag_opacity([response]) is not None:
                return number, etag, b""  # not the MD5 of the part (an encrypting bucket)
            return number, etag, bytes.fromhex(parsed.hexdigest)

        return engine.call("UploadPartCopy", bucket, key, attempt)

    for number, offset, length in PartLayout(size, part_size).parts():
        yield functools.partial(copy_part, number, offset, length)


@contextmanager
def _source_not_found(source_bucket: str, source_key: str) -> Iterator[None]:
    """S3's NoSuchKey answer to a copy is about the source: say so, naming the source."""
    try:
        yield
    except ObjectNotFoundError as exc:
        if exc.code != "NoSuchKey":
            raise
        raise ObjectNotFoundError(
            "the copy's source does not exist",
            operation=exc.operation,
            bucket=source_bucket,
            key=source_key,
            code=exc.code,
            status=exc.status,
            request_id=exc.request_id,
        ) from exc
