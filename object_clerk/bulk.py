"""Many objects at once: directory uploads, prefix downloads, a one-way sync that compares by
content, and the cleanup of stale multipart uploads.

Strategy: a bulk call walks the directory and reads the listings lazily, page by page, in
key order (a sync merges both sides by key), and hands one job per object to
:func:`object_clerk.runner.run_objects` as it goes, on a thread pool or on the caller's
``concurrent.futures.Executor`` (a Dask cluster's, say). Each job is a module-level function
of a picklable clerk and plain values, so it runs the same in a thread or in another
process. Every job uses the clerk's verified single-object calls, so each object is written
whole or not at all (an upload is aborted, a download is renamed into place only once
verified). A sync deletes nothing until every transfer has succeeded.

"The same" in a sync means the same size and the same ETag, where the local file's ETag is
computed in a part layout that reproduces the remote one (this clerk's own, else the
object's, found as a read finds it). Going up, a multipart object no candidate layout
reproduces is sent again. Where the ETag proves nothing (SSE-KMS, SSE-C; going down, a
layout no candidate matches; bucket to bucket, different layouts), size and modification
time decide, and the report says so for that object.
"""

from __future__ import annotations

import fnmatch
import logging
import mimetypes
import os
import secrets
import stat
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from enum import Enum
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from object_clerk.engine import TransferResult
from object_clerk.errors import (
    InvalidRequestError,
    LocalIOError,
    ObjectClerkError,
    PreconditionFailedError,
    ServerError,
    SourceChangedError,
    local_io,
)
from object_clerk.etag import EtagCalculator, MiB, parse_etag, plan_parts
from object_clerk.runner import Progress, run_objects
from object_clerk.verdict import ObjectLayout, etag_opacity

if TYPE_CHECKING:
    from object_clerk.clerk import ObjectClerk

__all__ = [
    "BulkReport",
    "BulkTransferError",
    "Change",
    "Location",
    "Operation",
    "Skipped",
    "StaleUpload",
    "StaleUploadsError",
    "SyncReport",
    "Unchanged",
]

logger = logging.getLogger("object_clerk")

Symlinks = Literal["inside", "follow", "skip"]
ObjectCallback = Callable[[int, "int | None"], object]  # (done, total or None)


class Operation(Enum):
    """What a sync did to a destination object (filecloudsync's names and values)."""

    ADDED = "added"
    MODIFIED = "modified"
    DELETED = "deleted"


class Location(Enum):
    """Where the change happened (filecloudsync's names and values)."""

    BUCKET = "keys"
    LOCAL = "files"


@dataclass(frozen=True)
class Change:
    """One change a sync made (or, with ``dry_run``, would make). It unpacks as
    filecloudsync's ``(key, operation, location)``. ``key`` is the path relative to the
    prefix or directory, in key form (``/`` separators); ``target`` is where the change
    landed (``s3://bucket/key`` or a local path); ``reason`` says why."""

    key: str
    operation: Operation
    location: Location
    target: str = ""
    reason: str = ""
    size: int = 0

    def __iter__(self) -> Iterator[Any]:
        return iter((self.key, self.operation, self.location))


@dataclass(frozen=True)
class Unchanged:
    """An object a sync found the same on both sides, and on what ``basis``: ``"etag"``
    (content, in the remote object's layout) or ``"size+mtime"`` (with ``reason`` saying
    why content could not decide)."""

    key: str
    basis: Literal["etag", "size+mtime"]
    reason: str = ""


@dataclass(frozen=True)
class Skipped:
    """A file or key a bulk call left alone, and why (a symlink leaving the directory, a
    key that would land outside it, a directory marker, a name that is no valid key)."""

    name: str
    reason: str


@dataclass
class BulkReport:
    """What a bulk call did: the verified result of each transfer (in completion order),
    what it skipped and why, and the objects and bytes moved."""

    transferred: list[TransferResult] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)

    @property
    def objects(self) -> int:
        return len(self.transferred)

    @property
    def bytes(self) -> int:
        return sum(result.size for result in self.transferred)


@dataclass
class SyncReport(BulkReport):
    """What a sync did. Iterating over it gives its :class:`Change` records, the
    ``(key, operation, location)`` list filecloudsync's sync returns; ``unchanged`` lists
    what was found the same, and on what basis."""

    changes: list[Change] = field(default_factory=list)
    unchanged: list[Unchanged] = field(default_factory=list)
    dry_run: bool = False

    def __iter__(self) -> Iterator[Change]:
        return iter(self.changes)

    def __len__(self) -> int:
        return len(self.changes)


class BulkTransferError(ObjectClerkError):
    """A bulk call stopped because an object failed. ``errors`` holds each failure (the
    first one is also this error's ``__cause__``); ``report`` what was done before it
    stopped. Each object is whole or untouched, and a sync deleted nothing."""

    def __init__(
        self,
        message: str,
        *,
        errors: Sequence[BaseException] = (),
        report: BulkReport | None = None,
        **context: Any,
    ) -> None:
        super().__init__(message, **context)
        self.errors = list(errors)
        self.report = report if report is not None else BulkReport()


class StaleUploadsError(BulkTransferError):
    """Some stale uploads could not be aborted: ``errors`` says why, for each; ``uploads``
    lists every one found, with ``aborted`` set for those that were."""

    def __init__(
        self,
        message: str,
        *,
        errors: Sequence[BaseException] = (),
        uploads: Sequence[StaleUpload] = (),
        **context: Any,
    ) -> None:
        super().__init__(message, errors=errors, **context)
        self.uploads = list(uploads)


