"""The ``object-clerk`` command line, run as a user runs it: a subprocess against the local
Ceph RGW, with its settings in the environment.

Each command is checked for success, a verification failure where it moves or checks bytes,
a missing object, and bad usage. Corruption is real: the scrub and the failed download read
an object whose stored bytes were changed in RADOS below S3 (``rados put --offset``), so its
ETag still claims the old content. The progress bar is checked under a pseudo-terminal.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import pty
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path
from typing import Any

import pytest

from object_clerk import compute_etag
from object_clerk.etag import MiB
from tests.servers import Backend, corrupt_at_rest

pytestmark = pytest.mark.integration

SCRIPT = Path(sys.executable).with_name("object-clerk")


@pytest.fixture
def env(ceph: Backend, tmp_path: Path) -> dict[str, str]:
    """The environment a user would set: endpoint and keys, and quick retries."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("OBJECT_CLERK_", "AWS_"))}
    return {
        **base,
        "OBJECT_CLERK_ENDPOINT_URL": ceph.endpoint,
        "OBJECT_CLERK_ACCESS_KEY": ceph.access_key,
        "OBJECT_CLERK_SECRET_KEY": ceph.secret_key,
        "OBJECT_CLERK_REGION": ceph.region,
        "OBJECT_CLERK_RETRY_TRIES": "2",
        "OBJECT_CLERK_RETRY_DELAY": "0.01",
        "OBJECT_CLERK_RETRY_JITTER": "0",
        "OBJECT_CLERK_MULTIPART_THRESHOLD": str(5 * MiB),
        # No ~/.aws of the machine's, and no .env but the test's own directory.
        "HOME": str(tmp_path),
    }


