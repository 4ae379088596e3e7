"""ObjectClerk: the facade. It holds the client, the retry policy and the transfer settings,
checks its arguments, and hands the work to the transfer engine."""

from __future__ import annotations

import io
import logging
import os
import re
import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Executor
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import ProfileNotFound

from object_clerk import buckets, bulk, checks, copying, documents, reads, uploads
from object_clerk.bulk import BulkReport, ObjectCallback, StaleUpload, Symlinks, SyncReport
from object_clerk.checks import ObjectCheck, ScrubReport
from object_clerk.engine import PART_SIZE_METADATA, Engine, TransferResult
from object_clerk.errors import (
    ChecksumMismatchError,
    ConfigurationError,
    DataTypeError,
    InvalidRequestError,
    ObjectClerkError,
    ObjectNotFoundError,
    PreconditionFailedError,
    ServerError,
    TransientError,
    local_io,
)
from object_clerk.etag import parse_etag
from object_clerk.retry import Retrier, RetryEvent, botocore_attempts
from object_clerk.runner import Progress
from object_clerk.settings import (
    ClerkSettings,
    UploadChecksum,
    check_endpoint,
    layered,
    load_settings,
)
from object_clerk.verdict import Verdict

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client
else:
    S3Client = Any

__all__ = ["UPLOAD_EXTRA_ARGS", "ObjectClerk"]

logger = logging.getLogger("object_clerk")

#: Arguments ``upload_object`` passes through to PutObject / CreateMultipartUpload, with
#: boto3's names (the same list as s3transfer's ALLOWED_UPLOAD_ARGS, less the checksum ones,
#: which the clerk sets itself).
UPLOAD_EXTRA_ARGS = frozenset(
    {
        "ACL",
        "BucketKeyEnabled",
        "CacheControl",
        "ContentDisposition",
        "ContentEncoding",
        "ContentLanguage",
        "ContentType",
        "ExpectedBucketOwner",
        "Expires",
        "GrantFullControl",
        "GrantRead",
        "GrantReadACP",
        "GrantWriteACP",
        "Metadata",
        "ObjectLockLegalHoldStatus",
        "ObjectLockMode",
        "ObjectLockRetainUntilDate",
        "RequestPayer",
        "SSECustomerAlgorithm",
        "SSECustomerKey",
        "SSECustomerKeyMD5",
        "SSEKMSEncryptionContext",
        "SSEKMSKeyId",
        "ServerSideEncryption",
        "StorageClass",
        "Tagging",
        "WebsiteRedirectLocation",
    }
)

_DEFAULT_CONTENT_TYPE = "application/octet-stream"  # object-clerk 1.x's default
# What transfer_to carries from the source's HEAD to the destination's PutObject.
_KEPT_HEADERS = (
    "ContentType",
    "Metadata",
    "CacheControl",
    "ContentDisposition",
    "ContentEncoding",
    "ContentLanguage",
)

# S3's rules, relaxed to what Ceph RGW accepts for legacy buckets (upper case, underscores).
_BUCKET_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{1,253}[A-Za-z0-9]")
_MAX_KEY_BYTES = 1024

#: A boto3-style progress callback: called with the bytes moved since its last call
#: (negative when a transfer starts over).
Callback = Callable[[int], object]

# Clients of unpickled clerks, per process and per original clerk: building one costs
# about a second of CPU, and a Dask worker unpickles a clerk with every task. The most
# recently used few are kept.
_PROCESS_CLIENTS: OrderedDict[tuple[int, str], S3Client] = OrderedDict()
_PROCESS_CLIENTS_KEPT = 16
_PROCESS_CLIENTS_LOCK = threading.Lock()