@dataclass(frozen=True)
class StaleUpload:
    """An incomplete multipart upload :meth:`ObjectClerk.abort_stale_uploads` found:
    ``aborted`` is False in a dry run, or when it was gone by the time of the abort."""

    bucket: str
    key: str
    upload_id: str
    initiated: datetime
    aborted: bool


# ------------------------------------------------------------------ locations ----


@dataclass(frozen=True)
class S3Location:
    bucket: str
    prefix: str  # "" or ending in "/"

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"


def parse_location(value: str | os.PathLike[str], operation: str) -> S3Location | Path:
    """``s3://bucket[/prefix]`` or a local directory."""
    if isinstance(value, str) and value.startswith("s3://"):
        bucket, _, prefix = value[len("s3://") :].partition("/")
        return S3Location(bucket, directory_prefix(prefix))
    if not isinstance(value, (str, os.PathLike)):
        raise InvalidRequestError(
            f"a location is a directory or s3://bucket/prefix, not {type(value).__name__}",
            operation=operation,
        )
    return Path(value)


def directory_prefix(prefix: str) -> str:
    """A prefix names a directory: ``"data"`` means ``"data/"``, as ``aws s3 sync`` has it."""
    if not isinstance(prefix, str):
        raise InvalidRequestError(f"prefix must be a string, not {type(prefix).__name__}")
    return prefix if not prefix or prefix.endswith("/") else prefix + "/"


# ------------------------------------------------------------------ local side ----


@dataclass(frozen=True)
class LocalFile:
    rel: str  # POSIX path relative to the walked directory
    path: str
    size: int
    mtime: float


def walk(
    root: Path,
    *,
    include: Sequence[str] | None,
    exclude: Sequence[str] | None,
    symlinks: Symlinks,
    skipped: Callable[[Skipped], None],
) -> Iterator[LocalFile]:
    """Every regular file under ``root`` that the filters select, lazily, in the order S3
    lists keys (their relative paths compared as strings), so that a walk can be merged
    with a listing.

    ``symlinks``: ``"inside"`` follows links whose target lies inside ``root`` and skips
    the others; ``"follow"`` follows every link; ``"skip"`` follows none. A followed link
    is walked under its own name too, as ``aws s3 sync`` and rsync ``-L`` do, except a link
    to a directory above it (a loop), which is skipped. Each thing left out but for the
    filters is told to ``skipped`` when its directory is read, before any file of that
    directory is yielded.
    """
    top = os.path.realpath(root)
    stack = [(_entries(str(root), "", top, symlinks, skipped), top)]
    while stack:
        item = next(stack[-1][0], None)
        if item is None:
            stack.pop()
            continue
        rel, path, info = item
        if stat.S_ISDIR(info.st_mode):
            real = os.path.realpath(path)
            if any(real == above for _, above in stack):
                skipped(Skipped(rel, "a symbolic link to a directory above it (a loop)"))
            else:
                stack.append((_entries(path, rel + "/", top, symlinks, skipped), real))
        elif selected(rel, include, exclude):
            yield LocalFile(rel, path, info.st_size, info.st_mtime)


def _entries(
    directory: str, rel_dir: str, top: str, symlinks: Symlinks, skipped: Callable[[Skipped], None]
) -> Iterator[tuple[str, str, os.stat_result]]:
    """A directory's files and subdirectories, as ``(rel, path, stat)`` in key order: a
    directory sorts as its name plus ``/``, the way its keys do."""
    try:
        with os.scandir(directory) as scan:
            entries = list(scan)
    except OSError as exc:
        raise LocalIOError(
            f"cannot list {directory}: {exc.strerror or exc}", errno=exc.errno, path=directory
        ) from exc
    found: list[tuple[str, str, str, os.stat_result]] = []
    for entry in entries:
        rel = rel_dir + entry.name
        if _undecodable(entry.name):
            skipped(Skipped(rel, "the name is not valid UTF-8, so it is no S3 key"))
            continue
        try:
            info = _follow(entry, rel, top, symlinks, skipped)
        except OSError as exc:
            skipped(Skipped(rel, f"cannot read it: {exc.strerror or exc}"))
            continue
        if info is None:
            continue
        if stat.S_ISDIR(info.st_mode):
            found.append((rel + "/", rel, entry.path, info))
        elif stat.S_ISREG(info.st_mode):
            found.append((rel, rel, entry.path, info))
        else:
            skipped(Skipped(rel, "not a regular file"))
    found.sort(key=lambda item: item[0])
    return iter([(rel, path, info) for _, rel, path, info in found])


def _follow(
    entry: os.DirEntry[str],
    rel: str,
    top: str,
    symlinks: Symlinks,
    skipped: Callable[[Skipped], None],
) -> os.stat_result | None:
    if not entry.is_symlink():
        return entry.stat(follow_symlinks=False)
    if symlinks == "skip":
        skipped(Skipped(rel, "a symbolic link (symlinks='skip')"))
        return None
    target = os.path.realpath(entry.path)
    if symlinks == "inside" and not within(target, top):
        skipped(Skipped(rel, f"a symbolic link that leaves the directory (to {target})"))
        return None
    try:
        return os.stat(target)
    except FileNotFoundError:
        skipped(Skipped(rel, "a broken symbolic link"))
        return None


