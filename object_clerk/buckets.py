"""Buckets (cloudgeass's helpers) and deletion by prefix.

Deletion goes in DeleteObjects batches of up to ``list_objects_page_size`` keys, one batch
per listing page, so memory holds one page. A batch is retried as a whole: deleting a key
that is already gone succeeds. Keys a batch could not delete are collected, and the call
raises once it has tried every page.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from object_clerk.bulk import BulkTransferError, abort_stale_uploads
from object_clerk.errors import (
    AccessDeniedError,
    BucketNotFoundError,
    InvalidRequestError,
    NotFoundError,
    ObjectClerkError,
    RequestRejectedError,
    ServerError,
    translate_error,
)

OPERATION = "delete_bucket"

if TYPE_CHECKING:
    from object_clerk.clerk import ObjectClerk

# (key, version id or None)
Target = tuple[str, "str | None"]


def list_buckets(clerk: ObjectClerk) -> list[dict[str, Any]]:
    """Every bucket the credentials own: ``Name`` and ``CreationDate``, through every page."""
    engine = clerk._engine
    params: dict[str, Any] = {}
    buckets: list[dict[str, Any]] = []
    while True:
        page: dict[str, Any] = engine.call(
            "ListBuckets", None, None, lambda: dict(engine.client.list_buckets(**params))
        )
        buckets.extend(dict(bucket) for bucket in page.get("Buckets", []))
        token = page.get("ContinuationToken")
        if not token:
            return buckets
        params["ContinuationToken"] = token


def create_bucket(clerk: ObjectClerk, bucket: str, region: str | None) -> bool:
    """Create ``bucket``; True if this call created it, False if the caller owned it
    already. A bucket someone else owns raises RequestRejectedError (BucketAlreadyExists)."""
    problem = bucket_name_problem(bucket)
    if problem is not None:
        raise InvalidRequestError(
            f"invalid bucket name {bucket!r}: {problem}", operation="create_bucket", bucket=bucket
        )
    engine = clerk._engine
    # us-east-1 (and Ceph) answer 200 to creating a bucket you own: ask first, to tell.
    try:
        head_bucket(clerk, bucket)
        return False
    except (BucketNotFoundError, AccessDeniedError):
        pass  # absent, or someone else's: CreateBucket says which
    params: dict[str, Any] = {"Bucket": bucket}
    region = region or clerk.settings.region
    if region and region != "us-east-1":  # us-east-1 takes no LocationConstraint
        params["CreateBucketConfiguration"] = {"LocationConstraint": region}
    try:
        engine.call("CreateBucket", bucket, None, lambda: engine.client.create_bucket(**params))
    except ObjectClerkError as exc:
        if exc.code == "BucketAlreadyOwnedByYou":
            return False
        raise
    return True


def head_bucket(clerk: ObjectClerk, bucket: str) -> None:
    """HeadBucket: a 404 (which has no body to say so) means no such bucket."""
    engine = clerk._engine
    try:
        engine.call("HeadBucket", bucket, None, lambda: engine.client.head_bucket(Bucket=bucket))
    except NotFoundError as exc:
        if isinstance(exc, BucketNotFoundError):
            raise
        raise BucketNotFoundError(
            "no such bucket", operation="HeadBucket", bucket=bucket, code=exc.code,
            status=exc.status, request_id=exc.request_id,
        ) from exc  # fmt: skip


_BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


def bucket_name_problem(bucket: str) -> str | None:
    """Why S3's naming rules refuse ``bucket`` for a new bucket, or None."""
    if not _BUCKET_NAME.fullmatch(bucket):
        return (
            "3 to 63 lower-case letters, digits, dots and hyphens, starting and ending with a"
            " letter or digit"
        )
    if ".." in bucket or re.fullmatch(r"\d+\.\d+\.\d+\.\d+", bucket):
        return "no two dots in a row, and not an IP address"
    return None


def delete_bucket(clerk: ObjectClerk, bucket: str, *, empty: bool) -> None:
    """Delete ``bucket``. With ``empty=True`` every object version and delete marker in it
    is deleted and its incomplete multipart uploads aborted first (twice, if something was
    written meanwhile)."""
    engine = clerk._engine
    head_bucket(clerk, bucket)
    for attempt in (1, 2):
        if empty:
            # Objects first: an upload completing meanwhile is then caught by the abort or,
            # once, by a second pass.
            delete_all(clerk, bucket, "", versions=True, on_deleted=None, operation=OPERATION)
            abort_stale_uploads(clerk, bucket, None, prefix="", dry_run=False)
        try:
            engine.call(
                "DeleteBucket", bucket, None, lambda: engine.client.delete_bucket(Bucket=bucket)
            )
            return
        except BucketNotFoundError:
            # It existed a moment ago: an earlier attempt deleted it and its answer was lost.
            return
        except ObjectClerkError as exc:
            if exc.code != "BucketNotEmpty":
                raise
            if empty and attempt == 1:
                continue  # something was written meanwhile: empty it again, once
            raise RequestRejectedError(
                "the bucket is not empty: pass empty=True to delete its objects, versions"
                " and incomplete uploads first"
                if not empty
                else "the bucket is still not empty: something keeps writing to it",
                operation=OPERATION,
                bucket=bucket,
                code=exc.code,
                status=exc.status,
            ) from exc


