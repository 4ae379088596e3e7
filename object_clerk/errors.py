"""The exceptions object_clerk raises, and the one place botocore errors are translated.

The tree::

    ObjectClerkError
    ├── InvalidRequestError (ValueError)   bad input, refused before any request is sent
    │   ├── DataTypeError (TypeError)      upload data of a type that is not data
    │   └── ObjectSaveException            upload data that cannot be saved: empty, no such file
    ├── ConfigurationError (ValueError)    a setting or constructor argument is invalid
    ├── NotFoundError (LookupError)
    │   ├── BucketNotFoundError            NoSuchBucket
    │   └── ObjectNotFoundError            NoSuchKey, or a 404 on HEAD
    ├── AccessDeniedError                  403, unknown access key, bad signature
    ├── PreconditionFailedError            412: the object changed under a pinned ETag
    ├── RequestRejectedError               any other 4xx: the server refused the request as sent
    ├── TLSError                           certificate verification failed (never retried)
    ├── LocalIOError (OSError)             the local file or disk failed: full, read-only, denied
    ├── SourceChangedError                 the local file changed while it was being uploaded
    ├── ChecksumMismatchError              bytes did not verify (retried; raised when it persists)
    ├── UnverifiableObjectError            the ETag cannot prove the content (SSE-KMS, SSE-C, ...)
    └── TransientError                     what retries are for
        ├── ObjectClerkServerInternalException   the server failed or is overloaded
        │   ├── ThrottledError             SlowDown, 503, 429
        │   └── ServerError                other 5xx, InternalError, RequestTimeout
        └── ConnectionFault                connect/read timeouts, resets, truncated bodies

object-clerk 1.1.0's names stand in the tree so that an ``except`` written for 1.1.0 catches
what 1.1.0 raised in the same situation: ``ObjectClerkException`` is ObjectClerkError,
``ObjectNotFoundException`` is NotFoundError (a missing bucket or key),
``ObjectClerkServerAuthException`` is AccessDeniedError, ``ObjectVerificationException`` is
ChecksumMismatchError, and ``ObjectSaveException`` and ``ObjectClerkServerInternalException``
are classes of their own, above.

Every error carries the operation, bucket and key, and, where the server answered, its error
code, HTTP status and request id. Errors pickle, so they cross process pools. None of them
ever holds a credential: messages are built from the server's error code and message only.
"""

from __future__ import annotations

import errno
import http.client
import re
import socket
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from botocore import exceptions as bce

__all__ = [
    "AccessDeniedError",
    "BucketNotFoundError",
    "ChecksumMismatchError",
    "ConfigurationError",
    "ConnectionFault",
    "DataTypeError",
    "InvalidRequestError",
    "LocalIOError",
    "NotFoundError",
    "ObjectClerkError",
    "ObjectClerkException",
    "ObjectClerkServerAuthException",
    "ObjectClerkServerInternalException",
    "ObjectNotFoundError",
    "ObjectNotFoundException",
    "ObjectSaveException",
    "ObjectVerificationException",
    "PreconditionFailedError",
    "RequestRejectedError",
    "ServerError",
    "SourceChangedError",
    "TLSError",
    "ThrottledError",
    "TransientError",
    "UnverifiableObjectError",
    "UnverifiableObjectWarning",
    "local_io",
    "native",
    "translate_error",
    "translated",
]


