"""Unit tests for object_clerk.errors: translation of botocore errors, str(), pickling."""

from __future__ import annotations

import http.client
import inspect
import pickle
import ssl

import pytest
from botocore import exceptions as bce

from object_clerk import errors
from object_clerk.errors import (
    AccessDeniedError,
    BucketNotFoundError,
    ChecksumMismatchError,
    ConfigurationError,
    ConnectionFault,
    InvalidRequestError,
    ObjectClerkError,
    ObjectNotFoundError,
    PreconditionFailedError,
    RequestRejectedError,
    ServerError,
    ThrottledError,
    TLSError,
    TransientError,
    translate_error,
    translated,
)


def client_error(
    code: str | None, status: int | None, op: str = "GetObject", message: str = "m"
) -> bce.ClientError:
    error = {"Message": message}
    if code is not None:
        error["Code"] = code
    meta: dict = {"RequestId": "rid"}
    if status is not None:
        meta["HTTPStatusCode"] = status
    return bce.ClientError({"Error": error, "ResponseMetadata": meta}, op)


def _translate(exc: BaseException) -> ObjectClerkError:
    return translate_error(exc, operation="get_object", bucket="bkt", key="some/key")


# ------------------------------------------------------------ ClientError table


@pytest.mark.parametrize(
    ("code", "status", "expected"),
    [
        ("NoSuchKey", 404, ObjectNotFoundError),
        ("NoSuchBucket", 404, BucketNotFoundError),
        ("404", 404, ObjectNotFoundError),
        ("NotFound", 404, ObjectNotFoundError),
        ("NoSuchVersion", 404, ObjectNotFoundError),
        ("AccessDenied", 403, AccessDeniedError),
        ("403", 403, AccessDeniedError),
        ("InvalidAccessKeyId", 403, AccessDeniedError),
        ("SignatureDoesNotMatch", 403, AccessDeniedError),
        ("PreconditionFailed", 412, PreconditionFailedError),
        ("BadDigest", 400, ChecksumMismatchError),
        ("XAmzContentSHA256Mismatch", 400, ChecksumMismatchError),
        ("SlowDown", 503, ThrottledError),
        ("ServiceUnavailable", 503, ThrottledError),
        ("TooManyRequests", 429, ThrottledError),
        ("InternalError", 500, ServerError),
        ("BadGateway", 502, ServerError),
        ("RequestTimeout", 400, ServerError),
        ("InvalidArgument", 400, RequestRejectedError),
        ("EntityTooSmall", 400, RequestRejectedError),
        ("NoSuchUpload", 404, RequestRejectedError),
        ("MissingContentLength", 411, RequestRejectedError),
    ],
)
def test_translate_client_error(code, status, expected):
    mapped = _translate(client_error(code, status))
    assert type(mapped) is expected


def test_no_such_upload_is_not_object_not_found():
    mapped = _translate(client_error("NoSuchUpload", 404, op="UploadPart"))
    assert not isinstance(mapped, ObjectNotFoundError)
    assert isinstance(mapped, RequestRejectedError)


def test_request_timeout_is_transient():
    assert isinstance(_translate(client_error("RequestTimeout", 400)), TransientError)


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (404, ObjectNotFoundError),
        (403, AccessDeniedError),
        (412, PreconditionFailedError),
        (429, ThrottledError),
        (503, ThrottledError),
        (500, ServerError),
        (504, ServerError),
        (400, RequestRejectedError),
    ],
)
def test_translate_client_error_by_status_alone(status, expected):
    assert type(_translate(client_error(None, status))) is expected


def test_mapped_client_error_keeps_context():
    mapped = _translate(client_error("NoSuchKey", 404, message="The key does not exist"))
    assert mapped.code == "NoSuchKey"
    assert mapped.status == 404
    assert mapped.request_id == "rid"
    assert mapped.operation == "get_object"
    assert mapped.bucket == "bkt"
    assert mapped.key == "some/key"
    text = str(mapped)
    assert "get_object" in text
    assert "s3://bkt/some/key" in text
    assert "NoSuchKey" in text
    assert "404" in text
    assert "rid" in text
    assert "The key does not exist" in text


def test_request_id_falls_back_to_response_header():
    exc = bce.ClientError(
        {
            "Error": {"Code": "SlowDown", "Message": "m"},
            "ResponseMetadata": {
                "HTTPStatusCode": 503,
                "HTTPHeaders": {"x-amz-request-id": "hdr-id"},
            },
        },
        "PutObject",
    )
    assert _translate(exc).request_id == "hdr-id"


def test_str_without_key_shows_bucket_only():
    mapped = translate_error(client_error("NoSuchBucket", 404), operation="list", bucket="bkt")
    assert "s3://bkt" in str(mapped)
    assert "s3://bkt/" not in str(mapped)


def test_bad_digest_is_checksum_mismatch_with_algorithm():
    mapped = _translate(client_error("BadDigest", 400, op="PutObject"))
    assert isinstance(mapped, ChecksumMismatchError)
    assert mapped.algorithm == "content-md5"
    assert mapped.code == "BadDigest"


# ---------------------------------------------------------- network errors


