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
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from object_clerk.engine import (
    ANSWER,
    PART_SIZE_METADATA,
    Engine,
    TransferResult,
    quoted,
    require_etag,
    result_of,
)
from object_clerk.errors import (
    ChecksumMismatchError,
    InvalidRequestError,
    ObjectNotFoundError,
    PreconditionFailedError,
)
from object_clerk.etag import MAX_PART_SIZE, PartLayout, multipart_etag, parse_etag, plan_parts
from object_clerk.retry import is_retryable
from object_clerk.runner import Progress, run_parts
from object_clerk.verdict import ObjectLayout, Verdict, etag_opacity, judge

__all__ = ["copy", "copy_object_call", "parse_copy_source"]

logger = logging.getLogger("object_clerk")

# How many candidate layouts a copy of an unknown-layout source may try server-side.
_COPY_CANDIDATES = 4
# Copy arguments that only a CopyObject call takes: a part-by-part copy leaves them out of
# CreateMultipartUpload (the directives are applied by choosing what the upload gets).
_NOT_FOR_UPLOAD = frozenset(
    {
        "MetadataDirective",
        "TaggingDirective",
        "CopySourceSSECustomerAlgorithm",
        "CopySourceSSECustomerKey",
        "CopySourceSSECustomerKeyMD5",
        "ExpectedSourceBucketOwner",
    }
)
# What every UploadPartCopy repeats.
_PART_COPY_ARGS = frozenset(
    {
        "CopySourceSSECustomerAlgorithm",
        "CopySourceSSECustomerKey",
        "CopySourceSSECustomerKeyMD5",
        "SSECustomerAlgorithm",
        "SSECustomerKey",
        "SSECustomerKeyMD5",
        "RequestPayer",
        "ExpectedBucketOwner",
        "ExpectedSourceBucketOwner",
    }
)
# Nothing here goes to CopyObject itself: the clerk builds its source and pin.
_NOT_FOR_COPY_OBJECT = frozenset({"CopySource", "CopySourceIfMatch"})
# Conditions the clerk sets itself, and flexible checksums, which it does not send.
_REFUSED_COPY_ARGS = frozenset(
    {
        "CopySourceIfMatch",
        "CopySourceIfNoneMatch",
        "CopySourceIfModifiedSince",
        "CopySourceIfUnmodifiedSince",
        "ChecksumAlgorithm",
    }
)
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
    extra_args: Mapping[str, Any] = {},
    source_version: str | None = None,
    progress: Progress | None = None,
) -> TransferResult:
    """Copy server-side, verified (see :func:`_copy`), under one retry budget.

    ``extra_args``: CopyObject arguments with boto3's names (boto3's ``copy`` ExtraArgs):
    they go to CopyObject, or, for a part-by-part copy, to CreateMultipartUpload and
    UploadPartCopy. ``source_version``: the source's VersionId. ``progress`` is told the
    bytes copied.
    """
    source = _Source(source_bucket, source_key, source_version, dict(extra_args))
    with engine.retrier.scope():
        return _copy(engine, source, bucket, key, verify, operation, progress or Progress(None))


@dataclass(frozen=True)
class _Source:
    """A copy's source, and the copy's arguments (boto3's names)."""

    bucket: str
    key: str
    version: str | None
    args: dict[str, Any]

    def copy_source(self) -> Any:
        spec = {"Bucket": self.bucket, "Key": self.key}
        if self.version:
            spec["VersionId"] = self.version
        return spec

    def head_args(self) -> dict[str, Any]:
        """What a HeadObject of the source repeats: its version, its SSE-C key, the payer."""
        args: dict[str, Any] = {
            name[len("CopySource") :]: value
            for name, value in self.args.items()
            if name.startswith("CopySourceSSECustomer")
        }
        if self.version:
            args["VersionId"] = self.version
        if "RequestPayer" in self.args:
            args["RequestPayer"] = self.args["RequestPayer"]
        if "ExpectedSourceBucketOwner" in self.args:
            args["ExpectedBucketOwner"] = self.args["ExpectedSourceBucketOwner"]
        return args

    def head(self, engine: Engine, *, nested: bool = False) -> dict[str, Any]:
        return engine.head(self.bucket, self.key, nested=nested, args=self.head_args())