class Run:
    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        self.env, self.cwd = env, cwd

    def __call__(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [sys.executable, "-m", "object_clerk", *args],
            env={**self.env, **env},
            cwd=self.cwd,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        # Never a traceback, unless --debug asked for one.
        if "--debug" not in args:
            assert "Traceback" not in done.stderr, done.stderr
        return done


@pytest.fixture
def cli(env: dict[str, str], tmp_path: Path) -> Run:
    work = tmp_path / "work"
    work.mkdir()
    return Run(env, work)


@pytest.fixture
def bucket(ceph: Backend) -> str:
    return ceph.new_bucket("cli")


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def error_line(done: subprocess.CompletedProcess[str]) -> str:
    """The one line an error prints."""
    lines = [line for line in done.stderr.splitlines() if line.startswith("object-clerk: error")]
    assert len(lines) == 1, done.stderr
    return lines[0]


def foreign_multipart(ceph: Backend, bucket: str, key: str, data: bytes, part: int) -> None:
    """A multipart object in a layout object_clerk would never guess (Ceph ignores
    PartNumber on HEAD, so its ETag cannot be reproduced): unverifiable, not corrupt."""
    raw = ceph.raw()
    upload = raw.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    parts = []
    for number, start in enumerate(range(0, len(data), part), 1):
        etag = raw.upload_part(
            Bucket=bucket, Key=key, UploadId=upload, PartNumber=number,
            Body=data[start : start + part],
        )["ETag"]  # fmt: skip
        parts.append({"PartNumber": number, "ETag": etag})
    raw.complete_multipart_upload(
        Bucket=bucket, Key=key, UploadId=upload, MultipartUpload={"Parts": parts}
    )


# ------------------------------------------------------------------ etag ----


def test_etag_in_a_layout(cli: Run, tmp_path: Path) -> None:
    data = os.urandom(12 * MiB + 7)
    (cli.cwd / "f.bin").write_bytes(data)
    done = cli("etag", "f.bin")
    assert done.returncode == 0, done.stderr
    # The configured threshold (5 MiB here): what upload_object would produce.
    expected = compute_etag(data, threshold=5 * MiB, chunksize=5 * MiB)
    assert done.stdout == f"{expected}  f.bin\n"
    done = cli("etag", "f.bin", "--part-size", "6MiB", "--json")
    [record] = json_lines(done.stdout)
    assert record["parts"] == 3
    assert record["etag"] == compute_etag(data, threshold=1, chunksize=6 * MiB)
    done = cli("etag", "f.bin", "--threshold", "100MB")
    assert done.stdout.split()[0] == hashlib.md5(data).hexdigest()


def test_etag_bad_usage_and_missing_file(cli: Run) -> None:
    (cli.cwd / "f.bin").write_bytes(b"x")
    for args in (
        ("etag", "f.bin", "--part-size", "5MiB", "--threshold", "5MiB"),
        ("etag", "f.bin", "--part-size", "lots"),
        ("etag", "f.bin", "--like", "s3://b/k", "--part-size", "5MiB"),
        ("etag", "f.bin", "--like", "not-s3"),
        ("etag",),
    ):
        done = cli(*args)
        assert done.returncode == 2, (args, done.stderr)
    done = cli("etag", "missing.bin")
    assert done.returncode == 4
    assert "missing.bin" in error_line(done)


# ------------------------------------------------------------------ verify FILE s3://... ----


def test_verify_file_match_mismatch_unverifiable_missing(
    cli: Run, ceph: Backend, bucket: str
) -> None:
    data = os.urandom(11 * MiB)
    (cli.cwd / "f.bin").write_bytes(data)
    assert cli("cp", "f.bin", f"s3://{bucket}/f.bin").returncode == 0

    for args in (("verify", "f.bin", f"s3://{bucket}/f.bin"),
                 ("etag", "f.bin", "--like", f"s3://{bucket}/f.bin")):  # fmt: skip
        done = cli(*args)
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith("match ")
        assert compute_etag(data, threshold=5 * MiB, chunksize=5 * MiB) in done.stdout

    # Same size, one byte different: the ETag in the object's own layout differs.
    changed = bytearray(data)
    changed[6 * MiB] ^= 1
    (cli.cwd / "g.bin").write_bytes(changed)
    done = cli("verify", "g.bin", f"s3://{bucket}/f.bin", "--json")
    assert done.returncode == 1
    [record] = json_lines(done.stdout)
    assert record["result"] == "mismatch" and record["local_etag"] != record["etag"]

    foreign_multipart(ceph, bucket, "foreign.bin", data, 5 * MiB + 12345)
    done = cli("verify", "f.bin", f"s3://{bucket}/foreign.bin")
    assert done.returncode == 3, done.stdout + done.stderr
    assert done.stdout.startswith("unverifiable ")

    done = cli("verify", "f.bin", f"s3://{bucket}/nope.bin")
    assert done.returncode == 4
    assert f"s3://{bucket}/nope.bin" in error_line(done)
    assert cli("verify", f"s3://{bucket}/f.bin", "f.bin").returncode == 2
    assert cli("verify", "f.bin", f"s3://{bucket}/").returncode == 2


# ------------------------------------------------------------------ verify s3://prefix/ ----


def test_scrub_finds_exactly_the_object_corrupted_at_rest(
    cli: Run, ceph: Backend, bucket: str, ceph_env: dict[str, str]
) -> None:
    raw = ceph.raw()
    for n in range(6):
        raw.put_object(Bucket=bucket, Key=f"data/{n}.bin", Body=os.urandom(100_000 + n))
    multipart = os.urandom(12 * MiB)
    (cli.cwd / "big.bin").write_bytes(multipart)
    assert cli("cp", "big.bin", f"s3://{bucket}/data/big.bin").returncode == 0
    raw.put_object(Bucket=bucket, Key="elsewhere/x.bin", Body=b"outside the prefix")

    done = cli("verify", f"s3://{bucket}/data/", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    *checks, summary = json_lines(done.stdout)
    assert {c["key"] for c in checks} == {f"data/{n}.bin" for n in range(6)} | {"data/big.bin"}
    assert all(c["status"] == "ok" for c in checks)
    assert summary["summary"]["ok"] == 7

    before = raw.head_object(Bucket=bucket, Key="data/3.bin")["ETag"]
    corrupt_at_rest(ceph_env, bucket, "data/3.bin", offset=5000)
    assert raw.head_object(Bucket=bucket, Key="data/3.bin")["ETag"] == before  # ETag kept

    done = cli("verify", f"s3://{bucket}/data/", "--json")
    assert done.returncode == 1, done.stdout + done.stderr
    *checks, summary = json_lines(done.stdout)
    bad = [c for c in checks if c["status"] != "ok"]
    assert [(c["key"], c["status"]) for c in bad] == [("data/3.bin", "corrupt")]
    assert summary["summary"] == {
        "checked": 7, "bytes": sum(100_000 + n for n in range(6)) + 12 * MiB,
        "ok": 6, "mismatch": 0, "corrupt": 1, "unverifiable": 0, "missing": 0, "error": 0,
    }  # fmt: skip

    # People see one line per object and the summary; --quiet keeps only the problems.
    done = cli("verify", f"s3://{bucket}/data/", "--quiet")
    assert done.returncode == 1
    assert done.stdout.splitlines()[0].startswith(f"corrupt      s3://{bucket}/data/3.bin")
    assert done.stdout.splitlines()[-1].startswith("checked 7 object(s)")
    assert len(done.stdout.splitlines()) == 2


def test_scrub_unverifiable_missing_bucket_and_usage(cli: Run, ceph: Backend, bucket: str) -> None:
    foreign_multipart(ceph, bucket, "p/foreign.bin", os.urandom(11 * MiB), 5 * MiB + 999)
    ceph.raw().put_object(Bucket=bucket, Key="p/fine.txt", Body=b"fine")
    done = cli("verify", f"s3://{bucket}/p/")
    assert done.returncode == 3, done.stdout + done.stderr
    assert f"unverifiable s3://{bucket}/p/foreign.bin" in done.stdout
    assert f"ok           s3://{bucket}/p/fine.txt  (md5)" in done.stdout

    done = cli("verify", f"s3://{bucket}/nothing-here/")
    assert done.returncode == 4 and "nothing-here" in error_line(done)
    done = cli("verify", "s3://no-such-bucket-here/")
    assert done.returncode == 4
    assert "no-such-bucket-here" in error_line(done)
    assert cli("verify", "local-only").returncode == 2
    assert cli("verify").returncode == 2


# ------------------------------------------------------------------ cp / mv ----


def test_cp_up_down_across_and_recursive(cli: Run, ceph: Backend, bucket: str) -> None:
    data = os.urandom(7 * MiB)
    (cli.cwd / "f.bin").write_bytes(data)
    done = cli("cp", "f.bin", f"s3://{bucket}/in/")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"upload: f.bin to s3://{bucket}/in/f.bin")
    assert "multipart-md5" in done.stdout
    raw = ceph.raw()
    assert raw.get_object(Bucket=bucket, Key="in/f.bin")["Body"].read() == data

    assert cli("cp", f"s3://{bucket}/in/f.bin", "back.bin").returncode == 0
    assert (cli.cwd / "back.bin").read_bytes() == data
    assert cli("cp", f"s3://{bucket}/in/f.bin", f"s3://{bucket}/other/g.bin").returncode == 0
    assert raw.get_object(Bucket=bucket, Key="other/g.bin")["Body"].read() == data

    tree = cli.cwd / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "a.txt").write_text("a")
    (tree / "sub" / "b.txt").write_text("b")
    done = cli("cp", "-r", "tree", f"s3://{bucket}/t", "--json")
    assert done.returncode == 0, done.stderr
    *records, summary = json_lines(done.stdout)
    assert {r["target"] for r in records} == {
        f"s3://{bucket}/t/a.txt",
        f"s3://{bucket}/t/sub/b.txt",
    }
    assert summary["summary"]["objects"] == 2
    done = cli("cp", "--recursive", f"s3://{bucket}/t/", "down")
    assert done.returncode == 0, done.stderr
    assert (cli.cwd / "down" / "sub" / "b.txt").read_text() == "b"
    done = cli("cp", "-r", f"s3://{bucket}/t/", f"s3://{bucket}/t2/")
    assert done.returncode == 0, done.stderr
    assert raw.get_object(Bucket=bucket, Key="t2/sub/b.txt")["Body"].read() == b"b"


