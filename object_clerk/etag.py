"""ETag maths: MD5, multipart MD5-of-MD5s, and the part layout. Pure: no boto3, no network.

S3 gives a single-part object (unencrypted or SSE-S3) the hex MD5 of its body as ETag. A
multipart object gets ``md5(concat(binary md5 of each part))`` followed by ``-N``, N being
the part count. To reproduce a multipart ETag you need the exact part boundaries, so:

* :func:`plan_parts` is the one function that decides a layout. The uploader calls it to cut
  parts, and the verifier calls it to predict them. It does what s3transfer does: multipart
  when ``size >= threshold``, the chunk size doubled until the part count fits in 10,000, then
  clamped to [5 MiB, 5 GiB]. It never assumes "part size = threshold".
* :func:`candidate_part_sizes` lists the part sizes that could have produced an ``-N`` ETag
  for a given size, for objects another tool uploaded (AWS CLI: 8 MiB; s3cmd: 15 MiB; ...).
* :class:`EtagCalculator` computes an ETag in one pass over bytes, files or streams.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

__all__ = [
    "EMPTY_MD5",
    "MAX_PARTS",
    "MAX_PART_SIZE",
    "MIN_PART_SIZE",
    "EtagCalculator",
    "MiB",
    "ParsedEtag",
    "PartLayout",
    "adjust_chunksize",
    "candidate_part_sizes",
    "compute_etag",
    "multipart_etag",
    "parse_etag",
    "plan_parts",
]

MiB = 1024 * 1024
MIN_PART_SIZE = 5 * MiB
MAX_PART_SIZE = 5 * 1024 * MiB
MAX_PARTS = 10_000
EMPTY_MD5 = "d41d8cd98f00b204e9800998ecf8427e"

# Part sizes other tools are known to use, most common first: AWS CLI and boto3 (8 MiB and
# its doublings), s3cmd (15 MiB), the S3 minimum (5 MiB), rclone and others.
_COMMON_PART_SIZES = tuple(
    n * MiB for n in (8, 16, 15, 5, 10, 32, 64, 50, 100, 128, 256, 500, 512, 1024, 2048, 4096)
)
_ETAG_RE = re.compile(r'^("?)([0-9a-fA-F]{32})(?:-([1-9]\d*))?\1$')


@dataclass(frozen=True)
class PartLayout:
    """How an object of ``size`` bytes is cut into parts.

    ``part_size`` is 0 for a single-part object. For a multipart object every part but the
    last has ``part_size`` bytes.
    """

    size: int
    part_size: int = 0

    @property
    def multipart(self) -> bool:
        return self.part_size > 0

    @property
    def part_count(self) -> int:
        if not self.multipart:
            return 1
        return max(1, -(-self.size // self.part_size))

    def parts(self) -> Iterator[tuple[int, int, int]]:
        """Yield ``(part_number, offset, length)`` for every part, numbered from 1."""
        if not self.multipart:
            yield 1, 0, self.size
            return
        for index in range(self.part_count):
            offset = index * self.part_size
            yield index + 1, offset, min(self.part_size, self.size - offset)


@dataclass(frozen=True)
class ParsedEtag:
    """An MD5-shaped ETag: its hex digest and, for a multipart object, its part count."""

    hexdigest: str
    parts: int | None

    @property
    def multipart(self) -> bool:
        return self.parts is not None

    def __str__(self) -> str:
        return self.hexdigest if self.parts is None else f"{self.hexdigest}-{self.parts}"


def parse_etag(etag: str | None) -> ParsedEtag | None:
    """Parse an ETag (quoted or not). Returns None when it is not MD5-shaped."""
    if not etag:
        return None
    match = _ETAG_RE.match(etag.strip())
    if match is None:
        return None
    parts = match.group(3)
    return ParsedEtag(match.group(2).lower(), int(parts) if parts is not None else None)


def adjust_chunksize(chunksize: int, size: int | None = None) -> int:
    """Return the part size s3transfer's ChunksizeAdjuster would use.

    The chunk size is doubled until the parts fit in 10,000, then clamped to [5 MiB, 5 GiB].
    """
    if chunksize <= 0:
        raise ValueError(f"chunk size must be positive, got {chunksize}")
    if size is not None:
        while -(-size // chunksize) > MAX_PARTS:
            chunksize *= 2
    return min(max(chunksize, MIN_PART_SIZE), MAX_PART_SIZE)


def plan_parts(size: int, threshold: int, chunksize: int) -> PartLayout:
    """Decide the layout an upload of ``size`` bytes gets: the one layout function.

    Multipart when ``size >= threshold`` (as s3transfer decides), with the chunk size adjusted
    to S3's limits. A threshold under 5 MiB is legal: the parts are then 5 MiB, not threshold.
    """
    if size < 0:
        raise ValueError(f"size must not be negative, got {size}")
    if threshold <= 0:
        raise ValueError(f"threshold must be positive, got {threshold}")
    if size < threshold:
        return PartLayout(size)
    return PartLayout(size, adjust_chunksize(chunksize, size))


def candidate_part_sizes(size: int, parts: int, limit: int = 8) -> list[int]:
    """Part sizes that give exactly ``parts`` parts for ``size`` bytes, likeliest first.

    Any part size p with ``ceil(size / p) == parts`` is consistent. This lists the sizes other
    tools use, then whole MiB sizes in the consistent range, then an even split. At most
    ``limit`` are returned; an empty list means no layout can explain the ETag.
    """
    if parts < 1 or size < 0:
        return []
    if parts == 1:
        return [max(size, 1)]
    lowest = -(-size // parts)
    highest = -(-size // (parts - 1)) - 1
    if lowest > highest or lowest < 1:
        return []
    found: list[int] = []

    def add(candidate: int) -> None:
        if lowest <= candidate <= highest and candidate not in found:
            found.append(candidate)

    for common in _COMMON_PART_SIZES:
        add(common)
    mib = -(-lowest // MiB)
    while mib * MiB <= highest and len(found) < limit:
        add(mib * MiB)
        mib += 1
    add(lowest)
    return found[:limit]


def multipart_etag(digests: Iterable[bytes]) -> str:
    """The multipart ETag (without quotes) from the binary MD5 digests of the parts, in order."""
    combined = hashlib.md5(usedforsecurity=False)
    count = 0
    for digest in digests:
        combined.update(digest)
        count += 1
    return f"{combined.hexdigest()}-{count}"


class EtagCalculator:
    """Computes an ETag in one pass, whatever the chunking of the bytes fed to it.

    Example::

        calc = EtagCalculator(part_size=8 * MiB)   # or part_size=0 for a single-part ETag
        for chunk in stream:
            calc.update(chunk)
        calc.etag()   # '5d41...-3'
    """

    __slots__ = ("_current", "_digests", "_filled", "_part_size", "_total")

    def __init__(self, part_size: int = 0) -> None:
        if part_size < 0:
            raise ValueError(f"part size must not be negative, got {part_size}")
        self._part_size = part_size
        self._current = hashlib.md5(usedforsecurity=False)
        self._filled = 0
        self._digests: list[bytes] = []
        self._total = 0

    @property
    def bytes_hashed(self) -> int:
        return self._total

    def update(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data).cast("B")
        self._total += len(view)
        if not self._part_size:
            self._current.update(view)
            return
        while view:
            room = self._part_size - self._filled
            if len(view) < room:
                self._current.update(view)
                self._filled += len(view)
                return
            self._current.update(view[:room])
            self._digests.append(self._current.digest())
            self._current = hashlib.md5(usedforsecurity=False)
            self._filled = 0
            view = view[room:]

    def part_digests(self) -> list[bytes]:
        """Binary MD5 digests of the parts so far, including a partly filled last part."""
        if not self._part_size:
            return [self._current.digest()]
        if self._filled or not self._digests:
            return [*self._digests, self._current.digest()]
        return list(self._digests)

    def etag(self) -> str:
        """The ETag, without quotes, of everything fed so far."""
        if not self._part_size:
            return self._current.hexdigest()
        return multipart_etag(self.part_digests())


def compute_etag(
    source: bytes | bytearray | memoryview | BinaryIO,
    *,
    threshold: int,
    chunksize: int,
    size: int | None = None,
    block_size: int = MiB,
) -> str:
    """The ETag an upload of ``source`` with this threshold and chunk size gets.

    ``source`` is bytes or a binary stream read from its current position in ``block_size``
    blocks, so memory stays bounded. For a stream, pass ``size`` when known; otherwise the
    stream is read once to its end with the layout decided from the bytes seen, exactly as
    object_clerk's uploader cuts an unsized stream (see :func:`plan_parts`).
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        view = memoryview(source).cast("B")
        calc = EtagCalculator(plan_parts(len(view), threshold, chunksize).part_size)
        calc.update(view)
        return calc.etag()
    if size is not None:
        calc = EtagCalculator(plan_parts(size, threshold, chunksize).part_size)
        _feed(calc, source, block_size)
        return calc.etag()
    # Unknown size: hash single-part and multipart candidates side by side, then pick the one
    # the final size selects. For an unsized stream the uploader uses the unadjusted chunk
    # clamped to S3's limits, since it cannot know the part count in advance.
    single = EtagCalculator(0)
    multi = EtagCalculator(adjust_chunksize(chunksize))
    while block := source.read(block_size):
        single.update(block)
        multi.update(block)
    return single.etag() if single.bytes_hashed < threshold else multi.etag()


def _feed(calc: EtagCalculator, source: BinaryIO, block_size: int) -> None:
    while block := source.read(block_size):
        calc.update(block)
