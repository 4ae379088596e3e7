"""Unit tests for the bucket and key checks made before any request is sent."""

from __future__ import annotations

import pytest

from object_clerk.clerk import _check_bucket, _check_object
from object_clerk.errors import InvalidRequestError


@pytest.mark.parametrize(
    "bucket",
    [
        "",
        "ab",
        "a" * 256,
        "has space",
        "slash/name",
        "-lead",
        "trail-",
        "a..b",
        ".lead",
        "trail.",
        "tab\tname",
        "new\nline",
        None,
        123,
        b"bucket",
    ],
    ids=repr,
)
def test_invalid_bucket_names_are_refused(bucket):
    with pytest.raises(InvalidRequestError) as info:
        _check_bucket(bucket, "list_objects")
    assert "invalid bucket name" in str(info.value)
    assert info.value.operation == "list_objects"


@pytest.mark.parametrize("bucket", ["a..b", "has space", None])
def test_check_object_checks_the_bucket_too(bucket):
    with pytest.raises(InvalidRequestError) as info:
        _check_object(bucket, "fine-key", "get_object")
    assert "invalid bucket name" in str(info.value)


@pytest.mark.parametrize(
    "bucket",
    ["my-bucket", "my.bucket", "abc", "a" * 255, "bucket123", "My_Legacy_Bucket", "1.2.3.4x"],
)
def test_valid_bucket_names_are_accepted(bucket):
    _check_bucket(bucket, "list_objects")
    _check_object(bucket, "k", "get_object")


@pytest.mark.parametrize("key", ["", None, 123, b"key", ["k"]], ids=repr)
def test_empty_or_non_string_keys_are_refused(key):
    with pytest.raises(InvalidRequestError) as info:
        _check_object("my-bucket", key, "get_object")
    assert "non-empty string" in str(info.value)
    assert info.value.bucket == "my-bucket"
    assert info.value.operation == "get_object"


@pytest.mark.parametrize(
    "key", ["é" * 513, "a" * 1023 + "é", "a" * 1025, "€" * 342], ids=lambda k: f"{len(k)}chars"
)
def test_keys_over_1024_utf8_bytes_are_refused(key):
    assert len(key.encode("utf-8")) > 1024
    with pytest.raises(InvalidRequestError) as info:
        _check_object("my-bucket", key, "upload_object")
    message = str(info.value)
    assert str(len(key.encode("utf-8"))) in message
    assert "1024" in message


def test_key_of_1025_bytes_but_fewer_characters_is_refused():
    key = "a" * 1023 + "é"  # 1024 characters, 1025 bytes
    assert (len(key), len(key.encode("utf-8"))) == (1024, 1025)
    with pytest.raises(InvalidRequestError, match="1025 bytes"):
        _check_object("my-bucket", key, "upload_object")


@pytest.mark.parametrize(
    "key",
    [
        "plain",
        "dir/sub/file.txt",
        "ünïcødé/日本語/😀",
        "with space",
        "a+b",
        "100%",
        "what?",
        "hash#tag",
        "../escape",
        "/leading/slash",
        "a" * 1024,
        "é" * 512,
        "€" * 341 + "a",
    ],
    ids=lambda k: k if len(k) < 30 else f"{len(k.encode('utf-8'))}bytes",
)
def test_valid_keys_are_accepted(key):
    assert len(key.encode("utf-8")) <= 1024
    _check_object("my-bucket", key, "get_object")