def test_cp_failures(cli: Run, ceph: Backend, bucket: str, ceph_env: dict[str, str]) -> None:
    ceph.raw().put_object(Bucket=bucket, Key="rotten.bin", Body=os.urandom(300_000))
    corrupt_at_rest(ceph_env, bucket, "rotten.bin", offset=123)
    done = cli("cp", f"s3://{bucket}/rotten.bin", "rotten.bin")
    assert done.returncode == 1
    assert f"s3://{bucket}/rotten.bin" in error_line(done)
    assert list(cli.cwd.iterdir()) == []  # no file, not even a partial one

    done = cli("cp", f"s3://{bucket}/missing.bin", "x.bin")
    assert done.returncode == 4
    assert "missing.bin" in error_line(done)
    assert cli("cp", "absent.txt", f"s3://{bucket}/x").returncode == 4
    (cli.cwd / "dir").mkdir()
    assert cli("cp", "dir", f"s3://{bucket}/x").returncode == 2  # a directory needs -r
    assert cli("cp", "a", "b").returncode == 2  # both local
    assert cli("cp", f"s3://{bucket}/", "x").returncode == 2  # a prefix needs -r
    assert cli("cp", "x", "ftp://host/x").returncode == 2
    # A key from the server never picks a path outside the directory given.
    ceph.raw().put_object(Bucket=bucket, Key="up/..", Body=b"escape")
    done = cli("cp", f"s3://{bucket}/up/..", "./")
    assert done.returncode == 2 and "names no file" in done.stderr
    assert not (cli.cwd.parent / "up").exists()
    assert cli("cp", "--include", "*.txt", "x", f"s3://{bucket}/x").returncode == 2


