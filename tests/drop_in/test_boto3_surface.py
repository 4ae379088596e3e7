"""A hardened client stays a real boto3 client: its class, botocore's Stubber, moto's
mock_aws, paginators, waiters, presigned URLs and boto3's exceptions keep working."""

from __future__ import annotations

import io
import pickle
from collections.abc import Iterator
from typing import Any

import boto3
import botocore.client
import pytest
from botocore.exceptions import ClientError, FlexibleChecksumError
from botocore.response import StreamingBody
from botocore.stub import ANY, StubAssertionError, Stubber
from moto import mock_aws

import object_clerk
from object_clerk import ChecksumMismatchError, ObjectClerk, VerifiedBody, verification_of
from object_clerk.retry import botocore_attempts


@pytest.fixture
def fake_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(__import__("os").environ):
        if name.startswith(("OBJECT_CLERK_", "S3_", "MULTIPART_THRESHOLD")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")


@pytest.fixture
def mocked(fake_credentials: None) -> Iterator[Any]:
    with mock_aws():
        s3 = object_clerk.client("s3", region_name="us-east-1", retry_delay=0, retry_jitter=0)
        s3.create_bucket(Bucket="bucket")
        yield s3


def test_it_is_the_class_boto3_builds(fake_credentials: None) -> None:
    raw = boto3.client("s3")
    hardened = object_clerk.harden(raw)
    assert hardened is raw
    assert isinstance(hardened, botocore.client.BaseClient)
    assert type(hardened).__name__ == "S3"
    assert type(object_clerk.client("s3")).__name__ == "S3"
    assert hardened.get_object.__name__ == "get_object"  # boto3's names and docs


def test_only_s3_clients_are_hardened(fake_credentials: None) -> None:
    with pytest.raises(object_clerk.InvalidRequestError, match="S3 clients only"):
        object_clerk.client("sqs")
    with pytest.raises(object_clerk.InvalidRequestError, match="boto3 S3 client"):
        object_clerk.harden(boto3.client("sqs"))  # type: ignore[arg-type]
    with pytest.raises(object_clerk.ConfigurationError, match="retry_tires"):
        object_clerk.harden(boto3.client("s3"), retry_tires=3)


def test_api_methods_take_keywords_only_as_boto3(fake_credentials: None) -> None:
    s3 = object_clerk.client("s3")
    with pytest.raises(TypeError, match="only accepts keyword arguments"):
        s3.head_object("bucket", "key")


def test_stubber_answers_pass_through_unverified_and_are_never_retried(
    fake_credentials: None,
) -> None:
    s3 = object_clerk.client("s3", retry_tries=5)
    body = StreamingBody(io.BytesIO(b"stubbed"), 7)
    with Stubber(s3) as stub:
        # expected_params without ContentMD5: the clerk adds it after Stubber's check.
        stub.add_response(
            "put_object", {"ETag": '"not-an-md5"'}, {"Bucket": "b", "Key": "k", "Body": b"hi"}
        )
        stub.add_response("get_object", {"Body": body, "ETag": '"x"', "ContentLength": 7})
        stub.add_client_error("head_object", "InternalError", http_status_code=500)
        stub.add_response("copy_object", {"CopyObjectResult": {"ETag": '"x"'}})
        stub.add_response("list_objects_v2", {"KeyCount": 0, "IsTruncated": False})

        assert s3.put_object(Bucket="b", Key="k", Body=b"hi") == {"ETag": '"not-an-md5"'}
        got = s3.get_object(Bucket="b", Key="k")
        assert got["Body"] is body and got["Body"].read() == b"stubbed"
        with pytest.raises(ClientError) as raised:
            s3.head_object(Bucket="b", Key="k")  # a 500: retried against a server, not here
        assert raised.value.response["Error"]["Code"] == "InternalError"
        copied = s3.copy_object(Bucket="b", Key="k2", CopySource={"Bucket": "b", "Key": "k"})
        assert copied["CopyObjectResult"]["ETag"] == '"x"'
        pages = list(s3.get_paginator("list_objects_v2").paginate(Bucket="b"))
        assert len(pages) == 1
        stub.assert_no_pending_responses()


def test_stubber_still_checks_the_callers_parameters(fake_credentials: None) -> None:
    s3 = object_clerk.client("s3")
    with Stubber(s3) as stub:
        stub.add_response("put_object", {"ETag": '"x"'}, {"Bucket": "b", "Key": "k", "Body": ANY})
        s3.put_object(Bucket="b", Key="k", Body=io.BytesIO(b"data"))
        stub.add_response("delete_object", {}, {"Bucket": "b", "Key": "expected"})
        with pytest.raises(StubAssertionError, match="expected"):
            s3.delete_object(Bucket="b", Key="other")


def test_moto_mock_aws_works_and_verifies(mocked: Any) -> None:
    s3 = mocked
    answer = s3.put_object(Bucket="bucket", Key="k", Body=b"hello")
    assert verification_of(answer) == "md5"
    got = s3.get_object(Bucket="bucket", Key="k")
    assert isinstance(got["Body"], VerifiedBody) and isinstance(got["Body"], StreamingBody)
    assert verification_of(got) == "pending"
    assert got["Body"].read() == b"hello"
    assert verification_of(got) == "md5" and got["Body"].verification == "md5"
    with pytest.raises(s3.exceptions.NoSuchKey):
        s3.get_object(Bucket="bucket", Key="missing")
    with pytest.raises(ClientError) as raised:
        s3.head_object(Bucket="bucket", Key="missing")
    assert raised.value.response["Error"]["Code"] == "404"


def test_paginators_waiters_and_presigned_urls_work(mocked: Any) -> None:
    s3 = mocked
    for n in range(5):
        s3.put_object(Bucket="bucket", Key=f"p/{n}", Body=b"x")
    pages = s3.get_paginator("list_objects_v2").paginate(
        Bucket="bucket", Prefix="p/", PaginationConfig={"PageSize": 2}
    )
    assert [len(page["Contents"]) for page in pages] == [2, 2, 1]
    s3.get_waiter("object_exists").wait(Bucket="bucket", Key="p/0")
    s3.delete_object(Bucket="bucket", Key="p/0")
    s3.get_waiter("object_not_exists").wait(Bucket="bucket", Key="p/0")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": "bucket", "Key": "p/1"})
    assert "X-Amz-Signature" in url or "Signature=" in url


def test_a_partial_read_of_bad_bytes_raises_at_the_end(mocked: Any) -> None:
    s3 = mocked
    size = 200_000  # more than the reader's 64 KiB read-ahead
    s3.put_object(Bucket="bucket", Key="k", Body=b"a" * size)
    got = s3.get_object(Bucket="bucket", Key="k")
    got["ETag"] = '"' + "0" * 32 + '"'  # what the body must match, as if the server said so
    body = StreamingBody(io.BytesIO(b"a" * size), size)
    params = {"Bucket": "bucket", "Key": "k"}
    got["Body"] = VerifiedBody(s3.__object_clerk__, params, {**got, "Body": body})
    chunks = got["Body"].iter_chunks(1024)
    assert len(next(chunks)) == 1024  # bytes are handed over as they arrive
    assert got["Body"].tell() == 1024
    with pytest.raises(ChecksumMismatchError) as raised:
        list(chunks)
    assert isinstance(raised.value, FlexibleChecksumError)  # what boto3 users catch


def test_checksum_errors_are_botocores_too_and_pickle() -> None:
    error = ChecksumMismatchError("bad", expected="a", actual="b", algorithm="md5")
    assert isinstance(error, FlexibleChecksumError)
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is ChecksumMismatchError and copy.expected == "a" and str(copy) == str(error)


def test_a_range_read_is_unverifiable_and_says_so_without_a_warning(mocked: Any) -> None:
    s3 = mocked
    s3.put_object(Bucket="bucket", Key="k", Body=b"0123456789")
    got = s3.get_object(Bucket="bucket", Key="k", Range="bytes=2-5")
    assert got["Body"].read() == b"2345"
    record = got["ResponseMetadata"]["ObjectClerk"]
    assert record["Verification"] == "unverifiable" and "range" in record["Reason"]


def test_put_object_sends_the_md5_of_the_bytes_from_the_bodys_start(mocked: Any) -> None:
    s3 = mocked
    body = io.BytesIO(b"HEADER--payload")
    body.seek(8)
    answer = s3.put_object(Bucket="bucket", Key="k", Body=body)
    assert verification_of(answer) == "md5"
    assert s3.get_object(Bucket="bucket", Key="k")["Body"].read() == b"payload"


def test_transfer_methods_keep_boto3s_signatures(mocked: Any, tmp_path: Any) -> None:
    s3 = mocked
    source = tmp_path / "in.bin"
    source.write_bytes(b"z" * (6 * 1024 * 1024))
    seen: list[int] = []
    config = boto3.s3.transfer.TransferConfig(
        multipart_threshold=5 * 1024 * 1024, multipart_chunksize=5 * 1024 * 1024
    )
    s3.upload_file(
        str(source), "bucket", "up", ExtraArgs={"Metadata": {"a": "b"}}, Callback=seen.append,
        Config=config,
    )  # fmt: skip
    assert sum(seen) == 6 * 1024 * 1024
    head = s3.head_object(Bucket="bucket", Key="up")
    assert head["Metadata"]["a"] == "b" and head["ETag"].endswith('-2"')
    out = tmp_path / "out.bin"
    s3.download_file("bucket", "up", str(out))
    assert out.read_bytes() == source.read_bytes()
    buffer = io.BytesIO()
    s3.download_fileobj("bucket", "up", buffer)
    assert buffer.getvalue() == source.read_bytes()
    s3.upload_fileobj(io.BytesIO(b"small"), "bucket", "small")
    s3.copy({"Bucket": "bucket", "Key": "up"}, "bucket", "copied")
    assert s3.get_object(Bucket="bucket", Key="copied")["Body"].read() == source.read_bytes()
    with pytest.raises(FileNotFoundError):
        s3.upload_file(str(tmp_path / "missing"), "bucket", "k")
    with pytest.raises(boto3.exceptions.S3UploadFailedError, match="NoSuchBucket"):
        s3.upload_file(str(source), "no-such-bucket", "k")
    with pytest.raises(s3.exceptions.NoSuchBucket):  # upload_fileobj: boto3 does not wrap
        s3.upload_fileobj(io.BytesIO(b"x"), "no-such-bucket", "k")
    with pytest.raises(ClientError) as missing:  # as boto3's HeadObject-first transfer
        s3.download_file("bucket", "missing", str(tmp_path / "missing.bin"))
    assert missing.value.response["Error"]["Code"] == "404"
    with pytest.raises(ValueError, match="ExtraArgs"):
        s3.upload_file(str(source), "bucket", "k", ExtraArgs={"Bogus": 1})


def test_an_objectclerk_hands_out_its_hardened_client(fake_credentials: None) -> None:
    events: list[object] = []
    with mock_aws():
        clerk = ObjectClerk(region="us-east-1", on_retry=events.append)
        s3 = clerk.s3
        assert s3 is clerk.client and clerk.s3 is s3
        s3.create_bucket(Bucket="bucket")
        clerk.upload_object(b"data", "bucket", "k")
        assert s3.get_object(Bucket="bucket", Key="k")["Body"].read() == b"data"


def test_harden_options_default_to_the_environment(
    fake_credentials: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OBJECT_CLERK_RETRY_TRIES", "2")
    monkeypatch.setenv("OBJECT_CLERK_STRICT_VERIFICATION", "true")
    s3 = object_clerk.client("s3")
    engine = s3.__object_clerk__
    assert engine.retrier.policy.tries == 2 and engine.strict
    assert object_clerk.harden(s3, retry_tries=4).__object_clerk__.retrier.policy.tries == 4
    assert botocore_attempts(s3.meta.config) == 1  # botocore's own retries are off


def test_an_objectclerks_client_shares_its_engine(fake_credentials: None) -> None:
    clerk = ObjectClerk(region="us-east-1", retry_tries=2)
    assert clerk.s3.__object_clerk__ is clerk._engine  # one retry policy, one budget rule


def test_encrypted_objects_are_never_false_alarms(mocked: Any) -> None:
    s3 = mocked
    key = b"k" * 32
    ssec = {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": key.decode()}
    s3.put_object(Bucket="bucket", Key="c", Body=b"secret", **ssec)
    got = s3.get_object(Bucket="bucket", Key="c", **ssec)
    with pytest.warns(object_clerk.UnverifiableObjectWarning, match="customer key"):
        assert got["Body"].read() == b"secret"
    assert verification_of(got) == "unverifiable"
    answer = s3.put_object(Bucket="bucket", Key="kms", Body=b"data", ServerSideEncryption="aws:kms")
    assert verification_of(answer) == "content-md5"  # the server checked the Content-MD5


def test_read_minus_one_and_a_whole_range_read_verify(mocked: Any) -> None:
    s3 = mocked
    s3.put_object(Bucket="bucket", Key="k", Body=b"hello world")
    got = s3.get_object(Bucket="bucket", Key="k")
    assert got["Body"].read(-1) == b"hello world" and verification_of(got) == "md5"
    whole = s3.get_object(Bucket="bucket", Key="k", Range="bytes=0-")  # smart_open's way
    assert whole["Body"].read() == b"hello world" and verification_of(whole) == "md5"
    with s3.get_object(Bucket="bucket", Key="k")["Body"] as body:  # the verified body itself
        assert isinstance(body, VerifiedBody) and body.read() == b"hello world"
    assert body.read() == b""  # closed: no new request


def test_botocores_own_response_checksum_is_still_checked(
    mocked: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from botocore.httpchecksum import StreamingChecksumBody

    checked: list[bool] = []
    real = StreamingChecksumBody._validate_checksum

    def spy(self: Any) -> None:
        checked.append(True)
        real(self)

    monkeypatch.setattr(StreamingChecksumBody, "_validate_checksum", spy)
    s3 = mocked
    s3.put_object(Bucket="bucket", Key="crc", Body=b"x" * 100_000, ChecksumAlgorithm="CRC32")
    got = s3.get_object(Bucket="bucket", Key="crc", ChecksumMode="ENABLED")
    assert b"".join(got["Body"].iter_chunks(4096)) == b"x" * 100_000
    assert checked == [True]


def test_a_wrong_caller_content_md5_is_not_retried_nor_the_object_deleted(mocked: Any) -> None:
    """moto stores what it is sent whatever its Content-MD5: the stored bytes are right,
    and they are not deleted for the caller's wrong MD5."""
    s3 = mocked
    wrong = "AAAAAAAAAAAAAAAAAAAAAA=="
    answer = s3.put_object(Bucket="bucket", Key="k", Body=b"data", ContentMD5=wrong)
    assert verification_of(answer) == "md5"  # the ETag is the MD5 of the body sent
    assert s3.get_object(Bucket="bucket", Key="k")["Body"].read() == b"data"


def test_a_stubbed_failing_complete_leaves_the_tests_abort_alone(fake_credentials: None) -> None:
    s3 = object_clerk.client("s3")
    with Stubber(s3) as stub:
        stub.add_client_error("complete_multipart_upload", "InternalError", http_status_code=500)
        stub.add_response("abort_multipart_upload", {})
        with pytest.raises(ClientError):
            s3.complete_multipart_upload(
                Bucket="b", Key="k", UploadId="u",
                MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": '"' + "a" * 32 + '"'}]},
            )  # fmt: skip
        s3.abort_multipart_upload(Bucket="b", Key="k", UploadId="u")
        stub.assert_no_pending_responses()


def test_copy_object_leaves_the_callers_conditions_alone(mocked: Any) -> None:
    s3 = mocked
    etag = s3.put_object(Bucket="bucket", Key="src", Body=b"data")["ETag"]
    calls: list[dict[str, Any]] = []
    s3.meta.events.register(
        "before-parameter-build.s3.CopyObject", lambda params, **_: calls.append(dict(params))
    )
    with pytest.raises(ClientError) as refused:
        s3.copy_object(
            Bucket="bucket", Key="dst", CopySource="bucket/src", CopySourceIfNoneMatch=etag
        )
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412
    assert len(calls) == 1 and "CopySourceIfMatch" not in calls[0]  # no pin, no retry
    answer = s3.copy_object(Bucket="bucket", Key="dst", CopySource="/bucket/src")
    assert verification_of(answer) == "md5"
    assert calls[-1]["CopySourceIfMatch"] == etag  # pinned to the source as read


def test_validation_errors_never_quote_values() -> None:
    from botocore.exceptions import ParamValidationError

    from object_clerk.errors import InvalidRequestError, native

    report = "Invalid type for parameter SSECustomerKey, value: hunter2, type: <class 'int'>"
    error = InvalidRequestError("bad")
    error.__cause__ = ParamValidationError(report=report)
    shown = native(error)
    assert isinstance(shown, ParamValidationError) and "hunter2" not in str(shown)
