"""The one parts runner (object_clerk.runner): bounded, ordered, stops on the first error."""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable, Iterator

import pytest

from object_clerk.runner import run_parts


class Boom(Exception):
    pass


@pytest.mark.parametrize("concurrency", [1, 2, 4])
def test_results_in_job_order(concurrency: int) -> None:
    jobs = (lambda n=n: n for n in range(50))
    assert run_parts(jobs, concurrency=concurrency, name="t") == list(range(50))


@pytest.mark.parametrize("concurrency", [1, 3])
def test_consume_in_order_with_bounded_window(concurrency: int) -> None:
    """With consume, results reach it in job order, and no more than ``concurrency`` jobs
    are drawn ahead of what was consumed (a read's part buffers stay bounded)."""
    drawn = 0
    consumed: list[int] = []
    ahead: list[int] = []

    def jobs() -> Iterator[Callable[[], int]]:
        nonlocal drawn
        for n in range(40):
            drawn += 1
            ahead.append(drawn - len(consumed))
            yield lambda n=n: n

    run_parts(jobs(), concurrency=concurrency, name="t", consume=consumed.append)
    assert consumed == list(range(40))
    assert max(ahead) <= concurrency


def test_first_error_stops_drawing_and_cancels_the_rest() -> None:
    """A job that fails stops the run: no job is drawn after the failure is seen, the
    running ones are waited for (the stop event tells them), and that error is raised."""
    started: list[int] = []
    stop = threading.Event()

    def job(n: int) -> Callable[[], int]:
        def run() -> int:
            started.append(n)
            if n == 0:
                raise Boom("part 1 refused")
            stop.wait(30)  # the runner sets it as soon as it sees part 1's error
            return n

        return run

    with pytest.raises(Boom, match="part 1"):
        run_parts((job(n) for n in range(200)), concurrency=4, name="t", stop=stop)
    assert stop.is_set()
    assert len(started) <= 4  # never more than the slots that were open


def test_error_while_drawing_a_job_is_raised_after_running_jobs_finish() -> None:
    finished: list[int] = []
    gate = threading.Event()

    def jobs() -> Iterator[Callable[[], None]]:
        yield lambda: (gate.wait(30), finished.append(1))  # type: ignore[func-returns-value]
        gate.set()
        raise OSError("disk read failed")

    with pytest.raises(OSError, match="disk read failed"):
        run_parts(jobs(), concurrency=2, name="t")
    assert finished == [1]  # the running job was waited for, not abandoned


def test_error_in_consume_stops_the_run() -> None:
    def consume(n: int) -> None:
        if n == 3:
            raise Boom("sink full")

    with pytest.raises(Boom):
        run_parts((lambda n=n: n for n in range(100)), concurrency=2, name="t", consume=consume)


def test_jobs_run_in_the_callers_context() -> None:
    """Workers see the caller's context variables (the call's shared retry budget)."""
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")
    var.set("caller")
    assert run_parts((var.get for _ in range(6)), concurrency=3, name="t") == ["caller"] * 6