def _undecodable(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:  # os.fsdecode's surrogate escapes of invalid bytes
        return True
    return False


def within(path: str, top: str) -> bool:
    return path == top or path.startswith(top.rstrip(os.sep) + os.sep)


def selected(rel: str, include: Sequence[str] | None, exclude: Sequence[str] | None) -> bool:
    """Glob filters on the relative POSIX path (``fnmatch``: ``*`` also crosses ``/``).
    Exclusion wins."""
    if include and not any(fnmatch.fnmatchcase(rel, pattern) for pattern in include):
        return False
    return not (exclude and any(fnmatch.fnmatchcase(rel, pattern) for pattern in exclude))


def unsafe_key(rel: str) -> str | None:
    """Why the relative key ``rel`` must not become a local path, or None. A key is data
    from the server: it never names a file outside the directory it is downloaded into."""
    if "\x00" in rel:
        return "it holds a NUL character"
    if "\\" in rel:
        return "it holds a backslash, a path separator elsewhere"
    if rel.startswith("/"):
        return "it is an absolute path"
    segments = rel.split("/")
    if ".." in segments:
        return "it has a '..' segment"
    if any(segment in ("", ".") for segment in segments):
        return "it has an empty or '.' segment"
    if os.altsep and os.altsep in rel:
        return f"it holds {os.altsep!r}"
    return None


def local_target(root_real: str, rel: str) -> str | None:
    """The path ``rel`` names under the (real) directory, or None when, after
    normalisation and through any symlinked parent, it would land outside it."""
    path = os.path.normpath(os.path.join(root_real, *rel.split("/")))
    if not within(path, root_real) or path == root_real:
        return None
    if not within(os.path.realpath(os.path.dirname(path)), root_real):
        return None
    return path


# ------------------------------------------------------------------ remote side ----


def listing(
    clerk: ObjectClerk,
    where: S3Location,
    skipped: Callable[[Skipped], None] | None,
    *,
    markers: bool = False,
) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(relative key, listing entry)`` for every object under the prefix, lazily, through
    every page, in key order. Directory markers (keys ending in ``/``) are skipped (and
    told to ``skipped``), unless ``markers``: a scrub reads them too, as they may hold
    data.

    Raises:
        ServerError: a key came out of order. A sync merges listings by key, so a store
            that does not list in key order would make objects look missing.
    """
    previous: str | None = None
    for entry in clerk.list_objects(where.bucket, prefix=where.prefix):
        key = entry["Key"]
        if previous is not None and key <= previous:
            raise ServerError(
                f"the listing is not in key order: {key!r} came after {previous!r}",
                operation="ListObjectsV2",
                bucket=where.bucket,
            )
        previous = key
        if key.endswith("/") and not markers:
            if skipped is not None:
                skipped(Skipped(key, "a directory marker"))
            continue
        yield key[len(where.prefix) :], entry


# ------------------------------------------------------------------ comparison ----


@dataclass(frozen=True)
class Comparison:
    """A local file against an object's ETag: ``same`` is None when the ETag cannot decide
    (``how`` says why); ``local_etag`` is the file's ETag in the layout compared, when one
    layout was."""

    same: bool | None
    how: str
    local_etag: str | None = None


def same_content(
    clerk: ObjectClerk, bucket: str, key: str, entry: Mapping[str, Any], path: str
) -> Comparison:
    """Whether the local file holds the object's bytes, by the listing or HEAD ``entry``
    (its ``ETag``, and its ``Size`` or ``ContentLength``). The local file's ETag is
    computed in the object's own part layout: first this clerk's, which needs no request,
    then the one a read would find."""
    etag = parse_etag(entry.get("ETag"))
    if etag is None:
        return Comparison(None, f"the ETag {entry.get('ETag')!r} is not an MD5")
    if etag.parts is None:
        local = local_etag(path, 0)
        if local == etag.hexdigest:
            return Comparison(True, "ETag", local)
        # A plain-looking ETag may still be no MD5 (SSE-KMS, SSE-C): only the HEAD tells.
        head = entry if "ContentLength" in entry else clerk._engine.head(bucket, key)
        reason = etag_opacity([head])
        if reason is not None:
            return Comparison(None, reason)
        return Comparison(False, "the ETag differs", local)
    # An MD5 of MD5s that matches in any layout proves the content.
    transfer = clerk._engine.transfer
    size = int(entry.get("Size") or entry.get("ContentLength") or 0)
    own = plan_parts(size, transfer.multipart_threshold, transfer.upload_chunksize)
    if own.part_count == etag.parts:
        local = local_etag(path, own.part_size)
        if local == str(etag):
            return Comparison(True, "ETag in this clerk's part layout", local)
    head = entry if "ContentLength" in entry else clerk._engine.head(bucket, key)
    if parse_etag(head.get("ETag")) != etag:
        return Comparison(False, "the object changed while it was compared")
    layout = clerk._engine.discover_layout(bucket, key, head)
    if isinstance(layout, str):
        return Comparison(None, layout)
    return _compare_in_layout(path, layout)


# No candidate part size reproduces a multipart ETag: the content differs, or the layout is
# one no candidate has (a foreign upload on a store that ignores PartNumber).
NO_LAYOUT = "no candidate part layout reproduces the ETag"


def _compare_in_layout(path: str, layout: ObjectLayout) -> Comparison:
    assert layout.etag is not None
    local = None
    for part_size in layout.part_sizes:
        local = local_etag(path, part_size)
        if local == str(layout.etag):
            return Comparison(True, f"ETag in the object's layout ({layout.source})", local)
    if layout.authoritative:
        return Comparison(
            False, f"the ETag differs in the object's layout ({layout.source})", local
        )
    return Comparison(None, NO_LAYOUT)


def local_etag(path: str, part_size: int) -> str:
    """The file's ETag in parts of ``part_size`` (0: a single part), read in 1 MiB blocks."""
    calc = EtagCalculator(part_size)
    try:
        with open(path, "rb", buffering=0) as handle:
            while block := handle.read(MiB):
                calc.update(block)
    except OSError as exc:
        raise LocalIOError(
            f"cannot read {path}: {exc.strerror or exc}", errno=exc.errno, path=path
        ) from exc
    return calc.etag()


def _mtime(entry: Mapping[str, Any]) -> float:
    modified = entry.get("LastModified")
    return modified.timestamp() if isinstance(modified, datetime) else 0.0


# ------------------------------------------------------------------ the jobs ----


@dataclass(frozen=True)
class Job:
    """One object's job: a picklable call, and the slots of ``max_concurrency`` it holds
    while it runs (the requests a large object makes at once, see ``run_objects``).
    ``nonce`` makes every job unlike every other: Dask's executor takes two equal tasks for
    one and runs it once (``pure=True``), and a bulk call repeated must run again."""

    call: Callable[..., Any]
    weight: int = 1
    nonce: str = ""

    def __call__(self, *args: Any) -> Any:
        return self.call(*args)


def upload_weight(clerk: ObjectClerk, size: int) -> int:
    transfer = clerk._engine.transfer
    if size < transfer.multipart_threshold:
        return 1
    layout = plan_parts(size, transfer.multipart_threshold, transfer.upload_chunksize)
    return min(transfer.upload_concurrency, layout.part_count)


def download_weight(clerk: ObjectClerk, size: int) -> int:
    transfer = clerk._engine.transfer
    if size < transfer.download_threshold:
        return 1
    return min(transfer.download_concurrency, -(-size // transfer.download_chunksize))


# Module-level functions of a clerk and plain values, or the clerk's own bound methods:
# they pickle, so they run the same in a thread or in a Dask worker.


def upload_job(
    clerk: ObjectClerk,
    path: str,
    bucket: str,
    key: str,
    args: Mapping[str, Any],
    verify: bool,
    delete_source: bool,
    progress: Progress | None,
) -> TransferResult:
    """Upload one file; for a move, remove it once the object is proven."""
    before = file_state(path, bucket, key) if delete_source else None
    result = clerk._upload_path(path, bucket, key, args, verify, progress)
    if before is not None:
        remove_moved(clerk, result, path, before)
    return result


def file_state(path: str, bucket: str, key: str) -> tuple[int, int, int, int]:
    """What identifies a file's content for a move: device, inode, size, mtime."""
    with local_io("move", bucket, key, path):
        info = os.stat(path)
    return info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns


def remove_moved(
    clerk: ObjectClerk, result: TransferResult, path: str, before: tuple[int, int, int, int]
) -> None:
    """Remove the file a move uploaded, once its object is proven and only if the file is
    still what was uploaded (``before``: its :func:`file_state` then)."""
    clerk._check_moved(result, None)
    if file_state(path, result.bucket, result.key) != before:
        raise SourceChangedError(
            f"{path} changed after it was uploaded; the file was kept",
            path=path,
            operation="move",
            bucket=result.bucket,
            key=result.key,
        )
    with local_io("move", result.bucket, result.key, path):
        os.unlink(path)


def delete_moved(clerk: ObjectClerk, result: TransferResult, local: str | None) -> None:
    """Delete the object a move downloaded, once its file is proven (``local``: its path,
    None for a file object) and only if the object is still the one that was read."""
    clerk._check_moved(result, local)
    head = clerk._engine.head(result.bucket, result.key)
    if parse_etag(head.get("ETag")) != parse_etag(result.etag):
        raise PreconditionFailedError(
            "the object changed after it was read; it was kept",
            operation="move",
            bucket=result.bucket,
            key=result.key,
        )
    clerk.delete_object(result.bucket, result.key)


def download_job(
    clerk: ObjectClerk,
    bucket: str,
    key: str,
    root_real: str,
    rel: str,
    verify: bool,
    delete_source: bool,
    progress: Progress | None,
) -> TransferResult:
    path = local_target(root_real, rel)
    if path is None:  # checked when planned; a parent may have become a symlink since
        raise InvalidRequestError(
            f"the key would be written outside {root_real}",
            operation="download_prefix",
            bucket=bucket,
            key=key,
        )
    parent = root_real
    for segment in rel.split("/")[:-1]:  # one level at a time, each checked before use
        parent = os.path.join(parent, segment)
        try:
            os.mkdir(parent)
        except FileExistsError:
            pass
        except OSError as exc:
            raise LocalIOError(
                f"cannot create {parent}: {exc.strerror or exc}",
                errno=exc.errno,
                path=parent,
                operation="download_prefix",
                bucket=bucket,
                key=key,
            ) from exc
        if not within(os.path.realpath(parent), root_real):
            break  # refused just below
    if local_target(root_real, rel) != path:
        raise InvalidRequestError(
            f"the key would be written outside {root_real}",
            operation="download_prefix",
            bucket=bucket,
            key=key,
        )
    result = clerk._download_path(bucket, key, path, verify, progress)
    if delete_source:
        delete_moved(clerk, result, path)
    return result


@dataclass(frozen=True)
class _Decision:
    change: Change | None
    unchanged: Unchanged | None
    result: TransferResult | None = None


def sync_job(
    clerk: ObjectClerk,
    item: _SyncItem,
    dry_run: bool,
    verify: bool,
    progress: Progress | None,
) -> _Decision:
    """Compare one object with its destination and, unless they are the same, transfer it."""
    verdict = item.compare(clerk)
    if isinstance(verdict, Unchanged):
        return _Decision(None, verdict)
    change = Change(
        item.rel,
        Operation.ADDED if item.destination is None else Operation.MODIFIED,
        item.location,
        item.target,
        verdict,
        item.size,
    )
    if dry_run:
        return _Decision(change, None)
    return _Decision(change, None, item.transfer(clerk, verify, progress))


def delete_job(
    clerk: ObjectClerk, number: int, target: str | tuple[str, str], _progress: Progress | None
) -> int:
    """Delete one destination object or file; returns ``number``, its place in the list."""
    if isinstance(target, tuple):
        clerk.delete_object(*target)
        return number
    try:
        os.unlink(target)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise LocalIOError(
            f"cannot delete {target}: {exc.strerror or exc}",
            errno=exc.errno,
            path=target,
            operation="sync",
        ) from exc
    return number


@dataclass(frozen=True)
class _SyncItem:
    """One source object and what its destination holds under the same relative key."""

    rel: str
    size: int
    mtime: float
    source: S3Location | str  # the bucket side, or the local file's path
    destination: Mapping[str, Any] | LocalFile | None
    target_root: S3Location | str  # the destination prefix, or the real local directory
    source_entry: Mapping[str, Any] | None = None

    @property
    def location(self) -> Location:
        return Location.BUCKET if isinstance(self.target_root, S3Location) else Location.LOCAL

    @property
    def target(self) -> str:
        if isinstance(self.target_root, S3Location):
            return f"s3://{self.target_root.bucket}/{self.target_root.prefix}{self.rel}"
        return os.path.join(self.target_root, *self.rel.split("/"))

    def weight(self, clerk: ObjectClerk) -> int:
        """The slots its job holds: a transfer's requests when one is sure (the destination
        lacks it or has another size), else one for the comparison."""
        dest = self.destination
        if dest is not None and self.size == (
            dest.size if isinstance(dest, LocalFile) else int(dest.get("Size") or 0)
        ):
            return 1
        if isinstance(self.target_root, S3Location):
            return upload_weight(clerk, self.size)
        return download_weight(clerk, self.size)

    def compare(self, clerk: ObjectClerk) -> Unchanged | str:
        """Unchanged, or why the object must be transferred."""
        dest = self.destination
        if dest is None:
            return "not at the destination"
        dest_size = dest.size if isinstance(dest, LocalFile) else int(dest.get("Size") or 0)
        if dest_size != self.size:
            return "the size differs"
        if isinstance(self.source, S3Location):
            assert self.source_entry is not None
            if isinstance(dest, LocalFile):  # bucket -> local
                key = self.source.prefix + self.rel
                verdict = same_content(clerk, self.source.bucket, key, self.source_entry, dest.path)
                newer = dest.mtime >= self.mtime
            else:  # bucket -> bucket
                verdict = _same_etags(self.source_entry, dest)
                newer = _mtime(dest) >= self.mtime
        else:
            assert isinstance(self.target_root, S3Location) and not isinstance(dest, LocalFile)
            root = self.target_root
            verdict = same_content(clerk, root.bucket, root.prefix + self.rel, dest, self.source)
            newer = _mtime(dest) >= self.mtime
            if verdict.how == NO_LAYOUT:
                # The file may have changed: send it. The upload records its part size, so
                # the next sync compares by content. (A download could not settle it: the
                # object would stay as unverifiable, so downloads fall back to mtime.)
                return f"{NO_LAYOUT}: sent, and its layout recorded"
        if verdict.same is not None:
            return Unchanged(self.rel, "etag", verdict.how) if verdict.same else verdict.how
        if newer:
            logger.info("%s: compared by size and mtime: %s", self.rel, verdict.how)
            return Unchanged(self.rel, "size+mtime", verdict.how)
        return f"the source is newer (compared by size and mtime: {verdict.how})"

    def transfer(
        self, clerk: ObjectClerk, verify: bool, progress: Progress | None
    ) -> TransferResult:
        root = self.target_root
        if isinstance(self.source, S3Location):
            key = self.source.prefix + self.rel
            if isinstance(root, S3Location):
                return clerk._copy(
                    self.source.bucket, key, root.bucket, root.prefix + self.rel, verify,
                    progress,
                )  # fmt: skip
            return download_job(
                clerk, self.source.bucket, key, root, self.rel, verify, False, progress
            )
        assert isinstance(root, S3Location)
        args = {"ContentType": content_type(self.rel)}
        return clerk._upload_path(
            self.source, root.bucket, root.prefix + self.rel, args, verify, progress
        )


def _same_etags(source: Mapping[str, Any], dest: Mapping[str, Any]) -> Comparison:
    a, b = parse_etag(source.get("ETag")), parse_etag(dest.get("ETag"))
    if a is None or b is None:
        return Comparison(None, "an ETag is not an MD5")
    if a == b:
        return Comparison(True, "ETag")
    if a.parts is None and b.parts is None:
        return Comparison(False, "the ETag differs")
    return Comparison(None, "the ETags are in different part layouts")


# ------------------------------------------------------------------ the bulk calls ----


class Runner:
    """Runs a bulk call's jobs and keeps its report: on the caller's executor, or a thread
    pool of ``concurrency`` when there is none. A job that runs in this process is told
    ``progress`` live; one that runs elsewhere reports its bytes when its result returns."""

    def __init__(
        self,
        *,
        operation: str,
        concurrency: int,
        executor: Executor | None,
        callback: Callable[[int], object] | None,
        object_callback: ObjectCallback | None,
    ) -> None:
        self.operation = operation
        self.concurrency = concurrency
        self.executor = executor
        self.local = executor is None or isinstance(executor, ThreadPoolExecutor)
        self.progress = Progress(callback)
        self.object_callback = object_callback
        self.errors: list[BaseException] = []

    def run(
        self,
        jobs: Iterable[Job],
        consume: Callable[[Any], None],
    ) -> None:
        """Run ``jobs`` (each takes the progress to report to), drawn lazily as slots free
        up; hand each result to ``consume`` in the caller's thread. On a failure (of a job,
        or of drawing the next one) no new job starts and the ones running finish; the
        failures are collected in :attr:`errors`. ``object_callback`` is told
        ``(done, total)``, the total None until every job has been drawn."""
        call = secrets.token_hex(8)
        done, drawn = 0, 0
        total: int | None = None

        def tell() -> None:
            if self.object_callback is not None:
                self.object_callback(done, total)

        def draw() -> Iterator[Job]:
            nonlocal drawn, total
            for job in jobs:
                drawn += 1
                progress = self.progress.child() if self.local else None
                yield Job(partial(job.call, progress), job.weight, f"{call}-{drawn}")
            total = drawn
            tell()

        def finished(result: Any) -> None:
            nonlocal done
            if not self.local:
                moved = result.result if isinstance(result, _Decision) else result
                size = getattr(moved, "size", None)  # a transfer's, or a scrub's check
                if isinstance(size, int):
                    self.progress.add(size)
            consume(result)
            done += 1
            tell()

        tell()
        self.errors.extend(
            run_objects(
                draw(),
                concurrency=self.concurrency,
                executor=self.executor,
                consume=finished,
                name=f"object-clerk-{self.operation}",
            )
        )

    def check(self, report: BulkReport, what: str) -> None:
        if not self.errors:
            return
        first = self.errors[0]
        raise BulkTransferError(
            f"{len(self.errors)} failure(s), {what}; the first: {first}",
            errors=self.errors,
            report=report,
            operation=self.operation,
        ) from first


def upload_directory(
    clerk: ObjectClerk,
    directory: str | os.PathLike[str],
    bucket: str,
    prefix: str,
    *,
    include: Sequence[str] | None,
    exclude: Sequence[str] | None,
    symlinks: Symlinks,
    extra_args: Mapping[str, Any],
    verify: bool,
    delete_source: bool,
    runner: Runner,
) -> BulkReport:
    root = _directory(directory, runner.operation, must_exist=True)
    prefix = directory_prefix(prefix)
    report = BulkReport()
    skip = skipper(report.skipped, runner.operation)

    def jobs() -> Iterator[Job]:
        # A move follows no symlink: it would remove the link and keep what it points to,
        # or meet one file under two names.
        links: Symlinks = "skip" if delete_source else symlinks
        for local in walk(root, include=include, exclude=exclude, symlinks=links, skipped=skip):
            key = prefix + local.rel
            problem = clerk._key_problem(key)
            if problem is not None:
                skip(Skipped(local.rel, problem))
                continue
            args = dict(extra_args)
            args.setdefault("ContentType", content_type(local.rel))
            call = partial(upload_job, clerk, local.path, bucket, key, args, verify, delete_source)
            yield Job(call, upload_weight(clerk, local.size))

    runner.run(jobs(), report.transferred.append)
    runner.check(report, "the others were uploaded or not started")
    return report


def download_prefix(
    clerk: ObjectClerk,
    bucket: str,
    prefix: str,
    directory: str | os.PathLike[str],
    *,
    include: Sequence[str] | None,
    exclude: Sequence[str] | None,
    verify: bool,
    delete_source: bool,
    runner: Runner,
) -> BulkReport:
    root = _directory(directory, runner.operation, must_exist=False)
    where = S3Location(bucket, directory_prefix(prefix))
    report = BulkReport()
    skip = skipper(report.skipped, runner.operation)
    root_real = os.path.realpath(root)

    def jobs() -> Iterator[Job]:
        for rel, entry in listing(clerk, where, skip):
            if not selected(rel, include, exclude):
                continue
            problem = _refused(root_real, rel)
            if problem is not None:
                skip(Skipped(entry["Key"], problem))
                continue
            call = partial(
                download_job, clerk, bucket, entry["Key"], root_real, rel, verify, delete_source
            )
            yield Job(call, download_weight(clerk, int(entry.get("Size") or 0)))

    runner.run(jobs(), report.transferred.append)
    runner.check(report, "the others were downloaded or not started")
    return report


def copy_prefix(
    clerk: ObjectClerk,
    source: S3Location,
    destination: S3Location,
    *,
    include: Sequence[str] | None,
    exclude: Sequence[str] | None,
    verify: bool,
    delete_source: bool,
    runner: Runner,
) -> BulkReport:
    """Copy (or move) every object under one prefix to the same relative key under another,
    server-side, each as :meth:`ObjectClerk.copy_object` copies it."""
    _check_disjoint(source, destination, runner.operation)
    report = BulkReport()
    skip = skipper(report.skipped, runner.operation)
    call = clerk._move if delete_source else clerk._copy

    def jobs() -> Iterator[Job]:
        for rel, entry in listing(clerk, source, skip):
            if not selected(rel, include, exclude):
                continue
            key = destination.prefix + rel
            problem = clerk._key_problem(key)
            if problem is not None:
                skip(Skipped(entry["Key"], problem))
                continue
            size = int(entry.get("Size") or 0)
            yield Job(
                partial(call, source.bucket, entry["Key"], destination.bucket, key, verify),
                upload_weight(clerk, size),
            )

    runner.run(jobs(), report.transferred.append)
    runner.check(report, "the others were copied or not started")
    return report


def sync(
    clerk: ObjectClerk,
    source: str | os.PathLike[str],
    destination: str | os.PathLike[str],
    *,
    delete: bool,
    dry_run: bool,
    include: Sequence[str] | None,
    exclude: Sequence[str] | None,
    symlinks: Symlinks,
    verify: bool,
    runner: Runner,
) -> SyncReport:
    """Both sides are read lazily, in key order, and merged: each object is compared and
    sent while the listings are still being read, and memory does not hold a listing."""
    operation = runner.operation
    src = parse_location(source, operation)
    dst = parse_location(destination, operation)
    if isinstance(src, Path) and isinstance(dst, Path):
        raise InvalidRequestError(
            "one side of a sync must be s3://bucket/prefix; both are local", operation=operation
        )
    if isinstance(src, S3Location) and isinstance(dst, S3Location):
        _check_disjoint(src, dst, operation)
    report = SyncReport(dry_run=dry_run)
    skip = skipper(report.skipped, operation)
    # What the source left out (a symlink not followed, a refused key) is never deleted
    # from the destination: neither under that name nor, for a directory, below it.
    protected: set[str] = set()

    def source_skip(skipped: Skipped) -> None:
        protected.add(skipped.name)
        skip(skipped)

    target_root: S3Location | str
    destination_side: Iterator[tuple[str, Mapping[str, Any] | LocalFile]]
    if isinstance(dst, S3Location):
        target_root = dst
        destination_side = (
            (rel, entry) for rel, entry in listing(clerk, dst, None)
            if selected(rel, include, exclude)
        )  # fmt: skip
    else:
        root = _directory(dst, operation, must_exist=False, create=not dry_run)
        target_root = os.path.realpath(root)
        present = (
            walk(root, include=include, exclude=exclude, symlinks="skip", skipped=lambda _: None)
            if root.is_dir()
            else iter(())
        )
        destination_side = ((local.rel, local) for local in present)
    source_side: Iterator[tuple[str, _Source | None]]
    if isinstance(src, S3Location):
        source_side = _bucket_source(src, target_root, clerk, include, exclude, skip)
    else:
        source_side = _local_source(
            _directory(src, operation, must_exist=True), target_root, clerk,
            include, exclude, symlinks, source_skip,
        )  # fmt: skip
    doomed: list[tuple[str, Mapping[str, Any] | LocalFile]] = []

    def jobs() -> Iterator[Job]:
        for rel, found, there in _merged(source_side, destination_side):
            if found is not None:
                item = _SyncItem(rel, found.size, found.mtime, found.where, there, target_root,
                                 found.entry)  # fmt: skip
                yield Job(partial(sync_job, clerk, item, dry_run, verify), item.weight(clerk))
            elif there is not None and delete and not _protected(rel, protected):
                doomed.append((rel, there))

    def consume(decision: _Decision) -> None:
        if decision.unchanged is not None:
            report.unchanged.append(decision.unchanged)
        if decision.change is not None:
            report.changes.append(decision.change)
        if decision.result is not None:
            report.transferred.append(decision.result)

    runner.run(jobs(), consume)
    runner.check(report, "so nothing was deleted")
    if not doomed:
        return report
    deletions = [_deletion(rel, there, target_root) for rel, there in doomed]
    if dry_run:
        report.changes.extend(change for change, _ in deletions)
        return report
    runner.run(
        [Job(partial(delete_job, clerk, n, target)) for n, (_, target) in enumerate(deletions)],
        lambda n: report.changes.append(deletions[n][0]),
    )
    runner.check(report, "while deleting")
    return report


@dataclass(frozen=True)
class _Source:
    """A source object as the merge sees it."""

    size: int
    mtime: float
    where: S3Location | str  # the source bucket side, or the local file's path
    entry: Mapping[str, Any] | None = None  # its listing entry, for a bucket source


def _bucket_source(
    src: S3Location,
    target_root: S3Location | str,
    clerk: ObjectClerk,
    include: Sequence[str] | None,
    exclude: Sequence[str] | None,
    skip: Callable[[Skipped], None],
) -> Iterator[tuple[str, _Source | None]]:
    for rel, entry in listing(clerk, src, skip):
        if not selected(rel, include, exclude):
            continue
        if isinstance(target_root, str):
            problem = _refused(target_root, rel)
            if problem is not None:
                skip(Skipped(entry["Key"], problem))
                yield rel, None
                continue
        yield rel, _Source(int(entry.get("Size") or 0), _mtime(entry), src, entry)


def _local_source(
    root: Path,
    target_root: S3Location | str,
    clerk: ObjectClerk,
    include: Sequence[str] | None,
    exclude: Sequence[str] | None,
    symlinks: Symlinks,
    skip: Callable[[Skipped], None],
) -> Iterator[tuple[str, _Source | None]]:
    assert isinstance(target_root, S3Location)
    for local in walk(root, include=include, exclude=exclude, symlinks=symlinks, skipped=skip):
        problem = clerk._key_problem(target_root.prefix + local.rel)
        if problem is not None:
            skip(Skipped(local.rel, problem))
            yield local.rel, None
            continue
        yield local.rel, _Source(local.size, local.mtime, local.path)


def _merged(
    source: Iterator[tuple[str, _Source | None]],
    destination: Iterator[tuple[str, Mapping[str, Any] | LocalFile]],
) -> Iterator[tuple[str, _Source | None, Mapping[str, Any] | LocalFile | None]]:
    """Join two streams sorted by key: ``(rel, source or None, destination or None)``."""
    here, there = next(source, None), next(destination, None)
    while here is not None or there is not None:
        if there is None or (here is not None and here[0] < there[0]):
            assert here is not None
            yield here[0], here[1], None
            here = next(source, None)
        elif here is None or there[0] < here[0]:
            yield there[0], None, there[1]
            there = next(destination, None)
        else:
            yield here[0], here[1], there[1]
            here, there = next(source, None), next(destination, None)


def _protected(rel: str, protected: set[str]) -> bool:
    if not protected:
        return False
    parts = rel.split("/")
    return any("/".join(parts[: n + 1]) in protected for n in range(len(parts)))


def _deletion(
    rel: str, there: Mapping[str, Any] | LocalFile, target_root: S3Location | str
) -> tuple[Change, str | tuple[str, str]]:
    target: str | tuple[str, str]
    if isinstance(target_root, S3Location):
        target = (target_root.bucket, target_root.prefix + rel)
        shown = f"s3://{target[0]}/{target[1]}"
    else:
        assert isinstance(there, LocalFile)
        target = shown = there.path
    return Change(
        rel, Operation.DELETED, _location(target_root), shown, "not in the source"
    ), target


def abort_stale_uploads(
    clerk: ObjectClerk,
    bucket: str,
    older_than: timedelta | None,
    *,
    prefix: str,
    dry_run: bool,
) -> list[StaleUpload]:
    """Every incomplete multipart upload under ``prefix`` initiated more than
    ``older_than`` ago (None or zero: every one, whatever the clocks say), through every
    page of ListMultipartUploads, aborted unless ``dry_run``."""
    engine = clerk._engine
    cutoff = None if not older_than else datetime.now(timezone.utc) - older_than
    params: dict[str, Any] = {"Bucket": bucket, "MaxUploads": clerk.list_objects_page_size}
    if prefix:
        params["Prefix"] = prefix
    stale: list[tuple[str, str, datetime]] = []

    def fetch() -> dict[str, Any]:
        return dict(engine.client.list_multipart_uploads(**params))

    while True:
        page = engine.call("ListMultipartUploads", bucket, None, fetch)
        for upload in page.get("Uploads", []):
            initiated = upload["Initiated"]
            if cutoff is None or initiated < cutoff:
                stale.append((upload["Key"], upload["UploadId"], initiated))
        if not page.get("IsTruncated"):
            break
        key_marker, id_marker = page.get("NextKeyMarker"), page.get("NextUploadIdMarker")
        if not key_marker and not id_marker:
            break
        params["KeyMarker"], params["UploadIdMarker"] = key_marker or "", id_marker or ""
    found: list[StaleUpload] = []
    errors: list[ObjectClerkError] = []
    for key, upload_id, initiated in stale:
        aborted = False
        if not dry_run:
            try:
                engine.call(
                    "AbortMultipartUpload",
                    bucket,
                    key,
                    partial(engine.client.abort_multipart_upload, Bucket=bucket, Key=key,
                            UploadId=upload_id),
                )  # fmt: skip
                aborted = True
                logger.info("aborted stale upload %s of s3://%s/%s", upload_id, bucket, key)
            except ObjectClerkError as exc:
                if exc.code != "NoSuchUpload":  # gone already: completed or aborted since
                    errors.append(exc)
        found.append(StaleUpload(bucket, key, upload_id, initiated, aborted))
    if errors:
        raise StaleUploadsError(
            f"{len(errors)} of {len(stale)} stale upload(s) could not be aborted;"
            f" the first: {errors[0]}",
            errors=errors,
            uploads=found,
            operation="abort_stale_uploads",
            bucket=bucket,
        ) from errors[0]
    return found


# ------------------------------------------------------------------ helpers ----


def content_type(name: str) -> str:
    """The content type an upload of a file by this name gets, as the AWS CLI guesses it."""
    guessed, _ = mimetypes.guess_type(name, strict=False)
    return guessed or "application/octet-stream"


def _location(root: S3Location | str) -> Location:
    return Location.BUCKET if isinstance(root, S3Location) else Location.LOCAL


def _refused(root_real: str, rel: str) -> str | None:
    problem = unsafe_key(rel)
    if problem is None and local_target(root_real, rel) is None:
        problem = "it would land outside the directory (through a symlinked parent)"
    if problem is not None:
        logger.warning("refused key %r: %s", rel, problem)
        return f"refused: {problem}"
    return None


def skipper(into: list[Skipped], operation: str) -> Callable[[Skipped], None]:
    def skip(skipped: Skipped) -> None:
        logger.info("%s: skipped %s: %s", operation, skipped.name, skipped.reason)
        into.append(skipped)

    return skip


def _directory(
    value: str | os.PathLike[str], operation: str, *, must_exist: bool, create: bool = True
) -> Path:
    """The directory ``value`` names: refused when it must exist and does not, else
    created (unless ``create`` is False: a dry run changes nothing)."""
    if not isinstance(value, (str, os.PathLike)):
        raise InvalidRequestError(
            f"directory must be a path, not {type(value).__name__}", operation=operation
        )
    path = Path(value)
    if path.exists() and not path.is_dir():
        raise InvalidRequestError(f"not a directory: {path}", operation=operation)
    if not path.exists():
        if must_exist:
            raise InvalidRequestError(f"no such directory: {path}", operation=operation)
        if not create:
            return path
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise LocalIOError(
                f"cannot create {path}: {exc.strerror or exc}",
                errno=exc.errno,
                path=str(path),
                operation=operation,
            ) from exc
    return path


def _check_disjoint(src: S3Location, dst: S3Location, operation: str) -> None:
    if src.bucket == dst.bucket and (
        src.prefix.startswith(dst.prefix) or dst.prefix.startswith(src.prefix)
    ):
        raise InvalidRequestError(
            f"{src} and {dst} overlap: a {operation} between them would feed on itself",
            operation=operation,
        )


def older_than_delta(value: timedelta | float | int, operation: str) -> timedelta:
    if isinstance(value, timedelta):
        delta = value
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        delta = timedelta(seconds=value)
    else:
        raise InvalidRequestError(
            f"older_than must be a timedelta or seconds, not {type(value).__name__}",
            operation=operation,
        )
    if delta < timedelta(0):
        raise InvalidRequestError(
            f"older_than must not be negative, got {delta}", operation=operation
        )
    return delta


def patterns(values: Iterable[str] | str | None, name: str, operation: str) -> list[str] | None:
    """``include`` / ``exclude``: one glob or several."""
    if values is None:
        return None
    if isinstance(values, str):
        return [values]
    patterns = list(values)
    if not all(isinstance(pattern, str) for pattern in patterns):
        raise InvalidRequestError(f"{name} takes glob patterns (str)", operation=operation)
    return patterns
