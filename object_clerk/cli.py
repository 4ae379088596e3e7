"""The ``object-clerk`` command line: a thin layer over the library's calls.

Paths are the AWS CLI's (``s3://bucket/key``) and the habits rclone's (``--dry-run``,
``--progress``). Every command prints one line per object (``--json``: one JSON object per
line), and an error as one line naming the object, with no traceback unless ``--debug``.
Exit codes are in :data:`EXIT_CODES`.

Needs the ``cli`` extra: ``pip install 'object-clerk[cli]'`` (click and tqdm).
"""

from __future__ import annotations

import errno
import functools
import json
import logging
import os
import sys
import traceback
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from object_clerk.bulk import (
    BulkReport,
    BulkTransferError,
    content_type,
    directory_prefix,
    local_etag,
)
from object_clerk.checks import CheckStatus, ObjectCheck
from object_clerk.clerk import ObjectClerk
from object_clerk.engine import TransferResult
from object_clerk.errors import (
    AccessDeniedError,
    ChecksumMismatchError,
    ConfigurationError,
    InvalidRequestError,
    LocalIOError,
    NotFoundError,
    ObjectClerkError,
    SourceChangedError,
    TLSError,
    UnverifiableObjectError,
    UnverifiableObjectWarning,
)
from object_clerk.etag import PartLayout, plan_parts
from object_clerk.settings import load_settings

F = TypeVar("F", bound=Callable[..., Any])
ByteCallback = Callable[[int], object]
ObjectCallback = Callable[[int, "int | None"], object]

EXIT_OK = 0
EXIT_MISMATCH = 1
EXIT_USAGE = 2
EXIT_UNVERIFIABLE = 3
EXIT_NOT_FOUND = 4
EXIT_DENIED = 5
EXIT_FAILED = 6
EXIT_LOCAL = 7
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, as a shell reports a program a closed pipe ended

EXIT_CODES = {
    EXIT_OK: "success: everything done, every byte verified",
    EXIT_MISMATCH: "verification failed: a mismatch, a corrupt object",
    EXIT_USAGE: "usage error: bad arguments, options or configuration",
    EXIT_UNVERIFIABLE: "unverifiable: nothing contradicted the bytes, but nothing proved them",
    EXIT_NOT_FOUND: "not found: no such bucket, object, file or directory",
    EXIT_DENIED: "refused: access denied, bad credentials, or a TLS failure",
    EXIT_FAILED: "the store or the network failed (after the retries)",
    EXIT_LOCAL: "a local file or directory could not be read or written",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C)",
    EXIT_BROKEN_PIPE: "the output was closed by its reader (a pipe to head, say)",
}

logger = logging.getLogger("object_clerk")

_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "kib": 1024,
    "m": 1000**2,
    "mb": 1000**2,
    "mib": 1024**2,
    "g": 1000**3,
    "gb": 1000**3,
    "gib": 1024**3,
}
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


class SizeType(click.ParamType):  # type: ignore[type-arg]
    """A byte count: ``8388608``, ``8MiB``, ``16MB``, ``5m`` (m and k are SI, as in dd)."""

    name = "size"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        text = str(value).strip().lower()
        digits = text.rstrip("abcdefghijklmnopqrstuvwxyz")
        unit = text[len(digits) :]
        number = _number(digits)
        size = int(number * _SIZE_UNITS[unit]) if number is not None and unit in _SIZE_UNITS else 0
        if size < 1 or size > 5 * 1024**4:  # S3's largest object
            self.fail(f"{value!r} is not a size from 1 byte to 5 TiB (such as 8MiB)", param, ctx)
        return size


class DurationType(click.ParamType):  # type: ignore[type-arg]
    """A duration: ``90s``, ``30m``, ``12h``, ``1d``, ``2w``; a bare number is seconds."""

    name = "duration"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> timedelta:
        if isinstance(value, timedelta):
            return value
        text = str(value).strip().lower()
        unit = text[-1:] if text[-1:] in _DURATION_UNITS else "s"
        digits = text[:-1] if text[-1:] in _DURATION_UNITS else text
        number = _number(digits)
        if number is None or number < 0 or number * _DURATION_UNITS[unit] > 100 * 365 * 86400:
            self.fail(f"{value!r} is not a duration (such as 1d, 12h or 30m)", param, ctx)
        return timedelta(seconds=float(number * _DURATION_UNITS[unit]))


def _number(text: str) -> Decimal | None:
    """A finite decimal number, or None."""
    try:
        number = Decimal(text)
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


SIZE = SizeType()
DURATION = DurationType()