@pytest.mark.parametrize(
    "exc",
    [
        bce.EndpointConnectionError(endpoint_url="http://x"),
        bce.ConnectTimeoutError(endpoint_url="http://x"),
        bce.ReadTimeoutError(endpoint_url="http://x"),
        bce.ResponseStreamingError(error=OSError("cut")),
        bce.IncompleteReadError(actual_bytes=10, expected_bytes=20),
        bce.ConnectionClosedError(endpoint_url="http://x"),
        ConnectionResetError(104, "Connection reset by peer"),
        BrokenPipeError(32, "Broken pipe"),
        TimeoutError("timed out"),
        http.client.IncompleteRead(b"partial", 10),
    ],
    ids=lambda e: type(e).__name__,
)
def test_network_errors_become_connection_faults(exc):
    mapped = _translate(exc)
    assert type(mapped) is ConnectionFault
    assert mapped.operation == "get_object"
    assert mapped.bucket == "bkt"
    assert mapped.key == "some/key"


def test_ssl_error_wrapping_certificate_failure_is_tls_error():
    # The message deliberately avoids "certificate verify failed": detection must come from
    # the wrapped ssl.SSLCertVerificationError, not from the text.
    inner = ssl.SSLCertVerificationError(1, "untrusted issuer")
    mapped = _translate(bce.SSLError(endpoint_url="https://x", error=inner))
    assert type(mapped) is TLSError


def test_ssl_error_with_certificate_text_is_tls_error():
    inner = ssl.SSLError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed")
    assert type(_translate(bce.SSLError(endpoint_url="https://x", error=inner))) is TLSError


def test_raw_ssl_cert_verification_error_is_tls_error():
    assert type(_translate(ssl.SSLCertVerificationError(1, "nope"))) is TLSError


def test_ssl_error_that_is_not_a_certificate_failure_is_connection_fault():
    inner = ssl.SSLError(1, "handshake interrupted")
    mapped = _translate(bce.SSLError(endpoint_url="https://x", error=inner))
    assert type(mapped) is ConnectionFault


def test_no_credentials_is_configuration_error():
    mapped = _translate(bce.NoCredentialsError())
    assert type(mapped) is ConfigurationError


def test_param_validation_error_is_invalid_request():
    mapped = _translate(bce.ParamValidationError(report="Invalid bucket name"))
    assert type(mapped) is InvalidRequestError
    assert "Invalid bucket name" in str(mapped)


def test_plain_value_error_is_refused_with_type_error():
    with pytest.raises(TypeError):
        _translate(ValueError("not ours"))


def test_clerk_error_passes_through_unchanged():
    original = ServerError("x", operation="other")
    assert _translate(original) is original


# ------------------------------------------------------------------ pickling


def _all_error_classes() -> list[type[ObjectClerkError]]:
    return [
        cls
        for _, cls in inspect.getmembers(errors, inspect.isclass)
        if issubclass(cls, ObjectClerkError)
    ]


def _make(cls: type[ObjectClerkError]) -> ObjectClerkError:
    context = {
        "operation": "get_object",
        "bucket": "bkt",
        "key": "a/b",
        "code": "SomeCode",
        "status": 418,
        "request_id": "req-1",
    }
    if cls is ChecksumMismatchError:
        return cls("mismatch", expected="e" * 32, actual="a" * 32, algorithm="md5", **context)
    if cls is ConfigurationError:
        return cls("bad setting", variable="OBJECT_CLERK_RETRY_TRIES", **context)
    return cls(f"{cls.__name__} happened", **context)


def test_every_error_class_is_covered():
    assert len(_all_error_classes()) >= 16


@pytest.mark.parametrize("cls", _all_error_classes(), ids=lambda c: c.__name__)
def test_error_pickles_with_all_attributes(cls):
    original = _make(cls)
    clone = pickle.loads(pickle.dumps(original))
    assert type(clone) is cls
    for attr in ("message", "operation", "bucket", "key", "code", "status", "request_id"):
        assert getattr(clone, attr) == getattr(original, attr), attr
    assert clone.status == 418
    assert str(clone) == str(original)
    assert clone.args == original.args


def test_checksum_mismatch_pickles_its_checksums():
    clone = pickle.loads(pickle.dumps(_make(ChecksumMismatchError)))
    assert (clone.expected, clone.actual, clone.algorithm) == ("e" * 32, "a" * 32, "md5")
    assert "expected=" + "e" * 32 in str(clone)


def test_configuration_error_pickles_its_variable():
    clone = pickle.loads(pickle.dumps(_make(ConfigurationError)))
    assert clone.variable == "OBJECT_CLERK_RETRY_TRIES"
    assert isinstance(clone, ValueError)


def test_translated_error_pickles():
    mapped = _translate(client_error("SlowDown", 503))
    clone = pickle.loads(pickle.dumps(mapped))
    assert type(clone) is ThrottledError
    assert (clone.code, clone.status, clone.request_id) == ("SlowDown", 503, "rid")


# ----------------------------------------------------------------- translated


def test_translated_raises_mapped_error_from_original():
    original = client_error("NoSuchKey", 404)
    with pytest.raises(ObjectNotFoundError) as info, translated("get_object", "bkt", "k"):
        raise original
    assert info.value.__cause__ is original
    assert (info.value.operation, info.value.bucket, info.value.key) == ("get_object", "bkt", "k")


def test_translated_passes_clerk_errors_through():
    original = ThrottledError("slow")
    with pytest.raises(ThrottledError) as info, translated("op"):
        raise original
    assert info.value is original


def test_translated_lets_programming_errors_propagate_unchanged():
    original = KeyError("bug")
    with pytest.raises(KeyError) as info, translated("op"):
        raise original
    assert info.value is original


def test_translated_no_error_no_effect():
    with translated("op"):
        value = 1 + 1
    assert value == 2
