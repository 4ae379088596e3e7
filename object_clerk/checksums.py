"""Full-object CRC checksums (S3's "flexible checksums"), where a store keeps them.

AWS S3, MinIO, Ceph 20 and others store a CRC32, CRC32C or CRC64NVME of each object and
return it on ``GetObject(ChecksumMode="ENABLED")``. A *full-object* one (no ``-N`` suffix,
``ChecksumType`` FULL_OBJECT or absent) covers the whole content whatever its part layout,
and computing it costs a tenth of an MD5: when a read's response carries one that this
machine can compute, it proves the bytes instead of the ETag. A *composite* one (``-N``)
needs the part layout, as a multipart ETag does: the ETag is used instead.

CRC32 comes from :mod:`zlib`; CRC32C and CRC64NVME need ``awscrt`` (``object-clerk[crt]``,
as ``boto3[crt]``). Parts read in parallel are combined with awscrt's ``combine_*``.
"""

from __future__ import annotations

import base64
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "ALGORITHMS",
    "Crc",
    "CrcName",
    "CrcState",
    "full_object_checksum",
    "stored_checksum",
]

CrcName = Literal["crc64nvme", "crc32c", "crc32"]

try:  # pragma: no cover - which branch runs depends on the install
    from awscrt import checksums as _crt
except ImportError:  # pragma: no cover
    _crt = None


@dataclass(frozen=True)
class Crc:
    """One CRC algorithm: its S3 name, the response field holding it, and how to compute it."""

    name: CrcName  # the verdict's name
    field: str  # boto3's response field: "ChecksumCRC64NVME"
    width: int  # bytes
    update: Callable[[Any, int], int]
    combine: Callable[[int, int, int], int] | None

    @property
    def algorithm(self) -> str:
        """S3's name for it, as ``ChecksumAlgorithm`` takes it: "CRC64NVME"."""
        return self.name.upper()

    def encode(self, value: int) -> str:
        return base64.b64encode(value.to_bytes(self.width, "big")).decode("ascii")

    def of(self, data: bytes | bytearray | memoryview) -> str:
        """The base64 checksum of ``data``, as S3 sends it."""
        return self.encode(self.update(data, 0))


def _algorithms() -> dict[str, Crc]:
    found: dict[str, Crc] = {}
    combine = getattr(_crt, "combine_crc32", None)
    if _crt is not None:
        found["crc64nvme"] = Crc(
            "crc64nvme",
            "ChecksumCRC64NVME",
            8,
            _crt.crc64nvme,
            getattr(_crt, "combine_crc64nvme", None),
        )
        found["crc32c"] = Crc(
            "crc32c", "ChecksumCRC32C", 4, _crt.crc32c, getattr(_crt, "combine_crc32c", None)
        )
        found["crc32"] = Crc("crc32", "ChecksumCRC32", 4, _crt.crc32, combine)
    else:
        found["crc32"] = Crc("crc32", "ChecksumCRC32", 4, zlib.crc32, None)
    return found


#: The CRCs this machine can compute, fastest first.
ALGORITHMS: dict[str, Crc] = _algorithms()


def full_object_checksum(response: Mapping[str, Any]) -> tuple[Crc, str] | None:
    """The full-object CRC a GET/HEAD response carries that this machine can compute, as
    (algorithm, expected base64 value), or None."""
    for crc in ALGORITHMS.values():
        value = stored_checksum(response, crc)
        if value is not None:
            return crc, value
    return None


def stored_checksum(response: Mapping[str, Any], crc: Crc) -> str | None:
    """The full-object ``crc`` a response carries, in its canonical base64, or None when it
    carries none, a composite one (``-N``), or one that is not of ``crc``'s width."""
    if response.get("ChecksumType") not in (None, "FULL_OBJECT"):
        return None
    value = response.get(crc.field)
    if not isinstance(value, str) or "-" in value:
        return None
    try:
        raw = base64.b64decode(value, validate=True)
    except ValueError:
        return None
    if len(raw) != crc.width:
        return None
    return crc.encode(int.from_bytes(raw, "big"))  # compared in its canonical encoding


class CrcState:
    """A running CRC of bytes fed in order; ``length`` counts them."""

    __slots__ = ("crc", "length", "value")

    def __init__(self, crc: Crc) -> None:
        self.crc, self.value, self.length = crc, 0, 0

    def update(self, data: bytes | bytearray | memoryview) -> None:
        self.value = self.crc.update(data, self.value)
        self.length += len(data)

    def then(self, later: CrcState) -> None:
        """Append the CRC of the bytes that follow (a later part), needing ``combine``."""
        assert self.crc.combine is not None
        self.value = self.crc.combine(self.value, later.value, later.length)
        self.length += later.length

    def append(self, later: CrcState, data: bytes | bytearray | memoryview) -> None:
        """Append ``data``, the bytes that follow, whose CRC is ``later``: combined where the
        algorithm can (awscrt), hashed again where it cannot (zlib's CRC32)."""
        if self.crc.combine is not None:
            self.then(later)
        else:
            self.update(data)

    def digest(self) -> bytes:
        return self.value.to_bytes(self.crc.width, "big")

    def encoded(self) -> str:
        return self.crc.encode(self.value)