def test_mv_removes_each_source_only_once_proven(
    cli: Run, ceph: Backend, bucket: str, ceph_env: dict[str, str]
) -> None:
    raw = ceph.raw()
    (cli.cwd / "f.txt").write_text("moving up")
    assert cli("mv", "f.txt", f"s3://{bucket}/f.txt").returncode == 0
    assert not (cli.cwd / "f.txt").exists()
    assert cli("mv", f"s3://{bucket}/f.txt", f"s3://{bucket}/g.txt").returncode == 0
    assert cli("mv", f"s3://{bucket}/g.txt", "g.txt").returncode == 0
    assert (cli.cwd / "g.txt").read_text() == "moving up"
    assert raw.list_objects_v2(Bucket=bucket).get("KeyCount") == 0

    tree = cli.cwd / "tree"
    tree.mkdir()
    (tree / "a.txt").write_text("a")
    assert cli("mv", "-r", "tree", f"s3://{bucket}/t/").returncode == 0
    assert not (tree / "a.txt").exists()
    assert cli("mv", "-r", f"s3://{bucket}/t/", f"s3://{bucket}/u/").returncode == 0
    assert [o["Key"] for o in raw.list_objects_v2(Bucket=bucket)["Contents"]] == ["u/a.txt"]

    # A corrupt object is never deleted by a move that could not prove it.
    raw.put_object(Bucket=bucket, Key="rotten.bin", Body=os.urandom(200_000))
    corrupt_at_rest(ceph_env, bucket, "rotten.bin")
    assert cli("mv", f"s3://{bucket}/rotten.bin", "rotten.bin").returncode == 1
    assert not (cli.cwd / "rotten.bin").exists()
    raw.head_object(Bucket=bucket, Key="rotten.bin")
    done = cli("mv", "-r", f"s3://{bucket}/", "down")
    assert done.returncode == 1, done.stderr
    raw.head_object(Bucket=bucket, Key="rotten.bin")

    assert cli("mv", f"s3://{bucket}/nope", "x").returncode == 4
    assert cli("mv", "-r", f"s3://{bucket}/nothing-here/", "x").returncode == 4
    assert cli("mv", "x", "y").returncode == 2


