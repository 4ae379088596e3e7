"""A boto3 S3 client hardened in place: the same object, class, methods and return shapes,
with object_clerk's retry policy and verification behind them.

Strategy: :func:`harden` keeps the client boto3 built (``isinstance``, paginators, waiters,
``generate_presigned_url``, ``client.exceptions``, botocore's Stubber and moto all keep
working) and replaces each API method *on the instance* with one that runs the original
under the clerk's :class:`~object_clerk.Retrier`, through the engine of the core. Errors
reach the caller as boto3 raised them (``ClientError`` with the same ``Error.Code``); only
what object_clerk itself finds is its own, a :class:`~object_clerk.ChecksumMismatchError`
above all, which is also botocore's ``FlexibleChecksumError``.

botocore events this module depends on, all public:

* ``before-call.s3.PutObject`` and ``before-call.s3.UploadPart``: the body's Content-MD5
  goes on the serialised request. That is after botocore's Stubber checked the caller's
  parameters (so its ``expected_params`` still match) and before any flexible checksum
  wraps the body.
* ``after-call.s3``: every answer, real or stubbed. It records whether the answer came over
  HTTP (a Stubber's has no raw stream: it is passed through, never retried nor verified)
  and, for PutObject and UploadPart, the verdict on the ETag against the MD5 sent.
* ``needs-retry.s3``: botocore's own retry handler (registered with the unique id
  ``retry-config-s3``, in every retry mode) is removed, so a request makes exactly the
  attempts the clerk's policy allows. Other handlers there (S3's region redirects) stay.

``get_object``'s ``Body`` is a :class:`VerifiedBody`, a ``StreamingBody`` subclass that
hashes what is read, resumes a cut body with a ranged GET pinned by ``IfMatch``, and gives
its verdict at the end. The verdict of every call is in
``response["ResponseMetadata"]["ObjectClerk"]`` (see :func:`verification_of`).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import io
import logging
import re
from collections.abc import Callable, Mapping
from typing import IO, TYPE_CHECKING, Any, Literal, TypeVar, cast

import boto3
from boto3.exceptions import S3UploadFailedError
from boto3.s3.transfer import TransferConfig
from botocore.client import BaseClient
from botocore.config import Config
from botocore.exceptions import ClientError, StubResponseError
from botocore.response import StreamingBody

from object_clerk import copying, reads, uploads
from object_clerk.clerk import UPLOAD_EXTRA_ARGS
from object_clerk.engine import ANSWER, ORIGINAL, Engine
from object_clerk.errors import (
    ChecksumMismatchError,
    ConfigurationError,
    ConnectionFault,
    InvalidRequestError,
    ObjectClerkError,
    TransientError,
    native,
    translated,
)
from object_clerk.etag import multipart_etag, parse_etag
from object_clerk.retry import Retrier, RetryEvent, is_retryable
from object_clerk.runner import Progress
from object_clerk.settings import ClerkSettings, TransferSettings, load_settings
from object_clerk.verdict import ReadVerifier, Verification, judge, settle_suspect

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client
else:
    S3Client = Any

__all__ = ["CallVerification", "VerifiedBody", "client", "harden", "verification_of"]

logger = logging.getLogger("object_clerk")

T = TypeVar("T")

#: What ``ResponseMetadata["ObjectClerk"]["Verification"]`` holds: a verdict of
#: :mod:`object_clerk.verdict`, ``"pending"`` for a ``get_object`` body not yet read to
#: its end, or ``"mismatch"`` for one that failed (its read raised).
CallVerification = Literal[Verification, "pending", "mismatch"]

#: The key in ``ResponseMetadata`` under which a hardened call reports its verdict.
METADATA_KEY = "ObjectClerk"

# The options harden() and client() take, by their ClerkSettings names.
_SETTING_OPTIONS = {
    "retry_tries": "retry_tries",
    "retry_delay": "retry_delay",
    "retry_backoff": "retry_backoff",
    "retry_jitter": "retry_jitter",
    "retry_max_delay": "retry_max_delay",
    "retry_deadline": "retry_deadline",
    "strict_verification": "strict_verification",
    "upload_checksum": "upload_checksum",
    "multipart_threshold": "multipart_threshold",
    "upload_config": "s3_upload_config",
    "download_config": "s3_download_config",
}

# boto3's download ExtraArgs (s3transfer's ALLOWED_DOWNLOAD_ARGS).
_DOWNLOAD_EXTRA_ARGS = frozenset(
    {
        "ChecksumMode",
        "VersionId",
        "SSECustomerAlgorithm",
        "SSECustomerKey",
        "SSECustomerKeyMD5",
        "RequestPayer",
        "ExpectedBucketOwner",
    }
)
# boto3's copy ExtraArgs: the upload ones plus the copy's own.
_COPY_EXTRA_ARGS = UPLOAD_EXTRA_ARGS | {
    "CopySourceSSECustomerAlgorithm",
    "CopySourceSSECustomerKey",
    "CopySourceSSECustomerKeyMD5",
    "ExpectedSourceBucketOwner",
    "MetadataDirective",
    "TaggingDirective",
}
# What a resumed GET repeats from the caller's request.
_RESUMED_ARGS = _DOWNLOAD_EXTRA_ARGS - {"ChecksumMode"}

_HARDENING = "__object_clerk__"  # the attribute holding a hardened client's engine
_MD5 = "object_clerk_content_md5"  # the request context's record of the MD5 sent
_SSE = "object_clerk_sse"  # ... and of the encryption asked for


def client(service_name: str = "s3", *args: Any, **kwargs: Any) -> S3Client:
    """A hardened S3 client: ``boto3.client("s3", ...)``'s arguments, and harden()'s options.

    Example::

        s3 = object_clerk.client("s3", endpoint_url="http://127.0.0.1:7480",
                                 retry_tries=3, strict_verification=True)
        s3.get_object(Bucket="bucket", Key="key")["Body"].read()   # verified, retried

    The client's ``config`` is laid over object_clerk's defaults (timeouts, checksums sent
    only when required, ``S3_CLIENT_CONFIG``); botocore's retries are always off.
    """
    if service_name != "s3":
        raise InvalidRequestError(
            f"object_clerk hardens S3 clients only, not {service_name!r}", operation="client"
        )
    options = {name: kwargs.pop(name) for name in list(kwargs) if name in _HARDEN_KEYWORDS}
    settings = _settings(options.pop("settings", None), options)
    config = settings.client_config()
    user_config = kwargs.pop("config", None)
    if user_config is not None:
        config = config.merge(user_config)
    transfer = settings.transfer()
    wanted_pool = max(transfer.upload_concurrency, transfer.download_concurrency) + 2
    if getattr(user_config, "max_pool_connections", None) is None and wanted_pool > 10:
        config = config.merge(Config(max_pool_connections=wanted_pool))
    config = config.merge(Config(retries={"max_attempts": 0}))
    make_client: Callable[..., S3Client] = boto3.client
    s3 = make_client("s3", *args, config=config, **kwargs)
    return harden(s3, settings=settings, **options)


def harden(
    s3_client: S3Client,
    *,
    settings: ClerkSettings | None = None,
    on_retry: Callable[[RetryEvent], None] | None = None,
    **options: Any,
) -> S3Client:
    """Harden an existing boto3 S3 client in place and return it.

    Options (their defaults come from the environment and ``.env``, as for
    :class:`~object_clerk.ObjectClerk`): ``retry_tries``, ``retry_delay``,
    ``retry_backoff``, ``retry_jitter``, ``retry_max_delay``, ``retry_deadline``,
    ``strict_verification``, ``upload_checksum``, ``multipart_threshold``, ``upload_config``,
    ``download_config``; or ``settings``, a :class:`~object_clerk.ClerkSettings`; and
    ``on_retry``, called before each retry. Hardening a hardened client again replaces its
    options.
    """
    unknown = set(options) - set(_SETTING_OPTIONS)
    if unknown:
        raise ConfigurationError(
            f"unknown harden() options {sorted(unknown)}; known: {sorted(_HARDEN_KEYWORDS)}",
            variable=sorted(unknown)[0],
        )
    resolved = _settings(settings, options)
    retrier = Retrier(
        resolved.retry_policy(),
        checksum_policy=resolved.checksum_retry_policy(),
        on_retry=on_retry,
    )
    engine = Engine(
        s3_client,
        retrier,
        resolved.transfer(),
        strict=resolved.strict_verification,
        upload_checksum=resolved.upload_crc(),
    )
    return install(s3_client, engine)


_HARDEN_KEYWORDS = frozenset({*_SETTING_OPTIONS, "settings", "on_retry"})


def _settings(settings: ClerkSettings | None, options: Mapping[str, Any]) -> ClerkSettings:
    overrides = {
        _SETTING_OPTIONS[name]: value
        for name, value in options.items()
        if name in _SETTING_OPTIONS and value is not None
    }
    if settings is None:
        return load_settings(**overrides)
    if overrides:
        return load_settings(**{**settings.model_dump(), **overrides})
    return settings


def install(s3_client: S3Client, engine: Engine) -> S3Client:
    """Harden ``s3_client`` with ``engine`` (its retry policy, transfer settings and
    strictness): what :func:`harden` and ``ObjectClerk.s3`` do."""
    if not isinstance(s3_client, BaseClient) or s3_client.meta.service_model.service_name != "s3":
        raise InvalidRequestError(
            f"harden() takes a boto3 S3 client, not {type(s3_client).__name__}",
            operation="harden",
        )
    setattr(s3_client, _HARDENING, engine)
    events = s3_client.meta.events
    service = s3_client.meta.service_model.service_id.hyphenize()
    # botocore registers its retry handler under this id in every retry mode.
    events.unregister(f"needs-retry.{service}", unique_id=f"retry-config-{service}")
    for operation in ("PutObject", "UploadPart"):
        events.register(
            f"before-call.{service}.{operation}",
            _send_content_md5,
            unique_id=f"object-clerk-content-md5-{operation}",
        )
    events.register(f"after-call.{service}", _record_answer, unique_id="object-clerk-answer")
    special: dict[str, Callable[[Any, str, str], Callable[..., Any]]] = {
        "get_object": _get_object,
        "put_object": _checked_upload,
        "upload_part": _checked_upload,
        "create_multipart_upload": _create_multipart_upload,
        "complete_multipart_upload": _complete_multipart_upload,
        "copy_object": _copy_object,
        "upload_file": _upload_file,
        "upload_fileobj": _upload_fileobj,
        "download_file": _download_file,
        "download_fileobj": _download_fileobj,
        "copy": _copy,
    }
    mapping = s3_client.meta.method_to_api_mapping
    for name in [*mapping, *(n for n in special if n not in mapping)]:
        original = getattr(s3_client, name, None)
        if original is None:
            continue
        original = getattr(original, ORIGINAL, original)
        make = special.get(name, _retried)
        method = make(s3_client, name, mapping.get(name, name))
        wrapper = functools.wraps(original)(method)
        setattr(wrapper, ORIGINAL, original)
        setattr(s3_client, name, wrapper)
    return s3_client


def _engine(s3_client: Any) -> Engine:
    engine = getattr(s3_client, _HARDENING)
    assert isinstance(engine, Engine)
    return engine


def _original(s3_client: Any, name: str) -> Callable[..., Any]:
    method = getattr(s3_client, name)
    return cast(Callable[..., Any], getattr(method, ORIGINAL, method))


def verification_of(response: Mapping[str, Any]) -> CallVerification | None:
    """The verdict a hardened call left in its response (None: not a hardened call's).

    The full record, with its reason, is ``response["ResponseMetadata"]["ObjectClerk"]``:
    ``{"Verification": ..., "Reason": ...}``. For ``get_object`` it says ``"pending"`` until
    the body is read to its end (``response["Body"].verification`` says the same).
    """
    record = (response.get("ResponseMetadata") or {}).get(METADATA_KEY)
    if not isinstance(record, Mapping):
        return None
    return cast(CallVerification, record.get("Verification"))


def _annotate(response: dict[str, Any], kind: CallVerification, reason: str = "") -> dict[str, Any]:
    record = {"Verification": kind, "Reason": reason}
    response.setdefault("ResponseMetadata", {})[METADATA_KEY] = record
    return record


# ------------------------------------------------------------------- events ---


def _send_content_md5(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
    """``before-call.s3.PutObject`` / ``UploadPart``: put the body's Content-MD5 on the
    request, unless the caller gave one, and remember the body's MD5 for the verdict. A
    caller's Content-MD5 that is not the body's is noted: the server's BadDigest is then
    the caller's mistake, not damage on the way, and is not retried."""
    headers = params.get("headers", {})
    context[_SSE] = {
        "ServerSideEncryption": headers.get("x-amz-server-side-encryption"),
        "SSECustomerAlgorithm": headers.get("x-amz-server-side-encryption-customer-algorithm"),
    }
    given = headers.get("Content-MD5")
    ANSWER.wrong_content_md5 = False
    if given is not None and ANSWER.internal:  # the engine's own: computed from the bytes
        context[_MD5] = _hex_of(given)
        return
    digest = _md5_of(params.get("body"))
    context[_MD5] = None if digest is None else digest.hex()
    if given is None:
        if digest is not None:
            headers["Content-MD5"] = base64.b64encode(digest).decode("ascii")
        return
    try:
        ANSWER.wrong_content_md5 = digest is not None and base64.b64decode(given) != digest
    except ValueError:
        ANSWER.wrong_content_md5 = True


def _hex_of(content_md5: str) -> str | None:
    try:
        return base64.b64decode(content_md5, validate=True).hex()
    except ValueError:
        return None


def _md5_of(body: object) -> bytes | None:
    """The MD5 of what will be sent: bytes, or a seekable file from its position (which is
    restored). None for a stream that cannot be read twice."""
    if body is None:
        return hashlib.md5(b"", usedforsecurity=False).digest()
    if isinstance(body, str):
        body = body.encode("utf-8")
    if isinstance(body, (bytes, bytearray, memoryview)):
        return hashlib.md5(body, usedforsecurity=False).digest()
    start = _position(body)
    if start is None:
        return None
    stream = cast(IO[bytes], body)
    digest = hashlib.md5(usedforsecurity=False)
    try:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    finally:
        stream.seek(start)
    return digest.digest()


def _record_answer(
    http_response: Any, parsed: dict[str, Any], model: Any, context: dict[str, Any], **_: Any
) -> None:
    """``after-call.s3``: whether a server answered, and for an upload its ETag's verdict."""
    ANSWER.stubbed = getattr(http_response, "raw", None) is None
    ANSWER.verdict = None
    if model.name not in ("PutObject", "UploadPart") or http_response.status_code >= 300:
        return
    if ANSWER.stubbed:
        return  # a stub's answer is the test's: passed through as it is
    md5 = context.get(_MD5)
    ANSWER.verdict = judge(
        verify=True,
        etag=parsed.get("ETag"),
        computed=[md5] if md5 else [],
        evidence=[context.get(_SSE) or {}, parsed],
        content_md5=md5 is not None,
        unknown="the body is a stream that cannot be read twice: no Content-MD5 was sent",
    )
    if ANSWER.verdict.matched:
        _annotate(parsed, ANSWER.verdict.kind, ANSWER.verdict.reason)


# ------------------------------------------------------------- API methods ---


def _run(
    s3_client: Any,
    operation: str,
    kwargs: dict[str, Any],
    fn: Callable[[], T],
    *,
    on_error: Callable[[ObjectClerkError], None] | None = None,
    final: Callable[[ObjectClerkError], bool] = lambda exc: False,
) -> T:
    """One API call under the clerk's policy, its body rewound to where it started before
    every attempt, its errors raised as boto3 raised them. ``final`` marks errors not to
    retry."""
    engine = _engine(s3_client)
    body = kwargs.get("Body")
    start = _position(body)
    if start:
        # A file body that starts past 0 is sent through a window that starts at its
        # position: botocore rewinds bodies to 0 (its retries; the awscrt signer, whenever
        # awscrt is installed), which would send the bytes before it.
        body = kwargs["Body"] = _Window(cast(IO[bytes], body), start)
        start = 0
    rewindable = start is not None or body is None or isinstance(body, (bytes, bytearray, str))
    sent = False

    def attempt() -> T:
        nonlocal sent
        if start is not None:
            cast(IO[bytes], body).seek(start)
        sent = True
        return fn()

    def retryable(exc: BaseException) -> bool:
        if isinstance(exc, ObjectClerkError) and final(exc):
            return False
        return is_retryable(exc) and (rewindable or not sent)

    bucket, key = kwargs.get("Bucket"), kwargs.get("Key")
    try:
        return engine.call(
            operation,
            bucket if isinstance(bucket, str) else None,
            key if isinstance(key, str) else None,
            attempt,
            retryable=retryable,
        )
    except ObjectClerkError as exc:
        if on_error is not None:
            on_error(exc)
        raise native(exc) from None


class _Window(io.RawIOBase):
    """The bytes of a seekable file from ``start`` on, as a file of their own: position 0
    of the window is ``start`` of the file."""

    def __init__(self, file: IO[bytes], start: int) -> None:
        super().__init__()
        self._file, self._start = file, start
        file.seek(start)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        return self._file.read(-1 if size is None else size)

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        data = self._file.read(len(view))
        view[: len(data)] = data
        return len(data)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            return self._file.seek(self._start + max(offset, 0)) - self._start
        return max(self._file.seek(offset, whence), self._start) - self._start

    def tell(self) -> int:
        return self._file.tell() - self._start


def _keywords_only(name: str, args: tuple[Any, ...]) -> None:
    if args:
        raise TypeError(f"{name}() only accepts keyword arguments.")


def _position(body: object) -> int | None:
    """Where a seekable file body starts; None for anything else."""
    seekable = getattr(body, "seekable", None)
    if not callable(getattr(body, "read", None)) or not callable(getattr(body, "tell", None)):
        return None
    try:
        if callable(seekable) and not seekable():
            return None
        return int(cast(IO[bytes], body).tell())
    except (OSError, ValueError):
        return None


def _retried(s3_client: Any, name: str, operation: str) -> Callable[..., Any]:
    original = _original(s3_client, name)

    def call(*args: Any, **kwargs: Any) -> Any:
        _keywords_only(name, args)
        return _run(s3_client, operation, kwargs, lambda: original(**kwargs))

    return call


def _checked_upload(s3_client: Any, name: str, operation: str) -> Callable[..., Any]:
    """put_object and upload_part: Content-MD5 on every body (the before-call handler), the
    ETag compared with it, the body rewound to its start on retry. A PutObject whose stored
    ETag keeps disagreeing is removed, as the core removes one."""
    original = _original(s3_client, name)

    def call(*args: Any, **kwargs: Any) -> Any:
        _keywords_only(name, args)
        stored_mismatch = False

        def attempt() -> Any:
            nonlocal stored_mismatch
            response = original(**kwargs)
            verdict = ANSWER.verdict
            if verdict is not None and not verdict.matched:
                stored_mismatch = operation == "PutObject"
                raise verdict.mismatch(
                    "the stored ETag does not match the MD5 of the body sent",
                    operation=operation,
                    bucket=kwargs.get("Bucket"),
                    key=kwargs.get("Key"),
                )
            return response

        def on_error(exc: ObjectClerkError) -> None:
            if stored_mismatch and isinstance(exc, ChecksumMismatchError):
                _engine(s3_client).remove_corrupted(kwargs["Bucket"], kwargs["Key"], args=kwargs)

        return _run(
            s3_client,
            operation,
            kwargs,
            attempt,
            on_error=on_error,
            final=lambda exc: ANSWER.wrong_content_md5,  # the caller's MD5 is wrong: no retry
        )

    return call


def _create_multipart_upload(s3_client: Any, name: str, operation: str) -> Callable[..., Any]:
    """Retried without orphans: an upload created by an attempt whose answer was lost is
    found and aborted (the engine's create_upload_call)."""

    def call(*args: Any, **kwargs: Any) -> Any:
        _keywords_only("create_multipart_upload", args)
        rest = {k: v for k, v in kwargs.items() if k not in ("Bucket", "Key")}
        engine = _engine(s3_client)
        try:
            return engine.create_upload_call(kwargs.get("Bucket"), kwargs.get("Key"), rest)  # type: ignore[arg-type]
        except ObjectClerkError as exc:
            raise native(exc) from None

    return call


def _complete_multipart_upload(s3_client: Any, name: str, operation: str) -> Callable[..., Any]:
    """Retried (a lost answer is confirmed, not failed), and the completed ETag checked
    against the MD5-of-MD5s of the parts' ETags."""

    def call(*args: Any, **kwargs: Any) -> Any:
        _keywords_only("complete_multipart_upload", args)
        engine = _engine(s3_client)
        bucket, key = kwargs.get("Bucket"), kwargs.get("Key")
        parts = (kwargs.get("MultipartUpload") or {}).get("Parts") or []
        digests = [parse_etag(part.get("ETag")) for part in parts]
        expected = (
            multipart_etag(bytes.fromhex(d.hexdigest) for d in digests if d is not None)
            if parts and all(d is not None and not d.multipart for d in digests)
            else ""
        )
        try:
            response = engine.complete_upload(
                bucket,  # type: ignore[arg-type]
                key,  # type: ignore[arg-type]
                str(kwargs.get("UploadId")),
                [],
                expected,
                args=kwargs,
                params=kwargs,
            )
            if ANSWER.stubbed:
                return response
            result = engine.check_completed(
                bucket,  # type: ignore[arg-type]
                key,  # type: ignore[arg-type]
                response,
                computed=expected or None,
                size=0,
                evidence=[kwargs],
                verify=True,
                content_md5=False,
                unknown="the parts' ETags are not MD5s, so the object's ETag cannot be checked",
                operation=operation,
                args=kwargs,
            )
        except ObjectClerkError as exc:
            raise native(exc) from None
        if not str(response.get("ETag") or "").strip('"'):
            response["ETag"] = f'"{result.etag}"'  # Ceph RGW 16 answers with an empty ETag
        _annotate(response, result.verification, result.reason)
        return response

    return call


def _copy_object(s3_client: Any, name: str, operation: str) -> Callable[..., Any]:
    """The source's ETag is read and the copy pinned to it, and the destination's ETag is
    compared with it (copying.copy_object_call). Under botocore's Stubber, whose queue
    does not hold that HeadObject, the call is passed through unverified."""
    original = _original(s3_client, "copy_object")

    def call(*args: Any, **kwargs: Any) -> Any:
        _keywords_only("copy_object", args)
        engine = _engine(s3_client)
        try:
            response, verdict = copying.copy_object_call(engine, kwargs)
        except ObjectClerkError as exc:
            if not isinstance(native(exc), StubResponseError):
                raise native(exc) from None
            return _run(s3_client, operation, kwargs, lambda: original(**kwargs))
        _annotate(response, verdict.kind, verdict.reason)
        return response

    return call


# A Range header this module can resume: "bytes=a-b", "bytes=a-" (suffix ranges are
# resumed from the Content-Range the server answered with).
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


def _get_object(s3_client: Any, name: str, operation: str) -> Callable[..., Any]:
    original = _original(s3_client, "get_object")

    def call(*args: Any, **kwargs: Any) -> Any:
        _keywords_only("get_object", args)
        response = _run(s3_client, operation, kwargs, lambda: original(**kwargs))
        if ANSWER.stubbed or not isinstance(response.get("Body"), StreamingBody):
            return response
        response["Body"] = VerifiedBody(_engine(s3_client), kwargs, response)
        return response

    return call


class VerifiedBody(StreamingBody):
    """``get_object``'s ``Body``, verified as it is read: botocore's StreamingBody, with
    ``read``, ``iter_chunks``, ``iter_lines`` and the rest working as they do there.

    * At the end, the bytes are checked against the ETag of the same response, in the
      object's part layout as the core finds it. A whole ``read()`` that fails is fetched
      again (pinned by ``IfMatch``) before it returns, so the caller gets the right bytes;
      a partial read that fails raises ChecksumMismatchError on the read that reaches the
      end, because a stream cannot take bytes back.
    * A body cut short is resumed with a ranged GET pinned by ``IfMatch``.
    * With ``PartNumber``, a ``Range`` short of the whole object, or SSE-C, nothing can
      prove the bytes: the verdict is ``"unverifiable"``, recorded, never a false alarm.
    * botocore's own response checksum (``ChecksumMode="ENABLED"``) is still checked.

    ``verification`` says the verdict (``"pending"`` until the end is read).
    """

    def __init__(self, engine: Engine, params: Mapping[str, Any], response: dict[str, Any]):
        self._reader = _BodyReader(engine, params, response)
        super().__init__(cast(IO[bytes], self._reader), int(response.get("ContentLength") or 0))
        self._engine = engine

    @property
    def verification(self) -> CallVerification:
        return cast(CallVerification, self._reader.record["Verification"])

    def read(self, amt: int | None = None) -> bytes:
        if amt is not None and amt < 0:
            amt = None  # read(-1) reads it all, as for any file
        try:
            if amt is None and self._amount_read == 0:
                return self._read_whole()
            return super().read(amt)
        except ObjectClerkError as exc:
            raise native(exc) from None

    def _read_whole(self) -> bytes:
        """All of it, fetched again while it fails to verify (as the retry policy allows).
        A read that no candidate layout proves is confirmed by a second read within the
        same attempt: the same bytes twice are an unknown layout, not a failure."""
        reader = self._reader
        started = False

        def once() -> bytes:
            if reader.closed:
                return b""
            reader.restart()
            self._amount_read = 0
            return StreamingBody.read(self)

        def attempt() -> bytes:
            nonlocal started
            if started:
                return once()
            started = True
            try:
                return StreamingBody.read(self)
            except ChecksumMismatchError:
                if not reader.confirming:
                    raise
                return once()

        reader.rereadable = reader.whole
        try:
            return self._engine.call(
                "GetObject",
                reader.bucket,
                reader.key,
                attempt,
                retryable=lambda exc: isinstance(exc, ChecksumMismatchError) and reader.whole,
            )
        finally:
            reader.rereadable = False

    def readinto(self, b: Any) -> int:
        try:
            return super().readinto(b)
        except ObjectClerkError as exc:
            raise native(exc) from None

    def readlines(self, hint: int = -1, /) -> list[bytes]:
        return self.read().splitlines(keepends=True)

    def set_socket_timeout(self, timeout: float) -> None:
        self._reader.set_socket_timeout(timeout)

    def tell(self) -> int:
        return self._reader.delivered

    def close(self) -> None:
        self._reader.close()

    def __enter__(self) -> VerifiedBody:  # the verified body itself, not the raw stream
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# Small reads (iter_lines, iter_chunks(1024)) are served from reads of at least this size,
# so the retry machinery runs once per 64 KiB, not once per line.
_READAHEAD = 64 * 1024


class _BodyReader:
    """The raw stream under a VerifiedBody: reads, resumes and verifies."""

    def __init__(self, engine: Engine, params: Mapping[str, Any], response: dict[str, Any]) -> None:
        self.engine = engine
        self.bucket = str(params["Bucket"])
        self.key = str(params["Key"])
        self.args = {name: value for name, value in params.items() if name in _RESUMED_ARGS}
        self.response = response
        self.etag = response.get("ETag")
        self.first_body: Any = response["Body"]
        self.body: Any = self.first_body
        self.length = int(response.get("ContentLength") or 0)
        self.start, total = 0, self.length
        match = _CONTENT_RANGE.fullmatch(str(response.get("ContentRange") or ""))
        if match:
            self.start = int(match.group(1))
            total = int(match.group(3)) if match.group(3) != "*" else -1
        # A Range that covers the whole object (smart_open's "bytes=0-") is a whole read.
        self.whole = "PartNumber" not in params and self.start == 0 and total == self.length
        self.fetched = 0  # bytes received and hashed: where a resume starts
        self.delivered = 0  # bytes handed to the reader
        self.pending = b""  # received; handed over up to `taken`
        self.taken = 0
        self.verifier: ReadVerifier | None = None
        self.record = _annotate(response, "pending")
        self.rereadable = False  # set during a whole read(), which may fetch it again
        self.suspect: str | None = None  # see verdict.settle_suspect
        self.confirming = False  # a suspect read asks for a confirming second read
        self.closed = False

    def readable(self) -> bool:
        return True

    def read(self, amt: int | None = None) -> bytes:
        if self.closed:
            return b""
        if amt is None or amt < 0:
            amt = self.length - self.delivered  # all of it, in one read: one copy in memory
        pieces: list[bytes] = []
        got = 0
        while got < amt:
            if self.taken == len(self.pending):
                if self.fetched >= self.length:
                    break
                self._fetch(max(amt - got, _READAHEAD))
            piece = self.pending[self.taken : self.taken + amt - got]  # the whole: no copy
            self.taken += len(piece)
            pieces.append(piece)
            got += len(piece)
        chunk = pieces[0] if len(pieces) == 1 else b"".join(pieces)
        self.delivered += len(chunk)
        return chunk

    def _fetch(self, amt: int) -> None:
        """Receive up to ``amt`` more bytes (resuming as needed), hash them, and give the
        verdict once the last byte is in."""
        if self.verifier is None:
            self.verifier = self._verifier()
        wanted = min(amt, self.length - self.fetched)
        chunk: bytes = self.engine.call(
            "GetObject", self.bucket, self.key, lambda: self._next(wanted)
        )
        self.verifier.update(chunk)
        self.fetched += len(chunk)
        self.pending, self.taken = chunk, 0
        if self.fetched >= self.length:
            self._end_of_body()
            self._finish()  # a failed verdict raises here, on the read that reached the end

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        chunk = self.read(len(view))
        view[: len(chunk)] = chunk
        return len(chunk)

    def _next(self, amt: int) -> bytes:
        """The next bytes, from the open body or a resumed one: one attempt."""
        if self.body is None:
            self.body = self._resume()
        try:
            chunk: bytes = self.body.read(amt)
        except BaseException:
            self._drop()
            raise
        if not chunk:
            self._drop()
            raise ConnectionFault(
                f"the body ended after {self.fetched} of {self.length} bytes",
                operation="GetObject",
                bucket=self.bucket,
                key=self.key,
            )
        return chunk

    def _end_of_body(self) -> None:
        """Read the first response to its end: botocore checks its own response checksum
        (ChecksumMode) on that last, empty read. A resumed (ranged) body has none."""
        if self.body is None or self.body is not self.first_body:
            return
        try:
            with translated("GetObject", self.bucket, self.key):
                self.body.read(1)
        except TransientError:
            self._drop()  # every byte is in: a connection lost now fails nothing

    def _resume(self) -> Any:
        first = self.start + self.fetched
        params: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": self.key,
            "Range": f"bytes={first}-{self.start + self.length - 1}",
            **self.args,
        }
        if self.etag:
            params["IfMatch"] = self.etag
        return self.engine.client.get_object(**params)["Body"]

    def _verifier(self) -> ReadVerifier:
        if not self.whole:
            return ReadVerifier(
                "a byte range or a part of an object cannot be checked against the whole"
                " object's ETag",
                verify=True,
            )
        response = {**self.response, "ContentLength": self.length}
        layout = self.engine.discover_layout(self.bucket, self.key, response, args=self.args)
        return ReadVerifier(layout, verify=True)

    def _finish(self) -> None:
        assert self.verifier is not None
        verdict = self.verifier.verdict()
        self.confirming = False
        if self.rereadable:  # a whole read() can tell damage from an unknown layout
            first = self.suspect is None
            verdict = settle_suspect(verdict, self.suspect)
            self.suspect = verdict.actual if verdict.suspect else None
            self.confirming = verdict.suspect and not verdict.matched and first
        if not verdict.matched:
            self.record.update(Verification="mismatch", Reason="the bytes read do not match")
            raise verdict.mismatch(
                verdict.reason if verdict.suspect else "the body does not match its ETag",
                operation="GetObject",
                bucket=self.bucket,
                key=self.key,
            )
        self.record.update(Verification=verdict.kind, Reason=verdict.reason)
        if self.whole:
            self.engine.report(verdict, operation="get_object", bucket=self.bucket, key=self.key)

    def restart(self) -> None:
        """Start over from the first byte (a whole read that did not verify)."""
        self._drop()
        self.fetched = self.delivered = self.taken = 0
        self.pending = b""
        self.verifier = None
        self.record.update(Verification="pending", Reason="")

    def _drop(self) -> None:
        body, self.body = self.body, None
        if body is not None:
            body.close()

    def set_socket_timeout(self, timeout: float) -> None:
        if self.body is not None:
            self.body.set_socket_timeout(timeout)

    def close(self) -> None:
        self.closed = True
        self._drop()