class ObjectClerk:
    """A verified, retrying S3 client for get, head, upload, copy, move, delete and list.

    Every operation survives transient faults (bounded retries with jittered exponential
    backoff) and verifies every byte it moves against the server's ETag.

    Example::

        clerk = ObjectClerk(host="127.0.0.1", port=7480, access_key="...", secret_key="...",
                            use_ssl=False)
        clerk.upload_object(b"hello", "bucket", "greeting.txt")
        assert clerk.get_object("bucket", "greeting.txt") == b"hello"

        clerk = ObjectClerk(client=boto3.client("s3"))   # adopt an existing client
        clerk = ObjectClerk.from_env()                     # OBJECT_CLERK_* variables, .env

    The first thirteen arguments are object-clerk 1.x's, in its order. Arguments left as
    None come from ``settings`` when given, else from :class:`~object_clerk.ClerkSettings`,
    that is from the environment and ``.env``: arguments win over ``settings``, which wins
    over the environment. ``client_config`` replaces ``S3_CLIENT_CONFIG``;
    ``transfer_config`` (1.x's name) and ``upload_config`` replace ``S3_UPLOAD_CONFIG``,
    ``download_config`` replaces ``S3_DOWNLOAD_CONFIG``. Without keys, boto3's default
    credential chain applies (profiles, AWS_* variables, instance roles).
    """

    def __init__(
        self,
        host: str | None = None,
        port: int | None = None,
        access_key: str | int | None = None,
        secret_key: str | int | None = None,
        retry_delay: float | None = None,
        retry_backoff: float | None = None,
        retry_jitter: float | tuple[float, float] | None = None,
        retry_max_delay: float | None = None,
        retry_tries: int | None = None,
        use_ssl: bool | None = None,
        list_objects_page_size: int = 1000,
        client_config: dict[str, Any] | None = None,
        transfer_config: dict[str, Any] | None = None,
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        profile: str | None = None,
        session_token: str | None = None,
        ca_bundle: str | Path | None = None,
        verify_tls: bool | None = None,
        retry_deadline: float | None = None,
        multipart_threshold: int | None = None,
        upload_config: dict[str, Any] | None = None,
        download_config: dict[str, Any] | None = None,
        strict_verification: bool | None = None,
        upload_checksum: UploadChecksum | None = None,
        client: S3Client | None = None,
        settings: ClerkSettings | None = None,
        on_retry: Callable[[RetryEvent], None] | None = None,
    ) -> None:
        upload = None
        if transfer_config is not None or upload_config is not None:
            # 1.x's transfer_config and our upload_config both configure uploads.
            upload = {**_as_dict(transfer_config), **_as_dict(upload_config)}
        overrides: dict[str, Any] = {
            "host": host,
            "port": port,
            # The seed's README passes numbers as keys; boto3 needs strings.
            "access_key": None if access_key is None else str(access_key),
            "secret_key": None if secret_key is None else str(secret_key),
            "session_token": session_token,
            "retry_delay": retry_delay,
            "retry_backoff": retry_backoff,
            "retry_jitter": retry_jitter,
            "retry_max_delay": retry_max_delay,
            "retry_tries": retry_tries,
            "retry_deadline": retry_deadline,
            "use_ssl": use_ssl,
            "endpoint_url": endpoint_url,
            "region": region,
            "profile": profile,
            "ca_bundle": ca_bundle,
            "verify_tls": verify_tls,
            "multipart_threshold": multipart_threshold,
            "s3_client_config": client_config,
            "s3_upload_config": upload,
            "s3_download_config": download_config,
            "strict_verification": strict_verification,
            "upload_checksum": upload_checksum,
        }
        overrides = {name: value for name, value in overrides.items() if value is not None}
        if (
            isinstance(list_objects_page_size, bool)
            or not isinstance(list_objects_page_size, int)
            or not 1 <= list_objects_page_size <= 1000
        ):
            raise ConfigurationError(
                "list_objects_page_size must be a whole number from 1 to 1000,"
                f" got {list_objects_page_size!r}",
                variable="list_objects_page_size",
            )
        # Precedence: these arguments, then `settings`, then the environment and .env.
        if settings is None:
            settings = load_settings(**overrides)
        elif overrides:
            settings = load_settings(**layered(settings.model_dump(), overrides))
        else:
            check_endpoint(settings)
        self.settings = settings
        self.list_objects_page_size = list_objects_page_size
        retrier = Retrier(
            settings.retry_policy(),
            checksum_policy=settings.checksum_retry_policy(),
            on_retry=on_retry,
        )
        self._on_retry = on_retry
        self._token = secrets.token_hex(16)  # names this clerk's client across pickling
        self._owns_client = client is None
        self._client = client if client is not None else _build_client(settings)
        self._engine = Engine(
            self._client,
            retrier,
            settings.transfer(),
            strict=settings.strict_verification,
            upload_checksum=settings.upload_crc(),
        )
        if client is not None and botocore_attempts(client.meta.config) > 1:
            logger.warning(
                "the injected client retries on its own (%d attempts per request): a failing"
                " request can make up to %s HTTP attempts; configure it with"
                " retries={'max_attempts': 0} to leave retries to object_clerk",
                botocore_attempts(client.meta.config),
                self.max_http_attempts or "unlimited",
            )

    @classmethod
    def from_env(cls, **overrides: Any) -> ObjectClerk:
        """Build a clerk from the environment and ``.env`` (see the configuration table)."""
        return cls(settings=load_settings(**overrides))

    @property
    def client(self) -> S3Client:
        """The underlying boto3 S3 client: the escape hatch for anything not wrapped here."""
        return self._client

    @property
    def s3(self) -> S3Client:
        """This clerk's boto3 client, hardened (see :func:`object_clerk.harden`): boto3's
        own methods, retried and verified under this clerk's settings and retry policy. It
        is :attr:`client` itself, hardened in place on first use."""
        if getattr(self._client, "__object_clerk__", None) is not self._engine:
            from object_clerk.hardened import install

            install(self._client, self._engine)
        return self._client

    @property
    def retrier(self) -> Retrier:
        return self._engine.retrier

    @property
    def max_http_attempts(self) -> int | None:
        """The most HTTP attempts one failing request can make: the clerk's tries times
        botocore's own attempts (1 for clients the clerk builds). None with
        ``retry_tries=-1``: no count limit, the retry deadline bounds the call."""
        tries = self._engine.retrier.policy.tries
        if tries == -1:
            return None
        return tries * botocore_attempts(self._client.meta.config)

    # object-clerk 1.1.0's public attributes, read from the settings in force.

    @property
    def host(self) -> str | None:
        return self.settings.host

    @property
    def port(self) -> int | None:
        return self.settings.port

    @property
    def use_ssl(self) -> bool:
        return self.settings.use_ssl

    @property
    def endpoint_url(self) -> str:
        """The endpoint the client talks to."""
        return str(self._client.meta.endpoint_url)

    @property
    def retry_delay(self) -> float:
        return self._engine.retrier.policy.delay

    @property
    def retry_backoff(self) -> float:
        return self._engine.retrier.policy.backoff

    @property
    def retry_jitter(self) -> float | tuple[float, float]:
        return self._engine.retrier.policy.jitter

    @property
    def retry_max_delay(self) -> float:
        return self._engine.retrier.policy.max_delay

    @property
    def retry_tries(self) -> int:
        return self._engine.retrier.policy.tries

    @property
    def client_config(self) -> Config:
        """The client's botocore ``Config``."""
        return self._client.meta.config

    @property
    def transfer_config(self) -> TransferConfig:
        """The uploads' settings as boto3's ``TransferConfig``."""
        return self.settings.upload_transfer_config()

    def __repr__(self) -> str:
        policy = self._engine.retrier.policy
        return (
            f"ObjectClerk(endpoint_url={self.endpoint_url!r},"
            f" region={self._client.meta.region_name!r}, retry_tries={policy.tries},"
            f" retry_deadline={policy.deadline})"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        """A clerk pickles (for a process pool or a Dask cluster) as its settings, which
        include its credentials: the copy builds its own boto3 client, once per process."""
        if not self._owns_client:
            raise TypeError(
                "an ObjectClerk built around an injected client cannot be pickled: build it"
                " from settings (arguments, environment) so that a copy can rebuild its client"
            )
        state = (self.settings, self.list_objects_page_size, self._on_retry, self._token)
        return (_unpickled, state)

    # ---------------------------------------------------------------- operations ----

    def get_object(
        self,
        bucket: str,
        object_key: str,
        verify_checksum: bool = True,
        *,
        callback: Callback | None = None,
    ) -> bytes:
        """Return the object's bytes, verified against the ETag of the same GET response.

        The MD5 (or, for a multipart object, the MD5 of each part) is computed as the body
        arrives. A small object takes one request. A multipart object whose layout
        object_clerk did not record costs one ``HeadObject(PartNumber=1)`` probe, except on
        stores this clerk found to ignore it (Ceph), where candidate layouts are tried. A large
        multipart object is read part by part in parallel. A body cut short is resumed from
        the bytes already held, pinned with ``If-Match``.

        Raises:
            ObjectNotFoundError, BucketNotFoundError, AccessDeniedError: not retried.
            ChecksumMismatchError: the bytes did not verify on any attempt.
            UnverifiableObjectError: in strict mode, when the ETag cannot prove the content.
            TransientError: the last transient failure, once the retries are spent.
        """
        _check_object(bucket, object_key, "get_object")
        sink = reads.BytesSink()
        progress = Progress(callback)
        reads.read(
            self._engine, bucket, object_key, sink, verify=verify_checksum, progress=progress
        )
        return sink.getvalue()

    def download_object(
        self,
        bucket: str,
        object_key: str,
        destination: str | os.PathLike[str] | IO[bytes],
        verify_checksum: bool = True,
        *,
        delete_source: bool = False,
        callback: Callback | None = None,
    ) -> TransferResult:
        """Download the object into a file, verified, without holding it in memory.

        ``destination`` is a path, or a binary file object written from its current
        position. A path is written under a temporary name in the same directory and renamed
        into place only once the whole object has verified: a failed or damaged download
        never leaves a file that looks complete. Large multipart objects are fetched part by
        part in parallel (``S3_DOWNLOAD_CONFIG``), each part resumed on its own if cut.
        ``callback``, here and on every transfer, is boto3's ``Callback``: it is called with
        the bytes moved since its last call. ``delete_source=True`` makes it a move: the
        object is deleted once the file is in place and proven (verified, or with
        verification off the same size).
        """
        _check_object(bucket, object_key, "download_object")
        result = self._download_path(
            bucket, object_key, destination, verify_checksum, Progress(callback)
        )
        if delete_source:
            local = os.fspath(destination) if isinstance(destination, (str, os.PathLike)) else None
            if local is None and not result.verified:
                raise InvalidRequestError(
                    "the download is unproven and went to a file object: the object was kept",
                    operation="download_object",
                    bucket=bucket,
                    key=object_key,
                )
            bulk.delete_moved(self, result, local)
        return result

    def _download_path(
        self,
        bucket: str,
        key: str,
        destination: str | os.PathLike[str] | IO[bytes],
        verify: bool,
        progress: Progress | None,
    ) -> TransferResult:
        return reads.download(
            self._engine, bucket, key, destination, verify=verify, progress=progress
        )

    def iter_object(
        self,
        bucket: str,
        object_key: str,
        verify_checksum: bool = True,
        *,
        chunk_size: int = 1024 * 1024,
        callback: Callback | None = None,
    ) -> Iterator[bytes]:
        """Iterate over the object's bytes in chunks of at most ``chunk_size``, with bounded
        memory, for pipelines that process on the fly.

        Verification completes at the end: if the bytes did not verify, the iterator raises
        ChecksumMismatchError after its last chunk. Treat what it gave as unverified until it
        is exhausted without error. Close it (or exhaust it) to release its thread.
        """
        _check_object(bucket, object_key, "iter_object")
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
            raise InvalidRequestError(
                f"chunk_size must be a whole number >= 1, got {chunk_size!r}",
                operation="iter_object",
                bucket=bucket,
                key=object_key,
            )
        return reads.stream(
            self._engine,
            bucket,
            object_key,
            verify=verify_checksum,
            chunk_size=chunk_size,
            progress=Progress(callback),
        )

    def open_object(
        self, bucket: str, object_key: str, verify_checksum: bool = True
    ) -> io.BufferedReader:
        """A read-only, non-seekable binary file object over :meth:`iter_object`.

        Use it as a context manager; ``read()`` raises ChecksumMismatchError at the end if the
        bytes did not verify.
        """
        chunks = self.iter_object(bucket, object_key, verify_checksum)
        return io.BufferedReader(reads.ObjectReader(chunks), buffer_size=1024 * 1024)

    def get_object_info(self, bucket: str, object_key: str) -> dict[str, str]:
        """Return the object's HTTP response headers (HeadObject), lower-case, exactly as
        object-clerk 1.x returns them.

        For example ``etag`` (quoted, as S3 sends it), ``content-length`` (a string),
        ``content-type``, ``last-modified`` and ``x-amz-meta-<name>`` for each user metadata
        entry. boto3's parsed HeadObject dict is ``clerk.client.head_object(...)``.
        """
        _check_object(bucket, object_key, "get_object_info")
        response = self._engine.head(bucket, object_key)
        return dict(response["ResponseMetadata"]["HTTPHeaders"])

    def upload_object(
        self,
        object_data: bytes | bytearray | memoryview | str | os.PathLike[str] | Any,
        bucket: str,
        object_key: str,
        verify_checksum: bool = True,
        content_type: str = "application/octet-stream",
        metadata: dict[str, str] | None = None,
        storage_class: str | None = None,
        *,
        extra_args: dict[str, Any] | None = None,
        delete_source: bool = False,
        callback: Callback | None = None,
    ) -> TransferResult:
        """Upload ``object_data`` and verify what the server stored.

        Args:
            object_data: bytes, a path (str or os.PathLike), a binary file object (read from
                its current position), or an iterator, list or tuple of bytes chunks (a
                generator, say). Non-seekable streams and iterators are read part by part
                with bounded memory. Empty data is refused (ObjectSaveException), as
                object-clerk 1.x does.
            content_type, metadata, storage_class: the boto3 arguments ``ContentType``,
                ``Metadata`` and ``StorageClass``; ``extra_args["ContentType"]`` wins over
                the default content type.
            extra_args: further PutObject arguments with boto3's names, checked against
                :data:`UPLOAD_EXTRA_ARGS`.

        Objects of ``MULTIPART_THRESHOLD`` bytes or more are uploaded in parts of that size.
        Every body carries its Content-MD5, so the server refuses damaged bytes, and the
        returned ETag is compared with the one computed while reading. A mismatch is
        retried; if it persists the stored object is removed and ChecksumMismatchError
        raised. A failed multipart upload is aborted. A local file that changes while it is
        read raises SourceChangedError, and nothing is replaced. ``delete_source=True`` (for a
        path) makes it a move: the file is removed once the object is proven (verified, or
        with verification off the same size).
        """
        key = object_key
        _check_object(bucket, key, "upload_object")
        moved: str | None = None
        if delete_source:
            if not isinstance(object_data, (str, os.PathLike)):
                raise InvalidRequestError(
                    "delete_source needs object_data to be a path",
                    operation="upload_object",
                    bucket=bucket,
                    key=key,
                )
            moved = os.fspath(object_data)
            before = bulk.file_state(moved, bucket, key)
        args = dict(extra_args or {})
        if content_type != _DEFAULT_CONTENT_TYPE or "ContentType" not in args:
            args["ContentType"] = content_type
        for name, value in (("Metadata", metadata), ("StorageClass", storage_class)):
            if value is not None:
                args[name] = value
        _check_upload_args(args, bucket, key)
        result = uploads.upload(
            self._engine,
            object_data,
            bucket,
            key,
            extra_args=args,
            verify=verify_checksum,
            allow_empty=False,
            progress=Progress(callback),
        )
        if moved is not None:
            bulk.remove_moved(self, result, moved, before)
        return result

    def _upload_path(
        self,
        path: str,
        bucket: str,
        key: str,
        extra_args: Mapping[str, Any],
        verify: bool,
        progress: Progress | None,
    ) -> TransferResult:
        """One file of a bulk upload: empty files included (a sync must converge)."""
        return uploads.upload(
            self._engine,
            Path(path),
            bucket,
            key,
            extra_args=dict(extra_args),
            verify=verify,
            progress=progress,
        )

    def copy_object(
        self,
        source_bucket: str,
        source_object_key: str,
        destination_bucket: str,
        destination_object_key: str,
        verify_checksum: bool = True,
        *,
        callback: Callback | None = None,
    ) -> TransferResult:
        """Copy server-side and verify the destination's ETag equals the source's.

        The source's ETag is read first and the copy pinned to it. A multipart source is
        copied part by part in its own layout (found as for :meth:`get_object`), so its ETag
        is kept and compared; no data flows through the client.
        """
        _check_copy(
            source_bucket, source_object_key, destination_bucket, destination_object_key,
            "copy_object",
        )  # fmt: skip
        return self._copy(
            source_bucket,
            source_object_key,
            destination_bucket,
            destination_object_key,
            verify_checksum,
            Progress(callback),
        )

    def _copy(
        self,
        source_bucket: str,
        source_key: str,
        bucket: str,
        key: str,
        verify: bool,
        progress: Progress | None,
    ) -> TransferResult:
        return copying.copy(
            self._engine, source_bucket, source_key, bucket, key, verify=verify,
            progress=progress,
        )  # fmt: skip

    def move_object(
        self,
        source_bucket: str,
        source_object_key: str,
        destination_bucket: str,
        destination_object_key: str,
        verify_checksum: bool = True,
        *,
        callback: Callback | None = None,
    ) -> TransferResult:
        """Copy, then delete the source once the copy has verified.

        A move is not atomic: for a moment both objects exist, and if the delete fails the
        source remains (the error is raised; the copy stays). The source is never deleted
        when the copy failed or did not verify. With ``verify_checksum=False`` (or when the
        copy is unverifiable, outside strict mode) the source is deleted only if the
        destination exists with the source's size.
        """
        _check_copy(
            source_bucket, source_object_key, destination_bucket, destination_object_key,
            "move_object",
        )  # fmt: skip
        return self._move(
            source_bucket,
            source_object_key,
            destination_bucket,
            destination_object_key,
            verify_checksum,
            Progress(callback),
        )

    def _move(
        self,
        source_bucket: str,
        source_key: str,
        bucket: str,
        key: str,
        verify: bool,
        progress: Progress | None,
    ) -> TransferResult:
        with self._engine.retrier.scope():  # one retry budget: the copy and the delete
            before = parse_etag(self._engine.head(source_bucket, source_key).get("ETag"))
            result = copying.copy(
                self._engine, source_bucket, source_key, bucket, key, verify=verify,
                operation="move_object", progress=progress,
            )  # fmt: skip
            self._check_moved(result, None)
            # The copy was pinned to the ETag it read; the source must still be that.
            if parse_etag(self._engine.head(source_bucket, source_key).get("ETag")) != before:
                raise PreconditionFailedError(
                    "the source changed while it was moved; it was kept (the copy stays)",
                    operation="move_object",
                    bucket=source_bucket,
                    key=source_key,
                )
            self._delete(source_bucket, source_key)
        return result

    def _check_moved(self, result: TransferResult, local: str | None) -> None:
        """Refuse to delete a move's source unless its copy is proven: verified, or (with
        verification off or impossible) the same size at the destination. ``local``: the
        destination file of a download; else the destination is the result's object."""
        if result.verified:
            return
        if local is not None:
            with local_io("move", result.bucket, result.key, local):
                size = os.stat(local).st_size
        else:
            head = self._engine.head(result.bucket, result.key)
            size = int(head.get("ContentLength") or 0)
        if size != result.size:
            raise ChecksumMismatchError(
                "the copy's size differs from the source's; the source was kept",
                expected=str(result.size),
                actual=str(size),
                algorithm="size",
                operation="move",
                bucket=result.bucket,
                key=result.key,
            )

    def delete_object(self, bucket: str, object_key: str) -> None:
        """Delete the object. Deleting an object that does not exist is not an error (S3)."""
        key = object_key
        _check_object(bucket, key, "delete_object")
        with self._engine.retrier.scope():
            self._delete(bucket, key)

    def _delete(self, bucket: str, key: str) -> None:
        try:
            self._engine.call(
                "DeleteObject",
                bucket,
                key,
                lambda: self._client.delete_object(Bucket=bucket, Key=key),
            )
        except TransientError:
            # Every answer may have been lost after the server deleted the object: if the key
            # is gone, the delete did what was asked.
            try:
                self._engine.head(bucket, key)
            except ObjectNotFoundError:
                logger.warning(
                    "s3://%s/%s: DeleteObject's answers were lost, but the key is gone",
                    bucket,
                    key,
                )
                return
            except ObjectClerkError:
                pass
            raise

    def list_objects(
        self,
        bucket: str,
        prefix_or_page_size: str | int | None = None,
        *,
        prefix: str | None = None,
        page_size: int | None = None,
        delimiter: str | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Iterate lazily over every object in the bucket (or under ``prefix``), page after
        page.

        Both of object-clerk 1.x's call styles work: ``list_objects(bucket, "prefix/")`` and
        ``list_objects(bucket, 1000)``; the second argument is a prefix when it is a str and
        a page size when it is an int. The page size defaults to ``list_objects_page_size``.

        Yields ListObjectsV2 ``Contents`` entries: dicts with ``Key``, ``Size``, ``ETag``,
        ``LastModified`` and ``StorageClass``. Each page request is retried on its own, so a
        failure on page 7 does not restart the listing.

        With ``delimiter`` (``"/"``, say), keys that continue past it under the prefix are
        rolled up: each such common prefix comes once, as ``{"Prefix": "logs/2026/"}``, in
        key order among the objects, as ``aws s3 ls`` shows directories.
        """
        operation = "list_objects"
        _check_bucket(bucket, operation)
        if isinstance(prefix_or_page_size, str):
            if prefix is not None:
                raise InvalidRequestError(
                    "the prefix is given twice", operation=operation, bucket=bucket
                )
            prefix = prefix_or_page_size
        elif prefix_or_page_size is not None:
            if page_size is not None:
                raise InvalidRequestError(
                    "the page size is given twice", operation=operation, bucket=bucket
                )
            page_size = prefix_or_page_size  # checked below
        if prefix is not None and not isinstance(prefix, str):
            raise InvalidRequestError(
                f"prefix must be a string, got {type(prefix).__name__}",
                operation=operation,
                bucket=bucket,
            )
        size = self.list_objects_page_size if page_size is None else page_size
        if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= 1000:
            raise InvalidRequestError(
                f"page_size must be a whole number from 1 to 1000, got {size!r}",
                operation=operation,
                bucket=bucket,
            )
        if delimiter is not None and (not isinstance(delimiter, str) or not delimiter):
            raise InvalidRequestError(
                f"delimiter must be a non-empty string, got {delimiter!r}",
                operation=operation,
                bucket=bucket,
            )
        return self._list(bucket, size, prefix, delimiter)

    def _list(
        self, bucket: str, page_size: int, prefix: str | None, delimiter: str | None = None
    ) -> Iterator[dict[str, Any]]:
        params: dict[str, Any] = {"Bucket": bucket, "MaxKeys": page_size}
        if prefix:
            params["Prefix"] = prefix
        if delimiter:
            params["Delimiter"] = delimiter

        def fetch() -> dict[str, Any]:
            page = dict(self._client.list_objects_v2(**params))
            if "IsTruncated" not in page:
                # Not a listing (an error document with status 200, say): ending here would
                # silently drop the rest of the bucket.
                raise ServerError(
                    "ListObjectsV2 answered without IsTruncated: not a valid listing",
                    operation="ListObjectsV2",
                    bucket=bucket,
                )
            return page

        while True:
            page = self._engine.call("ListObjectsV2", bucket, None, fetch)
            contents = page.get("Contents", [])
            rolled = page.get("CommonPrefixes", [])
            if rolled:
                entries = [dict(entry) for entry in contents]
                entries += [{"Prefix": entry["Prefix"]} for entry in rolled]
                yield from sorted(
                    entries, key=lambda entry: str(entry.get("Key") or entry["Prefix"])
                )
            else:
                yield from (dict(entry) for entry in contents)
            if not page.get("IsTruncated"):
                return
            token = page.get("NextContinuationToken")
            # Past a rolled-up prefix means past every key under it.
            last = max(
                [entry["Key"] for entry in contents]
                + [entry["Prefix"] + "\U0010ffff" for entry in rolled],
                default=None,
            )
            if token:
                params["ContinuationToken"] = token
            elif last is not None:
                params.pop("ContinuationToken", None)
                params["StartAfter"] = last
            else:
                # Truncated, yet nothing to continue from: stopping would silently drop the
                # rest (a scrub, a sync and delete_prefix rely on every page).
                raise ServerError(
                    "ListObjectsV2 said the listing goes on but gave no way to continue",
                    operation="ListObjectsV2",
                    bucket=bucket,
                )

    # --------------------------------------------------------------- many objects ----

    def upload_directory(
        self,
        directory: str | os.PathLike[str],
        bucket: str,
        prefix: str = "",
        *,
        include: Iterable[str] | str | None = None,
        exclude: Iterable[str] | str | None = None,
        symlinks: Symlinks = "inside",
        extra_args: dict[str, Any] | None = None,
        verify_checksum: bool = True,
        delete_source: bool = False,
        max_concurrency: int | None = None,
        executor: Executor | None = None,
        callback: Callback | None = None,
        object_callback: ObjectCallback | None = None,
    ) -> BulkReport:
        """Upload every regular file under ``directory`` to ``prefix`` + its relative POSIX
        path, each verified as :meth:`upload_object` verifies it. Empty files are included.

        ``prefix`` names a directory: ``"backup"`` means ``"backup/"``. ``include`` and
        ``exclude`` are glob patterns on the relative path (``fnmatch``, where ``*`` also
        crosses ``/``); exclusion wins. ``symlinks``: ``"inside"`` (the default) follows
        links that stay inside ``directory`` and skips the others; ``"follow"`` follows all,
        ``"skip"`` none. Skipped files are in the report's ``skipped``, with the reason.
        Each file's content type is guessed from its name unless ``extra_args`` gives one.

        ``delete_source=True`` makes it a move: each file is removed once its object is
        proven (verified, or with verification off the same size); directories stay.

        ``max_concurrency`` objects run at once (default: the upload ``max_concurrency``),
        on a thread pool, or on ``executor`` (any ``concurrent.futures.Executor``, such as
        a Dask cluster's ``client.get_executor()``). ``callback`` gets the bytes moved, as
        boto3's ``Callback``; ``object_callback(done, total)`` the object counts.

        Raises:
            BulkTransferError: an object failed; no new one was started, and each object
                is either whole or untouched. Its ``report`` says what was uploaded.
        """
        operation = "upload_directory"
        _check_bucket(bucket, operation)
        args = dict(extra_args or {})
        _check_upload_args(args, bucket, None, operation)
        runner = self._runner(
            operation, max_concurrency, executor, callback, object_callback, upload=True
        )
        return bulk.upload_directory(
            self,
            directory,
            bucket,
            prefix,
            include=bulk.patterns(include, "include", operation),
            exclude=bulk.patterns(exclude, "exclude", operation),
            symlinks=_symlinks(symlinks, operation),
            extra_args=args,
            verify=verify_checksum,
            delete_source=delete_source,
            runner=runner,
        )

    def download_prefix(
        self,
        bucket: str,
        prefix: str,
        directory: str | os.PathLike[str],
        *,
        include: Iterable[str] | str | None = None,
        exclude: Iterable[str] | str | None = None,
        verify_checksum: bool = True,
        delete_source: bool = False,
        max_concurrency: int | None = None,
        executor: Executor | None = None,
        callback: Callback | None = None,
        object_callback: ObjectCallback | None = None,
    ) -> BulkReport:
        """Download every object under ``prefix`` (through every listing page) to its path
        relative to the prefix under ``directory`` (created if missing), each verified and
        written atomically as :meth:`download_object` writes it.

        A key that would land outside ``directory`` is refused, reported in ``skipped`` and
        never written: ``..``, ``.`` or empty segments, an absolute path, a backslash, a NUL,
        or a parent directory that is a symlink leading out. Directory markers (keys ending
        in ``/``) are skipped. ``include``, ``exclude``, ``delete_source`` (each object is
        deleted once its file is in place and proven), ``max_concurrency``, ``executor`` and
        the callbacks: as for :meth:`upload_directory`.

        Raises:
            BulkTransferError: an object failed; no partial file is left.
        """
        operation = "download_prefix"
        _check_bucket(bucket, operation)
        runner = self._runner(
            operation, max_concurrency, executor, callback, object_callback, upload=False
        )
        return bulk.download_prefix(
            self,
            bucket,
            prefix,
            directory,
            include=bulk.patterns(include, "include", operation),
            exclude=bulk.patterns(exclude, "exclude", operation),
            verify=verify_checksum,
            delete_source=delete_source,
            runner=runner,
        )

    def copy_prefix(
        self,
        source_bucket: str,
        source_prefix: str,
        destination_bucket: str,
        destination_prefix: str,
        *,
        include: Iterable[str] | str | None = None,
        exclude: Iterable[str] | str | None = None,
        verify_checksum: bool = True,
        delete_source: bool = False,
        max_concurrency: int | None = None,
        executor: Executor | None = None,
        callback: Callback | None = None,
        object_callback: ObjectCallback | None = None,
    ) -> BulkReport:
        """Copy every object under ``source_prefix`` to the same relative key under
        ``destination_prefix``, server-side, each verified as :meth:`copy_object` verifies
        it. Both prefixes name directories (``"a"`` means ``"a/"``); overlapping ones are
        refused. ``delete_source=True`` moves: each source is deleted once its copy is
        proven (:meth:`move_object`). The other arguments: as for :meth:`upload_directory`.

        Raises:
            BulkTransferError: an object failed; no new one was started.
        """
        operation = "copy_prefix"
        for bucket in (source_bucket, destination_bucket):
            _check_bucket(bucket, operation)
        for prefix in (source_prefix, destination_prefix):
            _check_prefix(prefix, operation)
        runner = self._runner(
            operation, max_concurrency, executor, callback, object_callback, upload=True
        )
        return bulk.copy_prefix(
            self,
            bulk.S3Location(source_bucket, bulk.directory_prefix(source_prefix)),
            bulk.S3Location(destination_bucket, bulk.directory_prefix(destination_prefix)),
            include=bulk.patterns(include, "include", operation),
            exclude=bulk.patterns(exclude, "exclude", operation),
            verify=verify_checksum,
            delete_source=delete_source,
            runner=runner,
        )

    def delete_prefix(
        self,
        bucket: str,
        prefix: str,
        *,
        dry_run: bool = False,
        on_deleted: Callable[[str], object] | None = None,
    ) -> int:
        """Delete every object whose key starts with ``prefix`` (``""``: the whole bucket),
        in DeleteObjects batches of a listing page, and return how many. ``on_deleted`` is
        told each key deleted; ``dry_run=True`` tells them and deletes nothing. In a
        versioned bucket this leaves delete markers, as a DeleteObject does.

        Raises:
            BulkTransferError: some keys could not be deleted (every page was tried);
                ``errors`` names each.
        """
        _check_bucket(bucket, "delete_prefix")
        _check_prefix(prefix, "delete_prefix")
        return buckets.delete_all(
            self, bucket, prefix, versions=False, on_deleted=on_deleted, dry_run=dry_run
        )

    def sync(
        self,
        source: str | os.PathLike[str],
        destination: str | os.PathLike[str],
        *,
        delete: bool = False,
        dry_run: bool = False,
        include: Iterable[str] | str | None = None,
        exclude: Iterable[str] | str | None = None,
        symlinks: Symlinks = "inside",
        verify_checksum: bool = True,
        max_concurrency: int | None = None,
        executor: Executor | None = None,
        callback: Callback | None = None,
        object_callback: ObjectCallback | None = None,
    ) -> SyncReport:
        """Make ``destination`` hold what ``source`` holds, one way. Each side is a local
        directory or ``"s3://bucket/prefix"``; bucket to bucket copies server-side.

        An object is the same when its size matches and its ETag equals the other side's,
        where a local file's ETag is computed in the remote object's own part layout (as a
        read finds it). Where the ETag cannot prove the content (SSE-KMS, SSE-C, a layout no
        candidate reproduces), the object is the same when the destination is at least as
        new as the source, and :attr:`SyncReport.unchanged` says so for that object.

        ``delete=True`` removes what the source lacks (within the filters), only after every
        transfer succeeded. ``dry_run=True`` compares and reports, and changes nothing.
        Returns a :class:`~object_clerk.bulk.SyncReport`: iterating it gives the changes as
        ``(key, operation, location)`` records, as filecloudsync's sync returns them.

        Raises:
            BulkTransferError: a transfer failed: nothing was deleted, and every object is
                whole (the old or the new) with no partial file or multipart upload left.
        """
        operation = "sync"
        to_bucket = isinstance(destination, str) and destination.startswith("s3://")
        runner = self._runner(
            operation, max_concurrency, executor, callback, object_callback, upload=to_bucket
        )
        return bulk.sync(
            self,
            source,
            destination,
            delete=delete,
            dry_run=dry_run,
            include=bulk.patterns(include, "include", operation),
            exclude=bulk.patterns(exclude, "exclude", operation),
            symlinks=_symlinks(symlinks, operation),
            verify=verify_checksum,
            runner=runner,
        )

    def abort_stale_uploads(
        self,
        bucket: str,
        older_than: timedelta | float,
        *,
        prefix: str = "",
        dry_run: bool = False,
    ) -> list[StaleUpload]:
        """Abort the incomplete multipart uploads under ``prefix`` that were initiated more
        than ``older_than`` (a timedelta, or seconds) ago, such as those a crashed process
        left, and return them, through every page of ListMultipartUploads
        (``list_objects_page_size`` at a time). ``dry_run=True`` lists them without
        aborting; ``older_than=0`` takes every one (by no clock). Choose ``older_than``
        longer than any upload still running may take: an upload aborted while in progress
        fails."""
        operation = "abort_stale_uploads"
        _check_bucket(bucket, operation)
        _check_prefix(prefix, operation)
        delta = bulk.older_than_delta(older_than, operation)
        return bulk.abort_stale_uploads(self, bucket, delta, prefix=prefix, dry_run=dry_run)

    # ----------------------------------------------------------------- checks ----

    def verify_file(
        self, path: str | os.PathLike[str], bucket: str, object_key: str
    ) -> ObjectCheck:
        """Compare a local file with an object without downloading it: the sizes, then the
        file's ETag computed in the object's own part layout (as a read finds it).

        Returns an :class:`~object_clerk.checks.ObjectCheck` whose ``status`` is ``OK``,
        ``MISMATCH`` or ``UNVERIFIABLE`` (the ETag proves nothing: SSE-KMS, SSE-C, or a
        multipart layout no candidate reproduces), with ``local_etag`` and the ``reason``.

        Raises:
            ObjectNotFoundError, BucketNotFoundError: no such object.
            LocalIOError: the file cannot be read; InvalidRequestError: it is no file.
        """
        _check_object(bucket, object_key, "verify_file")
        return checks.check_file(self, path, bucket, object_key)

    def verify_objects(
        self,
        bucket: str,
        prefix: str = "",
        *,
        include: Iterable[str] | str | None = None,
        exclude: Iterable[str] | str | None = None,
        on_check: Callable[[ObjectCheck], object] | None = None,
        max_concurrency: int | None = None,
        executor: Executor | None = None,
        callback: Callback | None = None,
        object_callback: ObjectCallback | None = None,
    ) -> ScrubReport:
        """Scrub: read every object whose key starts with ``prefix`` and prove its bytes
        against its ETag or stored checksum, keeping none of them (memory stays bounded).

        Each object's :class:`~object_clerk.checks.ObjectCheck` is handed to ``on_check``
        as it completes: ``OK``, ``CORRUPT`` (every read mismatched), ``UNVERIFIABLE``,
        ``MISSING`` (deleted since listed) or ``ERROR`` (unreadable, after retries). One
        object's failure does not stop the scrub. Returns a
        :class:`~object_clerk.checks.ScrubReport` of the counts and every check not OK.
        The other arguments: as for :meth:`download_prefix`.

        Raises:
            BucketNotFoundError, AccessDeniedError, TransientError: the listing failed.
        """
        operation = "verify_objects"
        _check_bucket(bucket, operation)
        _check_prefix(prefix, operation)
        runner = self._runner(
            operation, max_concurrency, executor, callback, object_callback, upload=False
        )
        return checks.verify_objects(
            self,
            bucket,
            prefix,
            include=bulk.patterns(include, "include", operation),
            exclude=bulk.patterns(exclude, "exclude", operation),
            on_check=on_check,
            runner=runner,
        )

    # ---------------------------------------------------------------- buckets ----

    def list_buckets(self) -> list[dict[str, Any]]:
        """Every bucket the credentials own, as ``{"Name": ..., "CreationDate": ...}``."""
        return buckets.list_buckets(self)

    def create_bucket(self, bucket: str, *, region: str | None = None) -> bool:
        """Create ``bucket`` (in ``region``, default the clerk's). Returns True if it was
        created, False if it exists already and these credentials can reach it (yours, or
        one shared with you); one another account owns and you cannot reach raises
        RequestRejectedError (``BucketAlreadyExists``)."""
        _check_bucket(bucket, "create_bucket")
        return buckets.create_bucket(self, bucket, region)

    def delete_bucket(self, bucket: str, *, empty: bool = False) -> None:
        """Delete ``bucket``. ``empty=True`` first aborts its incomplete multipart uploads
        and deletes every object, version and delete marker in it: everything is lost.
        Without it, a bucket that is not empty raises RequestRejectedError
        (``BucketNotEmpty``) and nothing is deleted."""
        _check_bucket(bucket, "delete_bucket")
        buckets.delete_bucket(self, bucket, empty=empty)

    # -------------------------------------------------------------- documents ----

    def write_json(
        self, value: Any, bucket: str, object_key: str, **options: Any
    ) -> TransferResult:
        """Upload ``value`` as JSON (``json.dumps(value, **options)``), verified, gzipped
        when the key ends in ``.gz``."""
        text = documents.dump_json(value, bucket, object_key, **options)
        return self._document(text, "application/json", bucket, object_key, "write_json")

    def read_json(self, bucket: str, object_key: str) -> Any:
        """Read a verified JSON object (gunzipped when the key ends in ``.gz``)."""
        text = documents.decode(
            self.get_object(bucket, object_key), bucket, object_key, "read_json"
        )
        return documents.load_json(text, bucket, object_key)

    def write_yaml(
        self, value: Any, bucket: str, object_key: str, **options: Any
    ) -> TransferResult:
        """As :meth:`write_json`, in YAML (``yaml.safe_dump``; needs the ``yaml`` extra)."""
        text = documents.dump_yaml(value, bucket, object_key, **options)
        return self._document(text, "application/yaml", bucket, object_key, "write_yaml")

    def read_yaml(self, bucket: str, object_key: str) -> Any:
        """As :meth:`read_json`, in YAML (``yaml.safe_load``; needs the ``yaml`` extra)."""
        text = documents.decode(
            self.get_object(bucket, object_key), bucket, object_key, "read_yaml"
        )
        return documents.load_yaml(text, bucket, object_key)

    def _document(
        self, text: str, kind: str, bucket: str, key: str, operation: str
    ) -> TransferResult:
        _check_object(bucket, key, operation)
        args = {"ContentType": documents.content_type(kind, key)}
        return uploads.upload(
            self._engine, documents.encode(text, key), bucket, key, extra_args=args, verify=True
        )

    # ---------------------------------------------------------- store to store ----

    def transfer_to(
        self,
        destination: ObjectClerk,
        bucket: str,
        object_key: str,
        destination_bucket: str | None = None,
        destination_key: str | None = None,
        *,
        extra_args: dict[str, Any] | None = None,
        callback: Callback | None = None,
    ) -> TransferResult:
        """Copy an object from this clerk's store to ``destination``'s (Ceph to AWS, say),
        streamed through this process with bounded memory and no local file.

        The read is pinned to the object's ETag and verified against it (the stream fails
        before the upload completes if the bytes do not verify); every part sent carries
        its Content-MD5, and the destination's ETag is compared with the bytes sent. The
        content type, user metadata, Cache-Control, Content-Disposition, Content-Encoding
        and Content-Language are kept; ``extra_args`` adds or overrides PutObject arguments.
        The destination bucket and key default to the source's.
        """
        operation = "transfer_to"
        if not isinstance(destination, ObjectClerk):
            raise DataTypeError(
                f"destination must be an ObjectClerk, not {type(destination).__name__}",
                operation=operation,
            )
        dest_bucket = bucket if destination_bucket is None else destination_bucket
        dest_key = object_key if destination_key is None else destination_key
        _check_object(bucket, object_key, operation)
        _check_object(dest_bucket, dest_key, operation)
        head = self._engine.head(bucket, object_key)
        args: dict[str, Any] = {name: head[name] for name in _KEPT_HEADERS if head.get(name)}
        if PART_SIZE_METADATA in args.get("Metadata", {}):  # the source's layout, not ours
            args["Metadata"] = {
                k: v for k, v in args["Metadata"].items() if k != PART_SIZE_METADATA
            }
        args.update(extra_args or {})
        _check_upload_args(args, dest_bucket, dest_key, operation)
        size = int(head.get("ContentLength") or 0)
        verdicts: list[Verdict] = []
        chunks = reads.stream(
            self._engine, bucket, object_key, verify=True, chunk_size=1024 * 1024,
            extra={"IfMatch": head["ETag"]}, on_verdict=verdicts.append,
        )  # fmt: skip
        try:
            result = uploads.upload(
                destination._engine, _verified_last(chunks) if size else b"".join(chunks),
                dest_bucket, dest_key,
                extra_args=args, verify=True, progress=Progress(callback), size=size,
            )  # fmt: skip
        finally:
            chunks.close()  # type: ignore[attr-defined]
        source = verdicts[0] if verdicts else None
        if source is not None and not source.verified:
            # The destination holds what was read, but nothing proved what was read.
            result = replace(
                result,
                verification="unverifiable",
                reason=f"the source could not be proven: {source.reason}",
            )
        return result

    def _runner(
        self,
        operation: str,
        max_concurrency: int | None,
        executor: Executor | None,
        callback: Callback | None,
        object_callback: ObjectCallback | None,
        *,
        upload: bool,
    ) -> bulk.Runner:
        transfer = self._engine.transfer
        concurrency = max_concurrency
        if concurrency is None:
            concurrency = transfer.upload_concurrency if upload else transfer.download_concurrency
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise InvalidRequestError(
                f"max_concurrency must be a whole number >= 1, got {max_concurrency!r}",
                operation=operation,
            )
        if executor is not None and not isinstance(executor, Executor):
            raise InvalidRequestError(
                f"executor must be a concurrent.futures.Executor, not {type(executor).__name__}",
                operation=operation,
            )
        return bulk.Runner(
            operation=operation,
            concurrency=concurrency,
            executor=executor,
            callback=callback,
            object_callback=object_callback,
        )

    @staticmethod
    def _key_problem(key: str) -> str | None:
        """Why ``key`` is no valid S3 key, or None."""
        try:
            _check_object("bucket", key, "")
        except InvalidRequestError as exc:
            return exc.message
        return None


def _verified_last(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """``chunks``, with the last one held back until the stream has ended, and so been
    verified: an upload that needs every byte can then never complete on bytes whose
    verification failed."""
    held: bytes | None = None
    for chunk in chunks:
        if held is not None:
            yield held
        held = chunk
    if held is not None:
        yield held


def _unpickled(
    settings: ClerkSettings,
    page_size: int,
    on_retry: Callable[[RetryEvent], None] | None,
    token: str,
) -> ObjectClerk:
    """A pickled clerk, rebuilt: its client is built once per process and then shared."""
    name = (os.getpid(), token)
    with _PROCESS_CLIENTS_LOCK:  # a worker unpickles in several threads at once
        cached = _PROCESS_CLIENTS.get(name)
        if cached is None:
            cached = _PROCESS_CLIENTS[name] = _build_client(settings)
            while len(_PROCESS_CLIENTS) > _PROCESS_CLIENTS_KEPT:
                _PROCESS_CLIENTS.popitem(last=False)
        _PROCESS_CLIENTS.move_to_end(name)
    clerk = ObjectClerk(
        settings=settings, list_objects_page_size=page_size, on_retry=on_retry, client=cached
    )
    clerk._owns_client, clerk._token = True, token
    return clerk


def _symlinks(value: object, operation: str) -> Symlinks:
    if value not in ("inside", "follow", "skip"):
        raise InvalidRequestError(
            f"symlinks must be 'inside', 'follow' or 'skip', got {value!r}", operation=operation
        )
    return value


def _build_client(settings: ClerkSettings) -> S3Client:
    try:
        session = boto3.session.Session(
            aws_access_key_id=(
                settings.access_key.get_secret_value() if settings.access_key else None
            ),
            aws_secret_access_key=(
                settings.secret_key.get_secret_value() if settings.secret_key else None
            ),
            aws_session_token=(
                settings.session_token.get_secret_value() if settings.session_token else None
            ),
            region_name=settings.region,
            profile_name=settings.profile,
        )
    except ProfileNotFound as exc:
        raise ConfigurationError(
            f"no such AWS profile: {settings.profile!r}", variable="OBJECT_CLERK_PROFILE"
        ) from exc
    if bool(settings.access_key) != bool(settings.secret_key):
        raise ConfigurationError(
            "give both access_key and secret_key, or neither (for the AWS credential chain)",
            variable="OBJECT_CLERK_SECRET_KEY"
            if settings.access_key
            else "OBJECT_CLERK_ACCESS_KEY",
        )
    verify: bool | str | None = None  # None: boto3's chain, including AWS_CA_BUNDLE
    if settings.ca_bundle is not None:
        if not settings.ca_bundle.is_file():
            raise ConfigurationError(
                f"CA bundle not found: {settings.ca_bundle}", variable="OBJECT_CLERK_CA_BUNDLE"
            )
        verify = str(settings.ca_bundle)
    elif not settings.verify_tls:
        verify = False
    config = settings.client_config()
    concurrency = settings.transfer()
    wanted_pool = max(concurrency.upload_concurrency, concurrency.download_concurrency) + 2
    if "max_pool_connections" not in settings.s3_client_config and wanted_pool > 10:
        config = config.merge(Config(max_pool_connections=wanted_pool))
    client: S3Client = session.client(
        "s3", endpoint_url=settings.resolved_endpoint(), verify=verify, config=config
    )
    return client


def _as_dict(value: object) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigurationError(
            f"transfer_config and upload_config must be dicts of TransferConfig keys,"
            f" not {type(value).__name__}",
            variable="transfer_config",
        )
    return value


def _check_bucket(bucket: object, operation: str) -> None:
    if not isinstance(bucket, str) or not _BUCKET_RE.fullmatch(bucket) or ".." in bucket:
        raise InvalidRequestError(
            f"invalid bucket name {bucket!r}: 3 to 255 letters, digits, dots, hyphens or"
            " underscores, starting and ending with a letter or digit",
            operation=operation,
        )


def _check_prefix(prefix: object, operation: str) -> None:
    if not isinstance(prefix, str):
        raise InvalidRequestError(
            f"prefix must be a string, not {type(prefix).__name__}", operation=operation
        )


def _check_object(bucket: object, key: object, operation: str) -> None:
    _check_bucket(bucket, operation)
    assert isinstance(bucket, str)
    if not isinstance(key, str) or not key:
        raise InvalidRequestError(
            f"the key must be a non-empty string, got {key!r}", operation=operation, bucket=bucket
        )
    if len(key.encode("utf-8")) > _MAX_KEY_BYTES:
        raise InvalidRequestError(
            f"the key is {len(key.encode('utf-8'))} bytes long in UTF-8;"
            f" S3 allows {_MAX_KEY_BYTES}",
            operation=operation,
            bucket=bucket,
        )


# An HTTP header name (RFC 9110 token): what a user-metadata key becomes, after x-amz-meta-.
_TOKEN_RE = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# What an HTTP header value may hold here: printable US-ASCII, spaces and tabs.
_HEADER_VALUE_RE = re.compile(r"[\t\x20-\x7e]*")


def _check_upload_args(
    args: dict[str, Any], bucket: str, key: str | None, operation: str = "upload_object"
) -> None:
    """Refuse, before any request, upload arguments outside :data:`UPLOAD_EXTRA_ARGS`, and
    those that would become broken HTTP headers (a CR/LF, a non-ASCII byte, a number where
    a string belongs): sent, they fail in ways that look like network faults."""

    def refuse(message: str) -> InvalidRequestError:
        return InvalidRequestError(message, operation=operation, bucket=bucket, key=key)

    unknown = set(args) - UPLOAD_EXTRA_ARGS
    if unknown:
        raise refuse(
            f"unknown upload arguments {sorted(unknown)}; allowed: {sorted(UPLOAD_EXTRA_ARGS)}"
        )

    metadata = args.get("Metadata")
    if metadata is not None:
        if not isinstance(metadata, dict):
            raise refuse(f"metadata must be a dict of str to str, not {type(metadata).__name__}")
        for name, value in metadata.items():
            if not isinstance(name, str) or not _TOKEN_RE.fullmatch(name):
                raise refuse(
                    f"metadata key {name!r} is not a valid header name: use letters, digits"
                    " and -_.!#$%&'*+^`|~"
                )
            if not isinstance(value, str):
                raise refuse(
                    f"metadata value for {name!r} must be a str, not {type(value).__name__}"
                )
            if not _HEADER_VALUE_RE.fullmatch(value):
                raise refuse(
                    f"metadata value for {name!r} holds a control or non-ASCII character:"
                    " S3 user metadata is US-ASCII (percent-encode other text)"
                )
    for name, value in args.items():
        if (
            name not in ("Metadata", "SSECustomerKey")  # botocore base64-encodes the key
            and isinstance(value, str)
            and not _HEADER_VALUE_RE.fullmatch(value)
        ):
            raise refuse(f"{name} holds a control or non-ASCII character")


def _check_copy(source_bucket: str, source_key: str, bucket: str, key: str, operation: str) -> None:
    _check_object(source_bucket, source_key, operation)
    _check_object(bucket, key, operation)
    if (source_bucket, source_key) == (bucket, key):
        raise InvalidRequestError(
            "source and destination are the same object"
            + ("; a move onto itself would delete it" if operation == "move_object" else ""),
            operation=operation,
            bucket=bucket,
            key=key,
        )