# ------------------------------------------------------------------ locations ----


@dataclass(frozen=True)
class Remote:
    bucket: str
    key: str

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


def location(value: str, *, what: str = "path") -> Remote | Path:
    """``s3://bucket/key`` as a Remote, anything else as a local path."""
    if value.startswith("s3://"):
        bucket, _, key = value[len("s3://") :].partition("/")
        if not bucket:
            raise click.UsageError(f"{what} {value!r} names no bucket (s3://bucket/key)")
        return Remote(bucket, key)
    if "://" in value:
        raise click.UsageError(f"{what} {value!r}: only s3:// and local paths are supported")
    return Path(value)


def remote(value: str, *, what: str = "path") -> Remote:
    found = location(value, what=what)
    if not isinstance(found, Remote):
        raise click.UsageError(f"{what} must be s3://bucket[/key], got {value!r}")
    return found


def remote_of(where: Remote | Path) -> Remote:
    assert isinstance(where, Remote)
    return where


def object_of(value: str, *, what: str = "object") -> Remote:
    found = remote(value, what=what)
    if not found.key or found.key.endswith("/"):
        raise click.UsageError(f"{what} must be s3://bucket/key, got {value!r}")
    return found


# ------------------------------------------------------------------ output ----


@dataclass
class Cli:
    """The common options, the clerk they build, and the output they ask for."""

    endpoint_url: str | None = None
    region: str | None = None
    profile: str | None = None
    ca_bundle: str | None = None
    no_verify_ssl: bool = False
    jobs: int | None = None
    as_json: bool = False
    quiet: bool = False
    progress: bool | None = None
    debug: bool = False
    strict: bool = False  # a move: an object nothing can prove is an error, not a warning
    _clerk: ObjectClerk | None = field(default=None, repr=False)
    _bars: list[tqdm[Any]] = field(default_factory=list, repr=False)

    @property
    def clerk(self) -> ObjectClerk:
        if self._clerk is None:
            overrides: dict[str, Any] = {
                "endpoint_url": self.endpoint_url,
                "region": self.region,
                "profile": self.profile,
                "ca_bundle": self.ca_bundle,
            }
            if self.no_verify_ssl:
                overrides["verify_tls"] = False
            if self.strict:
                overrides["strict_verification"] = True
            if self.jobs is not None:  # on top of the configured transfer settings
                settings = load_settings()
                overrides["upload_config"] = {
                    **settings.s3_upload_config,
                    "max_concurrency": self.jobs,
                }
                overrides["download_config"] = {
                    **settings.s3_download_config,
                    "max_concurrency": self.jobs,
                }
            self._clerk = ObjectClerk(**{k: v for k, v in overrides.items() if v is not None})
        return self._clerk

    @property
    def show_progress(self) -> bool:
        if self.progress is not None:
            return self.progress
        return not (self.quiet or self.as_json) and sys.stderr.isatty()

    def emit(self, line: str, record: Mapping[str, Any], *, always: bool = False) -> None:
        """One result: ``line`` for people, ``record`` as a JSON line with ``--json``.
        ``--quiet`` drops it unless ``always``."""
        if self.quiet and not always:
            return
        text = json.dumps(record, default=_json_default) if self.as_json else line
        if self._bars:
            tqdm.write(text, file=sys.stdout)
        else:
            click.echo(text)

    @contextmanager
    def bars(
        self, *, total: int | None = None, objects: bool = False
    ) -> Iterator[tuple[ByteCallback | None, ObjectCallback | None]]:
        """Progress bars on stderr while the block runs: bytes (with rate and time left when
        ``total`` is known) and, for bulk calls, objects. Yields the byte callback and the
        object callback to pass on, or Nones when progress is off."""
        if not self.show_progress:
            yield None, None
            return
        options: dict[str, Any] = {"file": sys.stderr, "dynamic_ncols": True, "leave": True}
        data = tqdm(
            total=total, unit="B", unit_scale=True, unit_divisor=1024, desc="bytes", **options
        )
        self._bars.append(data)
        counted: tqdm[Any] | None = None
        if objects:
            counted = tqdm(total=None, unit="obj", desc="objects", position=1, **options)
            self._bars.append(counted)

        def on_objects(done: int, total_objects: int | None) -> None:
            assert counted is not None
            if total_objects is not None and counted.total != total_objects:
                counted.total = total_objects
            counted.update(done - counted.n)

        try:
            with logging_redirect_tqdm(loggers=[logger]):  # log lines above the bars
                yield data.update, (on_objects if counted is not None else None)
        finally:
            for bar in reversed(self._bars):
                bar.close()
            self._bars.clear()


