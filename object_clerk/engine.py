"""The engine's core, shared by uploads, reads and copies: one boto3 client, one retry policy,
and the steps every transfer needs (retried calls, part-layout discovery, completing or
aborting a multipart upload, reporting what could not be verified).

Strategy for multipart ETags: they need the part layout. :meth:`Engine.discover_layout` finds
it from the size recorded in the object's metadata at upload (``object-clerk-part-size``),
from ``HeadObject(PartNumber=1)`` on stores that honour it, or from candidate part sizes.
Only the first two are authoritative; a guessed layout that matches nothing is reported as
unverifiable, never as corruption.
"""

from __future__ import annotations

import base64
import copy
import logging
import sys
import threading
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, TypeVar, cast

from object_clerk.checksums import Crc, full_object_checksum, stored_checksum
from object_clerk.errors import (
    ObjectClerkError,
    RequestRejectedError,
    ServerError,
    TransientError,
    UnverifiableObjectError,
    UnverifiableObjectWarning,
    translated,
)
from object_clerk.etag import candidate_part_sizes, parse_etag
from object_clerk.retry import Retrier, is_retryable
from object_clerk.settings import TransferSettings
from object_clerk.verdict import VERIFIED, ObjectLayout, Verdict, Verification, etag_opacity, judge

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client
else:
    S3Client = Any

__all__ = [
    "PART_SIZE_METADATA",
    "Engine",
    "ObjectLayout",
    "StoreFacts",
    "TransferResult",
    "proof_name",
]

logger = logging.getLogger("object_clerk")

T = TypeVar("T")

#: User-metadata key under which object_clerk records the part size of a multipart upload.
PART_SIZE_METADATA = "object-clerk-part-size"

#: Upload arguments that every later request about the object must repeat: UploadPart, and
#: the HeadObject that reads a completed upload's ETag (an SSE-C object answers nothing
#: without its key).
REPEATED_ARGS = frozenset(
    {
        "SSECustomerAlgorithm",
        "SSECustomerKey",
        "SSECustomerKeyMD5",
        "RequestPayer",
        "ExpectedBucketOwner",
    }
)

# How far before a call an upload it created may appear to start (client/server clock skew).
_CLOCK_SLACK = timedelta(seconds=60)


class StoreFacts:
    """What a clerk learned about its store, shared by every copy of its engine. Each is
    None until the first answer that tells; a benign race between threads."""

    __slots__ = ("keeps_checksums", "part_number")

    def __init__(self) -> None:
        # Whether HeadObject(PartNumber=1) reports PartsCount (AWS, moto), or is ignored
        # (Ceph RGW 16).
        self.part_number: bool | None = None
        # Whether an upload's full-object checksum comes back, so the store keeps it (AWS,
        # moto), or is ignored (Ceph RGW 16): uploads stop computing and sending one.
        self.keeps_checksums: bool | None = None


@dataclass(frozen=True)
class TransferResult:
    """What an upload, copy, move or download produced.

    ``verification`` says how the bytes were proven (see :mod:`object_clerk.verdict`):

    * ``"md5"``: the object's ETag equals the MD5 of the bytes;
    * ``"multipart-md5"``: its ETag equals the MD5-of-MD5s of the parts;
    * ``"content-md5"``: the server checked every body against its Content-MD5, but the ETag
      is not an MD5 (SSE-KMS, SSE-C), so it could not be compared;
    * ``"crc64nvme"``, ``"crc32c"``, ``"crc32"``: a read checked by the full-object checksum
      the store keeps, or an upload whose ETag is no MD5 that the store kept the checksum
      sent with;
    * ``"unverifiable"``: nothing could prove the content (a warning was issued);
    * ``"skipped"``: ``verify_checksum=False``.

    ``reason`` says why, for the last three.
    """

    bucket: str
    key: str
    etag: str
    size: int
    version_id: str | None
    verification: Verification
    reason: str = ""

    @property
    def verified(self) -> bool:
        return self.verification in VERIFIED