def copy_object_call(engine: Engine, params: Mapping[str, Any]) -> tuple[dict[str, Any], Verdict]:
    """A boto3 ``copy_object`` call, verified: the source is read (HeadObject: its ETag
    and encryption), the copy pinned to that ETag unless the caller set conditions of
    their own, and the destination's ETag compared with it. Returns CopyObject's response
    and the verdict. A 412 is retried only when it answers the clerk's own pin."""
    bucket, key = str(params["Bucket"]), str(params["Key"])
    source_bucket, source_key, version = parse_copy_source(params["CopySource"])
    args = {name: value for name, value in params.items() if name.startswith("CopySourceSSE")}
    for name in ("RequestPayer", "ExpectedSourceBucketOwner"):
        if name in params:
            args[name] = params[name]
    source = _Source(source_bucket, source_key, version, args)
    conditional = bool(_CALLER_CONDITIONS & set(params))

    def build(head: dict[str, Any]) -> dict[str, Any]:
        if conditional:
            return dict(params)  # the caller's conditions govern the copy
        return {**params, "CopySourceIfMatch": quoted(_etag_of(head))}

    with engine.retrier.scope():
        return _copy_retried(
            engine,
            source,
            bucket,
            key,
            lambda: source.head(engine, nested=True),
            build,
            verify=True,
            operation="CopyObject",
            pinned_by_us=not conditional,
        )


# Conditions a copy_object caller may set: with any of them, the clerk adds no pin.
_CALLER_CONDITIONS = frozenset(
    {
        "CopySourceIfMatch",
        "CopySourceIfNoneMatch",
        "CopySourceIfModifiedSince",
        "CopySourceIfUnmodifiedSince",
        "IfMatch",
        "IfNoneMatch",
    }
)


def parse_copy_source(spec: object) -> tuple[str, str, str | None]:
    """boto3's CopySource: ``{"Bucket", "Key", "VersionId"?}`` or ``"bucket/key"`` with an
    optional ``?versionId=``."""
    if isinstance(spec, Mapping):
        return str(spec["Bucket"]), str(spec["Key"]), spec.get("VersionId")
    if isinstance(spec, str) and "/" in spec.lstrip("/"):
        bucket, _, rest = spec.lstrip("/").partition("/")
        key, marker, version = rest.partition("?versionId=")
        return bucket, key, version if marker else None
    raise InvalidRequestError(
        f"CopySource must be a dict with Bucket and Key, or 'bucket/key', not {spec!r}",
        operation="CopyObject",
    )


def _etag_of(head: Mapping[str, Any]) -> str:
    return str(head.get("ETag") or "").strip('"')