def _json_default(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if hasattr(value, "value"):  # an Enum
        return value.value
    return str(value)


def _common(fn: F) -> F:
    """The options every command takes, gathered into a :class:`Cli` passed first."""

    @functools.wraps(fn)
    def wrapper(**kwargs: Any) -> Any:
        names = (
            "endpoint_url", "region", "profile", "ca_bundle", "no_verify_ssl", "jobs",
            "as_json", "quiet", "progress", "debug",
        )  # fmt: skip
        cli = Cli(**{name: kwargs.pop(name) for name in names})
        click.get_current_context().meta["object_clerk.cli"] = cli
        _configure_logging(cli)
        return fn(cli, **kwargs)

    options = [
        click.option("--endpoint-url", metavar="URL", help="The store's http(s)://host:port."),
        click.option("--region", help="The region (default: the settings, then boto3's)."),
        click.option("--profile", help="A profile of ~/.aws/config and ~/.aws/credentials."),
        click.option(
            "--ca-bundle",
            type=click.Path(dir_okay=False),
            help="A CA bundle to verify TLS against.",
        ),
        click.option("--no-verify-ssl", is_flag=True, help="Do not verify TLS certificates."),
        click.option(
            "--jobs", "-j", type=click.IntRange(min=1), help="Requests (and objects) at once."
        ),
        click.option("--json", "as_json", is_flag=True, help="One JSON object per line."),
        click.option("--quiet", "-q", is_flag=True, help="Print only errors and problems."),
        click.option(
            "--progress/--no-progress",
            default=None,
            help="Progress bars on stderr (default: when stderr is a terminal).",
        ),
        click.option("--debug", is_flag=True, help="Debug logging, and tracebacks on errors."),
    ]
    for option in reversed(options):
        wrapper = option(wrapper)
    return wrapper  # type: ignore[return-value]


def _configure_logging(cli: Cli) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("object-clerk: %(levelname)s: %(message)s"))
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.DEBUG if cli.debug else logging.ERROR if cli.quiet else logging.WARNING)
    # Each retry is logged as a warning; here only --debug shows them (the outcome is
    # printed either way, and the progress bar shows a stall).
    logging.getLogger("object_clerk.retry").setLevel(logging.NOTSET if cli.debug else logging.ERROR)
    # The logger already says it; the warning would say it twice.
    warnings.simplefilter("ignore", UnverifiableObjectWarning)
    if cli.no_verify_ssl:
        import urllib3

        warnings.simplefilter("ignore", urllib3.exceptions.InsecureRequestWarning)
        logger.warning("TLS certificates are not verified (--no-verify-ssl)")


# ------------------------------------------------------------------ errors ----


def exit_code(exc: BaseException) -> int:
    if isinstance(exc, BulkTransferError) and exc.errors:
        # The worst of its failures, whatever order they came in.
        return max((exit_code(error) for error in exc.errors), key=_WORST.index)
    if isinstance(exc, ChecksumMismatchError):
        return EXIT_MISMATCH
    if isinstance(exc, UnverifiableObjectError):
        return EXIT_UNVERIFIABLE
    if isinstance(exc, (ConfigurationError, InvalidRequestError)):
        return EXIT_USAGE
    if isinstance(exc, NotFoundError):
        return EXIT_NOT_FOUND
    if isinstance(exc, LocalIOError):
        return EXIT_NOT_FOUND if exc.errno == errno.ENOENT else EXIT_LOCAL
    if isinstance(exc, SourceChangedError):
        return EXIT_LOCAL
    if isinstance(exc, (AccessDeniedError, TLSError)):
        return EXIT_DENIED
    if isinstance(exc, ObjectClerkError) and exc.code in {
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
    }:
        return EXIT_DENIED
    if isinstance(exc, OSError):
        return EXIT_LOCAL
    return EXIT_FAILED


# Exit codes from the least to the most serious, for a run that meets several.
_WORST = [
    EXIT_OK, EXIT_NOT_FOUND, EXIT_UNVERIFIABLE, EXIT_LOCAL, EXIT_FAILED, EXIT_DENIED,
    EXIT_USAGE, EXIT_MISMATCH, EXIT_INTERRUPTED,
]  # fmt: skip