class Engine:
    """Runs S3 requests for the clerk over one boto3 client. Thread-safe."""

    def __init__(
        self,
        client: S3Client,
        retrier: Retrier,
        transfer: TransferSettings,
        *,
        strict: bool = False,
        upload_checksum: Crc | None = None,
    ) -> None:
        # The engine's own requests bypass a hardened client's methods (which would retry
        # and verify them a second time) but still pass through its events.
        self.client = cast(S3Client, _Unhardened(client))
        self.retrier = retrier
        self.transfer = transfer
        self.strict = strict
        self._upload_checksum = upload_checksum
        self.facts = StoreFacts()

    def upload_checksum(self) -> Crc | None:
        """The full-object CRC uploads send with their bodies: the configured one, until an
        upload's answer shows that the store keeps none (see :meth:`learn_checksums`)."""
        return None if self.facts.keeps_checksums is False else self._upload_checksum

    def learn_checksums(self, stored: str | None) -> None:
        """What an upload's answer (or the HEAD after it) said: the checksum it keeps, or
        None when it carried none."""
        if self.facts.keeps_checksums is False:
            return  # once learned, an upload that began before does not undo it
        if stored is None:
            logger.debug("the store keeps no full-object checksums: uploads stop sending them")
        self.facts.keeps_checksums = stored is not None

    def with_transfer(self, transfer: TransferSettings) -> Engine:
        """The same engine (client, retry policy, strictness) with other transfer settings:
        for a call that brings its own TransferConfig."""
        engine = copy.copy(self)
        engine.transfer = transfer
        return engine

    def call(
        self,
        operation: str,
        bucket: str | None,
        key: str | None,
        fn: Callable[[], T],
        *,
        retryable: Callable[[BaseException], bool] = is_retryable,
    ) -> T:
        """Run one S3 request (or a small unit of work) with translation and retries."""

        def once() -> T:
            ANSWER.stubbed = False
            with translated(operation, bucket, key):
                return fn()

        def final(exc: BaseException) -> bool:
            # A stub's answer (botocore's Stubber) is final: retrying would consume the
            # answers the test queued for the next calls.
            return retryable(exc) and not ANSWER.stubbed

        return self.retrier.call(once, operation=operation, bucket=bucket, key=key, retryable=final)

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
        warnings.warn(str(error), UnverifiableObjectWarning, stacklevel=_caller_stacklevel())

    def discover_layout(
        self,
        bucket: str,
        key: str,
        response: Mapping[str, Any],
        *,
        nested: bool = False,
        args: Mapping[str, Any] = {},
        checksums: bool = False,
    ) -> ObjectLayout | str:
        """The part layout of the object a GET/HEAD ``response`` describes.

        Returns a reason string instead when the ETag cannot prove the content at all.
        ``nested``: called inside a retried unit, so a probe request is not retried itself.
        ``args``: the read's arguments, of which the :data:`REPEATED_ARGS` go with a probe.
        ``checksums``: ``response`` answered a whole-object GET that asked for its checksum,
        so a full-object CRC in it proves the content. Never a HEAD's: moto's HEAD drops a
        composite checksum's ``-N``, and other stores send checksums unasked.
        """
        size = int(response.get("ContentLength") or 0)  # a read passes the object's size
        etag = parse_etag(response.get("ETag"))
        checksum = full_object_checksum(response) if checksums else None
        if checksum is not None:
            # A CRC of the whole content: it proves the bytes whatever the part layout or
            # the encryption, so no layout needs finding.
            return ObjectLayout(size, etag, (0,), True, f"full-object {checksum[0].name}", checksum)
        # The request's arguments count too: a store need not echo the SSE-C it applied.
        reason = etag_opacity([response, args])
        if reason is not None or etag is None:
            return reason or f"the ETag {response.get('ETag')!r} is not an MD5"
        if etag.parts is None:
            return ObjectLayout(size, etag, (0,), True, "single-part")
        parts = etag.parts
        if parts == 1:
            return ObjectLayout(size, etag, (max(size, 1),), True, "one part")
        recorded = _recorded_part_size(response.get("Metadata") or {})
        if recorded is not None and _consistent(size, parts, recorded):
            return ObjectLayout(size, etag, (recorded,), True, "recorded at upload")
        if self.facts.part_number is not False:
            part_size = self._probe_part_size(bucket, key, response, parts, nested, args)
            if part_size is not None and _consistent(size, parts, part_size):
                return ObjectLayout(size, etag, (part_size,), True, "HeadObject PartNumber=1")
        candidates = candidate_part_sizes(size, parts)
        if not candidates:
            return f"no part size gives {parts} parts for {size} bytes"
        return ObjectLayout(size, etag, tuple(candidates), False, "candidate part sizes")

    def _probe_part_size(
        self,
        bucket: str,
        key: str,
        response: Mapping[str, Any],
        parts: int,
        nested: bool,
        args: Mapping[str, Any],
    ) -> int | None:
        # No If-Match here: moto compares it with part 1's own ETag and answers 412. A layout
        # that does not fit the size and part count is discarded by the caller.
        params: dict[str, Any] = {
            "Bucket": bucket,
            "Key": key,
            "PartNumber": 1,
            **repeated_args(args),
        }
        if response.get("VersionId"):
            params["VersionId"] = response["VersionId"]
        run = self.once if nested else self.call
        try:
            head = run("HeadObject", bucket, key, lambda: self.client.head_object(**params))
        except RequestRejectedError:
            # A store that refuses PartNumber outright (400): it cannot tell us either.
            self.facts.part_number = False
            return None
        count = head.get("PartsCount")
        if count is None:
            self.facts.part_number = False
            logger.debug("store ignores HeadObject PartNumber; using candidate part sizes")
            return None
        self.facts.part_number = True
        return int(head["ContentLength"]) if int(count) == parts else None

    def head(
        self,
        bucket: str,
        key: str,
        *,
        nested: bool = False,
        args: Mapping[str, Any] = {},
        checksum_mode: bool = False,
    ) -> dict[str, Any]:
        """HeadObject, retried (or a single attempt when ``nested``), with its ETag required.
        ``args``: the upload's or read's arguments, of which the :data:`REPEATED_ARGS` and a
        VersionId are sent. ``checksum_mode``: ask for the stored checksum too."""
        repeated = repeated_args(args)
        if args.get("VersionId"):
            repeated["VersionId"] = args["VersionId"]
        if checksum_mode:
            repeated["ChecksumMode"] = "ENABLED"

        def attempt() -> dict[str, Any]:
            response = dict(self.client.head_object(Bucket=bucket, Key=key, **repeated))
            require_etag(response, "HeadObject", bucket, key)
            return response

        return (self.once if nested else self.call)("HeadObject", bucket, key, attempt)

    def create_upload(self, bucket: str, key: str, args: Mapping[str, Any]) -> str:
        """CreateMultipartUpload, retried, without orphans (see :meth:`create_upload_call`):
        the new upload's id."""
        return str(self.create_upload_call(bucket, key, args)["UploadId"])

    def create_upload_call(self, bucket: str, key: str, args: Mapping[str, Any]) -> dict[str, Any]:
        """CreateMultipartUpload, retried, without leaving orphans behind: its response.

        If an attempt's answer is lost (reset, timeout, 5xx after the fact), the server may
        have created an upload we never heard of. Those are found afterwards (same key,
        initiated since this call began) and aborted.
        """
        started = datetime.now(timezone.utc) - _CLOCK_SLACK
        suspect = False

        def attempt() -> dict[str, Any]:
            nonlocal suspect
            try:
                created = self.once(
                    "CreateMultipartUpload",
                    bucket,
                    key,
                    lambda: self.client.create_multipart_upload(Bucket=bucket, Key=key, **args),
                )
            except ObjectClerkError as exc:
                # Only an answer that may have been lost can hide a created upload; a 4xx
                # (NoSuchBucket, AccessDenied...) is a definite "no".
                suspect = suspect or not _definite_refusal(exc)
                raise
            if not created.get("UploadId"):
                raise ServerError(
                    "CreateMultipartUpload answered without an UploadId",
                    operation="CreateMultipartUpload",
                    bucket=bucket,
                    key=key,
                )
            return dict(created)

        try:
            created = self.call("CreateMultipartUpload", bucket, key, attempt)
        except ObjectClerkError:
            if suspect:
                self._abort_strays(bucket, key, started, keep=None, args=args)
            raise
        if suspect:
            self._abort_strays(bucket, key, started, keep=str(created["UploadId"]), args=args)
        return created

    def _abort_strays(
        self,
        bucket: str,
        key: str,
        started: datetime,
        *,
        keep: str | None,
        args: Mapping[str, Any],
    ) -> None:
        owner = owner_args(args)
        try:
            listing = self.call(
                "ListMultipartUploads",
                bucket,
                key,
                lambda: self.client.list_multipart_uploads(Bucket=bucket, Prefix=key, **owner),
            )
        except ObjectClerkError as exc:
            logger.error("could not look for stray uploads of s3://%s/%s: %s", bucket, key, exc)
            return
        for upload in listing.get("Uploads", []):
            initiated = upload.get("Initiated")
            if (
                upload.get("Key") == key
                and upload.get("UploadId") != keep
                and isinstance(initiated, datetime)
                and initiated >= started
            ):
                logger.warning(
                    "aborting stray multipart upload of s3://%s/%s left by a lost response",
                    bucket,
                    key,
                )
                self.abort(bucket, key, str(upload["UploadId"]), args=args)

    def complete_upload(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        parts: list[tuple[int, str, bytes]],
        expected: str,
        *,
        args: Mapping[str, Any] = {},
        params: Mapping[str, Any] | None = None,
        checksums: tuple[Crc, list[str], str] | None = None,
    ) -> dict[str, Any]:
        """CompleteMultipartUpload, retried. ``params``: the request's arguments as a boto3
        caller gave them (by default, built from ``parts``). ``checksums``: the upload's CRC,
        its parts' values in order and the whole object's, sent with the parts.

        An answer lost on the way does not fail it: when a retry finds NoSuchUpload, or
        every attempt's answer was lost and the upload is gone (an AbortMultipartUpload
        finds NoSuchUpload), a HEAD showing the key with the ``expected`` ETag proves an
        earlier attempt completed it. An ETag alone would not: the key may have held the
        same bytes before."""
        listed: list[dict[str, Any]] = [{"PartNumber": n, "ETag": etag} for n, etag, _ in parts]
        request: dict[str, Any] = {
            "Bucket": bucket,
            "Key": key,
            "UploadId": upload_id,
            "MultipartUpload": {"Parts": listed},
        }
        if checksums is not None:
            crc, values, whole = checksums
            for part, value in zip(listed, values, strict=True):
                part[crc.field] = value
            request.update({crc.field: whole, "ChecksumType": "FULL_OBJECT"})
        if params is not None:
            assert checksums is None, "a caller's own request carries its own checksums"
            request = dict(params)
        attempts = 0

        def landed() -> dict[str, Any] | None:
            if not expected:
                return None
            head = self.head(bucket, key, nested=True, args=args)
            return head if str(parse_etag(head.get("ETag"))) == expected else None

        def attempt() -> dict[str, Any]:
            nonlocal attempts
            attempts += 1
            try:
                return dict(
                    self.once(
                        "CompleteMultipartUpload",
                        bucket,
                        key,
                        lambda: self.client.complete_multipart_upload(**request),
                    )
                )
            except ObjectClerkError as exc:
                if attempts > 1 and exc.code == "NoSuchUpload":
                    head = landed()
                    if head is not None:
                        return head
                raise

        try:
            return self.call("CompleteMultipartUpload", bucket, key, attempt)
        except TransientError:
            if ANSWER.stubbed:
                raise  # a stub's 5xx: the test's next answers are not ours to take
            # Whether an earlier attempt completed it is asked by aborting it: NoSuchUpload
            # (False) means it is gone; an abort that succeeds means it was still open, so
            # nothing was completed and nothing is left; a failed abort (None) is not proof.
            if self.abort(bucket, key, upload_id, args=args) is not False:
                raise
            try:
                head = self.call("HeadObject", bucket, key, landed)
            except ObjectClerkError:
                head = None
            if head is None:
                raise
            logger.warning(
                "s3://%s/%s: CompleteMultipartUpload's answers were lost, but the object is"
                " in place with the expected ETag",
                bucket,
                key,
            )
            return head

    def check_completed(
        self,
        bucket: str,
        key: str,
        response: dict[str, Any],
        *,
        computed: str | None,
        size: int,
        evidence: list[Mapping[str, Any]],
        verify: bool,
        content_md5: bool,
        unknown: str = "",
        operation: str = "CompleteMultipartUpload",
        args: Mapping[str, Any] = {},
        checksum: tuple[Crc, str] | None = None,
    ) -> TransferResult:
        """The verdict on a completed multipart upload, whose parts combine to ``computed``.
        ``checksum``: the full-object CRC sent with it, to be compared with the stored one.

        A mismatch removes the object and raises ChecksumMismatchError; an unverifiable
        result is reported (a warning, or an error in strict mode).
        """
        etag_text = str(response.get("ETag") or "")
        stored = stored_checksum(response, checksum[0]) if checksum else None
        if not etag_text.strip('"') or (checksum and stored is None):
            # Ceph RGW 16 answers CompleteMultipartUpload with an empty ETag, and moto with
            # no checksum: ask for them.
            head = self.head(bucket, key, args=args, checksum_mode=checksum is not None)
            head_etag = str(head.get("ETag") or "")
            if not etag_text.strip('"'):
                etag_text = head_etag
            elif head_etag.strip('"') != etag_text.strip('"'):
                checksum = None  # another writer replaced the key since: its CRC is not ours
            response = {**response, "VersionId": response.get("VersionId") or head.get("VersionId")}
            response.setdefault("ServerSideEncryption", head.get("ServerSideEncryption"))
            stored = stored_checksum(head, checksum[0]) if checksum else None
        if checksum is not None:
            self.learn_checksums(stored)
        verdict = judge(
            verify=verify,
            etag=etag_text,
            computed=[computed] if computed else [],
            evidence=[*evidence, response],
            content_md5=content_md5,
            unknown=unknown,
            checksum=(checksum[0], checksum[1], stored) if checksum and stored else None,
        )
        if not verdict.matched:
            self.remove_corrupted(bucket, key, args=args)
            raise verdict.mismatch(
                f"the completed object's {proof_name(verdict)} does not match its parts",
                operation="CompleteMultipartUpload",
                bucket=bucket,
                key=key,
            )
        self.report(verdict, operation=operation, bucket=bucket, key=key)
        return result_of(bucket, key, etag_text, size, response.get("VersionId"), verdict)

    def report(self, verdict: Verdict, *, operation: str, bucket: str, key: str) -> None:
        """Report an unverifiable verdict: a warning, or an error in strict mode."""
        if verdict.kind == "unverifiable":
            self.unverifiable(verdict.reason, operation=operation, bucket=bucket, key=key)

    def abort(
        self, bucket: str, key: str, upload_id: str, *, args: Mapping[str, Any] = {}
    ) -> bool | None:
        """AbortMultipartUpload, retried. True: the upload was open and is aborted; False: it
        was gone already (NoSuchUpload: completed or aborted before); None: the abort
        failed, which is logged. ``args``: the upload's, of which the payer and owner go."""
        owner = owner_args(args)
        try:
            self.call(
                "AbortMultipartUpload",
                bucket,
                key,
                lambda: self.client.abort_multipart_upload(
                    Bucket=bucket, Key=key, UploadId=upload_id, **owner
                ),
            )
        except ObjectClerkError as exc:
            if exc.code == "NoSuchUpload":
                return False
            logger.error(
                "could not abort multipart upload %s of s3://%s/%s: %s", upload_id, bucket, key, exc
            )
            return None
        return True

    def remove_corrupted(self, bucket: str, key: str, *, args: Mapping[str, Any] = {}) -> None:
        logger.error("removing s3://%s/%s: its stored bytes did not verify", bucket, key)
        owner = owner_args(args)
        try:
            self.call(
                "DeleteObject",
                bucket,
                key,
                lambda: self.client.delete_object(Bucket=bucket, Key=key, **owner),
            )
        except ObjectClerkError as exc:
            logger.error("could not remove corrupted s3://%s/%s: %s", bucket, key, exc)


