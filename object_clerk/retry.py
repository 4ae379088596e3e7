"""The retry policy: which errors are retried, how long to wait, and when to give up.

Strategy: the `retry` module's loop runs the attempts and re-raises the last error itself, so
callers see our typed exception, never a retry-library wrapper. object_clerk passes it no
delay of its own and does the waiting in the ``on_exception`` hook instead, because only there
can it (a) classify the error, (b) enforce an overall deadline, (c) report the delay it chose
to logs and hooks, and (d) use an injectable sleep and random source for tests.

Two traps in the `retry` module shape this code: ``tries=-1`` retries forever, and an
``on_exception`` hook that returns True makes the loop *return None* instead of raising. So
the loop is run without a count of its own, and the hook stops it by re-raising (never by
returning True) once the policy's tries or the deadline run out. A policy's ``tries=-1``
(object-clerk 1.1.0's default) means no count limit, and is accepted only with a deadline.

botocore has a retry layer too. object_clerk's clients turn it off (``max_attempts: 0``), so
a failing request makes exactly ``tries`` HTTP attempts. See :func:`botocore_attempts`.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import functools
import logging
import math
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, ParamSpec, TypeVar

from retry.api import retry_call

from object_clerk.errors import (
    ChecksumMismatchError,
    ConfigurationError,
    ObjectClerkError,
    TransientError,
    translated,
)

__all__ = [
    "Retrier",
    "RetryEvent",
    "RetryPolicy",
    "botocore_attempts",
    "is_retryable",
    "retry_transient",
]

logger = logging.getLogger("object_clerk.retry")

P = ParamSpec("P")
T = TypeVar("T")

Jitter = float | tuple[float, float]

#: How often a checksum mismatch is tried under a policy with no count limit (tries=-1) and
#: no CHECKSUM_RETRY_CONFIG: object-clerk 1.x's default for checksum retries.
CHECKSUM_TRIES = 3


def is_retryable(exc: BaseException) -> bool:
    """True when trying again may succeed: transient faults and checksum mismatches.

    4xx errors (bad request, access denied, not found, precondition failed), TLS certificate
    failures, bad input and configuration errors are never retried.
    """
    return isinstance(exc, (TransientError, ChecksumMismatchError))


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry. A value object: safe to share between threads.

    The delay before retry n follows the `retry` module's rule: the first is ``delay``; each
    next one is the previous times ``backoff``, plus ``jitter`` (a number, or a random value
    in a ``(min, max)`` range), capped at ``max_delay``. No retry starts once the call has
    gone ``deadline`` seconds without progress (None: no deadline). The deadline is one
    budget for the whole call: the requests of every part of a transfer share it, and each
    part that succeeds counts as progress.

    Example::

        RetryPolicy(tries=5, delay=0.5, backoff=2, jitter=(0, 0.5), max_delay=10, deadline=120)
    """

    tries: int = 5  # -1: no count limit; the deadline alone bounds the retries
    delay: float = 0.5
    backoff: float = 2.0
    jitter: Jitter = (0.0, 0.5)
    max_delay: float = 10.0
    deadline: float | None = 120.0

    def __post_init__(self) -> None:
        if (
            not isinstance(self.tries, int)
            or isinstance(self.tries, bool)
            or (self.tries < 1 and self.tries != -1)
        ):
            raise ConfigurationError(
                f"retry_tries must be a whole number >= 1, or -1 for no count limit,"
                f" got {self.tries!r}",
                variable="retry_tries",
            )
        if self.tries == -1 and self.deadline is None:
            raise ConfigurationError(
                "retry_tries=-1 (no count limit) needs a retry_deadline: it would retry forever",
                variable="retry_tries",
            )
        _check_non_negative("retry_delay", self.delay)
        _check_non_negative("retry_max_delay", self.max_delay)
        if not math.isfinite(self.backoff) or self.backoff < 1:
            raise ConfigurationError(
                f"retry_backoff must be >= 1, got {self.backoff!r}", variable="retry_backoff"
            )
        if isinstance(self.jitter, list):
            object.__setattr__(self, "jitter", tuple(self.jitter))
        if isinstance(self.jitter, tuple):
            if len(self.jitter) != 2:
                raise ConfigurationError(
                    f"retry_jitter must be a number or a (min, max) pair, got {self.jitter!r}",
                    variable="retry_jitter",
                )
            low, high = self.jitter
            _check_non_negative("retry_jitter", low)
            _check_non_negative("retry_jitter", high)
            if high < low:
                raise ConfigurationError(
                    f"retry_jitter range must be 0 <= min <= max, got {self.jitter!r}",
                    variable="retry_jitter",
                )
        else:
            _check_non_negative("retry_jitter", self.jitter)
        if self.deadline is not None and not (math.isfinite(self.deadline) and self.deadline > 0):
            raise ConfigurationError(
                f"retry_deadline must be > 0 seconds, got {self.deadline!r}",
                variable="retry_deadline",
            )

    def next_delay(self, previous: float | None, rng: random.Random) -> float:
        """The delay before the next retry, given the one before it (None for the first)."""
        if previous is None:
            return min(self.delay, self.max_delay)
        extra = rng.uniform(*self.jitter) if isinstance(self.jitter, tuple) else self.jitter
        return min(previous * self.backoff + extra, self.max_delay)