class _Group(click.Group):
    """Turns the library's errors into one line and an exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except KeyboardInterrupt:
            click.echo("object-clerk: interrupted", err=True)
            sys.exit(EXIT_INTERRUPTED)
        except BrokenPipeError:
            # The reader of our output went away (| head): stop quietly, as cat does.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(EXIT_BROKEN_PIPE)
        except (ObjectClerkError, OSError) as exc:
            cli = ctx.meta.get("object_clerk.cli")
            if cli is not None and cli.debug:
                traceback.print_exc()
            fail(exc)


def fail(exc: BaseException) -> NoReturn:
    message = str(exc)
    if isinstance(exc, BulkTransferError) and len(exc.errors) > 1:
        message = f"{message} (and {len(exc.errors) - 1} more)"
    click.echo(f"object-clerk: error: {message}", err=True)
    sys.exit(exit_code(exc))


# ------------------------------------------------------------------ commands ----


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="object-clerk", prog_name="object-clerk")
def main() -> None:
    """Verified S3 transfers, checks and scrubs from the shell.

    \b
    Exit codes:
      0  success: everything done, every byte verified
      1  verification failed: a mismatch, a corrupt object
      2  usage error: bad arguments, options or configuration
      3  unverifiable: nothing contradicted the bytes, but nothing proved them
      4  not found: no such bucket, object, file or directory
      5  refused: access denied, bad credentials, or a TLS failure
      6  the store or the network failed (after the retries)
      7  a local file or directory could not be read or written

    Settings not given as options come from the environment and .env (OBJECT_CLERK_*).
    """


@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--part-size", type=SIZE, help="The ETag of a multipart upload in parts of SIZE.")
@click.option(
    "--threshold", type=SIZE, help="As uploaded with MULTIPART_THRESHOLD=SIZE (parts of SIZE)."
)
@click.option("--like", metavar="s3://BUCKET/KEY", help="In that object's layout, and compare.")
@_common
def etag(
    cli: Cli, file: str, part_size: int | None, threshold: int | None, like: str | None
) -> None:
    """The ETag of FILE: as this clerk would upload it (MULTIPART_THRESHOLD), in a given
    layout, or --like an object's (then match or mismatch, with no download)."""
    if like is not None:
        if part_size is not None or threshold is not None:
            raise click.UsageError("--like takes no --part-size or --threshold")
        _verify_file(cli, file, object_of(like, what="--like"))
        return
    if part_size is not None and threshold is not None:
        raise click.UsageError("give --part-size or --threshold, not both")
    size = _file_size(file)
    if part_size is None:
        if threshold is None:
            transfer = load_settings().transfer()
            layout = plan_parts(size, transfer.multipart_threshold, transfer.upload_chunksize)
        else:
            layout = plan_parts(size, threshold, threshold)
        part_size = layout.part_size
    etag = local_etag(file, part_size)
    parts = PartLayout(size, part_size).part_count if part_size else 0
    cli.emit(
        f"{etag}  {file}",
        {"file": file, "etag": etag, "size": size, "part_size": part_size, "parts": parts},
        always=True,
    )


@main.command()
@click.argument("first")
@click.argument("second", required=False)
@click.option("--include", multiple=True, help="Only keys matching this glob (repeatable).")
@click.option("--exclude", multiple=True, help="Not keys matching this glob (repeatable).")
@_common
def verify(
    cli: Cli, first: str, second: str | None, include: tuple[str, ...], exclude: tuple[str, ...]
) -> None:
    """Check FILE against s3://BUCKET/KEY (no download), or scrub s3://BUCKET/PREFIX:
    read every object under it and prove its bytes against its ETag or checksum."""
    if second is not None:
        if isinstance(location(first), Remote):
            raise click.UsageError("verify FILE s3://BUCKET/KEY: the file comes first")
        _verify_file(cli, first, object_of(second))
        return
    where = remote(first)
    worst = EXIT_OK

    def on_check(check: ObjectCheck) -> None:
        nonlocal worst
        worst = max(worst, _severity(check.status), key=_rank)
        line = f"{check.status.value:<12} s3://{check.bucket}/{check.key}"
        detail = check.proof if check.ok else check.reason
        cli.emit(
            f"{line}  ({detail})" if detail else line, _check_record(check), always=not check.ok
        )

    with cli.bars(objects=True) as (on_bytes, on_objects):
        report = cli.clerk.verify_objects(
            where.bucket,
            where.key,
            include=include or None,
            exclude=exclude or None,
            on_check=on_check,
            max_concurrency=cli.jobs,
            callback=on_bytes,
            object_callback=on_objects,
        )
    if not report.checked:
        raise NotFoundError(
            f"no key starts with {where.key!r}", operation="verify", bucket=where.bucket
        )
    counts = {status.value: report.count(status) for status in CheckStatus}
    summary = ", ".join(f"{n} {name}" for name, n in counts.items() if n or name == "ok")
    cli.emit(
        f"checked {report.checked} object(s), {_human(report.bytes)}: {summary}",
        {"summary": {"checked": report.checked, "bytes": report.bytes, **counts}},
        always=worst != EXIT_OK,
    )
    sys.exit(worst)