class _Answer(threading.local):
    """What the last response on this thread was, as a hardened client's ``after-call``
    handler saw it (:mod:`object_clerk.hardened`)."""

    stubbed = False  # answered by a before-call handler (botocore's Stubber), not a server
    verdict: Verdict | None = None  # the verdict on a PutObject/UploadPart answer's ETag
    wrong_content_md5 = False  # the caller's own Content-MD5 is not the body's
    internal = False  # the request is the engine's own (its Content-MD5 is the body's)


ANSWER = _Answer()

#: The attribute under which a hardened client's method keeps the method it replaced.
ORIGINAL = "__object_clerk_original__"


class _Unhardened:
    """A client's view with its hardened methods replaced by the ones they wrap."""

    __slots__ = ("_client",)

    def __init__(self, client: object) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._client, name)
        original = getattr(attribute, ORIGINAL, None)
        if original is None:
            return attribute

        def internal(*args: Any, **kwargs: Any) -> Any:
            ANSWER.internal = True  # the hardened client's events know it is the engine's
            try:
                return original(*args, **kwargs)
            finally:
                ANSWER.internal = False

        return internal


def _definite_refusal(exc: ObjectClerkError) -> bool:
    """True for a server's 4xx answer: the request was refused and did nothing."""
    return exc.status is not None and 400 <= exc.status < 500


