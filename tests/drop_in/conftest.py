"""The drop-in tests use the fault tests' proxy in front of Ceph."""

from tests.faults.conftest import proxy

__all__ = ["proxy"]