class ObjectClerkError(Exception):
    """Base class of every error object_clerk raises.

    Attributes:
        message: what went wrong, in words.
        operation: the clerk or S3 operation, e.g. ``"get_object"`` or ``"UploadPart"``.
        bucket, key: the object concerned, where there is one.
        code: the S3 error code (``"NoSuchKey"``, ``"SlowDown"``...), if the server answered.
        status: the HTTP status, if the server answered.
        request_id: the server's request id, for support tickets.
    """

    def __init__(
        self,
        message: str,
        *,
        operation: str | None = None,
        bucket: str | None = None,
        key: str | None = None,
        code: str | None = None,
        status: int | None = None,
        request_id: str | None = None,
    ) -> None:
        # Exception's own __init__, not super()'s: ChecksumMismatchError is also a botocore
        # exception, whose __init__ takes keyword arguments only.
        Exception.__init__(self, message)
        self.message = message
        self.operation = operation
        self.bucket = bucket
        self.key = key
        self.code = code
        self.status = status
        self.request_id = request_id

    def __str__(self) -> str:
        where = ""
        if self.bucket is not None:
            where = (
                f" s3://{self.bucket}/{self.key}"
                if self.key is not None
                else f" s3://{self.bucket}"
            )
        details = [f"{name}={value}" for name, value in self._details() if value is not None]
        op = (
            f"{self.operation}{where}: "
            if self.operation
            else (f"{where.strip()}: " if where else "")
        )
        suffix = f" ({', '.join(details)})" if details else ""
        return f"{op}{self.message}{suffix}"

    def _details(self) -> list[tuple[str, object]]:
        return [("code", self.code), ("status", self.status), ("request_id", self.request_id)]

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only attributes do not survive the default Exception pickling.
        return (_rebuild, (type(self), self.message, self.__dict__.copy()))


def _rebuild(cls: type[ObjectClerkError], message: str, state: dict[str, Any]) -> ObjectClerkError:
    error = cls.__new__(cls)
    Exception.__init__(error, message)
    error.__dict__.update(state)
    return error


class InvalidRequestError(ObjectClerkError, ValueError):
    """Bad input, refused before any request was sent."""


class DataTypeError(InvalidRequestError, TypeError):
    """``upload_object`` was given something that is not data (a dict, a number...). A
    TypeError too, as object-clerk 1.1.0 raised."""


class ObjectSaveException(InvalidRequestError):
    """``upload_object`` cannot save its data: it is empty (refused, as object-clerk 1.1.0
    does), or a path that is not a readable file. object-clerk 1.1.0's name."""


class ConfigurationError(ObjectClerkError, ValueError):
    """A setting or constructor argument is invalid. ``variable`` names it."""

    def __init__(self, message: str, *, variable: str | None = None, **context: Any) -> None:
        super().__init__(message, **context)
        self.variable = variable


class NotFoundError(ObjectClerkError, LookupError):
    """The bucket or object does not exist."""


class BucketNotFoundError(NotFoundError):
    """The bucket does not exist."""


class ObjectNotFoundError(NotFoundError):
    """The object does not exist."""


class AccessDeniedError(ObjectClerkError):
    """403: access denied, unknown access key or a bad signature (wrong secret)."""


class PreconditionFailedError(ObjectClerkError):
    """412: the object changed under the ETag the request was pinned to."""


class RequestRejectedError(ObjectClerkError):
    """Any other 4xx: the server refused the request as sent. Retrying will not help."""


class TLSError(ObjectClerkError):
    """TLS certificate verification failed. Check ``ca_bundle``; never retried."""


class LocalIOError(ObjectClerkError, OSError):
    """A local file or disk failed: the download's destination or the upload's source (disk
    full, read-only file, permission denied, I/O error). Never retried: another request
    would not help. ``errno`` keeps the operating system's error number, and ``path`` names
    the file when it is known."""

    def __init__(
        self,
        message: str,
        *,
        errno: int | None = None,
        path: str | None = None,
        **context: Any,
    ) -> None:
        super().__init__(message, **context)
        self.errno = errno
        self.path = path

    def _details(self) -> list[tuple[str, object]]:
        return [("errno", self.errno), ("path", self.path), *super()._details()]


class SourceChangedError(ObjectClerkError):
    """The local file changed (its size, modification time or inode) while it was being
    uploaded. The upload was abandoned and nothing under the key was replaced. ``path``
    names the file."""

    def __init__(self, message: str, *, path: str | None = None, **context: Any) -> None:
        super().__init__(message, **context)
        self.path = path