def _check_non_negative(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf:
        raise ConfigurationError(f"{name} must be >= 0, got {value!r}", variable=name)


@dataclass(frozen=True)
class RetryEvent:
    """What a retry hook receives, and what the WARNING log record carries as ``retry``."""

    operation: str
    bucket: str | None
    key: str | None
    attempt: int
    max_attempts: int
    error: ObjectClerkError
    delay: float
    elapsed: float


@dataclass
class _CallState:
    attempt: int = 0
    # Per kind of error ("checksum" mismatches, and the rest): failures and the last delay.
    failures: dict[str, int] = field(default_factory=dict)
    delays: dict[str, float] = field(default_factory=dict)


class _Budget:
    """The retry deadline of one whole call, shared by every unit inside it: nested retried
    calls and the parts that other threads run (the parts runner copies the context). A
    retry may start while the call has made progress (some unit succeeded) within the last
    ``deadline`` seconds, so a long healthy transfer keeps its retries, and a stalled one
    gives up however many parts it has."""

    def __init__(self, deadline: float | None, clock: Callable[[], float]) -> None:
        self.deadline = deadline
        self.clock = clock
        self.last_progress = clock()

    def progressed(self) -> None:
        self.last_progress = self.clock()

    def stalled_for(self) -> float:
        return self.clock() - self.last_progress

    def allows(self, delay: float) -> bool:
        return self.deadline is None or self.stalled_for() + delay <= self.deadline


_BUDGET: contextvars.ContextVar[_Budget | None] = contextvars.ContextVar(
    "object_clerk_retry_budget", default=None
)


@dataclass
class Retrier:
    """Runs callables under a :class:`RetryPolicy`. Thread-safe: per-call state is local.

    ``sleep``, ``rng`` and ``clock`` are injectable so tests are fast and deterministic;
    ``on_retry`` is called with a :class:`RetryEvent` before each wait. ``checksum_policy``,
    when given, governs checksum mismatches instead of ``policy`` (object-clerk 1.1.0's
    ``CHECKSUM_RETRY_CONFIG``): its own attempts and delays, the same deadline.
    """

    policy: RetryPolicy = field(default_factory=RetryPolicy)
    checksum_policy: RetryPolicy | None = None
    sleep: Callable[[float], None] = time.sleep
    rng: random.Random = field(default_factory=random.Random)
    clock: Callable[[], float] = time.monotonic
    on_retry: Callable[[RetryEvent], None] | None = None

    def call(
        self,
        fn: Callable[[], T],
        *,
        operation: str,
        bucket: str | None = None,
        key: str | None = None,
        retryable: Callable[[BaseException], bool] = is_retryable,
    ) -> T:
        """Call ``fn`` until it succeeds, a non-retryable error occurs, or the policy gives up.

        ``fn`` must raise ObjectClerkError subclasses (see ``errors.translate_error``); any
        other exception propagates at once. The last error is raised as is. ``retryable``
        narrows what is retried, for units whose inner requests were already retried.
        """
        with self.scope():  # the outermost retried call of an operation opens its budget
            budget = _BUDGET.get()
            assert budget is not None
            return self._call(fn, budget, operation, bucket, key, retryable)

    def _call(
        self,
        fn: Callable[[], T],
        budget: _Budget,
        operation: str,
        bucket: str | None,
        key: str | None,
        retryable: Callable[[BaseException], bool],
    ) -> T:
        state = _CallState()

        def attempt() -> T:
            state.attempt += 1
            result = fn()
            budget.progressed()
            return result

        def on_exception(exc: ObjectClerkError) -> bool:
            if not retryable(exc):
                raise exc
            policy = self.policy_for(exc)
            kind = "main" if policy is self.policy else "checksum"
            failures = state.failures.get(kind, 0) + 1
            state.failures[kind] = failures
            if policy.tries != -1 and failures >= policy.tries:
                raise exc  # no tries left: the last error, as it is
            delay = policy.next_delay(state.delays.get(kind), self.rng)
            elapsed = budget.stalled_for()
            if not budget.allows(delay):
                logger.warning(
                    "giving up %s after %d attempt(s): the %.1fs retry deadline would pass: %s",
                    operation,
                    state.attempt,
                    budget.deadline,
                    exc,
                )
                raise exc
            state.delays[kind] = delay
            event = RetryEvent(
                operation, bucket, key, state.attempt, policy.tries, exc, delay, elapsed
            )
            logger.warning(
                "retrying %s (attempt %d of %s failed: %s); next attempt in %.2fs",
                operation,
                failures,
                policy.tries if policy.tries != -1 else "unlimited",
                exc,
                delay,
                extra={"retry": event},
            )
            if self.on_retry is not None:
                self.on_retry(event)
            self.sleep(delay)
            return False

        # No count for the loop itself: on_exception stops it (by raising) when a policy's
        # tries or the deadline run out, so it never runs forever.
        result: T = retry_call(
            attempt,
            exceptions=ObjectClerkError,
            tries=-1,
            delay=0,
            logger=None,
            on_exception=on_exception,
        )
        return result

    def policy_for(self, exc: BaseException) -> RetryPolicy:
        """The policy that governs retries of ``exc``.

        A checksum mismatch follows ``checksum_policy`` when there is one. Without one, under
        a main policy with no count limit (``tries=-1``) it is still tried at most
        :data:`CHECKSUM_TRIES` times: bytes that keep arriving damaged are progress to the
        deadline, which would otherwise never end such a loop.
        """
        if isinstance(exc, ChecksumMismatchError):
            if self.checksum_policy is not None:
                return self.checksum_policy
            if self.policy.tries == -1:
                return dataclasses.replace(self.policy, tries=CHECKSUM_TRIES)
        return self.policy

    @contextlib.contextmanager
    def scope(self) -> Iterator[None]:
        """One retry budget for everything retried inside the block (an upload's create,
        parts and complete; a move's copy and delete), unless an outer scope has one."""
        if _BUDGET.get() is not None:
            yield
            return
        token = _BUDGET.set(_Budget(self.policy.deadline, self.clock))
        try:
            yield
        finally:
            _BUDGET.reset(token)


def retry_transient(
    policy: RetryPolicy | None = None, *, operation: str | None = None
) -> Callable[[Callable[P, T]], Callable[P, T]]:
    """Decorator: retry the wrapped function's transient failures under ``policy``.

    The function should raise ObjectClerkError subclasses; botocore and network errors are
    translated for it. Example::

        @retry_transient(RetryPolicy(tries=3))
        def fetch(client, bucket, key): ...
    """
    retrier = Retrier(policy or RetryPolicy())

    def decorate(fn: Callable[P, T]) -> Callable[P, T]:
        name = operation or fn.__name__

        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
            def once() -> T:
                with translated(name):
                    return fn(*args, **kwargs)

            return retrier.call(once, operation=name)

        return wrapper

    return decorate


def botocore_attempts(config: Any) -> int:
    """How many HTTP attempts botocore itself makes per request under this client Config."""
    retries = getattr(config, "retries", None) or {}
    if "total_max_attempts" in retries:
        return max(1, int(retries["total_max_attempts"]))
    if "max_attempts" in retries:
        return max(1, int(retries["max_attempts"]) + 1)
    mode = retries.get("mode", "legacy")
    return 3 if mode in ("standard", "adaptive") else 5
