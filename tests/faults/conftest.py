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
# The clerk's read timeout where a test injects stalls (Fault.STALL), short so that giving
# up on them is quick. Elsewhere clerks wait PATIENT_READ_TIMEOUT: a slow answer from a
# loaded machine must never pass for a fault (an extra, unplanned retry).
READ_TIMEOUT = 1.0
PATIENT_READ_TIMEOUT = 20.0
# A STALL lasts until the clerk's read timeout fires and it closes the connection: this is
# only the proxy's bound for a client that never gives up, far past both timeouts, so that a
# loaded machine cannot end a stall before the timeout does (a stall that outlasts the
# timeout by a fixed margin is a race the timeout can lose).
STALL = 60.0


@pytest.fixture
def proxy(ceph_env: dict[str, str]) -> Iterator[FaultProxy]:
    """A fault-injecting proxy in front of the local Ceph RGW (HTTP)."""
    upstream = urlsplit(ceph_env["CEPH_RGW_ENDPOINT"])
    assert upstream.hostname is not None and upstream.port is not None
    with FaultProxy((upstream.hostname, upstream.port), stall_seconds=STALL) as running:
        yield running


def clerk_settings(
    endpoint: str, backend: Backend, *, read_timeout: float = PATIENT_READ_TIMEOUT, **overrides: Any
) -> ClerkSettings:
    """Settings for a clerk with fast retries; pass ``read_timeout=READ_TIMEOUT`` where it
    must give up on stalls."""
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
        "s3_upload_config": {"max_concurrency": 4},  # parts of the 5 MiB threshold
        "s3_client_config": {"connect_timeout": 2, "read_timeout": read_timeout},
        **overrides,
    }
    return ClerkSettings(_env_file=None, **values)


@pytest.fixture
def make_clerk(proxy: FaultProxy, ceph: Backend) -> Callable[..., ObjectClerk]:
    """Clerks that talk to Ceph through the proxy, with fast retries (and a short read
    timeout if asked: ``make_clerk(read_timeout=READ_TIMEOUT)``)."""

    def make(**overrides: Any) -> ObjectClerk:
        return ObjectClerk(settings=clerk_settings(proxy.endpoint, ceph, **overrides))

    return make


@pytest.fixture
def direct_clerk(ceph: Backend) -> ObjectClerk:
    """A clerk that talks to Ceph directly, for setting up and checking."""
    return ObjectClerk(settings=clerk_settings(ceph.endpoint, ceph))
