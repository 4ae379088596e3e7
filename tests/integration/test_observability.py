"""Observability: the on_retry hook and the WARNING retry log carry the same RetryEvent with
every field filled in, and no credential ever appears in anything object_clerk produces
(logs, retry events, errors, reprs, pickles)."""

from __future__ import annotations

import dataclasses
import logging
import pickle
import traceback
from pathlib import Path
from typing import Any

import pytest

from object_clerk import (
    AccessDeniedError,
    ChecksumMismatchError,
    ConfigurationError,
    ConnectionFault,
    ObjectClerk,
    ObjectClerkError,
    RetryEvent,
)
from object_clerk.etag import MiB
from tests.integration.faults import CorruptResponseBodies
from tests.integration.test_operations import payload, small_clerk
from tests.servers import Backend, free_port

pytestmark = pytest.mark.integration

ACCESS_KEY = "AKIA-OBSERVE-KEY-0001"
SECRET_KEY = "observe-secret-value-XYZ"
SESSION_TOKEN = "observe-session-token-QQQ"
SECRETS = (ACCESS_KEY, SECRET_KEY, SESSION_TOKEN)

FIELDS = {"operation", "bucket", "key", "attempt", "max_attempts", "error", "delay", "elapsed"}


def refusing_clerk(**kwargs: Any) -> ObjectClerk:
    """A clerk whose endpoint refuses every connection: each request fails transiently."""
    return ObjectClerk(
        endpoint_url=f"http://127.0.0.1:{free_port()}",
        region="us-east-1",
        access_key=kwargs.pop("access_key", "AKIDEXAMPLE"),
        secret_key=kwargs.pop("secret_key", "example-secret"),
        retry_tries=kwargs.pop("retry_tries", 3),
        retry_delay=0.01,
        retry_backoff=2,
        retry_jitter=0.0,
        retry_max_delay=0.05,
        **kwargs,
    )


def retry_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "object_clerk.retry" and hasattr(r, "retry")]


