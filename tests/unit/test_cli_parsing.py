"""The command line's own logic: sizes, durations, locations and exit codes. (The commands
themselves are tested as subprocesses against Ceph in tests/integration/test_cli.py.)"""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import click
import pytest

from object_clerk import (
    AccessDeniedError,
    BucketNotFoundError,
    BulkTransferError,
    ChecksumMismatchError,
    ConfigurationError,
    LocalIOError,
    ServerError,
    SourceChangedError,
    TLSError,
)
from object_clerk.cli import DURATION, SIZE, Remote, exit_code, location


@pytest.mark.parametrize(
    ("text", "size"),
    [("8388608", 8388608), ("8MiB", 8 << 20), ("16MB", 16_000_000), ("5m", 5_000_000),
     ("1.5GiB", 3 << 29), ("64k", 64_000)],
)  # fmt: skip
def test_sizes(text: str, size: int) -> None:
    assert SIZE.convert(text, None, None) == size


@pytest.mark.parametrize("text", ["", "lots", "8XB", "-5MiB", "0", "0.5", "1e400", "nan", "inf"])
def test_bad_sizes(text: str) -> None:
    with pytest.raises(click.BadParameter):
        SIZE.convert(text, None, None)


def test_durations() -> None:
    assert DURATION.convert("1d", None, None) == timedelta(days=1)
    assert DURATION.convert("12h", None, None) == timedelta(hours=12)
    assert DURATION.convert("90", None, None) == timedelta(seconds=90)
    assert DURATION.convert("0s", None, None) == timedelta(0)
    for bad in ("soon", "-1d", "d", "nan", "inf", "1e20d"):
        with pytest.raises(click.BadParameter):
            DURATION.convert(bad, None, None)


def test_locations() -> None:
    assert location("s3://b/k/x") == Remote("b", "k/x")
    assert location("s3://b") == Remote("b", "")
    assert location("dir/file") == Path("dir/file")
    for bad in ("s3://", "s3:///key", "gs://b/k"):
        with pytest.raises(click.UsageError):
            location(bad)


def test_exit_codes() -> None:
    assert exit_code(ChecksumMismatchError("bad")) == 1
    assert exit_code(ConfigurationError("bad")) == 2
    assert exit_code(BucketNotFoundError("gone")) == 4
    assert exit_code(LocalIOError("gone", errno=2)) == 4
    assert exit_code(LocalIOError("full", errno=28)) == 7
    assert exit_code(AccessDeniedError("no")) == 5
    assert exit_code(TLSError("no")) == 5
    assert exit_code(ServerError("down")) == 6
    assert exit_code(SourceChangedError("the file changed")) == 7
    # A move that found the copy's size different: a verification failure.
    assert exit_code(ChecksumMismatchError("size differs", algorithm="size")) == 1
    # A bulk failure exits as the worst of its failures, in any order.
    for errors in ([ServerError("down"), ChecksumMismatchError("bad")],
                   [ChecksumMismatchError("bad"), ServerError("down")]):  # fmt: skip
        assert exit_code(BulkTransferError("x", errors=errors)) == 1


def test_module_without_the_cli_extra_says_how_to_install_it() -> None:
    code = (
        "import runpy, sys; sys.modules['click'] = None;"
        " runpy.run_module('object_clerk', run_name='__main__')"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 2
    assert "pip install 'object-clerk[cli]'" in done.stderr
    assert "Traceback" not in done.stderr