def require_etag(response: Mapping[str, Any], operation: str, bucket: str, key: str) -> str:
    """The response's ETag. A success without one is not a real S3 answer (a proxy's or a
    server's error page with status 200, say): it is raised as a transient ServerError."""
    etag = str(response.get("ETag") or "").strip()
    if not etag.strip('"'):
        raise ServerError(
            "the response has status 200 but no ETag: not a valid S3 answer",
            operation=operation,
            bucket=bucket,
            key=key,
        )
    return etag


def _caller_stacklevel() -> int:
    """The warnings stacklevel of the first frame outside object_clerk and the retry module,
    so a warning points at the caller's line however deep the clerk's call chain is."""
    frame = sys._getframe(1)
    level = 1
    while frame.f_back is not None and frame.f_globals.get("__name__", "").split(".")[0] in (
        "object_clerk",
        "retry",
    ):
        frame = frame.f_back
        level += 1
    return level


#: The arguments that say who pays and who must own the bucket: every request about an
#: upload repeats them, aborts and listings included.
OWNER_ARGS = frozenset({"RequestPayer", "ExpectedBucketOwner"})


def owner_args(args: Mapping[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in args.items() if name in OWNER_ARGS}


def repeated_args(args: Mapping[str, Any]) -> dict[str, Any]:
    """The upload arguments every later request about the object repeats."""
    return {name: value for name, value in args.items() if name in REPEATED_ARGS}


def result_of(
    bucket: str, key: str, etag: str, size: int, version_id: str | None, verdict: Verdict
) -> TransferResult:
    """The TransferResult for a verdict (a mismatch is raised, never returned)."""
    return TransferResult(
        bucket, key, etag.strip('"'), size, version_id, verdict.kind, verdict.reason
    )


def _recorded_part_size(metadata: Mapping[str, str]) -> int | None:
    value = metadata.get(PART_SIZE_METADATA)
    if value is None or not value.isdigit():
        return None
    return int(value) or None


def _consistent(size: int, parts: int, part_size: int) -> bool:
    return part_size > 0 and max(1, -(-size // part_size)) == parts


def b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")


def quoted(etag: str) -> str:
    return etag if etag.startswith('"') else f'"{etag}"'


def proof_name(verdict: Verdict) -> str:
    """What a failed verdict compared, for its message: "checksum" or "ETag"."""
    return "ETag" if "md5" in verdict.kind else "checksum"
