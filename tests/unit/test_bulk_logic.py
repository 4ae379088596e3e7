"""Engine logic of the bulk calls, without a server: the objects runner's failure rules,
the key-to-path guard, the tree walk. The real-server proof is tests/integration/test_bulk."""

from __future__ import annotations

import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor, wait
from pathlib import Path

import pytest

from object_clerk.bulk import Change, Location, Operation, Skipped, local_target, unsafe_key, walk
from object_clerk.runner import run_objects


def test_run_objects_stops_submitting_after_a_failure_and_keeps_running_results() -> None:
    """Job 0 runs on until job 1's future has failed, so the failure is seen before job 0
    ends and frees a slot, whatever the machine's load."""
    futures: list[Future[int]] = []

    class Recording(ThreadPoolExecutor):
        def submit(self, fn, /, *args, **kwargs):  # type: ignore[no-untyped-def]
            future = super().submit(fn, *args, **kwargs)
            futures.append(future)
            return future

    started: list[int] = []

    def job(n: int) -> int:
        started.append(n)
        if n == 0:
            while len(futures) < 2:  # job 1 is submitted right after job 0
                threading.Event().wait(0.001)
            wait([futures[1]])
            return n
        if n == 1:
            raise OSError("job 1 failed")
        return n

    consumed: list[int] = []
    with Recording(2) as pool:
        errors = run_objects(
            (lambda n=n: job(n) for n in range(10)), concurrency=2, consume=consumed.append,
            executor=pool,
        )  # fmt: skip
    assert [str(e) for e in errors] == ["job 1 failed"]
    assert consumed == [0]  # the running one finished and was reported
    assert sorted(started) == [0, 1]  # no new job after the failure


def test_run_objects_on_an_executor_of_the_caller_leaves_it_open() -> None:
    with ThreadPoolExecutor(3) as pool:
        consumed: list[int] = []
        assert run_objects(
            (lambda n=n: n * n for n in range(20)), concurrency=4, consume=consumed.append,
            executor=pool,
        ) == []  # fmt: skip
        assert sorted(consumed) == [n * n for n in range(20)]
        assert pool.submit(lambda: "still open").result() == "still open"


def test_run_objects_cancels_queued_jobs_when_consume_raises() -> None:
    ran: list[int] = []

    def consume(_: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_objects((lambda n=n: ran.append(n) or n for n in range(50)), concurrency=2,
                    consume=consume)  # fmt: skip
    assert len(ran) <= 3


@pytest.mark.parametrize(
    ("rel", "problem"),
    [
        ("../x", "'..'"),
        ("a/../../x", "'..'"),
        ("a/..", "'..'"),
        ("/etc/passwd", "absolute"),
        ("a\\..\\x", "backslash"),
        ("a\x00b", "NUL"),
        ("a//b", "empty"),
        ("./a", "'.'"),
        ("a/", "empty"),
    ],
)
def test_unsafe_keys_are_named(rel: str, problem: str) -> None:
    reason = unsafe_key(rel)
    assert reason is not None and problem in reason


@pytest.mark.parametrize("rel", ["a", "a/b/c.txt", "..a", "a..b/c", "a b/ü.txt", ".hidden"])
def test_safe_keys_pass(rel: str, tmp_path: Path) -> None:
    assert unsafe_key(rel) is None
    target = local_target(os.path.realpath(tmp_path), rel)
    assert target is not None and target.startswith(os.path.realpath(tmp_path) + os.sep)


def test_a_symlinked_parent_leading_out_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "inner").mkdir(parents=True)
    (root / "out").symlink_to(tmp_path, target_is_directory=True)
    (root / "in").symlink_to(root / "inner", target_is_directory=True)
    real = os.path.realpath(root)
    assert local_target(real, "out/x") is None
    assert local_target(real, "out/deeper/x") is None
    assert local_target(real, "in/x") == os.path.join(real, "in", "x")


def test_walk_reports_what_it_skips(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f").write_bytes(b"1")
    (tmp_path / "broken").symlink_to(tmp_path / "nowhere")
    os.mkfifo(tmp_path / "fifo")
    skipped: list[Skipped] = []
    found = walk(tmp_path, include=None, exclude=None, symlinks="inside", skipped=skipped.append)
    assert [f.rel for f in found] == ["d/f"]
    assert {s.name: s.reason for s in skipped} == {
        "broken": "a broken symbolic link",
        "fifo": "not a regular file",
    }


def test_a_change_unpacks_as_filecloudsyncs_triple() -> None:
    key, operation, location = Change("k", Operation.ADDED, Location.BUCKET, "s3://b/k", "new")
    assert (key, operation.value, location.value) == ("k", "added", "keys")


def test_walk_yields_in_key_order(tmp_path: Path) -> None:
    """S3 lists "a-b" before "a/x" ('-' < '/') and "a/x" before "a0": a sync merges the
    walk with a listing, so the walk must agree."""
    for rel in ("a/x", "a/y/z", "a-b", "a0", "b", "A"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    rels = [f.rel for f in walk(tmp_path, include=None, exclude=None, symlinks="inside",
                                skipped=lambda _: None)]  # fmt: skip
    assert rels == sorted(rels) == ["A", "a-b", "a/x", "a/y/z", "a0", "b"]


def test_run_objects_counts_a_failure_to_plan_as_a_failure() -> None:
    def jobs():  # type: ignore[no-untyped-def]
        yield lambda: 1
        raise ConnectionError("page 2 failed")

    consumed: list[int] = []
    errors = run_objects(jobs(), concurrency=2, consume=consumed.append)
    assert [str(e) for e in errors] == ["page 2 failed"] and consumed == [1]


def test_run_objects_never_runs_more_weight_than_its_concurrency() -> None:
    """A large object's job holds as many slots as the part requests it makes at once."""
    from object_clerk.bulk import Job

    lock = threading.Lock()
    running = [0]
    peaks: list[int] = []

    def work(weight: int) -> int:
        with lock:
            running[0] += weight
            peaks.append(running[0])
        with lock:
            running[0] -= weight
        return weight

    weights = [1, 4, 1, 1, 3, 9, 1, 2, 2, 1] * 5
    consumed: list[int] = []
    jobs = (Job(lambda w=w: work(min(w, 4)), w) for w in weights)
    assert run_objects(jobs, concurrency=4, consume=consumed.append) == []
    assert sorted(consumed) == sorted(min(w, 4) for w in weights)
    assert max(peaks) <= 4


def test_a_heavy_job_waits_for_room() -> None:
    """Job 2 (weight 4 of 4) must not start while job 1 (weight 1) runs. Job 1 waits a
    while for job 2 to start: it never does if the runner is right, so the test cannot
    fail then, whatever the machine's load."""
    from object_clerk.bulk import Job

    second_started = threading.Event()

    def first() -> bool:
        return second_started.wait(0.5)

    def second() -> bool:
        second_started.set()
        return False

    consumed: list[bool] = []
    jobs = [Job(first, 1), Job(second, 4)]
    assert run_objects(jobs, concurrency=4, consume=consumed.append) == []
    assert consumed == [False, False]


def test_a_transfer_that_starts_over_takes_back_only_its_own_bytes() -> None:
    from object_clerk.runner import Progress

    seen: list[int] = []
    whole = Progress(seen.append)
    first, second = whole.child(), whole.child()
    first.add(10)
    second.add(5)
    first.rewind()
    first.add(10)
    assert seen == [10, 5, -10, 10] and sum(seen) == 15