def test_unproven_transfers_exit_3_and_moves_keep_their_source(
    cli: Run, ceph: Backend, bucket: str
) -> None:
    """A multipart object in a layout no candidate reproduces (Ceph ignores PartNumber):
    a copy says so and exits 3; a move refuses to delete what it could not prove."""
    data = os.urandom(11 * MiB)
    foreign_multipart(ceph, bucket, "foreign.bin", data, 5 * MiB + 4321)
    done = cli("cp", f"s3://{bucket}/foreign.bin", "copy.bin")
    assert done.returncode == 3, done.stderr
    assert "unverifiable" in done.stdout and (cli.cwd / "copy.bin").read_bytes() == data
    done = cli("mv", f"s3://{bucket}/foreign.bin", "moved.bin")
    assert done.returncode == 3, done.stdout + done.stderr
    ceph.raw().head_object(Bucket=bucket, Key="foreign.bin")  # kept
    done = cli("mv", "-r", f"s3://{bucket}/", "moved")
    assert done.returncode == 3, done.stdout + done.stderr
    ceph.raw().head_object(Bucket=bucket, Key="foreign.bin")


# ------------------------------------------------------------------ rm / ls ----


def test_rm(cli: Run, ceph: Backend, bucket: str) -> None:
    raw = ceph.raw()
    for key in ("a/1", "a/2", "a/b/3", "ab", "keep"):
        raw.put_object(Bucket=bucket, Key=key, Body=b"x")
    done = cli("rm", "--recursive", "--dry-run", f"s3://{bucket}/a")
    assert done.returncode == 0
    assert done.stdout.splitlines()[-1] == "(dry run) 3 object(s) deleted"
    assert raw.list_objects_v2(Bucket=bucket)["KeyCount"] == 5
    # "a" names a directory: "ab" is not under it.
    assert cli("rm", "-r", f"s3://{bucket}/a").returncode == 0
    assert [o["Key"] for o in raw.list_objects_v2(Bucket=bucket)["Contents"]] == ["ab", "keep"]
    done = cli("rm", f"s3://{bucket}/ab")
    assert done.returncode == 0 and done.stdout == f"delete: s3://{bucket}/ab\n"

    done = cli("rm", f"s3://{bucket}/ab")  # gone: said, not silently "deleted"
    assert done.returncode == 4
    assert f"s3://{bucket}/ab" in error_line(done)
    assert cli("rm", f"s3://{bucket}/").returncode == 2  # a prefix needs -r
    assert cli("rm", "local.txt").returncode == 2
    assert cli("rm", "-r", "s3://no-such-bucket-here/x").returncode == 4
    assert cli("rm", "-r", f"s3://{bucket}/nothing-here").returncode == 4


def test_ls(cli: Run, ceph: Backend, bucket: str) -> None:
    raw = ceph.raw()
    for key in ("top.txt", "d/1.txt", "d/2.txt", "d/e/3.txt", "z.txt"):
        raw.put_object(Bucket=bucket, Key=key, Body=b"12345")
    done = cli("ls")
    assert done.returncode == 0 and bucket in done.stdout
    done = cli("ls", f"s3://{bucket}")
    assert done.returncode == 0
    names = [line.split()[-1] for line in done.stdout.splitlines()]
    assert names == ["d/", "top.txt", "z.txt"]
    assert done.stdout.splitlines()[0].split()[0] == "PRE"
    done = cli("ls", f"s3://{bucket}/d/")
    assert [line.split()[-1] for line in done.stdout.splitlines()] == ["1.txt", "2.txt", "e/"]
    # Through every page: two keys a page.
    done = cli("ls", "-r", f"s3://{bucket}", "--page-size", "2", "--json")
    assert [r["key"] for r in json_lines(done.stdout)] == [
        "d/1.txt", "d/2.txt", "d/e/3.txt", "top.txt", "z.txt",
    ]  # fmt: skip
    assert all(r["size"] == 5 for r in json_lines(done.stdout))

    done = cli("ls", "s3://no-such-bucket-here")
    assert done.returncode == 4
    assert "no-such-bucket-here" in error_line(done)
    done = cli("ls", f"s3://{bucket}/nothing-here/")
    assert done.returncode == 4 and "nothing-here" in error_line(done)
    assert cli("ls", "gs://elsewhere").returncode == 2
    assert cli("ls", f"s3://{bucket}", "--page-size", "0").returncode == 2