# -------------------------------------------------------- transfer methods ---


def _transfer_engine(engine: Engine, config: object) -> Engine:
    """The engine with a boto3 TransferConfig's sizes and concurrency, if one is given."""
    if config is None:
        return engine
    if not isinstance(config, TransferConfig):
        raise InvalidRequestError(
            f"Config must be a boto3.s3.transfer.TransferConfig, not {type(config).__name__}",
            operation="transfer",
        )
    # Read as attributes: boto3 resolves the ones left unset to its defaults there.
    values = {
        name: getattr(config, name)
        for name in (
            "multipart_threshold",
            "multipart_chunksize",
            "max_concurrency",
            "use_threads",
            "io_chunksize",
        )
    }
    threads = int(values["max_concurrency"]) if values["use_threads"] else 1
    return engine.with_transfer(
        TransferSettings(
            multipart_threshold=int(values["multipart_threshold"]),
            upload_chunksize=int(values["multipart_chunksize"]),
            upload_concurrency=threads,
            download_threshold=int(values["multipart_threshold"]),
            download_chunksize=int(values["multipart_chunksize"]),
            download_concurrency=threads,
            io_chunksize=int(values["io_chunksize"]),
        )
    )


def _extra(args: Mapping[str, Any] | None, allowed: frozenset[str], method: str) -> dict[str, Any]:
    extra = dict(args or {})
    unknown = sorted(set(extra) - allowed)
    if unknown:
        raise InvalidRequestError(
            f"{method}: ExtraArgs {unknown} are not supported; allowed: {sorted(allowed)}",
            operation=method,
        )
    return extra


