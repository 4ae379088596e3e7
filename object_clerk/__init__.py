"""object_clerk: a resilient, checksum-verifying wrapper around boto3's S3 client."""

from importlib.metadata import PackageNotFoundError, version

from object_clerk.clerk import UPLOAD_EXTRA_ARGS, ObjectClerk
from object_clerk.engine import PART_SIZE_METADATA, TransferResult
from object_clerk.errors import (
    AccessDeniedError,
    BucketNotFoundError,
    ChecksumMismatchError,
    ConfigurationError,
    ConnectionFault,
    DataTypeError,
    InvalidRequestError,
    LocalIOError,
    NotFoundError,
    ObjectClerkError,
    ObjectClerkException,
    ObjectClerkServerAuthException,
    ObjectClerkServerInternalException,
    ObjectNotFoundError,
    ObjectNotFoundException,
    ObjectSaveException,
    ObjectVerificationException,
    PreconditionFailedError,
    RequestRejectedError,
    ServerError,
    SourceChangedError,
    ThrottledError,
    TLSError,
    TransientError,
    UnverifiableObjectError,
    UnverifiableObjectWarning,
)
from object_clerk.etag import (
    EtagCalculator,
    PartLayout,
    candidate_part_sizes,
    compute_etag,
    multipart_etag,
    parse_etag,
    plan_parts,
)
from object_clerk.hardened import CallVerification, VerifiedBody, client, harden, verification_of
from object_clerk.retry import Retrier, RetryEvent, RetryPolicy, is_retryable, retry_transient
from object_clerk.settings import ClerkSettings, load_settings
from object_clerk.verdict import Verification

try:
    __version__ = version("object-clerk")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

__all__ = [
    "PART_SIZE_METADATA",
    "UPLOAD_EXTRA_ARGS",
    "AccessDeniedError",
    "BucketNotFoundError",
    "CallVerification",
    "ChecksumMismatchError",
    "ClerkSettings",
    "ConfigurationError",
    "ConnectionFault",
    "DataTypeError",
    "EtagCalculator",
    "InvalidRequestError",
    "LocalIOError",
    "NotFoundError",
    "ObjectClerk",
    "ObjectClerkError",
    "ObjectClerkException",
    "ObjectClerkServerAuthException",
    "ObjectClerkServerInternalException",
    "ObjectNotFoundError",
    "ObjectNotFoundException",
    "ObjectSaveException",
    "ObjectVerificationException",
    "PartLayout",
    "PreconditionFailedError",
    "RequestRejectedError",
    "Retrier",
    "RetryEvent",
    "RetryPolicy",
    "ServerError",
    "SourceChangedError",
    "TLSError",
    "ThrottledError",
    "TransferResult",
    "TransientError",
    "UnverifiableObjectError",
    "UnverifiableObjectWarning",
    "Verification",
    "VerifiedBody",
    "__version__",
    "candidate_part_sizes",
    "client",
    "compute_etag",
    "harden",
    "is_retryable",
    "load_settings",
    "multipart_etag",
    "parse_etag",
    "plan_parts",
    "retry_transient",
    "verification_of",
]