class ChecksumMismatchError(ObjectClerkError, bce.FlexibleChecksumError):
    """Bytes did not verify against the checksum the server holds for them.

    Also a ``botocore.exceptions.FlexibleChecksumError``: what boto3 code catches when
    botocore's own response checksum fails, so a hardened client's failure is caught there
    too.

    Attributes:
        expected: the checksum the bytes should have had.
        actual: the checksum they had.
        algorithm: how both were computed, e.g. ``"md5"`` or ``"multipart-md5"``.
    """

    def __init__(
        self,
        message: str,
        *,
        expected: str | None = None,
        actual: str | None = None,
        algorithm: str | None = None,
        **context: Any,
    ) -> None:
        super().__init__(message, **context)
        self.expected = expected
        self.actual = actual
        self.algorithm = algorithm
        # botocore's exceptions keep their arguments here (FlexibleChecksumError's one field).
        self.kwargs = {"error_msg": message}

    def _details(self) -> list[tuple[str, object]]:
        return [
            ("algorithm", self.algorithm),
            ("expected", self.expected),
            ("actual", self.actual),
            *super()._details(),
        ]


class UnverifiableObjectError(ObjectClerkError):
    """The object's ETag cannot prove its content (SSE-KMS, SSE-C, a non-MD5 ETag, an
    unknown part layout). Raised only in strict mode; otherwise a warning is issued."""


class UnverifiableObjectWarning(UserWarning):
    """Issued (outside strict mode) when an object's content could not be verified."""


class TransientError(ObjectClerkError):
    """A failure that may succeed when tried again; the retry policy handles these."""


class ObjectClerkServerInternalException(TransientError):
    """The server failed or is overloaded (5xx, SlowDown): object-clerk 1.1.0's name, the
    common base of ThrottledError and ServerError."""


class ThrottledError(ObjectClerkServerInternalException):
    """The server asked us to slow down: SlowDown, 503, 429."""


class ServerError(ObjectClerkServerInternalException):
    """A 5xx or a server-side request timeout."""


class ConnectionFault(TransientError):
    """The connection failed: refused, reset, timed out, or the body was cut short."""


# object-clerk 1.1.0's names for classes of this tree.
ObjectClerkException = ObjectClerkError
ObjectNotFoundException = NotFoundError
ObjectClerkServerAuthException = AccessDeniedError
ObjectVerificationException = ChecksumMismatchError


_NOT_FOUND_CODES = {"NoSuchKey", "NotFound", "404", "NoSuchVersion"}
_ACCESS_CODES = {
    "AccessDenied",
    "401",
    "Unauthorized",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "InvalidToken",
    "TokenRefreshRequired",
    "AllAccessDisabled",
    "403",
}
_THROTTLE_CODES = {
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "RequestLimitExceeded",
    "TooManyRequests",
    "TooManyRequestsException",
    "ServiceUnavailable",
    "503",
    "429",
}
_TRANSIENT_4XX_CODES = {"RequestTimeout", "RequestTimeoutException", "IncompleteBody"}
# The server computed a different checksum than the one we sent: the body was damaged in
# transit. Resending the same bytes fixes it, so these are retried like a mismatch we found.
_DIGEST_CODES = {"BadDigest", "XAmzContentSHA256Mismatch", "InvalidChunkSizeError"}


def translate_error(
    exc: BaseException,
    *,
    operation: str,
    bucket: str | None = None,
    key: str | None = None,
) -> ObjectClerkError:
    """Map any exception raised by botocore, urllib3 or a socket to an ObjectClerkError.

    The caller raises the result ``from exc``. An ObjectClerkError passes through unchanged.
    """
    mapped = _classify(exc, operation, bucket, key)
    if mapped is None:
        raise TypeError(f"not an S3 or network error: {type(exc).__name__}") from exc
    return mapped