def _upload(
    s3_client: Any,
    data: object,
    bucket: str,
    key: str,
    extra_args: Mapping[str, Any] | None,
    callback: Callable[[int], object] | None,
    config: object,
    name: str,
    method: str,
) -> None:
    """upload_file and upload_fileobj: the core's verified upload. A server's refusal of
    upload_file is raised as boto3 raises it, an S3UploadFailedError."""
    try:
        engine = _transfer_engine(_engine(s3_client), config)
        uploads.upload(
            engine,
            data,
            bucket,
            key,
            extra_args=_extra(extra_args, UPLOAD_EXTRA_ARGS, method),
            verify=True,
            progress=Progress(callback),
        )
    except ObjectClerkError as exc:
        error = native(exc)
        if method == "upload_file" and isinstance(error, ClientError):
            # boto3 wraps a server's refusal of upload_file (only) in S3UploadFailedError.
            raise S3UploadFailedError(
                f"Failed to upload {name} to {bucket}/{key}: {error}"
            ) from error
        raise error from None


def _upload_file(s3_client: Any, name: str, operation: str) -> Callable[..., Any]:
    def upload_file(
        Filename: str,
        Bucket: str,
        Key: str,
        ExtraArgs: Mapping[str, Any] | None = None,
        Callback: Callable[[int], object] | None = None,
        Config: TransferConfig | None = None,
    ) -> None:
        # Opened here, so a missing or unreadable file raises what open() raises, as boto3.
        with open(Filename, "rb") as handle:
            _upload(
                s3_client, handle, Bucket, Key, ExtraArgs, Callback, Config, str(Filename),
                "upload_file",
            )  # fmt: skip

    return upload_file