def _severity(status: CheckStatus) -> int:
    return {
        CheckStatus.OK: EXIT_OK,
        CheckStatus.MISSING: EXIT_OK,
        CheckStatus.MISMATCH: EXIT_MISMATCH,
        CheckStatus.CORRUPT: EXIT_MISMATCH,
        CheckStatus.UNVERIFIABLE: EXIT_UNVERIFIABLE,
        CheckStatus.ERROR: EXIT_FAILED,
    }[status]


def _rank(code: int) -> int:
    """Which exit code wins when a scrub finds several things: corruption first."""
    return {EXIT_OK: 0, EXIT_UNVERIFIABLE: 1, EXIT_FAILED: 2, EXIT_MISMATCH: 3}[code]


def _verify_file(cli: Cli, file: str, target: Remote) -> None:
    check = cli.clerk.verify_file(file, target.bucket, target.key)
    word = {CheckStatus.OK: "match", CheckStatus.MISMATCH: "mismatch"}.get(
        check.status, check.status.value
    )
    etags = (
        check.etag if check.ok else f"local {check.local_etag or '-'}, object {check.etag or '-'}"
    )
    cli.emit(
        f"{word:<12} {file}  {etags}  ({check.reason})",
        {**_check_record(check), "result": word},
        always=True,
    )
    sys.exit(_severity(check.status))


def _check_record(check: ObjectCheck) -> dict[str, Any]:
    record: dict[str, Any] = {
        "status": check.status.value,
        "bucket": check.bucket,
        "key": check.key,
        "size": check.size,
        "etag": check.etag,
    }
    if check.proof:
        record["proof"] = check.proof
    if check.reason:
        record["reason"] = check.reason
    if check.path is not None:
        record["file"] = check.path
        record["local_etag"] = check.local_etag
    return record


def _transfer_options(fn: F) -> F:
    for option in reversed(
        [
            click.argument("source"),
            click.argument("destination"),
            click.option(
                "--recursive", "-r", is_flag=True, help="Every object under a prefix or directory."
            ),
            click.option("--include", multiple=True, help="Only names matching this glob."),
            click.option("--exclude", multiple=True, help="Not names matching this glob."),
        ]
    ):
        fn = option(fn)
    return fn


@main.command()
@_transfer_options
@_common
def cp(
    cli: Cli,
    source: str,
    destination: str,
    recursive: bool,
    include: tuple[str, ...],
    exclude: tuple[str, ...],
) -> None:
    """Copy, verified: a file to s3://BUCKET/KEY, an object to a file, or an object to
    another; with --recursive, a directory or a prefix."""
    _transfer(cli, source, destination, recursive, include, exclude, move=False)


@main.command()
@_transfer_options
@_common
def mv(
    cli: Cli,
    source: str,
    destination: str,
    recursive: bool,
    include: tuple[str, ...],
    exclude: tuple[str, ...],
) -> None:
    """Move, verified: as cp, then each source is deleted once its copy is proven."""
    cli.strict = True  # a move keeps a source nothing could prove (exit 3)
    _transfer(cli, source, destination, recursive, include, exclude, move=True)