# ------------------------------------------------------------------ sync ----


def test_sync(cli: Run, ceph: Backend, bucket: str, ceph_env: dict[str, str]) -> None:
    src = cli.cwd / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("alpha")
    (src / "sub" / "b.bin").write_bytes(os.urandom(6 * MiB))
    target = f"s3://{bucket}/mirror"
    done = cli("sync", "src", target)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1].startswith("2 added, 0 modified, 0 deleted, 0 unchanged")

    (src / "a.txt").write_text("ALPHA")  # same size: found by content
    (src / "new.txt").write_text("new")
    ceph.raw().put_object(Bucket=bucket, Key="mirror/stale.txt", Body=b"stale")
    done = cli("sync", "src", target, "--delete", "--dry-run", "--json")
    assert done.returncode == 0
    *changes, summary = json_lines(done.stdout)
    assert sorted((c["operation"], c["key"]) for c in changes) == [
        ("added", "new.txt"), ("deleted", "stale.txt"), ("modified", "a.txt"),
    ]  # fmt: skip
    assert summary["summary"]["dry_run"] is True
    assert ceph.raw().get_object(Bucket=bucket, Key="mirror/a.txt")["Body"].read() == b"alpha"
    done = cli("sync", "src", target, "--delete")
    assert done.returncode == 0
    assert done.stdout.splitlines()[-1].startswith("1 added, 1 modified, 1 deleted, 1 unchanged")

    # Down, with one object rotten at rest: the sync fails, and no damaged file is left.
    corrupt_at_rest(ceph_env, bucket, "mirror/a.txt")
    done = cli("sync", target, "down")
    assert done.returncode == 1
    assert "mirror/a.txt" in error_line(done)
    assert not (cli.cwd / "down" / "a.txt").exists()

    assert cli("sync", "absent-dir", target).returncode == 4
    assert cli("sync", "s3://no-such-bucket-here/x", "down2").returncode == 4
    assert cli("sync", "src", "also-local").returncode == 2
    assert cli("sync", "src").returncode == 2


# ------------------------------------------------------------------ uploads ----


def test_uploads_list_and_abort(cli: Run, ceph: Backend, bucket: str) -> None:
    raw = ceph.raw()
    upload = raw.create_multipart_upload(Bucket=bucket, Key="crashed.bin")["UploadId"]
    done = cli("uploads", f"s3://{bucket}")
    assert done.returncode == 0
    assert f"open     s3://{bucket}/crashed.bin  {upload}" in done.stdout
    # Not old enough: kept.
    done = cli("uploads", f"s3://{bucket}", "--abort", "--older-than", "1d")
    assert done.returncode == 0 and done.stdout == "0 upload(s), 0 aborted\n"
    # Zero: every one, by no clock.
    done = cli("uploads", f"s3://{bucket}", "--abort", "--older-than", "0s", "--json")
    assert done.returncode == 0
    [record, _summary] = json_lines(done.stdout)
    assert record["upload_id"] == upload and record["aborted"] is True
    assert raw.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []

    assert cli("uploads", f"s3://{bucket}", "--abort").returncode == 2
    assert cli("uploads", f"s3://{bucket}", "--older-than", "soon").returncode == 2
    assert cli("uploads", "s3://no-such-bucket-here").returncode == 4