def _upload_fileobj(s3_client: Any, name: str, operation: str) -> Callable[..., Any]:
    def upload_fileobj(
        Fileobj: IO[bytes],
        Bucket: str,
        Key: str,
        ExtraArgs: Mapping[str, Any] | None = None,
        Callback: Callable[[int], object] | None = None,
        Config: TransferConfig | None = None,
    ) -> None:
        _upload(
            s3_client, Fileobj, Bucket, Key, ExtraArgs, Callback, Config, repr(Fileobj),
            "upload_fileobj",
        )  # fmt: skip

    return upload_fileobj


def _download(
    s3_client: Any,
    bucket: str,
    key: str,
    destination: Any,
    extra_args: Mapping[str, Any] | None,
    callback: Callable[[int], object] | None,
    config: object,
    method: str,
) -> None:
    try:
        reads.download(
            _transfer_engine(_engine(s3_client), config),
            bucket,
            key,
            destination,
            verify=True,
            extra=_extra(extra_args, _DOWNLOAD_EXTRA_ARGS, method),
            progress=Progress(callback),
            operation=method,
        )
    except ObjectClerkError as exc:
        error = native(exc)
        if isinstance(error, ClientError) and error.response.get("Error", {}).get("Code") in (
            "NoSuchKey",
            "NoSuchVersion",
        ):
            # boto3's transfer asks HeadObject first, so its callers test for Code "404".
            head_404: Any = {
                "Error": {"Code": "404", "Message": "Not Found"},
                "ResponseMetadata": error.response.get("ResponseMetadata", {}),
            }
            error = ClientError(head_404, "HeadObject")
        raise error from None


