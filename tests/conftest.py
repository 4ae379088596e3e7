from __future__ import annotations

import logging
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from object_clerk import ObjectClerk
from tests.faults.proxy import FaultProxy
from tests.servers import Backend, MotoServer, ceph_backends, keep_ceph, start_ceph, stop_ceph

BACKENDS = ("ceph-http", "ceph-https", "moto")


@pytest.fixture(scope="session")
def ceph_env() -> Iterator[dict[str, str]]:
    env, started = start_ceph()
    yield env
    if started and not keep_ceph():
        stop_ceph()


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    # moto's request log goes through werkzeug at INFO; keep test output readable.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    with MotoServer() as server:
        yield server


def _make_backend(name: str, request: pytest.FixtureRequest) -> Backend:
    if name == "moto":
        server: MotoServer = request.getfixturevalue("moto_server")
        return Backend("moto", server.endpoint, "testing-access", "testing-secret")
    env: dict[str, str] = request.getfixturevalue("ceph_env")
    return next(b for b in ceph_backends(env) if b.name == name)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    """Each S3 server in turn; buckets made through it are emptied and removed afterwards."""
    b = _make_backend(request.param, request)
    yield b
    b.cleanup()


@pytest.fixture
def ceph(request: pytest.FixtureRequest) -> Iterator[Backend]:
    """Ceph RGW over HTTP only: for behaviour that only a real Ceph checks (Content-MD5)."""
    b = _make_backend("ceph-http", request)
    yield b
    b.cleanup()


@pytest.fixture(params=("ceph-http", "ceph-https"))
def ceph_any(request: pytest.FixtureRequest) -> Iterator[Backend]:
    """Ceph RGW over HTTP, then over HTTPS: where only a real Ceph checks request bodies."""
    b = _make_backend(request.param, request)
    yield b
    b.cleanup()


@pytest.fixture
def ceph_proxy(ceph_env: dict[str, str]) -> Iterator[FaultProxy]:
    """The fault proxy in front of Ceph RGW over HTTP: rules make real requests fail."""
    upstream = urlsplit(ceph_env["CEPH_RGW_ENDPOINT"])
    assert upstream.hostname is not None and upstream.port is not None
    with FaultProxy((upstream.hostname, upstream.port)) as running:
        yield running


@pytest.fixture
def moto(request: pytest.FixtureRequest) -> Iterator[Backend]:
    """moto's server only: for AWS-only behaviour (PartNumber, SSE-KMS headers)."""
    b = _make_backend("moto", request)
    yield b
    b.cleanup()


@pytest.fixture
def bucket(backend: Backend) -> str:
    return backend.new_bucket()


@pytest.fixture
def clerk(backend: Backend) -> ObjectClerk:
    """A clerk with fast retries, on the current backend."""
    return ObjectClerk(
        **backend.clerk_kwargs(), retry_delay=0.01, retry_jitter=0.0, retry_max_delay=0.05
    )