def test_on_retry_hook_and_log_get_every_retry_of_a_refused_connection(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Each retry of a refused connection calls on_retry with a RetryEvent (operation,
    bucket, key, 1-based attempt, max_attempts, the typed error, the policy's delay, the
    elapsed time), and logs a WARNING on object_clerk.retry whose `retry` is that event."""
    events: list[RetryEvent] = []
    clerk = refusing_clerk(on_retry=events.append, retry_tries=4)
    with (
        caplog.at_level(logging.WARNING, logger="object_clerk.retry"),
        pytest.raises(ConnectionFault) as raised,
    ):
        clerk.get_object("observed-bucket", "dir/observed.bin")
    assert {f.name for f in dataclasses.fields(RetryEvent)} == FIELDS
    assert [e.attempt for e in events] == [1, 2, 3]
    for event in events:
        assert event.operation == "GetObject"
        assert (event.bucket, event.key) == ("observed-bucket", "dir/observed.bin")
        assert event.max_attempts == 4
        assert isinstance(event.error, ConnectionFault)
        assert isinstance(event.error, ObjectClerkError)
        assert (event.error.bucket, event.error.key) == ("observed-bucket", "dir/observed.bin")
        assert event.error is not raised.value  # the last attempt's error is the one raised
        assert event.elapsed >= 0
    # delay 0.01, then x2 with no jitter, capped at 0.05
    assert [e.delay for e in events] == pytest.approx([0.01, 0.02, 0.04])
    elapsed = [e.elapsed for e in events]
    assert elapsed == sorted(elapsed)
    assert elapsed[2] - elapsed[0] >= 0.01 + 0.02 - 0.005  # the waits really happened

    records = retry_records(caplog)
    assert [r.retry for r in records] == events
    assert all(r.retry is e for r, e in zip(records, events, strict=True))
    for record, event in zip(records, events, strict=True):
        assert record.levelno == logging.WARNING
        message = record.getMessage()
        assert f"retrying GetObject (attempt {event.attempt} of 4 failed" in message
        assert "s3://observed-bucket/dir/observed.bin" in message


def test_on_retry_hook_and_log_report_a_corrupted_read(
    backend: Backend, bucket: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A real GET whose body is damaged once is retried: the hook and the WARNING record get
    one RetryEvent for GetObject, attempt 1, carrying the ChecksumMismatchError."""
    events: list[RetryEvent] = []
    clerk = small_clerk(backend, retry_tries=4, on_retry=events.append)
    data = payload(100_000)
    clerk.upload_object(data, bucket, "observed")
    CorruptResponseBodies(clerk.client, times=1, at=5000)
    with caplog.at_level(logging.WARNING, logger="object_clerk.retry"):
        assert clerk.get_object(bucket, "observed") == data
    assert len(events) == 1
    event = events[0]
    assert (event.operation, event.bucket, event.key) == ("GetObject", bucket, "observed")
    assert (event.attempt, event.max_attempts) == (1, 4)
    assert isinstance(event.error, ChecksumMismatchError)
    assert event.error.expected != event.error.actual
    assert event.delay == pytest.approx(0.01)
    assert event.elapsed >= 0
    assert [r.retry for r in retry_records(caplog)] == [event]


# ------------------------------------------------------------------------ secrets ---


def exercise(clerk: ObjectClerk, bucket: str) -> list[ObjectClerkError]:
    """Run every operation once; each must fail typed. Returns the errors."""
    calls = [
        lambda: clerk.get_object(bucket, "k"),
        lambda: clerk.get_object_info(bucket, "k"),
        lambda: clerk.upload_object(b"small", bucket, "k"),
        lambda: clerk.upload_object(payload(MiB + 1), bucket, "big"),
        lambda: clerk.copy_object(bucket, "k", bucket, "k2"),
        lambda: clerk.move_object(bucket, "k", bucket, "k2"),
        lambda: clerk.delete_object(bucket, "k"),
        lambda: list(clerk.list_objects(bucket)),
    ]
    errors = []
    for call in calls:
        with pytest.raises(ObjectClerkError) as info:
            call()
        errors.append(info.value)
    return errors


def texts_of_error(error: BaseException) -> list[str]:
    return [
        str(error),
        repr(error),
        repr(vars(error)),
        "".join(traceback.format_exception(error)),  # with the botocore cause it chains
        str(pickle.loads(pickle.dumps(error))),
        repr(pickle.dumps(error)),
    ]


def texts_of_event(event: RetryEvent) -> list[str]:
    texts = [repr(event), str(event)]
    for name in FIELDS:
        value = getattr(event, name)
        texts += [repr(value), str(value)]
    return [*texts, *texts_of_error(event.error)]


def texts_of_record(record: logging.LogRecord) -> list[str]:
    texts = [record.getMessage(), repr(record.args), repr(vars(record))]
    if record.exc_info:
        texts.append(logging.Formatter().formatException(record.exc_info))
    return texts


@pytest.mark.parametrize(
    "scenario", ["refused-endpoint", "ceph-unknown-access-key", "ceph-wrong-secret"]
)
def test_secrets_never_appear_in_logs_events_errors_or_reprs(
    scenario: str,
    caplog: pytest.LogCaptureFixture,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """With an access key, secret key and session token given, none of the three appears in
    any object_clerk log record (DEBUG and up), RetryEvent, error (str, repr, traceback,
    pickle), repr of the clerk or of its settings, or configuration error."""
    monkeypatch.chdir(tmp_path)
    caplog.set_level(logging.DEBUG)  # root: botocore and urllib3 too
    caplog.set_level(logging.DEBUG, logger="object_clerk")
    events: list[RetryEvent] = []
    if scenario == "refused-endpoint":
        endpoint, access_key, bucket = f"http://127.0.0.1:{free_port()}", ACCESS_KEY, "obs-bucket"
    else:
        ceph: Backend = request.getfixturevalue("ceph")
        bucket = ceph.new_bucket()
        ceph.raw().put_object(Bucket=bucket, Key="k", Body=b"kept")
        endpoint = ceph.endpoint
        access_key = ACCESS_KEY if scenario == "ceph-unknown-access-key" else ceph.access_key
    clerk = ObjectClerk(
        endpoint_url=endpoint,
        region="us-east-1",
        access_key=access_key,
        secret_key=SECRET_KEY,
        session_token=SESSION_TOKEN,
        multipart_threshold=MiB,
        retry_tries=2,
        retry_delay=0.01,
        retry_jitter=0.0,
        on_retry=events.append,
    )
    errors: list[BaseException] = exercise(clerk, bucket)
    if scenario == "refused-endpoint":
        assert all(isinstance(e, ConnectionFault) for e in errors)
        assert events  # retries happened and were reported
    else:
        assert any(isinstance(e, AccessDeniedError) for e in errors)
        assert ceph.raw().get_object(Bucket=bucket, Key="k")["Body"].read() == b"kept"
    with pytest.raises(ConfigurationError) as bad_setting:
        ObjectClerk(
            endpoint_url=endpoint,
            access_key=ACCESS_KEY,
            secret_key=SECRET_KEY,
            session_token=SESSION_TOKEN,
            retry_tries=0,
        )
    with pytest.raises(ConfigurationError) as half_credentials:
        ObjectClerk(endpoint_url=endpoint, access_key=ACCESS_KEY, session_token=SESSION_TOKEN)
    errors += [bad_setting.value, half_credentials.value]

    texts = [repr(clerk), str(clerk), repr(clerk.settings), str(clerk.settings)]
    for error in errors:
        texts += texts_of_error(error)
    for event in events:
        texts += texts_of_event(event)
    ours = [r for r in caplog.records if r.name.startswith("object_clerk")]
    if scenario == "refused-endpoint":
        assert any(hasattr(r, "retry") for r in ours)  # the retries were logged
    for record in ours:
        texts += texts_of_record(record)
    leaks = {secret: [t for t in texts if secret in t][:1] for secret in SECRETS}
    assert leaks == {secret: [] for secret in SECRETS}
    # botocore's own DEBUG records are botocore's business: they show the access key id
    # (Authorization header) and the session token (headers, canonical request). The test
    # only makes sure they were captured, so the object_clerk filter above is meaningful.
    assert any(r.name.startswith("botocore") for r in caplog.records)
