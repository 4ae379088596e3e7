"""Fixtures for the server-free engine tests over the in-memory FakeS3."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from object_clerk import ObjectClerk
from tests.unit.fake_s3 import BUCKET, FakeS3, make_clerk

# Variables that would configure a clerk behind a test's back.
_LEAKY = ("OBJECT_CLERK_", "S3_", "MULTIPART_THRESHOLD", "AWS_ENDPOINT_URL", "AWS_PROFILE")


@pytest.fixture
def no_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No OBJECT_CLERK_* variable, seed variable or .env file may leak into a test."""
    for name in list(os.environ):
        if name.startswith(_LEAKY) or name == "AWS_DEFAULT_PROFILE":
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def fake() -> FakeS3:
    store = FakeS3()
    store.create_bucket(BUCKET)
    return store


@pytest.fixture
def clerk(fake: FakeS3) -> ObjectClerk:
    return make_clerk(fake)
