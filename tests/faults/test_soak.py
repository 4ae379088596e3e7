"""A smaller run of the seeded soak (the full one: python -m tests.faults.soak --ops 1000)."""

from __future__ import annotations

import pytest

from tests.faults.soak import run_soak
from tests.servers import Backend

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("seed", [11, 12])
def test_soak_has_no_silent_corruption_and_no_orphans(ceph: Backend, seed: int) -> None:
    """200 mixed operations with 10% of requests faulted: every result matches the model,
    every key read back from Ceph holds what was written, no upload is left behind."""
    report = run_soak(ceph, ops=200, seed=seed, rate=0.1)
    print(report.table())
    assert report.problems == []
    assert report.silent_corruptions == 0
    assert report.orphaned_uploads == 0
    assert sum(report.faults.values()) > 10  # the soak really was faulty...
    assert report.retries > 0  # ...and the clerk really retried
    assert report.successes + sum(report.typed_failures.values()) == 200
