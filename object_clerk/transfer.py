"""The transfer engine: verified uploads, reads and copies, each step retried on its own.

Strategy:

* Uploads read each part into memory once, hash it, and send it with its Content-MD5, so the
  server refuses damaged bytes (Ceph, AWS) and a retry resends exactly the same bytes. Memory
  is bounded by ``(max_concurrency + 1) x part size`` for multipart uploads and by the
  threshold for single-part ones. The expected ETag is built from the part digests already
  computed; there is no second pass over the data.
* Reads hash the body while it arrives and compare it with the ETag of that same response.
  A body cut short is resumed with a ranged GET pinned by ``If-Match`` to that ETag, so a
  read never mixes two versions of an object.
* Multipart ETags need the part layout. :meth:`TransferEngine.discover_layout` finds it from
  the size recorded in the object's metadata at upload (``object-clerk-part-size``), from
  ``HeadObject(PartNumber=1)`` on stores that honour it, or from candidate part sizes. Only
  the first two are authoritative; a guessed layout that matches nothing is reported as
  unverifiable, never as corruption.
* Copies compare the destination's ETag with the source's. Multipart sources are copied part
  by part with the source's own layout, so the server computes the part digests and the
  ETags stay comparable with zero bytes downloaded.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import hashlib
import io
import logging
import os
import threading
import warnings
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Protocol, TypeVar

from object_clerk.errors import (
    ChecksumMismatchError,
    ConnectionFault,
    InvalidRequestError,
    ObjectClerkError,
    PreconditionFailedError,
    UnverifiableObjectError,
    UnverifiableObjectWarning,
    translated,
)
from object_clerk.etag import (
    MAX_PART_SIZE,
    MAX_PARTS,
    EtagCalculator,
    ParsedEtag,
    PartLayout,
    adjust_chunksize,
    candidate_part_sizes,
    multipart_etag,
    parse_etag,
    plan_parts,
)
from object_clerk.retry import Retrier
from object_clerk.settings import TransferSettings

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client
else:
    S3Client = Any

__all__ = ["PART_SIZE_METADATA", "ObjectLayout", "TransferEngine", "TransferResult"]

logger = logging.getLogger("object_clerk")

T = TypeVar("T")

#: User-metadata key under which object_clerk records the part size of a multipart upload.
PART_SIZE_METADATA = "object-clerk-part-size"

# Encryption that makes the ETag something other than an MD5 of the content.
_OPAQUE_SSE = {"aws:kms", "aws:kms:dsse"}
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
# Upload arguments that every UploadPart must repeat.
_PART_ARGS = {
    "SSECustomerAlgorithm",
    "SSECustomerKey",
    "SSECustomerKeyMD5",
    "RequestPayer",
    "ExpectedBucketOwner",
}


@dataclass(frozen=True)
class TransferResult:
    """What an upload, copy or move produced.

    ``verification`` says how the stored bytes were proven:

    * ``"md5"``: the object's ETag equals the MD5 of the bytes;
    * ``"multipart-md5"``: its ETag equals the MD5-of-MD5s of the parts;
    * ``"content-md5"``: the server checked every body against its Content-MD5, but the ETag
      is not an MD5 (SSE-KMS), so it could not be compared;
    * ``"unverifiable"``: nothing could prove the content (a warning was issued);
    * ``"skipped"``: ``verify_checksum=False``.
    """

    bucket: str
    key: str
    etag: str
    size: int
    version_id: str | None
    verification: str

    @property
    def verified(self) -> bool:
        return self.verification in ("md5", "multipart-md5", "content-md5")


@dataclass(frozen=True)
class ObjectLayout:
    """The part layout of a stored object and how sure we are of it.

    ``part_sizes`` holds one size when the layout is known (``authoritative``), or several
    candidates, likeliest first, when it was guessed. Empty: nothing can explain the ETag.
    """

    size: int
    etag: ParsedEtag
    part_sizes: tuple[int, ...]
    authoritative: bool
    source: str


class Sink(Protocol):
    """Where a read writes: ``write`` appends, ``reset`` discards everything written."""

    def write(self, data: bytes) -> object: ...

    def reset(self) -> None: ...


class BytesSink:
    """A :class:`Sink` collecting bytes in memory."""

    def __init__(self) -> None:
        self._buffer = io.BytesIO()

    def write(self, data: bytes) -> object:
        return self._buffer.write(data)

    def reset(self) -> None:
        self._buffer.seek(0)
        self._buffer.truncate()

    def getvalue(self) -> bytes:
        return self._buffer.getvalue()


# --------------------------------------------------------------------------- sources ---


class _Source:
    """A body to upload: reads exactly ``n`` bytes at a time from bytes, a file or a stream."""

    def __init__(self, read: Callable[[int], bytes], size: int | None) -> None:
        self._read = read
        self.size = size
        self._pushback = b""

    def unread(self, data: bytes) -> None:
        """Put ``data`` back in front of what the source has left."""
        self._pushback = data + self._pushback

    def read_exactly(self, n: int) -> bytes:
        """Up to ``n`` bytes; fewer only at the end of the source."""
        chunks = [self._pushback] if self._pushback else []
        have = len(self._pushback)
        self._pushback = b""
        while have < n:
            chunk = self._read(n - have)
            if not chunk:
                break
            if not isinstance(chunk, (bytes, bytearray, memoryview)):
                raise InvalidRequestError(
                    f"the file object returned {type(chunk).__name__}, not bytes:"
                    " open it in binary mode ('rb')"
                )
            chunks.append(bytes(chunk))
            have += len(chunk)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def open_source(data: object, stack: ExitStack, *, bucket: str, key: str) -> _Source:
    """Validate ``data`` and return a reader over it. Files opened here close with ``stack``."""
    context: dict[str, Any] = {"operation": "upload_object", "bucket": bucket, "key": key}
    if isinstance(data, (bytes, bytearray, memoryview)):
        view = memoryview(data).cast("B")
        position = 0

        def read_memory(n: int) -> bytes:
            nonlocal position
            chunk = view[position : position + n]
            position += len(chunk)
            return bytes(chunk)

        return _Source(read_memory, len(view))
    if isinstance(data, (str, Path)):
        path = Path(data)
        if not path.exists():
            raise InvalidRequestError(f"no such file: {path}", **context)
        if path.is_dir():
            raise InvalidRequestError(f"is a directory, not a file: {path}", **context)
        handle = stack.enter_context(path.open("rb"))
        return _Source(handle.read, os.fstat(handle.fileno()).st_size)
    if data is None or not callable(getattr(data, "read", None)):
        raise InvalidRequestError(
            f"data must be bytes, a path or a binary file object, not {type(data).__name__}",
            **context,
        )
    if getattr(data, "closed", False):
        raise InvalidRequestError("the file object is closed", **context)
    if isinstance(data, io.TextIOBase):
        raise InvalidRequestError(
            "the file object is in text mode: open it in binary mode ('rb')", **context
        )
    stream: IO[bytes] = data  # type: ignore[assignment]
    size = _remaining_size(stream)
    return _Source(stream.read, size)


def _remaining_size(stream: IO[bytes]) -> int | None:
    """Bytes from the current position to the end, or None for a non-seekable stream.

    Reading starts at the current position, not at 0: botocore's own rewind seeks to 0, which
    would resend the wrong bytes for a stream handed in at an offset. Parts are read into
    memory once, so retries never seek at all.
    """
    try:
        if not stream.seekable():
            return None
        start = stream.tell()
        end = stream.seek(0, io.SEEK_END)
        stream.seek(start)
    except (OSError, ValueError, AttributeError):
        return None
    return max(0, end - start)


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")


def _quoted(etag: str) -> str:
    return etag if etag.startswith('"') else f'"{etag}"'


# ---------------------------------------------------------------------------- engine ---


class TransferEngine:
    """Runs verified transfers over one boto3 client. Thread-safe; owned by ObjectClerk."""

    def __init__(
        self,
        client: S3Client,
        retrier: Retrier,
        transfer: TransferSettings,
        *,
        strict: bool = False,
    ) -> None:
        self.client = client
        self.retrier = retrier
        self.transfer = transfer
        self.strict = strict
        # Whether HeadObject(PartNumber=1) reports PartsCount here (AWS, moto) or is ignored
        # (Ceph RGW 16). Learned on first use; a benign race between threads.
        self._part_number_supported: bool | None = None

    # ------------------------------------------------------------------ plumbing ----

    def call(self, operation: str, bucket: str | None, key: str | None, fn: Callable[[], T]) -> T:
        """Run one S3 request (or a small unit of work) with translation and retries."""

        def once() -> T:
            with translated(operation, bucket, key):
                return fn()

        return self.retrier.call(once, operation=operation, bucket=bucket, key=key)

    def once(self, operation: str, bucket: str | None, key: str | None, fn: Callable[[], T]) -> T:
        """Run one request with translation but no retries: for work inside a retried unit,
        so that attempts never multiply."""
        with translated(operation, bucket, key):
            return fn()

    def unverifiable(self, reason: str, *, operation: str, bucket: str, key: str) -> None:
        """Report that content could not be proven: a warning, or an error in strict mode."""
        error = UnverifiableObjectError(reason, operation=operation, bucket=bucket, key=key)
        if self.strict:
            raise error
        logger.warning("%s", error)
        warnings.warn(str(error), UnverifiableObjectWarning, stacklevel=4)

    # -------------------------------------------------------------------- layout ----

    def discover_layout(
        self,
        bucket: str,
        key: str,
        response: Mapping[str, Any],
        *,
        nested: bool = False,
    ) -> ObjectLayout | str:
        """The part layout of the object a GET/HEAD ``response`` describes.

        Returns a reason string instead when the ETag cannot prove the content at all.
        ``nested``: called inside a retried unit, so a probe request is not retried itself.
        """
        reason = opaque_etag_reason(response)
        if reason is not None:
            return reason
        etag = parse_etag(response.get("ETag"))
        assert etag is not None  # opaque_etag_reason checked it
        size = int(response.get("ContentLength") or 0)
        if "ContentRange" in response:
            size = int(str(response["ContentRange"]).rsplit("/", 1)[-1])
        if etag.parts is None:
            return ObjectLayout(size, etag, (0,), True, "single-part")
        parts = etag.parts
        if parts == 1:
            return ObjectLayout(size, etag, (max(size, 1),), True, "one part")
        recorded = _recorded_part_size(response.get("Metadata") or {})
        if recorded is not None and _consistent(size, parts, recorded):
            return ObjectLayout(size, etag, (recorded,), True, "recorded at upload")
        if self._part_number_supported is not False:
            part_size = self._probe_part_size(bucket, key, response, parts, nested)
            if part_size is not None and _consistent(size, parts, part_size):
                return ObjectLayout(size, etag, (part_size,), True, "HeadObject PartNumber=1")
        candidates = candidate_part_sizes(size, parts)
        if not candidates:
            return f"no part size gives {parts} parts for {size} bytes"
        return ObjectLayout(size, etag, tuple(candidates), False, "candidate part sizes")

    def _probe_part_size(
        self, bucket: str, key: str, response: Mapping[str, Any], parts: int, nested: bool
    ) -> int | None:
        # No If-Match here: moto compares it with part 1's own ETag and answers 412. A layout
        # that does not fit the size and part count is discarded by the caller.
        params: dict[str, Any] = {"Bucket": bucket, "Key": key, "PartNumber": 1}
        if response.get("VersionId"):
            params["VersionId"] = response["VersionId"]
        run = self.once if nested else self.call
        head = run("HeadObject", bucket, key, lambda: self.client.head_object(**params))
        count = head.get("PartsCount")
        if count is None:
            self._part_number_supported = False
            logger.debug("store ignores HeadObject PartNumber; using candidate part sizes")
            return None
        self._part_number_supported = True
        return int(head["ContentLength"]) if int(count) == parts else None

    # -------------------------------------------------------------------- upload ----

    def upload(
        self,
        data: object,
        bucket: str,
        key: str,
        *,
        extra_args: dict[str, Any],
        verify: bool,
    ) -> TransferResult:
        with ExitStack() as stack:
            source = open_source(data, stack, bucket=bucket, key=key)
            threshold = self.transfer.multipart_threshold
            if source.size is not None:
                layout = plan_parts(source.size, threshold, self.transfer.upload_chunksize)
                if not layout.multipart:
                    return self._put(
                        source.read_exactly(source.size), bucket, key, extra_args, verify
                    )
                return self._multipart_upload(
                    source, layout.part_size, bucket, key, extra_args, verify
                )
            # A stream of unknown size: read up to the threshold to decide.
            head = source.read_exactly(threshold)
            if len(head) < threshold:
                return self._put(head, bucket, key, extra_args, verify)
            source.unread(head)
            part_size = adjust_chunksize(self.transfer.upload_chunksize)
            return self._multipart_upload(source, part_size, bucket, key, extra_args, verify)

    def _put(
        self, body: bytes, bucket: str, key: str, extra_args: dict[str, Any], verify: bool
    ) -> TransferResult:
        params: dict[str, Any] = {"Bucket": bucket, "Key": key, "Body": body, **extra_args}
        expected = ""
        if verify:
            digest = hashlib.md5(body, usedforsecurity=False)
            expected = digest.hexdigest()
            params["ContentMD5"] = _b64(digest.digest())
        stored_mismatch = False

        def attempt() -> dict[str, Any]:
            nonlocal stored_mismatch
            response: dict[str, Any] = dict(self.client.put_object(**params))
            stored_mismatch = False
            if verify:
                etag = parse_etag(response.get("ETag"))
                if (
                    etag is not None
                    and not _opaque_put(response, extra_args)
                    and str(etag) != expected
                ):
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
            response = self.call("PutObject", bucket, key, attempt)
        except ChecksumMismatchError:
            if stored_mismatch:
                self._remove_corrupted(bucket, key)
            raise
        etag = str(response.get("ETag", "")).strip('"')
        if not verify:
            verification = "skipped"
        elif parse_etag(etag) is None or _opaque_put(response, extra_args):
            verification = "content-md5"
        else:
            verification = "md5"
        return TransferResult(bucket, key, etag, len(body), response.get("VersionId"), verification)

    def _multipart_upload(
        self,
        source: _Source,
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
        created = self.call(
            "CreateMultipartUpload",
            bucket,
            key,
            lambda: self.client.create_multipart_upload(Bucket=bucket, Key=key, **create_args),
        )
        upload_id = created["UploadId"]
        try:
            parts, total = self._upload_parts(
                source, part_size, bucket, key, upload_id, part_args, verify
            )
            expected = multipart_etag(digest for _, _, digest in parts)
            response = self._complete(bucket, key, upload_id, parts, expected)
        except BaseException:
            self._abort(bucket, key, upload_id)
            raise
        return self._check_completed(
            bucket, key, response, expected, total, extra_args, verify, "multipart-md5"
        )

    def _upload_parts(
        self,
        source: _Source,
        part_size: int,
        bucket: str,
        key: str,
        upload_id: str,
        part_args: dict[str, Any],
        verify: bool,
    ) -> tuple[list[tuple[int, str, bytes]], int]:
        concurrency = max(1, self.transfer.upload_concurrency)
        # One slot per part held in memory: at most `concurrency` sending plus one being read.
        slots = threading.BoundedSemaphore(concurrency)
        futures: list[Future[tuple[int, str, bytes]]] = []
        total = 0
        failed = threading.Event()

        def send(number: int, body: bytes) -> tuple[int, str, bytes]:
            try:
                return self._upload_part(bucket, key, upload_id, number, body, part_args, verify)
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
        self,
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
            params["ContentMD5"] = _b64(digest)

        def attempt() -> str:
            etag = str(self.client.upload_part(**params)["ETag"])
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

        etag = self.call("UploadPart", bucket, key, attempt)
        return number, etag, digest

    def _complete(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        parts: list[tuple[int, str, bytes]],
        expected: str,
    ) -> dict[str, Any]:
        layout: Any = {"Parts": [{"PartNumber": n, "ETag": etag} for n, etag, _ in parts]}
        attempts = 0

        def attempt() -> dict[str, Any]:
            nonlocal attempts
            attempts += 1
            try:
                return dict(
                    self.client.complete_multipart_upload(
                        Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload=layout
                    )
                )
            except Exception as exc:
                code = getattr(exc, "response", {}).get("Error", {}).get("Code")
                if attempts > 1 and code == "NoSuchUpload":
                    # An earlier attempt completed the upload but its answer was lost.
                    head: dict[str, Any] = dict(self.client.head_object(Bucket=bucket, Key=key))
                    if str(parse_etag(head.get("ETag"))) == expected:
                        return head
                raise

        return self.call("CompleteMultipartUpload", bucket, key, attempt)

    def _check_completed(
        self,
        bucket: str,
        key: str,
        response: dict[str, Any],
        expected: str,
        size: int,
        extra_args: Mapping[str, Any],
        verify: bool,
        algorithm: str,
    ) -> TransferResult:
        etag_text = str(response.get("ETag") or "")
        if not etag_text.strip('"'):
            # Ceph RGW 16 answers CompleteMultipartUpload with an empty ETag: ask for it.
            head = self.call(
                "HeadObject", bucket, key, lambda: self.client.head_object(Bucket=bucket, Key=key)
            )
            etag_text = str(head.get("ETag") or "")
            response = {**response, "VersionId": response.get("VersionId") or head.get("VersionId")}
            response.setdefault("ServerSideEncryption", head.get("ServerSideEncryption"))
        etag = parse_etag(etag_text)
        version_id = response.get("VersionId")
        if not verify:
            return TransferResult(bucket, key, etag_text.strip('"'), size, version_id, "skipped")
        if etag is None or _opaque_put(response, extra_args):
            # Every part passed the server's Content-MD5 check; the ETag cannot add to that.
            return TransferResult(
                bucket, key, etag_text.strip('"'), size, version_id, "content-md5"
            )
        if str(etag) != expected:
            self._remove_corrupted(bucket, key)
            raise ChecksumMismatchError(
                "the completed object's ETag does not match its parts",
                expected=expected,
                actual=str(etag),
                algorithm=algorithm,
                operation="CompleteMultipartUpload",
                bucket=bucket,
                key=key,
            )
        return TransferResult(bucket, key, str(etag), size, version_id, algorithm)

    def _abort(self, bucket: str, key: str, upload_id: str) -> None:
        try:
            self.call(
                "AbortMultipartUpload",
                bucket,
                key,
                lambda: self.client.abort_multipart_upload(
                    Bucket=bucket, Key=key, UploadId=upload_id
                ),
            )
        except ObjectClerkError as exc:
            if exc.code == "NoSuchUpload":
                return
            logger.error(
                "could not abort multipart upload %s of s3://%s/%s: %s", upload_id, bucket, key, exc
            )

    def _remove_corrupted(self, bucket: str, key: str) -> None:
        logger.error("removing s3://%s/%s: its stored bytes did not verify", bucket, key)
        try:
            self.call(
                "DeleteObject",
                bucket,
                key,
                lambda: self.client.delete_object(Bucket=bucket, Key=key),
            )
        except ObjectClerkError as exc:
            logger.error("could not remove corrupted s3://%s/%s: %s", bucket, key, exc)

    # ---------------------------------------------------------------------- read ----

    def read(
        self,
        bucket: str,
        key: str,
        sink: Sink,
        *,
        verify: bool,
        operation: str = "get_object",
    ) -> dict[str, Any]:
        """Stream an object into ``sink``, verifying as it arrives; resume cut-short bodies.

        Returns the first GET response's metadata (without the body).
        """
        state = _ReadState()

        def attempt() -> dict[str, Any]:
            params: dict[str, Any] = {"Bucket": bucket, "Key": key}
            if state.etag is not None:
                params["IfMatch"] = state.etag
                if state.offset:
                    params["Range"] = f"bytes={state.offset}-"
            try:
                response: dict[str, Any] = dict(self.client.get_object(**params))
            except Exception as exc:
                if state.etag is not None and _is_precondition_failure(exc):
                    # The object changed since the first response: start over on the new
                    # version rather than mix two versions' bytes.
                    state.restart(sink)
                    raise ConnectionFault(
                        "the object changed during the read; restarting from its new version",
                        operation="GetObject",
                        bucket=bucket,
                        key=key,
                    ) from exc
                raise
            body = response.pop("Body")
            with ExitStack() as stack:
                stack.callback(body.close)
                if state.etag is None:
                    state.start(self, bucket, key, response, verify, operation)
                self._drain(body, sink, state)
            if state.offset != state.size:
                raise ConnectionFault(
                    f"the body ended after {state.offset} of {state.size} bytes",
                    operation="GetObject",
                    bucket=bucket,
                    key=key,
                )
            if state.checkers:
                try:
                    state.check(bucket, key)
                except ChecksumMismatchError:
                    state.restart(sink)
                    raise
                except UnverifiableObjectError as exc:
                    self.unverifiable(exc.message, operation=operation, bucket=bucket, key=key)
            return state.first_response

        return self.call("GetObject", bucket, key, attempt)

    def _drain(self, body: Any, sink: Sink, state: _ReadState) -> None:
        chunk_size = self.transfer.io_chunksize
        while True:
            chunk = body.read(chunk_size)
            if not chunk:
                return
            for checker in state.checkers:
                checker.update(chunk)
            sink.write(chunk)
            state.offset += len(chunk)

    # ---------------------------------------------------------------------- copy ----

    def copy(
        self,
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
        head: dict[str, Any] = dict(
            self.call(
                "HeadObject",
                source_bucket,
                source_key,
                lambda: self.client.head_object(Bucket=source_bucket, Key=source_key),
            )
        )
        source_etag = parse_etag(head.get("ETag"))
        size = int(head.get("ContentLength") or 0)
        multipart = source_etag is not None and source_etag.multipart
        if size and ((verify and multipart) or size > MAX_PART_SIZE):
            layout = self.discover_layout(source_bucket, source_key, head)
            if isinstance(layout, ObjectLayout):
                copied = self._copy_by_parts(
                    source_bucket, source_key, head, layout, bucket, key, verify=verify
                )
                if copied is not None:
                    return copied
        heads = [dict(head)]
        stored_mismatch = False

        def attempt() -> TransferResult:
            nonlocal stored_mismatch
            current = (
                heads.pop()
                if heads
                else dict(self.client.head_object(Bucket=source_bucket, Key=source_key))
            )
            try:
                return self._copy_whole(
                    source_bucket, source_key, current, bucket, key, verify, operation
                )
            except ChecksumMismatchError:
                stored_mismatch = True
                raise

        try:
            return self.call("CopyObject", bucket, key, attempt)
        except ChecksumMismatchError:
            if stored_mismatch:
                self._remove_corrupted(bucket, key)
            raise

    def _copy_whole(
        self,
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
        response = self.client.copy_object(
            Bucket=bucket,
            Key=key,
            CopySource={"Bucket": source_bucket, "Key": source_key},
            # Pinned to what we read. Ceph RGW 16 and moto ignore this header, which is why the
            # destination's ETag is compared with this one below.
            CopySourceIfMatch=_quoted(source_text.strip('"')),
        )
        dest_text = str(response.get("CopyObjectResult", {}).get("ETag") or "").strip('"')
        version_id = response.get("VersionId")
        if not verify:
            return TransferResult(bucket, key, dest_text, size, version_id, "skipped")
        reason = opaque_etag_reason(head)
        if reason is None and (
            parse_etag(dest_text) is None or response.get("ServerSideEncryption") in _OPAQUE_SSE
        ):
            reason = "the destination's ETag is not an MD5 (encrypted by the bucket's default?)"
        if reason is not None:
            self.unverifiable(reason, operation=operation, bucket=bucket, key=key)
            return TransferResult(bucket, key, dest_text, size, version_id, "unverifiable")
        source, dest = parse_etag(source_text), parse_etag(dest_text)
        assert source is not None and dest is not None
        if dest == source:
            kind = "multipart-md5" if source.multipart else "md5"
            return TransferResult(bucket, key, dest_text, size, version_id, kind)
        if source.multipart and not dest.multipart:
            # The store recomputed a single-part ETag (AWS, moto) for a source whose layout we
            # could not find: the two ETags measure different things.
            self.unverifiable(
                "the store gave the copy a single-part ETag and the source's part layout is"
                " unknown, so the two cannot be compared",
                operation=operation,
                bucket=bucket,
                key=key,
            )
            return TransferResult(bucket, key, dest_text, size, version_id, "unverifiable")
        raise ChecksumMismatchError(
            "the copy's ETag does not match the source's (the source changed, or the copy was"
            " damaged)",
            expected=str(source),
            actual=str(dest),
            algorithm="multipart-md5" if source.multipart else "md5",
            operation="CopyObject",
            bucket=bucket,
            key=key,
        )

    def _copy_by_parts(
        self,
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
            copied = self._copy_in_layout(
                source_bucket, source_key, head, layout, part_size, bucket, key, verify
            )
            if copied is not None:
                return copied
        if layout.size <= MAX_PART_SIZE:
            return None
        self.unverifiable(
            "no candidate part layout reproduces the source's ETag",
            operation="copy_object",
            bucket=bucket,
            key=key,
        )
        copied = self._copy_in_layout(
            source_bucket, source_key, head, layout, candidates[0], bucket, key, False
        )
        assert copied is not None
        return dataclasses.replace(copied, verification="unverifiable")

    def _copy_in_layout(
        self,
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
        created = self.call(
            "CreateMultipartUpload",
            bucket,
            key,
            functools.partial(
                self.client.create_multipart_upload, Bucket=bucket, Key=key, **create_args
            ),
        )
        upload_id = created["UploadId"]
        try:
            parts = self._copy_parts(
                source_bucket, source_key, str(head["ETag"]), layout.size, part_size,
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
                self._abort(bucket, key, upload_id)
                return None
            response = self._complete(bucket, key, upload_id, parts, combined or "")
        except BaseException:
            self._abort(bucket, key, upload_id)
            raise
        if verify and combined is None:
            self.unverifiable(
                "the store's part ETags are not MD5s (is the bucket encrypted with SSE-KMS?)",
                operation="copy_object",
                bucket=bucket,
                key=key,
            )
            copied = self._check_completed(
                bucket, key, response, "", layout.size, {}, False, "multipart-md5"
            )
            return dataclasses.replace(copied, verification="unverifiable")
        return self._check_completed(
            bucket, key, response, combined or "", layout.size, {}, verify, "multipart-md5"
        )

    def _copy_parts(
        self,
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
                response = self.client.upload_part_copy(
                    Bucket=bucket,
                    Key=key,
                    UploadId=upload_id,
                    PartNumber=number,
                    CopySource={"Bucket": source_bucket, "Key": source_key},
                    CopySourceRange=f"bytes={offset}-{offset + length - 1}",
                    CopySourceIfMatch=source_etag,
                )
                etag = str(response["CopyPartResult"]["ETag"])
                parsed = parse_etag(etag)
                if parsed is None or parsed.multipart:
                    return number, etag, b""
                return number, etag, bytes.fromhex(parsed.hexdigest)

            return self.call("UploadPartCopy", bucket, key, attempt)

        layout = PartLayout(size, part_size)
        concurrency = max(1, self.transfer.upload_concurrency)
        with ThreadPoolExecutor(concurrency, thread_name_prefix="object-clerk-copy") as pool:
            futures = [pool.submit(copy_part, *part) for part in layout.parts()]
            return [future.result() for future in futures]


# --------------------------------------------------------------------------- helpers ---


class _Checker:
    """One candidate layout's running ETag."""

    def __init__(self, part_size: int) -> None:
        self.part_size = part_size
        self.calculator = EtagCalculator(part_size)

    def update(self, data: bytes) -> None:
        self.calculator.update(data)