def _copy(
    engine: Engine,
    source: _Source,
    bucket: str,
    key: str,
    verify: bool,
    operation: str,
    progress: Progress,
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
    refused = sorted(set(source.args) & _REFUSED_COPY_ARGS)
    if refused:
        raise InvalidRequestError(
            f"copy arguments {refused} are not supported: object_clerk pins the copy to the"
            " source's ETag itself, and sends no flexible checksums",
            operation=operation,
            bucket=bucket,
            key=key,
        )
    head = source.head(engine)
    source_etag = parse_etag(head.get("ETag"))
    size = int(head.get("ContentLength") or 0)
    multipart = source_etag is not None and source_etag.multipart
    if "%" in source.key and _is_rgw(head):
        if size > MAX_PART_SIZE:
            raise InvalidRequestError(
                "a source over 5 GiB whose key contains '%' cannot be copied safely: it needs"
                " UploadPartCopy, which Ceph RGW decodes twice (another object is copied, or"
                " the server crashes); rename the source, or download and upload it",
                operation=operation,
                bucket=source.bucket,
                key=source.key,
            )
    elif size and ((verify and multipart) or size > MAX_PART_SIZE):
        copied = _copy_by_parts(engine, source, head, bucket, key, verify, progress)
        if copied is not None:
            return copied
    heads = [dict(head)]
    response, verdict = _copy_retried(
        engine,
        source,
        bucket,
        key,
        lambda: heads.pop() if heads else source.head(engine, nested=True),
        lambda current: {
            **{k: v for k, v in source.args.items() if k not in _NOT_FOR_COPY_OBJECT},
            "Bucket": bucket,
            "Key": key,
            "CopySource": source.copy_source(),
            # Pinned to what we read. Ceph RGW 16 and moto ignore this header, which is
            # why the destination's ETag is compared with it too.
            "CopySourceIfMatch": quoted(_etag_of(current)),
        },
        verify=verify,
        operation=operation,
        pinned_by_us=True,
    )
    progress.add(size)
    dest_text = str(response["CopyObjectResult"]["ETag"])
    return result_of(bucket, key, dest_text, size, response.get("VersionId"), verdict)


def _copy_retried(
    engine: Engine,
    source: _Source,
    bucket: str,
    key: str,
    read_head: Callable[[], dict[str, Any]],
    build: Callable[[dict[str, Any]], dict[str, Any]],
    *,
    verify: bool,
    operation: str,
    pinned_by_us: bool,
) -> tuple[dict[str, Any], Verdict]:
    """The retried unit of a one-call copy: read the source's ETag, CopyObject pinned to
    it, compare. A 412 to a pin the caller did not ask for means the source changed in
    between: it is read again. A copy that keeps failing its comparison is removed."""
    stored_mismatch = False

    def attempt() -> tuple[dict[str, Any], Verdict]:
        nonlocal stored_mismatch
        head = read_head()
        try:
            return _copy_whole(engine, source, head, build(head), verify, operation)
        except ChecksumMismatchError:
            stored_mismatch = True
            raise

    def retryable(exc: BaseException) -> bool:
        return is_retryable(exc) or (pinned_by_us and isinstance(exc, PreconditionFailedError))

    try:
        return engine.call("CopyObject", bucket, key, attempt, retryable=retryable)
    except ChecksumMismatchError:
        if stored_mismatch:
            engine.remove_corrupted(bucket, key, args=source.args)
        raise


def _copy_whole(
    engine: Engine,
    source: _Source,
    head: dict[str, Any],
    params: dict[str, Any],
    verify: bool,
    operation: str,
) -> tuple[dict[str, Any], Verdict]:
    """One CopyObject call and the verdict on its ETag: one attempt, not retried here."""
    bucket, key = str(params["Bucket"]), str(params["Key"])
    with _source_not_found(source.bucket, source.key):
        response: dict[str, Any] = dict(
            engine.once("CopyObject", bucket, key, lambda: engine.client.copy_object(**params))
        )
    if ANSWER.stubbed:  # a stub's answer (botocore's Stubber) is the test's, not a copy
        return response, Verdict("skipped", "a stub answered, not a server")
    dest_text = require_etag(response.get("CopyObjectResult", {}), "CopyObject", bucket, key)
    verdict = judge(
        verify=verify,
        etag=dest_text,
        computed=_comparable(head, dest_text),
        evidence=[head, response, params],
        unknown="the store gave the copy of a multipart source a single-part ETag, which"
        " cannot be compared with the source's",
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
    return response, verdict


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
    source: _Source,
    head: dict[str, Any],
    bucket: str,
    key: str,
    verify: bool,
    progress: Progress,
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
    layout = engine.discover_layout(source.bucket, source.key, head, args=source.head_args())
    if not isinstance(layout, ObjectLayout):
        if size <= MAX_PART_SIZE:
            return None  # one CopyObject call, whose verdict says why it is unverifiable
        settings = engine.transfer
        planned = plan_parts(size, settings.multipart_threshold, settings.upload_chunksize)
        return _copy_in_layout(
            engine, source, head, None, planned.part_size, bucket, key, verify, progress
        )
    candidates = layout.part_sizes
    if not layout.authoritative:
        candidates = candidates[:_COPY_CANDIDATES]
    if not verify:
        candidates = candidates[:1]
    for part_size in candidates:
        copied = _copy_in_layout(
            engine, source, head, layout, part_size, bucket, key, verify, progress
        )
        if copied is not None:
            return copied
    if size <= MAX_PART_SIZE:
        return None
    copied = _copy_in_layout(
        engine, source, head, None, candidates[0], bucket, key, verify, progress,
        unknown="no candidate part layout reproduces the source's ETag",
    )  # fmt: skip
    assert copied is not None
    return copied


def _copy_in_layout(
    engine: Engine,
    source: _Source,
    head: dict[str, Any],
    layout: ObjectLayout | None,
    part_size: int,
    bucket: str,
    key: str,
    verify: bool,
    progress: Progress,
    *,
    unknown: str = "",
) -> TransferResult | None:
    """One part-by-part copy. ``layout`` is the source's layout this part size is checked
    against before completing (None: nothing to check against). Returns None, with the
    upload aborted, when a guessed layout does not reproduce the source's ETag."""
    size = int(head.get("ContentLength") or 0)
    create_args: dict[str, Any] = {}
    if source.args.get("MetadataDirective") != "REPLACE":  # CopyObject's default: COPY
        create_args = {h: head[h] for h in _COPIED_HEADERS if head.get(h)}
        create_args["Metadata"] = dict(head.get("Metadata") or {})
    create_args.update(
        (name, value) for name, value in source.args.items() if name not in _NOT_FOR_UPLOAD
    )
    create_args["Metadata"] = {
        **(create_args.get("Metadata") or {}),
        PART_SIZE_METADATA: str(part_size),
    }
    upload_id = engine.create_upload(bucket, key, create_args)
    try:
        parts = run_parts(
            _part_copy_jobs(
                engine, source, str(head["ETag"]), size, part_size,
                bucket, key, upload_id, progress,
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
                engine.abort(bucket, key, upload_id, args=create_args)
                return None
        response = engine.complete_upload(
            bucket, key, upload_id, parts, combined or "", args=create_args
        )
    except BaseException:
        engine.abort(bucket, key, upload_id, args=create_args)
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
        args=create_args,
    )


def _candidate_verdict(layout: ObjectLayout, combined: str) -> Verdict:
    return judge(
        verify=True, etag=str(layout.etag), computed=[combined], authoritative=layout.authoritative
    )


def _part_copy_jobs(
    engine: Engine,
    source: _Source,
    source_etag: str,
    size: int,
    part_size: int,
    bucket: str,
    key: str,
    upload_id: str,
    progress: Progress,
) -> Iterator[Callable[[], tuple[int, str, bytes]]]:
    """One UploadPartCopy job per part, each retried on its own. A part whose ETag is not
    an MD5 gets an empty digest."""
    part_args = {name: value for name, value in source.args.items() if name in _PART_COPY_ARGS}

    def copy_part(number: int, offset: int, length: int) -> tuple[int, str, bytes]:
        def attempt() -> tuple[int, str, bytes]:
            with _source_not_found(source.bucket, source.key):
                response = engine.once(
                    "UploadPartCopy",
                    bucket,
                    key,
                    lambda: engine.client.upload_part_copy(
                        Bucket=bucket,
                        Key=key,
                        UploadId=upload_id,
                        PartNumber=number,
                        CopySource=source.copy_source(),
                        CopySourceRange=f"bytes={offset}-{offset + length - 1}",
                        CopySourceIfMatch=source_etag,
                        **part_args,
                    ),
                )
            etag = require_etag(response["CopyPartResult"], "UploadPartCopy", bucket, key)
            parsed = parse_etag(etag)
            if parsed is None or parsed.multipart or etag_opacity([response]) is not None:
                return number, etag, b""  # not the MD5 of the part (an encrypting bucket)
            return number, etag, bytes.fromhex(parsed.hexdigest)

        copied = engine.call("UploadPartCopy", bucket, key, attempt)
        progress.add(length)
        return copied

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