def _classify(
    exc: BaseException, operation: str, bucket: str | None, key: str | None
) -> ObjectClerkError | None:
    if isinstance(exc, ObjectClerkError):
        return exc
    context: dict[str, Any] = {"operation": operation, "bucket": bucket, "key": key}
    if isinstance(exc, bce.ClientError):
        return _from_client_error(exc, context)
    if isinstance(exc, (bce.SSLError, ssl.SSLError)):
        if _is_certificate_failure(exc):
            return TLSError(f"TLS certificate verification failed: {_short(exc)}", **context)
        return ConnectionFault(f"TLS connection failed: {_short(exc)}", **context)
    if isinstance(exc, (bce.NoCredentialsError, bce.PartialCredentialsError)):
        return ConfigurationError(
            "no usable S3 credentials: pass access_key/secret_key, set OBJECT_CLERK_ACCESS_KEY"
            " and OBJECT_CLERK_SECRET_KEY, or configure the AWS credential chain",
            **context,
        )
    if isinstance(exc, bce.ParamValidationError):
        # botocore quotes the offending values, which may be secrets (SSECustomerKey): drop them.
        return InvalidRequestError(f"invalid request parameters: {_redacted(str(exc))}", **context)
    if isinstance(exc, bce.FlexibleChecksumError):
        # botocore's own response checksum (a CRC the store sent) failed at the body's end.
        return ChecksumMismatchError(
            f"botocore's response checksum failed: {_short(exc)}",
            algorithm="flexible-checksum",
            **context,
        )
    if isinstance(exc, bce.UnseekableStreamError):
        return InvalidRequestError("the request body cannot be rewound for a retry", **context)
    if isinstance(
        exc,
        (
            bce.ConnectionError,
            bce.HTTPClientError,
            bce.ResponseStreamingError,
            bce.IncompleteReadError,
            http.client.HTTPException,
            ConnectionError,
            TimeoutError,
            socket.gaierror,
        ),
    ):
        return ConnectionFault(f"{type(exc).__name__}: {_short(exc)}", **context)
    if isinstance(exc, bce.BotoCoreError):
        # Raised before any request is sent (endpoint resolution, a parameter botocore could
        # not serialise): the request as given cannot be made, so it is not retried.
        return InvalidRequestError(f"botocore refused the request: {_short(exc)}", **context)
    if type(exc).__module__.startswith("urllib3"):
        # urllib3's ProtocolError/ReadTimeoutError escape from StreamingBody.read() unwrapped
        # on some botocore versions.
        return ConnectionFault(f"{type(exc).__name__}: {_short(exc)}", **context)
    if isinstance(exc, OSError):
        if exc.errno in _NETWORK_ERRNOS:  # a reset raised straight from the socket
            return ConnectionFault(f"{type(exc).__name__}: {_short(exc)}", **context)
        return _local(exc, context)
    return None


# Socket errors that mean the network failed. Any other OSError is the machine's own (disk,
# file, permissions, resources): a LocalIOError, never dressed up as a network fault.
_NETWORK_ERRNOS = {
    errno.ECONNRESET,
    errno.ECONNREFUSED,
    errno.ECONNABORTED,
    errno.EPIPE,
    errno.ETIMEDOUT,
    errno.EHOSTUNREACH,
    errno.ENETUNREACH,
    errno.ENETDOWN,
    errno.ENETRESET,
    errno.EHOSTDOWN,
    errno.ESHUTDOWN,
    errno.ENOTCONN,
}


def _local(exc: OSError, context: dict[str, Any]) -> LocalIOError:
    path = exc.filename if isinstance(exc.filename, str) else None
    reason = exc.strerror or str(exc) or type(exc).__name__
    return LocalIOError(f"local I/O failed: {reason}", errno=exc.errno, path=path, **context)


