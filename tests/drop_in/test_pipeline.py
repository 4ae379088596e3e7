"""The drop-in proof: one boto3 pipeline, run with raw boto3 and with object_clerk.client.

* Without faults, against Ceph over HTTP and HTTPS and against moto: it passes unchanged
  with both clients.
* Through the fault proxy to Ceph, every (call, fault) pair of the table: the hardened
  client has no silent corruption and no failure. Two pairs with raw boto3 show that the
  faults do corrupt a plain client's bytes, so the hardened column means something.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from botocore.compat import HAS_CRT

from tests.drop_in import fault_table
from tests.drop_in.pipeline import WrongBytes, make_client, run
from tests.faults.proxy import FaultProxy
from tests.servers import Backend

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("kind", fault_table.CLIENTS)
def test_the_pipeline_runs_unchanged_with_either_client(kind: str, backend: Backend) -> None:
    s3 = make_client(
        kind,
        backend.endpoint,
        access_key=backend.access_key,
        secret_key=backend.secret_key,
        ca_bundle=backend.ca_bundle,
    )
    bucket = f"pipeline-{uuid.uuid4().hex[:12]}"
    backend.raw().create_bucket(Bucket=bucket)
    backend.buckets.append(bucket)
    if kind == "boto3" and HAS_CRT:
        # With awscrt installed, botocore signs with CRT, which rewinds a file body to 0:
        # raw boto3 stores the 8 bytes before put_object's body too, with no fault at all.
        with pytest.raises(WrongBytes, match="/put holds other bytes"):
            run(s3, backend.raw(), bucket)
        return
    run(s3, backend.raw(), bucket)


@pytest.fixture
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in fault_table.RETRY_ENVIRONMENT.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def ceph_behind_proxy(proxy: FaultProxy, ceph: Backend) -> Iterator[tuple[FaultProxy, Backend]]:
    yield proxy, ceph


@pytest.mark.parametrize(("call", "fault"), list(fault_table.pairs()))
@pytest.mark.usefixtures("quick_retries")
def test_the_hardened_client_survives_every_fault(
    call: str, fault: str, ceph_behind_proxy: tuple[FaultProxy, Backend]
) -> None:
    proxy, ceph = ceph_behind_proxy
    assert fault_table.outcome("object_clerk", call, fault, proxy, ceph) == "fine"


@pytest.mark.parametrize(
    ("call", "fault"),
    [
        ("get_object", "GET body byte flipped"),
        ("put_object", "PUT body byte flipped, payload unsigned"),
        ("put_object", "SlowDown (503)"),
    ],
)
def test_the_same_faults_corrupt_raw_boto3_silently(
    call: str, fault: str, ceph_behind_proxy: tuple[FaultProxy, Backend]
) -> None:
    proxy, ceph = ceph_behind_proxy
    assert fault_table.outcome("boto3", call, fault, proxy, ceph) == "silent wrong bytes"