# ------------------------------------------------------------------ the rest ----


def test_progress_bar_under_a_terminal(cli: Run, bucket: str) -> None:
    (cli.cwd / "f.bin").write_bytes(os.urandom(9 * MiB))
    output, status = run_in_pty(
        [sys.executable, "-m", "object_clerk", "cp", "f.bin", f"s3://{bucket}/f.bin"],
        cli.env,
        cli.cwd,
    )
    assert status == 0, output
    text = output.decode()
    bars = [part for part in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
            if part.startswith("bytes:")]  # fmt: skip
    assert bars, text
    assert "100%" in bars[-1] and "9.00M" in bars[-1], bars[-1]
    # It ended cleanly: the bar's line was closed before the result line was printed.
    assert text.rstrip().endswith(f"upload: f.bin to s3://{bucket}/f.bin  (9.0 MiB, multipart-md5)")

    # Not a terminal: no bar unless asked for.
    done = cli("cp", "f.bin", f"s3://{bucket}/g.bin")
    assert done.returncode == 0 and "\r" not in done.stderr and done.stderr == ""
    done = cli("cp", "f.bin", f"s3://{bucket}/h.bin", "--progress")
    assert "100%" in done.stderr


def run_in_pty(args: list[str], env: dict[str, str], cwd: Path) -> tuple[bytes, int]:
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))
    process = subprocess.Popen(
        args, stdin=slave, stdout=slave, stderr=slave, env=env, cwd=cwd, close_fds=True
    )
    os.close(slave)
    output = b""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 1)
        if not ready:
            if process.poll() is not None:
                break
            continue
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        output += chunk
    os.close(master)
    return output, process.wait(timeout=60)


def test_tls_options(cli: Run, ceph_env: dict[str, str]) -> None:
    https = {"OBJECT_CLERK_ENDPOINT_URL": ceph_env["CEPH_RGW_HTTPS_ENDPOINT"]}
    done = cli("ls", "--ca-bundle", ceph_env["CEPH_RGW_CA_BUNDLE"], **https)
    assert done.returncode == 0, done.stderr
    done = cli("ls", **https)  # the self-signed certificate is refused by default
    assert done.returncode == 5
    assert "certificate" in error_line(done).lower()
    done = cli("ls", "--no-verify-ssl", **https)
    assert done.returncode == 0
    assert "not verified" in done.stderr
    done = cli("ls", "--endpoint-url", ceph_env["CEPH_RGW_HTTPS_ENDPOINT"], "--no-verify-ssl")
    assert done.returncode == 0


def test_credentials_never_in_output(cli: Run, bucket: str, env: dict[str, str]) -> None:
    secret = "wrong-secret-that-must-not-leak-0123456789"
    for extra in ((), ("--debug",)):
        done = cli("ls", f"s3://{bucket}", *extra, OBJECT_CLERK_SECRET_KEY=secret)
        assert done.returncode == 5, done.stderr
        assert secret not in done.stdout + done.stderr
        assert env["OBJECT_CLERK_SECRET_KEY"] not in done.stdout + done.stderr
    assert "Traceback" in done.stderr  # --debug shows where
    done = cli("ls", "--profile", "nobody-has-this-profile")
    assert done.returncode == 2
    assert "nobody-has-this-profile" in error_line(done)


def test_console_script_and_help(cli: Run) -> None:
    done = subprocess.run([str(SCRIPT), "--version"], capture_output=True, text=True, check=False)
    assert done.returncode == 0 and done.stdout.startswith("object-clerk, version ")
    done = cli("--help")
    assert done.returncode == 0
    for command in ("cp", "etag", "ls", "mv", "rm", "sync", "uploads", "verify"):
        assert f"  {command} " in done.stdout
    assert "4  not found" in done.stdout
    assert cli("no-such-command").returncode == 2
