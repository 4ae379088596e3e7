"""Verified uploads.

Strategy: each part is read into memory once, hashed, and sent with its Content-MD5, so the
server refuses damaged bytes (Ceph, AWS) and a retry resends exactly the same bytes. Memory
is bounded by ``max_concurrency x part size`` for a multipart upload, and by the
threshold for a single-part one (the Content-MD5 must be known before the body is sent). The
expected ETag is built from the part digests already computed: no second pass over the data.

Where the store keeps flexible checksums, each body also carries a full-object CRC
(CRC64NVME with awscrt, else CRC32; ``OBJECT_CLERK_UPLOAD_CHECKSUM``), and a multipart
upload is created FULL_OBJECT, so the object's reads are proven at a tenth of an MD5's cost.
The checksum the store answers with must equal the one sent. The first answer that carries
none (Ceph RGW 16) stops the clerk sending them. The MD5 stays: it is the proof every store
computes from the bytes it received (moto stores a sent CRC unchecked).
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack
from typing import Any, NamedTuple, cast

from object_clerk.checksums import Crc, CrcState, stored_checksum
from object_clerk.engine import (
    PART_SIZE_METADATA,
    Engine,
    TransferResult,
    b64,
    proof_name,
    repeated_args,
    require_etag,
    result_of,
)
from object_clerk.errors import InvalidRequestError, ObjectSaveException
from object_clerk.etag import MAX_PARTS, adjust_chunksize, multipart_etag, plan_parts
from object_clerk.runner import Progress, run_parts
from object_clerk.sources import Source, open_source
from object_clerk.verdict import Verdict, judge

__all__ = ["upload"]


def upload(
    engine: Engine,
    data: object,
    bucket: str,
    key: str,
    *,
    extra_args: dict[str, Any],
    verify: bool,
    allow_empty: bool = True,
    progress: Progress | None = None,
    size: int | None = None,
) -> TransferResult:
    """Upload ``data``, verified. ``allow_empty=False`` refuses empty data before any
    request (object-clerk 1.x's rule, kept by ``upload_object``). One retry budget covers
    the whole upload: create, parts and complete. ``progress`` is told each part's size
    once the store accepted it. ``size``: what an iterator of chunks will give, when known
    (then its part size fits S3's part limit)."""
    progress = progress or Progress(None)
    with engine.retrier.scope(), ExitStack() as stack:
        source = open_source(data, stack, bucket=bucket, key=key, size=size)
        threshold = engine.transfer.multipart_threshold
        if not allow_empty and source.size == 0:
            raise _empty(bucket, key)
        if source.size is not None:
            layout = plan_parts(source.size, threshold, engine.transfer.upload_chunksize)
            if not layout.multipart:
                body = source.read_exactly(source.size)
                source.check_unchanged()  # before anything under the key is replaced
                return _put(engine, body, bucket, key, extra_args, verify, progress)
            return _multipart_upload(
                engine, source, layout.part_size, bucket, key, extra_args, verify, progress
            )
        # A stream of unknown size: read up to the threshold to decide.
        head = source.read_exactly(threshold)
        if not allow_empty and not head:
            raise _empty(bucket, key)
        if len(head) < threshold:
            return _put(engine, head, bucket, key, extra_args, verify, progress)
        source.unread(head)
        part_size = adjust_chunksize(engine.transfer.upload_chunksize)
        return _multipart_upload(
            engine, source, part_size, bucket, key, extra_args, verify, progress
        )


def _empty(bucket: str, key: str) -> ObjectSaveException:
    return ObjectSaveException(
        "the data is empty: upload_object refuses empty objects, as object-clerk 1.x does",
        operation="upload_object",
        bucket=bucket,
        key=key,
    )


def _put(
    engine: Engine,
    body: bytes,
    bucket: str,
    key: str,
    extra_args: dict[str, Any],
    verify: bool,
    progress: Progress,
) -> TransferResult:
    params: dict[str, Any] = {"Bucket": bucket, "Key": key, "Body": body, **extra_args}
    computed: list[str] = []
    crc = engine.upload_checksum() if verify else None
    if verify:
        digest = hashlib.md5(body, usedforsecurity=False)
        computed = [digest.hexdigest()]
        params["ContentMD5"] = b64(digest.digest())
    sent = _send_checksum(params, crc, crc.of(body) if crc is not None else None)
    stored_mismatch = False

    def attempt() -> tuple[dict[str, Any], Verdict]:
        nonlocal stored_mismatch
        response: dict[str, Any] = dict(engine.client.put_object(**params))
        etag = require_etag(response, "PutObject", bucket, key)
        verdict = judge(
            verify=verify,
            etag=etag,
            computed=computed,
            evidence=[extra_args, response],
            content_md5=verify,
            checksum=_returned(engine, crc, sent, response),
        )
        stored_mismatch = not verdict.matched
        if stored_mismatch:
            raise verdict.mismatch(
                f"the stored object's {proof_name(verdict)} does not match the bytes sent",
                operation="PutObject",
                bucket=bucket,
                key=key,
            )
        return response, verdict

    try:
        response, verdict = engine.call("PutObject", bucket, key, attempt)
    except Exception:
        if stored_mismatch:
            engine.remove_corrupted(bucket, key, args=extra_args)
        raise
    engine.report(verdict, operation="upload_object", bucket=bucket, key=key)
    progress.add(len(body))
    etag = str(response.get("ETag", ""))
    return result_of(bucket, key, etag, len(body), response.get("VersionId"), verdict)


def _multipart_upload(
    engine: Engine,
    source: Source,
    part_size: int,
    bucket: str,
    key: str,
    extra_args: dict[str, Any],
    verify: bool,
    progress: Progress,
) -> TransferResult:
    create_args = dict(extra_args)
    create_args["Metadata"] = {
        **(extra_args.get("Metadata") or {}),
        PART_SIZE_METADATA: str(part_size),
    }
    crc = engine.upload_checksum() if verify else None
    if crc is not None:
        create_args.update(ChecksumAlgorithm=crc.algorithm, ChecksumType="FULL_OBJECT")
    whole = CrcState(crc) if crc is not None else None
    upload_id = engine.create_upload(bucket, key, create_args)
    try:
        parts = run_parts(
            _part_jobs(
                engine,
                source,
                part_size,
                bucket,
                key,
                upload_id,
                extra_args,
                verify,
                progress,
                crc,
                whole,
            ),
            concurrency=max(1, engine.transfer.upload_concurrency),
            name="object-clerk-upload",
        )
        total = sum(part.size for part in parts)
        source.check_unchanged()  # before anything under the key is replaced
        layout = [(part.number, part.etag, part.digest) for part in parts]
        computed = multipart_etag(part.digest for part in parts)
        checksums = None
        if crc is not None and whole is not None:
            values = [part.checksum for part in parts]
            assert all(value is not None for value in values)
            checksums = (crc, cast(list[str], values), whole.encoded())
        response = engine.complete_upload(
            bucket, key, upload_id, layout, computed, args=extra_args, checksums=checksums
        )
    except BaseException:
        engine.abort(bucket, key, upload_id, args=extra_args)
        raise
    return engine.check_completed(
        bucket,
        key,
        response,
        computed=computed if verify else None,
        size=total,
        evidence=[extra_args],
        verify=verify,
        content_md5=verify,
        operation="upload_object",
        args=extra_args,
        checksum=(checksums[0], checksums[2]) if checksums else None,
    )


def _part_jobs(
    engine: Engine,
    source: Source,
    part_size: int,
    bucket: str,
    key: str,
    upload_id: str,
    extra_args: dict[str, Any],
    verify: bool,
    progress: Progress,
    crc: Crc | None,
    whole: CrcState | None,
) -> Iterator[Callable[[], _Part]]:
    """One job per part, each reading its part from ``source`` only when the runner has a
    slot for it: at most ``max_concurrency`` parts exist at once, read or in flight.
    ``whole``: the object's running CRC. Each part's CRC is computed once, as it is read (in
    order), and appended to it (see :meth:`CrcState.append`)."""
    part_args = repeated_args(extra_args)
    number = 0
    total = 0
    while source.size is None or total < source.size:
        body = source.read_exactly(part_size)
        if not body and number > 0:
            return
        number += 1
        if number > MAX_PARTS:
            raise InvalidRequestError(
                f"the stream needs more than {MAX_PARTS} parts of {part_size} bytes:"
                " raise MULTIPART_THRESHOLD (it is also the part size)",
                operation="upload_object",
                bucket=bucket,
                key=key,
            )
        total += len(body)
        sent = None
        if whole is not None:
            part = CrcState(whole.crc)
            part.update(body)
            whole.append(part, body)
            sent = part.encoded()
        yield functools.partial(
            _upload_part,
            engine,
            bucket,
            key,
            upload_id,
            number,
            body,
            part_args,
            extra_args,
            verify,
            progress,
            crc,
            sent,
        )
        del body  # the job holds the part now; the next one is read when it has a slot


def _upload_part(
    engine: Engine,
    bucket: str,
    key: str,
    upload_id: str,
    number: int,
    body: bytes,
    part_args: dict[str, Any],
    extra_args: dict[str, Any],
    verify: bool,
    progress: Progress,
    crc: Crc | None,
    sent: str | None,
) -> _Part:
    """UploadPart, retried, verified. ``sent``: the part's ``crc``, to send with it."""
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
    _send_checksum(params, crc, sent)

    def attempt() -> str:
        response = engine.client.upload_part(**params)
        etag = require_etag(response, "UploadPart", bucket, key)
        verdict = judge(
            verify=verify,
            etag=etag,
            computed=[digest.hex()],
            evidence=[extra_args, response],
            content_md5=verify,
            checksum=_returned(engine, crc, sent, response),
        )
        if not verdict.matched:
            raise verdict.mismatch(
                f"part {number}'s {proof_name(verdict)} does not match the bytes sent",
                operation="UploadPart",
                bucket=bucket,
                key=key,
            )
        return etag

    etag = engine.call("UploadPart", bucket, key, attempt)
    progress.add(len(body))
    return _Part(number, etag, digest, len(body), sent)


class _Part(NamedTuple):
    """An uploaded part: its number, ETag, MD5 digest, size and the CRC sent with it."""

    number: int
    etag: str
    digest: bytes
    size: int
    checksum: str | None


def _send_checksum(params: dict[str, Any], crc: Crc | None, value: str | None) -> str | None:
    """Add the body's ``crc`` (``value``) to a PutObject or UploadPart request; the value."""
    if crc is not None and value is not None:
        params.update({"ChecksumAlgorithm": crc.algorithm, crc.field: value})
    return value


def _returned(
    engine: Engine, crc: Crc | None, sent: str | None, response: Mapping[str, Any]
) -> tuple[Crc, str, str] | None:
    """What a PutObject's or UploadPart's answer says of the checksum sent: (algorithm,
    sent, stored) when the store kept it, for :func:`judge`; the engine learns whether it
    keeps checksums."""
    if crc is None or sent is None:
        return None
    stored = stored_checksum(response, crc)
    engine.learn_checksums(stored)
    return None if stored is None else (crc, sent, stored)
