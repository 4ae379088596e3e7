"""A drop-in for object-clerk 1.1.0 (issue 8), against the real Ceph RGW: its constructor,
attributes, keyword names, return shapes, exception names, configuration module and retry
settings. (1.1.0's own suite is run against this package from a scratch directory; these
tests are our own.)"""

from __future__ import annotations

import hashlib
import io
import json
import time
from pathlib import Path
from typing import Any

import botocore.config
import pytest
from boto3.s3.transfer import TransferConfig

import object_clerk
import object_clerk.config
import object_clerk.exceptions
from object_clerk import (
    AccessDeniedError,
    ChecksumMismatchError,
    InvalidRequestError,
    NotFoundError,
    ObjectClerk,
    ServerError,
    ThrottledError,
)
from object_clerk.etag import MiB
from tests.integration.faults import CorruptResponseBodies, RequestLog
from tests.integration.test_operations import payload, raw_upload
from tests.servers import Backend, free_port

pytestmark = pytest.mark.integration

NAMES_1X = (
    "ObjectClerkException",
    "ObjectClerkServerAuthException",
    "ObjectClerkServerInternalException",
    "ObjectNotFoundException",
    "ObjectSaveException",
    "ObjectVerificationException",
)
FAST = {"retry_delay": 0, "retry_backoff": 1, "retry_jitter": 0, "retry_max_delay": 0}


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("MULTIPART_THRESHOLD", "S3_UPLOAD_CONFIG", "CHECKSUM_RETRY_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no .env


def clerk_1x(ceph: Backend, **kwargs: Any) -> ObjectClerk:
    """Built as 1.1.0 code builds it: host and port positionally, no use_ssl."""
    host, port = ceph.endpoint.removeprefix("http://").split(":")
    return ObjectClerk(host, int(port), ceph.access_key, ceph.secret_key, **{**FAST, **kwargs})


def test_constructor_defaults_and_attributes_are_1x(ceph: Backend) -> None:
    """use_ssl=False and list_objects_page_size=1000 by default; the public attributes
    hold what 1.1.0's hold; no credential in the repr."""
    clerk = clerk_1x(ceph, retry_tries=3)
    port = int(ceph.endpoint.rsplit(":", 1)[1])
    assert (clerk.host, clerk.port, clerk.use_ssl) == ("127.0.0.1", port, False)
    assert clerk.endpoint_url == ceph.endpoint
    assert (clerk.retry_delay, clerk.retry_backoff, clerk.retry_jitter) == (0, 1, 0)
    assert (clerk.retry_max_delay, clerk.retry_tries) == (0, 3)
    assert clerk.list_objects_page_size == 1000
    assert isinstance(clerk.client_config, botocore.config.Config)
    assert isinstance(clerk.transfer_config, TransferConfig)
    assert clerk.client.meta.endpoint_url == ceph.endpoint
    assert ceph.secret_key not in repr(clerk) and ceph.access_key not in repr(clerk)


def test_client_and_transfer_config_dicts_apply(ceph: Backend) -> None:
    clerk = clerk_1x(
        ceph,
        retry_tries=1,
        client_config={"connect_timeout": 321, "read_timeout": 654},
        transfer_config={"max_concurrency": 24},
    )
    assert clerk.client.meta.config.connect_timeout == 321
    assert clerk.client.meta.config.read_timeout == 654
    assert clerk.transfer_config.max_concurrency == 24
    for bad in ({"client_config": "x"}, {"transfer_config": {"not_a_key": 1}}):
        with pytest.raises(object_clerk.ConfigurationError):
            clerk_1x(ceph, **bad)


def test_keyword_names_and_positional_order_are_1x(ceph: Backend) -> None:
    """1.1.0's keyword names, and its positional order for verify_checksum, content_type,
    metadata, storage_class; content_type defaults to application/octet-stream."""
    bucket, other = ceph.new_bucket(), ceph.new_bucket()
    clerk = clerk_1x(ceph)
    clerk.upload_object(object_data=b"data", bucket=bucket, object_key="k")
    assert ceph.raw().head_object(Bucket=bucket, Key="k")["ContentType"] == (
        "application/octet-stream"
    )
    clerk.upload_object(b"data", bucket, "typed", True, "text/plain", {"m": "v"}, "STANDARD")
    info = clerk.get_object_info(bucket=bucket, object_key="typed")
    assert (info["content-type"], info["x-amz-meta-m"]) == ("text/plain", "v")
    assert clerk.get_object(bucket=bucket, object_key="k", verify_checksum=True) == b"data"
    clerk.copy_object(
        source_bucket=bucket,
        source_object_key="k",
        destination_bucket=other,
        destination_object_key="c",
        verify_checksum=True,
    )
    clerk.move_object(
        source_bucket=other,
        source_object_key="c",
        destination_bucket=bucket,
        destination_object_key="m",
    )
    clerk.delete_object(bucket=bucket, object_key="m")
    assert sorted(e["Key"] for e in clerk.list_objects(bucket=bucket)) == ["k", "typed"]


def test_list_objects_takes_a_prefix_or_a_page_size(ceph: Backend) -> None:
    """list_objects(bucket, "prefix/") is 1.1.0's code, list_objects(bucket, 1000) its
    README; the page size defaults to list_objects_page_size, and every page is read."""
    bucket = ceph.new_bucket()
    raw = ceph.raw()
    for key in ("a/1", "a/2", "a/3", "b/1"):
        raw.put_object(Bucket=bucket, Key=key, Body=b"x")
    clerk = clerk_1x(ceph, list_objects_page_size=1)
    log = RequestLog(clerk.client)
    assert [e["Key"] for e in clerk.list_objects(bucket, "a/")] == ["a/1", "a/2", "a/3"]
    assert log.counts["ListObjectsV2"] >= 3  # one key a page
    assert [e["Key"] for e in clerk.list_objects(bucket, 2)] == ["a/1", "a/2", "a/3", "b/1"]
    assert [e["Key"] for e in clerk.list_objects(bucket, prefix="b/")] == ["b/1"]
    with pytest.raises(InvalidRequestError):
        list(clerk.list_objects(bucket, 0))


def test_1x_exception_names_catch_what_1x_raised(ceph: Backend) -> None:
    """Importable from object_clerk and object_clerk.exceptions; an except written for
    1.1.0 catches the same situations: a missing key or bucket, a wrong secret, bytes that
    do not verify, empty data."""
    for name in NAMES_1X:
        assert getattr(object_clerk, name) is getattr(object_clerk.exceptions, name)
    bucket = ceph.new_bucket()
    clerk = clerk_1x(ceph, retry_tries=2)
    with pytest.raises(object_clerk.ObjectNotFoundException):
        clerk.get_object(bucket, "missing")
    with pytest.raises(object_clerk.ObjectNotFoundException):
        clerk.get_object_info("no-such-bucket-here", "k")
    host, port = ceph.endpoint.removeprefix("http://").split(":")
    wrong = ObjectClerk(host, int(port), ceph.access_key, "wrong-secret", **FAST)
    with pytest.raises(object_clerk.ObjectClerkServerAuthException):
        wrong.get_object(bucket, "missing")
    ceph.raw().put_object(Bucket=bucket, Key="k", Body=payload(1000))
    CorruptResponseBodies(clerk.client, times=1000)
    with pytest.raises(object_clerk.ObjectVerificationException):
        clerk.get_object(bucket, "k")
    with pytest.raises(object_clerk.ObjectSaveException):
        clerk.upload_object(b"", bucket, "empty")
    with pytest.raises(object_clerk.ObjectClerkException):
        clerk.get_object(bucket, "missing")
    assert issubclass(ThrottledError, object_clerk.ObjectClerkServerInternalException)
    assert issubclass(ServerError, object_clerk.ObjectClerkServerInternalException)
    assert object_clerk.ObjectNotFoundException is NotFoundError
    assert object_clerk.ObjectClerkServerAuthException is AccessDeniedError
    assert object_clerk.ObjectVerificationException is ChecksumMismatchError


def test_bad_upload_data_is_a_save_error_or_a_type_error(ceph: Backend, tmp_path: Path) -> None:
    """A missing path or a directory raises ObjectSaveException; a wrong data type raises
    a TypeError (also our InvalidRequestError). No request is sent."""
    bucket = ceph.new_bucket()
    clerk = clerk_1x(ceph)
    log = RequestLog(clerk.client)
    with pytest.raises(object_clerk.ObjectSaveException, match="no such file"):
        clerk.upload_object(tmp_path / "missing.bin", bucket, "k")
    with pytest.raises(object_clerk.ObjectSaveException, match="directory"):
        clerk.upload_object(str(tmp_path), bucket, "k")
    with pytest.raises(TypeError):
        clerk.upload_object({"not": "data"}, bucket, "k")
    with pytest.raises(InvalidRequestError):
        clerk.upload_object(42, bucket, "k")
    assert sum(log.counts.values()) == 0


def test_retry_tries_minus_one_is_bounded_by_the_deadline() -> None:
    """retry_tries=-1 (1.1.0's default) has no count limit, and the deadline still ends
    the call: a refused endpoint gives up after about the deadline, never hangs."""
    clerk = ObjectClerk(
        "127.0.0.1",
        free_port(),
        "a",
        "b",
        retry_delay=0.05,
        retry_backoff=1,
        retry_jitter=0,
        retry_max_delay=0.05,
        retry_tries=-1,
        retry_deadline=1.0,
    )
    assert clerk.retry_tries == -1 and clerk.max_http_attempts is None
    log = RequestLog(clerk.client)
    started = time.monotonic()
    with pytest.raises(object_clerk.ConnectionFault):
        clerk.get_object("bucket", "k")
    assert time.monotonic() - started < 30  # bounded (about 1 s; generous under load)
    assert log.counts["GetObject"] > 3  # more than any fixed small count: no count limit


def test_config_module_is_read_when_accessed(monkeypatch: pytest.MonkeyPatch) -> None:
    """object_clerk.config's names come from the environment of the moment."""
    monkeypatch.setenv("MULTIPART_THRESHOLD", str(5 * MiB))
    threshold = object_clerk.config.MULTIPART_THRESHOLD
    assert threshold == 5 * MiB
    assert object_clerk.config.UPLOAD_CONFIG.multipart_chunksize == 5 * MiB
    monkeypatch.setenv("MULTIPART_THRESHOLD", str(6 * MiB))
    assert object_clerk.config.UPLOAD_CONFIG.multipart_threshold == 6 * MiB
    assert object_clerk.config.CLIENT_CONFIG.connect_timeout == 60
    assert object_clerk.config.CHECKSUM_RETRY_CONFIG["retry_tries"] == 3
    monkeypatch.setenv("CHECKSUM_RETRY_CONFIG", json.dumps({"retry_tries": 9}))
    assert object_clerk.config.CHECKSUM_RETRY_CONFIG == {"retry_tries": 9}
    with pytest.raises(AttributeError):
        _ = object_clerk.config.NO_SUCH_NAME  # type: ignore[attr-defined]


def test_checksum_retry_config_governs_checksum_retries(
    ceph: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With CHECKSUM_RETRY_CONFIG set, damaged reads are tried its retry_tries times (2),
    not retry_tries (5); real response bytes are damaged on every GET."""
    monkeypatch.setenv(
        "CHECKSUM_RETRY_CONFIG",
        json.dumps({"retry_tries": 2, "retry_delay": 0, "retry_jitter": [0, 0]}),
    )
    bucket = ceph.new_bucket()
    ceph.raw().put_object(Bucket=bucket, Key="k", Body=payload(2000))
    clerk = clerk_1x(ceph, retry_tries=5)
    CorruptResponseBodies(clerk.client, times=1000)
    log = RequestLog(clerk.client)
    with pytest.raises(ChecksumMismatchError):
        clerk.get_object(bucket, "k")
    assert log.counts["GetObject"] == 2


def test_multipart_threshold_is_also_the_part_size(
    ceph: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With MULTIPART_THRESHOLD=5 MiB a 13 MiB upload goes in 3 parts of 5 MiB, as 1.1.0
    makes it: the ETag ends in -3 and equals boto3's with the same part size."""
    monkeypatch.setenv("MULTIPART_THRESHOLD", str(5 * MiB))
    bucket = ceph.new_bucket()
    data = payload(13 * MiB)
    result = clerk_1x(ceph).upload_object(io.BytesIO(data), bucket, "clerk")
    assert result.etag.endswith("-3")
    assert result.etag == raw_upload(ceph, bucket, "boto3", data, 5 * MiB)
    parts = [hashlib.md5(data[i : i + 5 * MiB]).digest() for i in range(0, len(data), 5 * MiB)]
    assert result.etag == f"{hashlib.md5(b''.join(parts)).hexdigest()}-3"