def delete_all(
    clerk: ObjectClerk,
    bucket: str,
    prefix: str,
    *,
    versions: bool,
    on_deleted: Callable[[str], object] | None,
    dry_run: bool = False,
    operation: str = "delete_prefix",
) -> int:
    """Delete every key under ``prefix`` (with ``versions``, every version and delete
    marker), a listing page per DeleteObjects batch. Returns how many were deleted;
    ``on_deleted`` is told each key. ``dry_run`` lists what would go, and deletes nothing."""
    assert not (versions and dry_run), "a dry run lists keys, not versions"
    refused: set[Target] = set()  # versions a batch could not delete: listed again, skipped
    pages = _versions(clerk, bucket, prefix, refused) if versions else _keys(clerk, bucket, prefix)
    deleted = 0
    errors: list[ObjectClerkError] = []
    for batch in pages:
        if not batch:
            continue
        failed = {} if dry_run else _delete_batch(clerk, bucket, batch)
        for key, version in batch:
            # Some stores (moto) leave the version out of an error: match by key then.
            error = failed.get((key, version)) or failed.get((key, None))
            if error is not None:
                errors.append(error)
                refused.add((key, version))
                continue
            deleted += 1
            if on_deleted is not None:
                on_deleted(key)
    if errors:
        raise BulkTransferError(
            f"{len(errors)} key(s) could not be deleted, {deleted} were; the first: {errors[0]}",
            errors=errors,
            operation=operation,
            bucket=bucket,
        ) from errors[0]
    return deleted


def _delete_batch(
    clerk: ObjectClerk, bucket: str, batch: list[Target]
) -> dict[Target, ObjectClerkError]:
    engine = clerk._engine
    objects = [
        {"Key": key} if version is None else {"Key": key, "VersionId": version}
        for key, version in batch
    ]
    response = engine.call(
        "DeleteObjects",
        bucket,
        None,
        lambda: engine.client.delete_objects(
            Bucket=bucket,
            Delete={"Objects": objects, "Quiet": True},  # type: ignore[typeddict-item]
        ),
    )
    failed: dict[Target, ObjectClerkError] = {}
    for error in response.get("Errors", []):
        key = error.get("Key", "")
        # Typed as the same answer to a single DeleteObject would be (AccessDenied...).
        answer = ClientError(
            {"Error": {"Code": error.get("Code", ""), "Message": error.get("Message", "")}},
            "DeleteObjects",
        )
        failed[(key, error.get("VersionId"))] = translate_error(
            answer, operation="DeleteObjects", bucket=bucket, key=key
        )
    return failed


def _keys(clerk: ObjectClerk, bucket: str, prefix: str) -> Iterator[list[Target]]:
    page: list[Target] = []
    for entry in clerk.list_objects(bucket, prefix=prefix):
        page.append((entry["Key"], None))
        if len(page) == clerk.list_objects_page_size:
            yield page
            page = []
    yield page


def _versions(
    clerk: ObjectClerk, bucket: str, prefix: str, refused: set[Target]
) -> Iterator[list[Target]]:
    """Pages of versions and delete markers to delete. After a batch is deleted the listing
    starts again from the beginning: Ceph RGW 16, given a version marker that names a
    version deleted meanwhile, skips the rest of that key's versions. Versions in
    ``refused`` (their delete failed) are passed over with markers."""
    engine = clerk._engine
    params: dict[str, Any] = {"Bucket": bucket, "MaxKeys": clerk.list_objects_page_size}
    if prefix:
        params["Prefix"] = prefix
    previous: list[Target] = []
    while True:
        page: dict[str, Any] = engine.call(
            "ListObjectVersions",
            bucket,
            None,
            lambda: dict(engine.client.list_object_versions(**params)),
        )
        if "IsTruncated" not in page:
            raise ServerError(
                "ListObjectVersions answered without IsTruncated: not a valid listing",
                operation="ListObjectVersions",
                bucket=bucket,
            )
        listed = [
            (entry["Key"], entry.get("VersionId"))
            for kind in ("Versions", "DeleteMarkers")
            for entry in page.get(kind, [])
        ]
        batch = [target for target in listed if target not in refused]
        if batch:
            if batch == previous:
                raise ServerError(
                    "ListObjectVersions still lists versions DeleteObjects reported deleted",
                    operation="ListObjectVersions",
                    bucket=bucket,
                )
            previous = batch
            yield batch
            params.pop("KeyMarker", None)
            params.pop("VersionIdMarker", None)
            continue
        if not page.get("IsTruncated"):
            return
        key_marker, version_marker = page.get("NextKeyMarker"), page.get("NextVersionIdMarker")
        if not key_marker and not version_marker:
            return
        params["KeyMarker"], params["VersionIdMarker"] = key_marker or "", version_marker or ""
