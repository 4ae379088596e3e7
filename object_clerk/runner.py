"""The parts runner: every multipart operation (upload, read, copy) runs its parts here.

Strategy (after s3transfer's BoundedExecutor and TransferCoordinator): jobs are drawn from
an iterator in the caller's thread only when a slot is free, so work that is queued stays
bounded (an upload reads a part from its source only when it can send it). The first error
stops the operation: no more jobs are drawn, jobs still queued are cancelled, the ``stop``
event tells running jobs to give up early, and the runner waits for them before raising
that first error. Nothing is left running behind the caller's back.

Each job runs in a copy of the caller's context, so the call's retry budget (see
:mod:`object_clerk.retry`) is shared by every part of the call.
"""

from __future__ import annotations

import contextvars
import queue
import threading
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ThreadPoolExecutor, wait
from typing import TypeVar

__all__ = ["Progress", "run_objects", "run_parts"]

R = TypeVar("R")


def run_parts(
    jobs: Iterable[Callable[[], R]],
    *,
    concurrency: int,
    name: str,
    consume: Callable[[R], None] | None = None,
    stop: threading.Event | None = None,
) -> list[R]:
    """Run ``jobs`` with at most ``concurrency`` of them holding a slot at once.

    Without ``consume``, the results are returned in job order. With it, each result is
    handed to ``consume`` in job order, in the caller's thread, and a finished job keeps its
    slot until its result has been consumed: at most ``concurrency`` results exist at once
    (a read's part buffers), and ``[]`` is returned.

    Raises:
        The first exception raised by a job, by drawing the next job, or by ``consume``.
    """
    stop = stop if stop is not None else threading.Event()
    source = iter(jobs)
    if concurrency <= 1:
        return _run_inline(source, consume, stop)
    finished: queue.SimpleQueue[Future[R]] = queue.SimpleQueue()
    ordered: deque[Future[R]] = deque()  # submitted and holding a slot, in job order
    results: list[Future[R]] = []
    busy = 0  # jobs holding a slot
    pool = ThreadPoolExecutor(concurrency, thread_name_prefix=name)
    try:
        exhausted = False
        while True:
            while not exhausted and busy < concurrency:
                job = next(source, None)
                if job is None:
                    exhausted = True
                    break
                future = pool.submit(contextvars.copy_context().run, job)
                future.add_done_callback(finished.put)
                busy += 1
                (ordered if consume is not None else results).append(future)
            if busy == 0:
                break
            failure = finished.get().exception()
            if failure is not None:
                raise failure
            if consume is None:
                busy -= 1
                continue
            while ordered and ordered[0].done():
                head = ordered.popleft()
                exc = head.exception()
                if exc is not None:
                    raise exc
                consume(head.result())
                busy -= 1
    except BaseException:
        stop.set()
        for future in (*ordered, *results):
            future.cancel()
        raise
    finally:
        pool.shutdown(wait=True)
    return [future.result() for future in results]


def _run_inline(
    source: Iterable[Callable[[], R]],
    consume: Callable[[R], None] | None,
    stop: threading.Event,
) -> list[R]:
    results: list[R] = []
    try:
        for job in source:
            result = job()
            if consume is not None:
                consume(result)
            else:
                results.append(result)
    except BaseException:
        stop.set()
        raise
    return results


class Progress:
    """Reports the bytes a transfer moved to a boto3-style ``Callback``: each amount as it
    is done, and the negative of everything reported when the transfer starts over (as
    s3transfer reports a rewound body). Thread-safe; the callback is never called from two
    threads at once."""

    def __init__(self, callback: Callable[[int], object] | None) -> None:
        self._callback = callback
        self._lock = threading.Lock()
        self._total = 0

    def add(self, amount: int) -> None:
        if self._callback is None or not amount:
            return
        with self._lock:
            self._total += amount
            self._callback(amount)

    def child(self) -> Progress:
        """A Progress for one of several transfers reported here together: its rewind
        takes back only what it reported itself."""
        return Progress(self.add if self._callback is not None else None)

    def rewind(self) -> None:
        if self._callback is None:
            return
        with self._lock:
            amount, self._total = self._total, 0
            if amount:
                self._callback(-amount)


def run_objects(
    jobs: Iterable[Callable[[], R]],
    *,
    concurrency: int,
    consume: Callable[[R], None],
    executor: Executor | None = None,
    name: str = "object-clerk-objects",
) -> list[BaseException]:
    """Run a bulk call's jobs, one per object, at most ``concurrency`` submitted at once,
    on ``executor`` or on a thread pool of that size.

    Unlike :func:`run_parts`, objects are independent: each result goes to ``consume``
    (in the caller's thread) as soon as its job finishes, in any order, and a failure does
    not discard the others' results. After the first failure no new job is submitted (and
    our own pool's queued ones are cancelled); those already running finish, and their
    results are still consumed, so the caller can report everything that was done.
    Drawing a job may fail too (jobs are planned lazily, from listings): that counts as a
    failure. Returns the failures.

    A job with a ``weight`` attribute holds that many of the ``concurrency`` slots while it
    runs (at most all of them): a large object whose parts run in parallel counts as the
    requests it makes, so the objects in flight never make more than about ``concurrency``
    requests at once. Jobs go to ``executor`` as they are, so on a process or cluster
    executor they must pickle.
    """
    pool = executor if executor is not None else ThreadPoolExecutor(concurrency, name)
    source = iter(jobs)
    held: Callable[[], R] | None = None  # drawn, waiting for room
    pending: dict[Future[R], int] = {}  # running or queued, with the slots each holds
    errors: list[BaseException] = []
    try:
        while True:
            while not errors:
                if held is None:
                    try:
                        held = next(source, None)
                    except Exception as exc:  # planning the next job failed (a listing page)
                        errors.append(exc)
                        break
                    if held is None:
                        break
                weight = min(max(1, getattr(held, "weight", 1)), concurrency)
                if pending and sum(pending.values()) + weight > concurrency:
                    break
                pending[pool.submit(held)] = weight
                held = None
            if not pending:
                break
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                del pending[future]
                if future.cancelled():
                    continue
                failure = future.exception()
                if failure is not None:
                    errors.append(failure)
                else:
                    consume(future.result())
            if errors and executor is None:
                # Only our own pool's queued jobs are cancelled. Another executor's futures
                # may say "cancelled" while their task runs on (Dask's never enter the
                # running state): those are waited for, so that their results are reported
                # and nothing runs on after the call returns. They are few: at most
                # ``concurrency`` slots.
                for future in pending:
                    future.cancel()
    except BaseException:
        for future in pending:
            future.cancel()
        wait(pending)
        raise
    finally:
        if executor is None:
            pool.shutdown(wait=True)
    return errors