def _download_file(s3_client: Any, name: str, operation: str) -> Callable[..., Any]:
    def download_file(
        Bucket: str,
        Key: str,
        Filename: str,
        ExtraArgs: Mapping[str, Any] | None = None,
        Callback: Callable[[int], object] | None = None,
        Config: TransferConfig | None = None,
    ) -> None:
        _download(s3_client, Bucket, Key, Filename, ExtraArgs, Callback, Config, "download_file")

    return download_file


def _download_fileobj(s3_client: Any, name: str, operation: str) -> Callable[..., Any]:
    def download_fileobj(
        Bucket: str,
        Key: str,
        Fileobj: IO[bytes],
        ExtraArgs: Mapping[str, Any] | None = None,
        Callback: Callable[[int], object] | None = None,
        Config: TransferConfig | None = None,
    ) -> None:
        _download(s3_client, Bucket, Key, Fileobj, ExtraArgs, Callback, Config, "download_fileobj")

    return download_fileobj


def _copy(s3_client: Any, name: str, operation: str) -> Callable[..., Any]:
    def copy(
        CopySource: Any,
        Bucket: str,
        Key: str,
        ExtraArgs: Mapping[str, Any] | None = None,
        Callback: Callable[[int], object] | None = None,
        SourceClient: Any = None,
        Config: TransferConfig | None = None,
    ) -> None:
        try:
            if SourceClient is not None and SourceClient is not s3_client:
                raise InvalidRequestError(
                    "copy: a SourceClient other than this client is not supported; the"
                    " source is read with this client's credentials",
                    operation="copy",
                    bucket=Bucket,
                    key=Key,
                )
            source_bucket, source_key, version = copying.parse_copy_source(CopySource)
            copying.copy(
                _transfer_engine(_engine(s3_client), Config),
                source_bucket,
                source_key,
                Bucket,
                Key,
                verify=True,
                operation="copy",
                extra_args=_extra(ExtraArgs, _COPY_EXTRA_ARGS, "copy"),
                source_version=version,
                progress=Progress(Callback),
            )
        except ObjectClerkError as exc:
            raise native(exc) from None

    return copy