def _transfer(
    cli: Cli,
    source: str,
    destination: str,
    recursive: bool,
    include: tuple[str, ...],
    exclude: tuple[str, ...],
    *,
    move: bool,
) -> None:
    src, dst = location(source, what="source"), location(destination, what="destination")
    if isinstance(src, Path) and isinstance(dst, Path):
        raise click.UsageError("one side must be s3://bucket/key; both are local")
    if recursive:
        _transfer_many(cli, src, dst, include, exclude, move=move)
        return
    if include or exclude:
        raise click.UsageError("--include and --exclude go with --recursive")
    clerk = cli.clerk
    if isinstance(src, Path):
        assert isinstance(dst, Remote)
        if not src.is_file():
            if src.is_dir():
                raise click.UsageError(f"{src} is a directory: use --recursive")
            _file_size(str(src))  # names the problem
        target = Remote(dst.bucket, _into(dst.key, src.name))
        with cli.bars(total=_file_size(str(src))) as (on_bytes, _):
            result = clerk.upload_object(
                str(src), target.bucket, target.key, content_type=content_type(src.name),
                delete_source=move, callback=on_bytes,
            )  # fmt: skip
        verb = "move" if move else "upload"
        _emit_transfer(cli, verb, str(src), str(target), result.size, result.verification)
        _finish([result])
        return
    if not src.key or src.key.endswith("/"):
        raise click.UsageError(f"{source} is a prefix: use --recursive")
    if isinstance(dst, Path):
        name = src.key.rsplit("/", 1)[-1]
        if _is_directory(dst, destination) and name in ("", ".", ".."):
            raise click.UsageError(f"the key {src.key!r} names no file: give the file's name")
        path = dst / name if _is_directory(dst, destination) else dst
        with cli.bars(total=_size_for_bar(cli, src)) as (on_bytes, _):
            result = clerk.download_object(
                src.bucket, src.key, str(path), delete_source=move, callback=on_bytes
            )
        verb = "move" if move else "download"
        _emit_transfer(cli, verb, str(src), str(path), result.size, result.verification)
        _finish([result])
        return
    target = Remote(dst.bucket, _into(dst.key, src.key.rsplit("/", 1)[-1]))
    with cli.bars(total=_size_for_bar(cli, src)) as (on_bytes, _):
        call = clerk.move_object if move else clerk.copy_object
        result = call(src.bucket, src.key, target.bucket, target.key, callback=on_bytes)
    verb = "move" if move else "copy"
    _emit_transfer(cli, verb, str(src), str(target), result.size, result.verification)
    _finish([result])


def _size_for_bar(cli: Cli, src: Remote) -> int | None:
    """The object's size, for the bar's time left: a HEAD, asked only when a bar is drawn."""
    if not cli.show_progress:
        return None
    return int(cli.clerk.get_object_info(src.bucket, src.key).get("content-length") or 0)


def _transfer_many(
    cli: Cli,
    src: Remote | Path,
    dst: Remote | Path,
    include: tuple[str, ...],
    exclude: tuple[str, ...],
    *,
    move: bool,
) -> None:
    clerk = cli.clerk
    if isinstance(src, Path) and not src.is_dir():
        if not src.exists():
            _file_size(str(src))  # names the problem
        raise click.UsageError(f"--recursive needs a directory, got {src}")
    # Where each result's object came from and went, by its key relative to the prefix.
    if isinstance(src, Path):
        verb, base = "upload", directory_prefix(remote_of(dst).key)
    elif isinstance(dst, Path):
        verb, base = "download", directory_prefix(src.key)
    else:
        verb, base = "copy", directory_prefix(dst.key)

    def ends(result: TransferResult) -> tuple[str, str]:
        rel = result.key[len(base) :]
        if isinstance(src, Path):
            return str(src / rel), f"s3://{remote_of(dst).bucket}/{base}{rel}"
        if isinstance(dst, Path):
            return f"s3://{src.bucket}/{base}{rel}", str(dst / rel)
        return (
            f"s3://{src.bucket}/{directory_prefix(src.key)}{rel}",
            f"s3://{dst.bucket}/{base}{rel}",
        )

    verb = "move" if move else verb
    report: BulkReport
    with cli.bars(objects=True) as (on_bytes, on_objects):
        common: dict[str, Any] = {
            "include": include or None,
            "exclude": exclude or None,
            "delete_source": move,
            "max_concurrency": cli.jobs,
            "callback": on_bytes,
            "object_callback": on_objects,
        }
        try:
            if isinstance(src, Path):
                assert isinstance(dst, Remote)
                report = clerk.upload_directory(src, dst.bucket, dst.key, **common)
            elif isinstance(dst, Path):
                report = clerk.download_prefix(src.bucket, src.key, dst, **common)
            else:
                report = clerk.copy_prefix(src.bucket, src.key, dst.bucket, dst.key, **common)
        except BulkTransferError as exc:
            _report_bulk(cli, exc.report, verb, ends)
            raise
    _report_bulk(cli, report, verb, ends)
    if isinstance(src, Remote) and not report.objects and not report.skipped:
        raise NotFoundError(
            f"no object under {directory_prefix(src.key)!r}", operation=verb, bucket=src.bucket
        )
    _finish(report.transferred)


def _finish(results: list[TransferResult]) -> None:
    """Exit 3 when a transfer's bytes could not be proven (it said so on its line)."""
    if any(result.verification == "unverifiable" for result in results):
        sys.exit(EXIT_UNVERIFIABLE)