@contextmanager
def local_io(
    operation: str, bucket: str | None = None, key: str | None = None, path: str | None = None
) -> Iterator[None]:
    """Run a block of local file I/O (a download's sink, an upload's source) and raise its
    OSError as a :class:`LocalIOError`, which no retry loop retries."""
    try:
        yield
    except ObjectClerkError:
        raise
    except OSError as exc:
        error = _local(exc, {"operation": operation, "bucket": bucket, "key": key})
        if path is not None and error.path is None:
            error.path = path
        raise error from exc


def _from_client_error(exc: bce.ClientError, context: dict[str, Any]) -> ObjectClerkError:
    error = exc.response.get("Error", {})
    meta = exc.response.get("ResponseMetadata", {})
    code = str(error.get("Code") or "")
    status = meta.get("HTTPStatusCode")
    request_id = meta.get("RequestId") or meta.get("HTTPHeaders", {}).get("x-amz-request-id")
    text = error.get("Message") or code or "request failed"
    context.update(code=code or None, status=status, request_id=request_id)
    if code == "NoSuchBucket":
        return BucketNotFoundError(f"bucket does not exist: {text}", **context)
    if code in _NOT_FOUND_CODES or (status == 404 and code not in {"NoSuchUpload"}):
        return ObjectNotFoundError(f"object does not exist: {text}", **context)
    if code in _ACCESS_CODES or status in (401, 403):
        return AccessDeniedError(f"access denied: {text}", **context)
    if code in ("PreconditionFailed", "412") or status == 412:
        return PreconditionFailedError(f"precondition failed: {text}", **context)
    if code in _DIGEST_CODES:
        return ChecksumMismatchError(
            f"the server rejected the body's checksum: {text}", algorithm="content-md5", **context
        )
    if code in _THROTTLE_CODES or status in (429, 503):
        return ThrottledError(f"throttled: {text}", **context)
    if status == 501 or code == "NotImplemented":
        return RequestRejectedError(f"not implemented by this store: {text}", **context)
    if code in _TRANSIENT_4XX_CODES or (isinstance(status, int) and status >= 500):
        return ServerError(f"server error: {text}", **context)
    return RequestRejectedError(f"request rejected: {text}", **context)


def _redacted(text: str) -> str:
    """botocore's validation report without the values it quotes."""
    return re.sub(r"value: .*?, type:", "type:", text)


def _is_certificate_failure(exc: BaseException) -> bool:
    seen: set[int] = set()
    pending: list[BaseException | None] = [exc]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, ssl.SSLCertVerificationError):
            return True
        text = str(current).lower()
        if "certificate verify failed" in text or "hostname mismatch" in text:
            return True
        pending.extend([current.__cause__, current.__context__])
        inner = getattr(current, "kwargs", {}).get("error")
        if isinstance(inner, BaseException):
            pending.append(inner)
    return False


def _short(exc: BaseException, limit: int = 300) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def native(exc: ObjectClerkError) -> BaseException:
    """What a boto3 caller would have seen for ``exc``: the botocore, urllib3 or socket
    exception it was translated from, or ``exc`` itself when object_clerk raised it (a
    checksum mismatch, a truncated body, bad input found before any request)."""
    cause = exc.__cause__
    while isinstance(cause, ObjectClerkError) and cause.__cause__ is not None:
        cause = cause.__cause__
    if cause is None or isinstance(cause, ObjectClerkError):
        return exc
    if isinstance(cause, bce.ParamValidationError):
        # botocore quotes the offending values, which may be secrets (SSECustomerKey).
        return bce.ParamValidationError(report=_redacted(str(cause.kwargs.get("report", ""))))
    return cause


@contextmanager
def translated(operation: str, bucket: str | None = None, key: str | None = None) -> Iterator[None]:
    """Run a block and raise any S3 or network error from it as an ObjectClerkError.

    Exceptions that are neither (programming errors) propagate unchanged.
    """
    try:
        yield
    except ObjectClerkError:
        raise
    except Exception as exc:
        mapped = _classify(exc, operation, bucket, key)
        if mapped is None:
            raise  # not ours to translate: unchanged, with its own cause
        raise mapped from exc
