"""A stream whose bytes fail verification never hands over wrong bytes (issue 7, defect 1).

The proxy flips a bit in the body of the first GET of an object the stream is reading. The
stream then either starts over (nothing was delivered yet) and gives exactly the object, or
raises ChecksumMismatchError at its end (bytes were delivered). It must never give stale
chunks followed by the re-read: with the old restart race, 66 of 3,000 reads of a 64 KB
object returned 67 to 116 KB without an error. A tiny switch interval makes the consumer
and the producer interleave as often as possible.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator

import pytest

from object_clerk import ChecksumMismatchError, ObjectClerk
from tests.faults.proxy import Fault, FaultProxy, Rule
from tests.integration.test_operations import payload
from tests.servers import Backend

pytestmark = pytest.mark.integration

RUNS = 150


@pytest.fixture
def fast_switching() -> Iterator[None]:
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(previous)


@pytest.mark.usefixtures("fast_switching")
def test_damaged_stream_gives_the_object_or_raises_never_more(
    proxy: FaultProxy, make_clerk: Callable[..., ObjectClerk], ceph: Backend
) -> None:
    bucket = ceph.new_bucket()
    data = payload(64 * 1024)
    ceph.raw().put_object(Bucket=bucket, Key="k", Body=data)
    clerk = make_clerk()
    outcomes = {"exact": 0, "raised": 0}
    for _ in range(RUNS):
        proxy.add(Rule(Fault.FLIP_RESPONSE, method="GET", key="k"))
        received = bytearray()
        try:
            for chunk in clerk.iter_object(bucket, "k", chunk_size=512):
                received += chunk
        except ChecksumMismatchError:
            outcomes["raised"] += 1
            assert len(received) <= len(data)  # the damaged read only, never more
        else:
            outcomes["exact"] += 1
            assert bytes(received) == data
        proxy.clear()
    assert sum(outcomes.values()) == RUNS
    assert proxy.stats.count("GET", key="k") >= RUNS  # every run read a faulted body


@pytest.mark.usefixtures("fast_switching")
def test_damaged_open_object_reads_the_object_or_raises(
    proxy: FaultProxy, make_clerk: Callable[..., ObjectClerk], ceph: Backend
) -> None:
    """The same through open_object(): read() returns exactly the object or raises."""
    bucket = ceph.new_bucket()
    data = payload(64 * 1024, seed=5)
    ceph.raw().put_object(Bucket=bucket, Key="k", Body=data)
    clerk = make_clerk()
    for _ in range(50):
        proxy.add(Rule(Fault.FLIP_RESPONSE, method="GET", key="k"))
        try:
            with clerk.open_object(bucket, "k") as handle:
                got = handle.read()
        except ChecksumMismatchError:
            pass
        else:
            assert got == data
        proxy.clear()