def _report_bulk(
    cli: Cli,
    report: BulkReport,
    verb: str,
    ends: Callable[[TransferResult], tuple[str, str]],
) -> None:
    for result in report.transferred:
        source, target = ends(result)
        _emit_transfer(cli, verb, source, target, result.size, result.verification)
    for skipped in report.skipped:
        cli.emit(
            f"skipped: {skipped.name} ({skipped.reason})",
            {"operation": "skip", "name": skipped.name, "reason": skipped.reason},
        )
    cli.emit(
        f"{report.objects} object(s), {_human(report.bytes)}; {len(report.skipped)} skipped",
        {"summary": {"objects": report.objects, "bytes": report.bytes,
                     "skipped": len(report.skipped)}},
    )  # fmt: skip


def _emit_transfer(
    cli: Cli,
    verb: str,
    source: str,
    target: str,
    size: int,
    verification: str,
) -> None:
    cli.emit(
        f"{verb}: {source} to {target}  ({_human(size)}, {verification})",
        {"operation": verb, "source": source, "target": target, "size": size,
         "verification": verification},
    )  # fmt: skip


def _into(key: str, name: str) -> str:
    """The key a file named ``name`` lands on: ``key``, or ``key`` + name for a "directory"
    (empty, or ending in ``/``), as the AWS CLI does."""
    return key + name if not key or key.endswith("/") else key


def _is_directory(path: Path, written: str) -> bool:
    return path.is_dir() or written.endswith(("/", os.sep))


def _file_size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError as exc:
        raise LocalIOError(
            f"cannot read {path}: {exc.strerror or exc}", errno=exc.errno, path=path
        ) from exc


@main.command()
@click.argument("target")
@click.option("--recursive", "-r", is_flag=True, help="Every object under the prefix.")
@click.option("--dry-run", is_flag=True, help="Say what would be deleted; delete nothing.")
@_common
def rm(cli: Cli, target: str, recursive: bool, dry_run: bool) -> None:
    """Delete s3://BUCKET/KEY, or with --recursive every object under s3://BUCKET/PREFIX."""
    where = remote(target)
    clerk = cli.clerk
    tag = "(dry run) " if dry_run else ""
    if recursive:

        def deleted(key: str) -> None:
            cli.emit(f"{tag}delete: s3://{where.bucket}/{key}",
                     {"operation": "delete", "key": key, "dry_run": dry_run})  # fmt: skip

        count = clerk.delete_prefix(
            where.bucket, directory_prefix(where.key), dry_run=dry_run, on_deleted=deleted
        )
        if not count:
            raise NotFoundError(
                f"no object under {directory_prefix(where.key)!r}", operation="rm",
                bucket=where.bucket,
            )  # fmt: skip
        cli.emit(f"{tag}{count} object(s) deleted", {"summary": {"deleted": count}})
        return
    if not where.key or where.key.endswith("/"):
        raise click.UsageError(f"{target} is a prefix: use --recursive")
    clerk.get_object_info(where.bucket, where.key)  # a missing object is an error, here
    if not dry_run:
        clerk.delete_object(where.bucket, where.key)
    cli.emit(f"{tag}delete: {where}", {"operation": "delete", "key": where.key, "dry_run": dry_run})


@main.command()
@click.argument("target", required=False)
@click.option("--recursive", "-r", is_flag=True, help="Every key, not one level.")
@click.option(
    "--page-size", type=click.IntRange(1, 1000), default=1000, help="Keys per listing request."
)
@_common
def ls(cli: Cli, target: str | None, recursive: bool, page_size: int) -> None:
    """List buckets, or the objects under s3://BUCKET[/PREFIX] (one level, or --recursive),
    through every page."""
    clerk = cli.clerk
    if target is None:
        for bucket in clerk.list_buckets():
            created = bucket.get("CreationDate")
            when = created.strftime("%Y-%m-%d %H:%M:%S") if created else "-"
            cli.emit(f"{when}  {bucket['Name']}", bucket)
        return
    where = remote(target)
    prefix = where.key
    entries = clerk.list_objects(
        where.bucket, prefix=prefix, page_size=page_size, delimiter=None if recursive else "/"
    )
    listed = 0
    for entry in entries:
        listed += 1
        if "Prefix" in entry:
            cli.emit(f"{'PRE':>30} {entry['Prefix'][len(_parent(prefix, recursive)) :]}",
                     {"prefix": entry["Prefix"]})  # fmt: skip
            continue
        key = entry["Key"]
        when = entry["LastModified"].strftime("%Y-%m-%d %H:%M:%S")
        shown = key if recursive else key[len(_parent(prefix, recursive)) :]
        cli.emit(f"{when} {entry['Size']:>10} {shown}", {
            "key": key, "size": entry["Size"], "etag": entry.get("ETag", "").strip('"'),
            "last_modified": entry["LastModified"], "storage_class": entry.get("StorageClass"),
        })  # fmt: skip
    if not listed and prefix:
        raise NotFoundError(f"no key starts with {prefix!r}", operation="ls", bucket=where.bucket)


