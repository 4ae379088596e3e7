"""Checks that move no data to keep: a local file against an object (no download), and a
scrub that reads every object under a prefix and proves its bytes against its ETag or
stored checksum.

A scrub reads each object as :meth:`ObjectClerk.get_object` does (the same part layout
discovery, resumption and retries) into a sink that keeps nothing, so memory stays bounded
whatever the object sizes. A mismatch is read again under the checksum retry policy before
it is reported: bytes damaged in flight verify on a later read, bytes damaged at rest never
do.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from enum import Enum
from functools import partial
from typing import TYPE_CHECKING

from object_clerk import reads
from object_clerk.bulk import (
    Job,
    Runner,
    S3Location,
    Skipped,
    download_weight,
    listing,
    same_content,
    selected,
    skipper,
)
from object_clerk.errors import (
    ChecksumMismatchError,
    InvalidRequestError,
    LocalIOError,
    ObjectClerkError,
    ObjectNotFoundError,
)
from object_clerk.etag import parse_etag
from object_clerk.runner import Progress
from object_clerk.sinks import DiscardSink

if TYPE_CHECKING:
    from object_clerk.clerk import ObjectClerk

__all__ = ["CheckStatus", "ObjectCheck", "ScrubReport"]


class CheckStatus(Enum):
    """What a check found.

    ``OK``: the bytes are proven. ``MISMATCH``: a local file differs from the object.
    ``CORRUPT``: the object's bytes do not match its own ETag or checksum, on every read.
    ``UNVERIFIABLE``: nothing can prove the bytes (SSE-KMS, SSE-C, a multipart layout no
    candidate reproduces); ``reason`` says which. ``MISSING``: listed, but gone by the time
    it was read. ``ERROR``: it could not be read (``reason`` names the error).
    """

    OK = "ok"
    MISMATCH = "mismatch"
    CORRUPT = "corrupt"
    UNVERIFIABLE = "unverifiable"
    MISSING = "missing"
    ERROR = "error"


@dataclass(frozen=True)
class ObjectCheck:
    """One object's check. ``etag`` is the object's (unquoted), ``proof`` what proved it
    (``md5``, ``multipart-md5``, ``crc32c``...), ``local_etag`` the local file's ETag in
    the object's layout, for a file check."""

    bucket: str
    key: str
    status: CheckStatus
    reason: str = ""
    etag: str | None = None
    size: int = 0
    proof: str = ""
    path: str | None = None
    local_etag: str | None = None

    @property
    def ok(self) -> bool:
        return self.status is CheckStatus.OK


@dataclass
class ScrubReport:
    """What a scrub found: how many objects it checked and proved, the bytes it read, and
    every check that was not ``OK`` (in completion order). Iterating gives those."""

    checked: int = 0
    ok: int = 0
    bytes: int = 0  # read and checked (not those missing or unreadable)
    problems: list[ObjectCheck] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)

    def __iter__(self) -> Iterator[ObjectCheck]:
        return iter(self.problems)

    def count(self, status: CheckStatus) -> int:
        if status is CheckStatus.OK:
            return self.ok
        return sum(1 for check in self.problems if check.status is status)

    @property
    def corrupt(self) -> list[ObjectCheck]:
        return [check for check in self.problems if check.status is CheckStatus.CORRUPT]


# The checks that read the object's bytes (to their end).
_READ = (CheckStatus.OK, CheckStatus.CORRUPT, CheckStatus.UNVERIFIABLE)


def check_file(
    clerk: ObjectClerk, path: str | os.PathLike[str], bucket: str, key: str
) -> ObjectCheck:
    """Compare a local file with an object, by size and then by ETag computed in the
    object's own part layout, with no download."""
    operation = "verify_file"
    name = os.fspath(path)
    try:
        info = os.stat(name)
    except OSError as exc:
        raise LocalIOError(
            f"cannot read {name}: {exc.strerror or exc}",
            errno=exc.errno,
            path=name,
            operation=operation,
            bucket=bucket,
            key=key,
        ) from exc
    if not stat.S_ISREG(info.st_mode):
        raise InvalidRequestError(
            f"not a regular file: {name}", operation=operation, bucket=bucket, key=key
        )
    head = clerk._engine.head(bucket, key)
    etag = parse_etag(head.get("ETag"))
    size = int(head.get("ContentLength") or 0)
    found = ObjectCheck(
        bucket,
        key,
        CheckStatus.MISMATCH,
        etag=str(etag) if etag is not None else head.get("ETag"),
        size=size,
        path=name,
    )
    if info.st_size != size:
        reason = f"the sizes differ: the file has {info.st_size} bytes, the object {size}"
        return replace(found, reason=reason)
    comparison = same_content(clerk, bucket, key, head, name)
    if comparison.same is None:
        return replace(found, status=CheckStatus.UNVERIFIABLE, reason=comparison.how)
    return replace(
        found,
        status=CheckStatus.OK if comparison.same else CheckStatus.MISMATCH,
        reason=comparison.how,
        proof="etag" if comparison.same else "",
        local_etag=comparison.local_etag,
    )


def scrub_job(
    clerk: ObjectClerk, bucket: str, key: str, size: int, progress: Progress | None
) -> ObjectCheck:
    """Read one object, keep nothing, and say whether its bytes are proven."""
    found = ObjectCheck(bucket, key, CheckStatus.ERROR, size=size)
    try:
        result = reads.read(
            clerk._engine,
            bucket,
            key,
            DiscardSink(),
            verify=True,
            operation="verify_objects",
            progress=progress,
            report=False,
        )
    except ChecksumMismatchError as exc:
        return replace(found, status=CheckStatus.CORRUPT, reason=exc.message, etag=exc.expected)
    except ObjectNotFoundError:
        return replace(found, status=CheckStatus.MISSING, reason="deleted since it was listed")
    except ObjectClerkError as exc:
        return replace(found, reason=str(exc))
    verdict = result.verdict
    etag = parse_etag(result.response.get("ETag"))
    found = replace(found, etag=str(etag) if etag is not None else None)
    if verdict.verified:
        return replace(found, status=CheckStatus.OK, proof=verdict.kind)
    return replace(found, status=CheckStatus.UNVERIFIABLE, reason=verdict.reason)


def verify_objects(
    clerk: ObjectClerk,
    bucket: str,
    prefix: str,
    *,
    include: Sequence[str] | None,
    exclude: Sequence[str] | None,
    on_check: Callable[[ObjectCheck], object] | None,
    runner: Runner,
) -> ScrubReport:
    report = ScrubReport()
    skip = skipper(report.skipped, runner.operation)

    def jobs() -> Iterator[Job]:
        for rel, entry in listing(clerk, S3Location(bucket, prefix), skip, markers=True):
            if not selected(rel, include, exclude):
                continue
            size = int(entry.get("Size") or 0)
            yield Job(
                partial(scrub_job, clerk, bucket, entry["Key"], size), download_weight(clerk, size)
            )

    def consume(check: ObjectCheck) -> None:
        report.checked += 1
        if check.status in _READ:
            report.bytes += check.size
        if check.ok:
            report.ok += 1
        else:
            report.problems.append(check)
        if on_check is not None:
            on_check(check)

    runner.run(jobs(), consume)
    if runner.errors:  # the listing failed: each object's own failure is in its check
        raise runner.errors[0]
    return report
