from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

from object_clerk import ClerkSettings, ObjectClerk
from object_clerk.etag import MiB
from tests.faults.proxy import FaultProxy
from tests.servers import Backend

TRIES = 3
READ_TIMEOUT = 1.0
STALL = 1.5


@pytest.fixture
def proxy(ceph_env: dict[str, str]) -> Iterator[FaultProxy]:
    """A fault-injecting proxy in front of the local Ceph RGW (HTTP)."""
    upstream = urlsplit(ceph_env["CEPH_RGW_ENDPOINT"])
    assert upstream.hostname is not None and upstream.port is not None
    with FaultProxy((upstream.hostname, upstream.port), stall_seconds=STALL) as running:
        yield running


def clerk_settings(endpoint: str, backend: Backend, **overrides: Any) -> ClerkSettings:
    values: dict[str, Any] = {
        "endpoint_url": endpoint,
        "access_key": backend.access_key,
        "secret_key": backend.secret_key,
        "region": "us-east-1",
        "retry_tries": TRIES,
        "retry_delay": 0.01,
        "retry_jitter": 0.0,
        "retry_max_delay": 0.02,
        "multipart_threshold": 5 * MiB,
        "s3_upload_config": {"multipart_chunksize": 5 * MiB, "max_concurrency": 4},
        "s3_client_config": {"connect_timeout": 2, "read_timeout": READ_TIMEOUT},
        **overrides,
    }
    return ClerkSettings(_env_file=None, **values)


@pytest.fixture
def make_clerk(proxy: FaultProxy, ceph: Backend) -> Callable[..., ObjectClerk]:
    """Clerks that talk to Ceph through the proxy, with fast retries and short timeouts."""

    def make(**overrides: Any) -> ObjectClerk:
        return ObjectClerk(settings=clerk_settings(proxy.endpoint, ceph, **overrides))

    return make


@pytest.fixture
def direct_clerk(ceph: Backend) -> ObjectClerk:
    """A clerk that talks to Ceph directly, for setting up and checking."""
    return ObjectClerk(settings=clerk_settings(ceph.endpoint, ceph))