def _parent(prefix: str, recursive: bool) -> str:
    """What ``aws s3 ls`` leaves off a name: the prefix up to its last ``/``."""
    return "" if recursive else prefix[: prefix.rfind("/") + 1]


@main.command()
@click.argument("source")
@click.argument("destination")
@click.option("--delete", is_flag=True, help="Delete what the source lacks, after the transfers.")
@click.option("--dry-run", is_flag=True, help="Compare and report; change nothing.")
@click.option("--include", multiple=True, help="Only names matching this glob (repeatable).")
@click.option("--exclude", multiple=True, help="Not names matching this glob (repeatable).")
@_common
def sync(
    cli: Cli,
    source: str,
    destination: str,
    delete: bool,
    dry_run: bool,
    include: tuple[str, ...],
    exclude: tuple[str, ...],
) -> None:
    """Make DESTINATION hold what SOURCE holds, comparing by content (the ETag in the
    object's own layout); either side is a directory or s3://BUCKET/PREFIX."""
    src = location(source, what="source")  # refuses what is neither s3:// nor a path
    location(destination, what="destination")
    if isinstance(src, Path) and not src.is_dir():
        if not src.exists():
            _file_size(str(src))  # names the problem
        raise click.UsageError(f"the source must be a directory, got {src}")
    tag = "(dry run) " if dry_run else ""
    with cli.bars(objects=True) as (on_bytes, on_objects):
        report = cli.clerk.sync(
            source,
            destination,
            delete=delete,
            dry_run=dry_run,
            include=include or None,
            exclude=exclude or None,
            max_concurrency=cli.jobs,
            callback=on_bytes,
            object_callback=on_objects,
        )
    for change in report.changes:
        cli.emit(
            f"{tag}{change.operation.value}: {change.target}  ({change.reason})",
            {"operation": change.operation.value, "key": change.key, "target": change.target,
             "reason": change.reason, "size": change.size, "dry_run": dry_run},
        )  # fmt: skip
    for skipped in report.skipped:
        cli.emit(f"skipped: {skipped.name} ({skipped.reason})",
                 {"operation": "skip", "name": skipped.name, "reason": skipped.reason})  # fmt: skip
    counts = {op: sum(1 for c in report.changes if c.operation.value == op)
              for op in ("added", "modified", "deleted")}  # fmt: skip
    cli.emit(
        f"{tag}{counts['added']} added, {counts['modified']} modified, {counts['deleted']}"
        f" deleted, {len(report.unchanged)} unchanged, {len(report.skipped)} skipped;"
        f" {_human(report.bytes)} sent",
        {"summary": {**counts, "unchanged": len(report.unchanged),
                     "skipped": len(report.skipped), "bytes": report.bytes,
                     "dry_run": dry_run}},
    )  # fmt: skip
    _finish(report.transferred)


@main.command()
@click.argument("target")
@click.option("--abort", is_flag=True, help="Abort them (needs --older-than).")
@click.option("--older-than", type=DURATION, help="Only those initiated longer ago (1d, 12h).")
@_common
def uploads(cli: Cli, target: str, abort: bool, older_than: timedelta | None) -> None:
    """List the incomplete multipart uploads under s3://BUCKET[/PREFIX], or --abort those
    --older-than a duration."""
    where = remote(target)
    if abort and older_than is None:
        raise click.UsageError(
            "--abort needs --older-than (aborting an upload still running makes it fail)"
        )
    found = cli.clerk.abort_stale_uploads(
        where.bucket, older_than or timedelta(0), prefix=where.key, dry_run=not abort
    )
    for upload in found:
        state = "aborted" if upload.aborted else ("gone" if abort else "open")
        cli.emit(
            f"{upload.initiated:%Y-%m-%d %H:%M:%S} {state:<8} s3://{upload.bucket}/{upload.key}"
            f"  {upload.upload_id}",
            {"bucket": upload.bucket, "key": upload.key, "upload_id": upload.upload_id,
             "initiated": upload.initiated, "aborted": upload.aborted},
        )  # fmt: skip
    aborted = sum(1 for upload in found if upload.aborted)
    cli.emit(
        f"{len(found)} upload(s)" + (f", {aborted} aborted" if abort else ""),
        {"summary": {"uploads": len(found), "aborted": aborted}},
    )


def _human(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"  # pragma: no cover


if __name__ == "__main__":  # pragma: no cover
    main()