class _ReadState:
    """Per-read state: the pinned ETag, the offset reached and the running checksums."""

    def __init__(self) -> None:
        self.etag: str | None = None
        self.size = 0
        self.offset = 0
        self.checkers: list[_Checker] = []
        self.layout: ObjectLayout | None = None
        self.first_response: dict[str, Any] = {}

    def start(
        self,
        engine: TransferEngine,
        bucket: str,
        key: str,
        response: dict[str, Any],
        verify: bool,
        operation: str,
    ) -> None:
        self.etag = response.get("ETag")
        self.size = int(response.get("ContentLength") or 0)
        self.first_response = response
        self.checkers = []
        self.layout = None
        if not verify:
            return
        layout = engine.discover_layout(bucket, key, response, nested=True)
        if isinstance(layout, str):
            engine.unverifiable(layout, operation=operation, bucket=bucket, key=key)
            return
        self.layout = layout
        self.checkers = [_Checker(size) for size in layout.part_sizes]

    def restart(self, sink: Sink) -> None:
        sink.reset()
        self.etag = None
        self.offset = 0
        self.checkers = []

    def check(self, bucket: str, key: str) -> None:
        layout = self.layout
        assert layout is not None
        expected = str(layout.etag)
        for checker in self.checkers:
            if checker.calculator.etag() == expected:
                return
        actual = self.checkers[0].calculator.etag()
        if layout.authoritative:
            raise ChecksumMismatchError(
                f"the bytes read do not match the object's ETag (layout: {layout.source})",
                expected=expected,
                actual=actual,
                algorithm="multipart-md5" if layout.etag.multipart else "md5",
                operation="GetObject",
                bucket=bucket,
                key=key,
            )
        sizes = ", ".join(str(size) for size in layout.part_sizes)
        raise UnverifiableObjectError(
            f"the part layout is unknown and none of the candidate part sizes ({sizes})"
            f" reproduces ETag {expected}",
            operation="GetObject",
            bucket=bucket,
            key=key,
        )


def opaque_etag_reason(response: Mapping[str, Any]) -> str | None:
    """Why this object's ETag cannot prove its content, or None when it can."""
    sse = response.get("ServerSideEncryption")
    if sse in _OPAQUE_SSE:
        return f"the object is encrypted with {sse}, so its ETag is not an MD5 of its content"
    if response.get("SSECustomerAlgorithm"):
        return "the object is encrypted with a customer key (SSE-C), so its ETag is not an MD5"
    if parse_etag(response.get("ETag")) is None:
        return f"the ETag {response.get('ETag')!r} is not an MD5"
    return None


def _opaque_put(response: Mapping[str, Any], extra_args: Mapping[str, Any]) -> bool:
    return (
        response.get("ServerSideEncryption") in _OPAQUE_SSE
        or extra_args.get("ServerSideEncryption") in _OPAQUE_SSE
        or bool(extra_args.get("SSECustomerAlgorithm"))
        or bool(response.get("SSECustomerAlgorithm"))
    )


def _recorded_part_size(metadata: Mapping[str, str]) -> int | None:
    value = metadata.get(PART_SIZE_METADATA)
    if value is None or not value.isdigit():
        return None
    return int(value) or None


def _consistent(size: int, parts: int, part_size: int) -> bool:
    return part_size > 0 and max(1, -(-size // part_size)) == parts


def _is_precondition_failure(exc: BaseException) -> bool:
    if isinstance(exc, PreconditionFailedError):
        return True
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return False
    return bool(response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 412)
