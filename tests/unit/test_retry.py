"""Unit tests for object_clerk.retry: policy validation, delays, and the Retrier loop."""

from __future__ import annotations

import inspect
import logging
import random

import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, EndpointConnectionError

from object_clerk import errors
from object_clerk.errors import (
    AccessDeniedError,
    ChecksumMismatchError,
    ConfigurationError,
    ConnectionFault,
    InvalidRequestError,
    ObjectClerkError,
    ObjectNotFoundError,
    RequestRejectedError,
    ServerError,
    ThrottledError,
    TLSError,
)
from object_clerk.retry import (
    Retrier,
    RetryEvent,
    RetryPolicy,
    botocore_attempts,
    is_retryable,
    retry_transient,
)

# ------------------------------------------------------------------ helpers


class FakeClock:
    """A monotonic clock that only moves when told to (by sleep or by the test)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class Failing:
    """A callable that raises the given errors in turn, then returns ``result``."""

    def __init__(self, errs: list[BaseException], result: object = None) -> None:
        self.errs = list(errs)
        self.result = result
        self.calls = 0
        self.raised: list[BaseException] = []

    def __call__(self) -> object:
        self.calls += 1
        if self.errs:
            err = self.errs.pop(0)
            self.raised.append(err)
            raise err
        return self.result


def _retrier(policy: RetryPolicy, clock: FakeClock | None = None, **kw) -> Retrier:
    clock = clock or FakeClock()
    return Retrier(policy, sleep=clock.sleep, rng=random.Random(0), clock=clock, **kw)


FAST = RetryPolicy(tries=5, delay=0.5, backoff=2.0, jitter=0.0, max_delay=10.0, deadline=None)


# ------------------------------------------------------------- RetryPolicy validation


@pytest.mark.parametrize("tries", [0, -2, True, False, 1.5, 3.0, "3", None])
def test_policy_rejects_bad_tries_naming_retry_tries(tries):
    with pytest.raises(ConfigurationError) as info:
        RetryPolicy(tries=tries)
    assert info.value.variable == "retry_tries"
    assert "retry_tries" in str(info.value)


def test_unlimited_tries_need_a_deadline():
    """tries=-1 (object-clerk 1.x's default) means no count limit, never forever: it is
    refused without a deadline."""
    with pytest.raises(ConfigurationError, match="forever"):
        RetryPolicy(tries=-1, deadline=None)
    assert RetryPolicy(tries=-1, deadline=30).tries == -1


def test_unlimited_tries_stop_at_the_deadline():
    policy = RetryPolicy(tries=-1, delay=1.0, backoff=1.0, jitter=0.0, max_delay=1, deadline=10)
    clock = FakeClock()
    fn = Failing([ServerError(f"e{i}") for i in range(1000)])
    with pytest.raises(ServerError):
        _retrier(policy, clock).call(fn, operation="op")
    assert fn.calls == 11  # failures at t=0..10, then 10+1 > 10


def test_checksum_policy_governs_mismatches_only():
    """CHECKSUM_RETRY_CONFIG's policy (object-clerk 1.x) counts and paces checksum
    mismatches; other errors keep the main policy's count and delays."""
    main = RetryPolicy(tries=3, delay=0.1, backoff=1.0, jitter=0.0, max_delay=1, deadline=None)
    checksum = RetryPolicy(tries=2, delay=5.0, backoff=1.0, jitter=0.0, max_delay=5, deadline=None)
    clock = FakeClock()
    retrier = Retrier(main, checksum_policy=checksum, sleep=clock.sleep, clock=clock)
    errors = [
        ServerError("a"),
        ChecksumMismatchError("b"),
        ServerError("c"),
        ChecksumMismatchError("d"),
    ]
    fn = Failing(errors)
    with pytest.raises(ChecksumMismatchError) as info:
        retrier.call(fn, operation="op")
    assert info.value is errors[3]  # the second mismatch: the checksum policy's 2 tries
    assert clock.sleeps == [0.1, 5.0, 0.1]


def test_policy_accepts_one_try():
    assert RetryPolicy(tries=1).tries == 1


@pytest.mark.parametrize(
    ("kwargs", "variable"),
    [
        ({"delay": -0.1}, "retry_delay"),
        ({"max_delay": -1}, "retry_max_delay"),
        ({"jitter": -0.5}, "retry_jitter"),
        ({"jitter": (-1.0, 1.0)}, "retry_jitter"),
        ({"jitter": (2.0, 1.0)}, "retry_jitter"),
        ({"backoff": 0.99}, "retry_backoff"),
        ({"backoff": 0}, "retry_backoff"),
        ({"deadline": 0}, "retry_deadline"),
        ({"deadline": -5.0}, "retry_deadline"),
    ],
)
def test_policy_rejects_invalid_values_naming_the_variable(kwargs, variable):
    with pytest.raises(ConfigurationError) as info:
        RetryPolicy(**kwargs)
    assert info.value.variable == variable
    assert variable in str(info.value)


def test_policy_accepts_boundary_values():
    policy = RetryPolicy(delay=0, max_delay=0, jitter=(1.0, 1.0), backoff=1, deadline=None)
    assert policy.backoff == 1
    assert RetryPolicy(jitter=0.0).jitter == 0.0


# --------------------------------------------------------------------- next_delay


def test_next_delay_first_is_delay():
    policy = RetryPolicy(delay=1.5, backoff=3.0, jitter=0.25, max_delay=100.0)
    assert policy.next_delay(None, random.Random(0)) == 1.5


def test_next_delay_is_previous_times_backoff_plus_fixed_jitter():
    policy = RetryPolicy(delay=1.0, backoff=3.0, jitter=0.5, max_delay=100.0)
    rng = random.Random(0)
    assert policy.next_delay(1.0, rng) == pytest.approx(3.5)
    assert policy.next_delay(3.5, rng) == pytest.approx(11.0)


def test_next_delay_is_capped_at_max_delay():
    policy = RetryPolicy(delay=1.0, backoff=3.0, jitter=0.5, max_delay=10.0)
    assert policy.next_delay(3.5, random.Random(0)) == 10.0
    assert policy.next_delay(10.0, random.Random(0)) == 10.0


def test_next_delay_first_delay_is_capped_too():
    assert RetryPolicy(delay=5.0, max_delay=2.0).next_delay(None, random.Random(0)) == 2.0


def test_next_delay_sequence_by_hand():
    policy = RetryPolicy(delay=0.5, backoff=2.0, jitter=0.0, max_delay=3.0)
    rng = random.Random(0)
    delays, previous = [], None
    for _ in range(5):
        previous = policy.next_delay(previous, rng)
        delays.append(previous)
    assert delays == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_next_delay_tuple_jitter_stays_in_bounds_and_uses_the_rng():
    policy = RetryPolicy(delay=1.0, backoff=2.0, jitter=(0.1, 0.4), max_delay=1000.0)
    rng = random.Random(42)
    twin = random.Random(42)
    for previous in (1.0, 2.0, 5.0, 7.5, 100.0):
        got = policy.next_delay(previous, rng)
        assert previous * 2.0 + 0.1 <= got <= previous * 2.0 + 0.4
        assert got == pytest.approx(previous * 2.0 + twin.uniform(0.1, 0.4))


def test_next_delay_tuple_jitter_varies_between_calls():
    policy = RetryPolicy(delay=1.0, backoff=1.0, jitter=(0.0, 1.0), max_delay=1000.0)
    rng = random.Random(3)
    values = {policy.next_delay(1.0, rng) for _ in range(20)}
    assert len(values) > 1


# ------------------------------------------------------------------- Retrier.call


def test_call_retries_server_errors_then_returns_the_result():
    clock = FakeClock()
    fn = Failing([ServerError("boom"), ServerError("boom again")], result=42)
    result = _retrier(FAST, clock).call(fn, operation="get_object", bucket="b", key="k")
    assert result == 42
    assert fn.calls == 3
    assert clock.sleeps == [0.5, 1.0]


def test_call_succeeding_first_time_never_sleeps():
    clock = FakeClock()
    fn = Failing([], result="ok")
    assert _retrier(FAST, clock).call(fn, operation="op") == "ok"
    assert fn.calls == 1
    assert clock.sleeps == []


def test_call_gives_up_after_tries_raising_the_last_throttled_error():
    policy = RetryPolicy(tries=4, delay=0.1, backoff=2.0, jitter=0.0, max_delay=5, deadline=None)
    clock = FakeClock()
    fn = Failing([ThrottledError(f"slow down {i}") for i in range(10)])
    with pytest.raises(ThrottledError) as info:
        _retrier(policy, clock).call(fn, operation="put_object")
    assert fn.calls == 4
    assert info.value is fn.raised[-1]
    assert type(info.value) is ThrottledError
    assert clock.sleeps == pytest.approx([0.1, 0.2, 0.4])


def test_call_with_one_try_makes_exactly_one_attempt():
    policy = RetryPolicy(tries=1, jitter=0.0, deadline=None)
    clock = FakeClock()
    fn = Failing([ServerError("x"), ServerError("y")], result=1)
    with pytest.raises(ServerError):
        _retrier(policy, clock).call(fn, operation="op")
    assert fn.calls == 1
    assert clock.sleeps == []


@pytest.mark.parametrize(
    "error",
    [
        ObjectNotFoundError("gone"),
        AccessDeniedError("no"),
        RequestRejectedError("bad"),
        InvalidRequestError("invalid"),
        TLSError("cert"),
        ConfigurationError("conf", variable="x"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_call_does_not_retry_permanent_errors(error):
    clock = FakeClock()
    fn = Failing([error, error], result="never")
    with pytest.raises(type(error)) as info:
        _retrier(FAST, clock).call(fn, operation="op")
    assert info.value is error
    assert fn.calls == 1
    assert clock.sleeps == []


def test_call_retries_checksum_mismatch():
    clock = FakeClock()
    fn = Failing([ChecksumMismatchError("bad bytes", expected="a", actual="b")], result="fixed")
    assert _retrier(FAST, clock).call(fn, operation="get_object") == "fixed"
    assert fn.calls == 2
    assert clock.sleeps == [0.5]


def test_call_persistent_checksum_mismatch_is_raised_after_all_tries():
    policy = RetryPolicy(tries=3, delay=0.0, jitter=0.0, deadline=None)
    fn = Failing([ChecksumMismatchError(f"bad {i}") for i in range(5)])
    with pytest.raises(ChecksumMismatchError) as info:
        _retrier(policy).call(fn, operation="op")
    assert fn.calls == 3
    assert info.value is fn.raised[-1]


def test_call_non_clerk_error_propagates_at_once():
    clock = FakeClock()
    fn = Failing([ZeroDivisionError("bug"), ZeroDivisionError("bug")], result=1)
    with pytest.raises(ZeroDivisionError):
        _retrier(FAST, clock).call(fn, operation="op")
    assert fn.calls == 1
    assert clock.sleeps == []


def test_call_stops_at_deadline_and_raises_the_last_error(caplog):
    # Delays 1, 2, 4, 8 with a 10 s deadline: after failures at t=0, 1, 3 the waits fit
    # (0+1, 1+2, 3+4 <= 10); after the fourth failure at t=7, 7+8 > 10, so it gives up.
    policy = RetryPolicy(tries=10, delay=1.0, backoff=2.0, jitter=0.0, max_delay=100, deadline=10)
    clock = FakeClock()
    fn = Failing([ServerError(f"e{i}") for i in range(10)])
    caplog.set_level(logging.WARNING, logger="object_clerk.retry")
    with pytest.raises(ServerError) as info:
        _retrier(policy, clock).call(fn, operation="get_object")
    assert fn.calls == 4
    assert clock.sleeps == [1.0, 2.0, 4.0]
    assert info.value is fn.raised[-1]
    assert any("deadline" in r.getMessage() for r in caplog.records)


def test_call_deadline_counts_time_spent_in_attempts():
    policy = RetryPolicy(tries=10, delay=1.0, backoff=1.0, jitter=0.0, max_delay=1, deadline=10)
    clock = FakeClock()

    def slow_failure() -> None:
        slow_failure.calls += 1  # type: ignore[attr-defined]
        clock.now += 4.0  # each attempt takes 4 s
        raise ConnectionFault("reset")

    slow_failure.calls = 0  # type: ignore[attr-defined]
    with pytest.raises(ConnectionFault):
        _retrier(policy, clock).call(slow_failure, operation="op")
    # Attempt 1 ends at 4 (4+1 <= 10), attempt 2 ends at 9 (9+1 <= 10), attempt 3 at 14.
    assert slow_failure.calls == 3  # type: ignore[attr-defined]
    assert clock.sleeps == [1.0, 1.0]


def test_deadline_is_one_budget_for_a_call_and_its_units():
    """Units retried inside a call (the parts of a transfer) share the call's deadline: a
    part started late in a stalled call gets what is left of the budget, not a fresh one."""
    policy = RetryPolicy(tries=100, delay=1.0, backoff=1.0, jitter=0.0, max_delay=1, deadline=10)
    clock = FakeClock()
    retrier = _retrier(policy, clock)
    outer_attempts = 0

    def part() -> None:
        raise ConnectionFault("stalled")

    def whole() -> None:
        nonlocal outer_attempts
        outer_attempts += 1
        if outer_attempts <= 5:
            raise ServerError("busy")  # 5 s pass in the outer loop's waits
        retrier.call(part, operation="UploadPart")

    started = clock.now
    with pytest.raises(ConnectionFault):
        retrier.call(whole, operation="upload_object")
    # Separate budgets would give the part 10 s of its own, to t=15.
    assert clock.now - started <= 10


def test_deadline_counts_from_the_last_progress():
    """A long transfer that keeps making progress keeps its retries: each unit that
    succeeds refreshes the call's budget."""
    policy = RetryPolicy(tries=3, delay=1.0, backoff=1.0, jitter=0.0, max_delay=1, deadline=5)
    clock = FakeClock()
    retrier = _retrier(policy, clock)

    def transfer() -> int:
        done = 0
        for _ in range(20):  # 20 parts, each failing once, each success taking 2 s
            retrier.call(Failing([ConnectionFault("reset")]), operation="UploadPart")
            clock.now += 2.0
            done += 1
        return done

    assert retrier.call(transfer, operation="upload_object") == 20  # 60 s, never stalled


def test_on_retry_hook_receives_events():
    events: list[RetryEvent] = []
    clock = FakeClock()
    errs = [ServerError("a"), ThrottledError("b"), ConnectionFault("c")]
    fn = Failing(list(errs), result="done")
    retrier = _retrier(FAST, clock, on_retry=events.append)
    assert retrier.call(fn, operation="upload_object", bucket="bkt", key="k/1") == "done"
    assert [e.attempt for e in events] == [1, 2, 3]
    assert [e.error for e in events] == errs
    assert [e.delay for e in events] == [0.5, 1.0, 2.0]
    assert {e.operation for e in events} == {"upload_object"}
    assert {e.bucket for e in events} == {"bkt"}
    assert {e.key for e in events} == {"k/1"}
    assert {e.max_attempts for e in events} == {5}
    # Elapsed time since the first attempt began, as the fake clock saw it.
    assert [e.elapsed for e in events] == [0.0, 0.5, 1.5]


def test_on_retry_hook_attempts_run_1_to_n_minus_1_when_giving_up():
    events: list[RetryEvent] = []
    policy = RetryPolicy(tries=4, delay=0.0, jitter=0.0, deadline=None)
    fn = Failing([ServerError(str(i)) for i in range(4)])
    with pytest.raises(ServerError):
        _retrier(policy, on_retry=events.append).call(fn, operation="op")
    assert [e.attempt for e in events] == [1, 2, 3]


def test_each_retry_logs_a_warning_carrying_the_event(caplog):
    caplog.set_level(logging.WARNING, logger="object_clerk.retry")
    fn = Failing([ServerError("a"), ServerError("b")], result=7)
    assert _retrier(FAST).call(fn, operation="head_object", bucket="b", key="k") == 7
    records = [r for r in caplog.records if r.name == "object_clerk.retry"]
    assert len(records) == 2
    for number, record in enumerate(records, start=1):
        assert record.levelno == logging.WARNING
        event = record.retry  # type: ignore[attr-defined]
        assert isinstance(event, RetryEvent)
        assert event.attempt == number
        assert event.operation == "head_object"
        assert "head_object" in record.getMessage()


# ------------------------------------------------------------------ is_retryable

RETRYABLE = {
    "ObjectClerkError": False,
    "InvalidRequestError": False,
    "ConfigurationError": False,
    "NotFoundError": False,
    "BucketNotFoundError": False,
    "ObjectNotFoundError": False,
    "AccessDeniedError": False,
    "PreconditionFailedError": False,
    "RequestRejectedError": False,
    "TLSError": False,
    "LocalIOError": False,
    "SourceChangedError": False,
    "DataTypeError": False,
    "ObjectSaveException": False,
    "ObjectClerkServerInternalException": True,
    "ChecksumMismatchError": True,
    "UnverifiableObjectError": False,
    "TransientError": True,
    "ThrottledError": True,
    "ServerError": True,
    "ConnectionFault": True,
}


def _error_classes() -> dict[str, type[ObjectClerkError]]:
    # Every class once, under its own name (1.1.0's aliases name the same classes).
    return {
        name: cls
        for name, cls in inspect.getmembers(errors, inspect.isclass)
        if issubclass(cls, ObjectClerkError) and cls.__name__ == name
    }


def test_is_retryable_table_covers_every_error_class():
    assert set(_error_classes()) == set(RETRYABLE)


@pytest.mark.parametrize(("name", "expected"), sorted(RETRYABLE.items()))
def test_is_retryable_classification(name, expected):
    cls = _error_classes()[name]
    assert is_retryable(cls("x")) is expected


@pytest.mark.parametrize("exc", [ValueError("v"), ZeroDivisionError(), OSError("os")])
def test_is_retryable_false_for_foreign_exceptions(exc):
    assert is_retryable(exc) is False


# --------------------------------------------------------------- retry_transient

NO_WAIT = RetryPolicy(tries=3, delay=0, jitter=0.0, max_delay=0, deadline=None)


def test_retry_transient_translates_and_retries_connection_errors():
    calls = []

    @retry_transient(NO_WAIT)
    def fetch(x: int, *, y: int) -> int:
        calls.append((x, y))
        if len(calls) == 1:
            raise EndpointConnectionError(endpoint_url="http://x")
        return x + y

    assert fetch(1, y=2) == 3
    assert calls == [(1, 2), (1, 2)]
    assert fetch.__name__ == "fetch"


def test_retry_transient_raises_translated_error_after_all_tries():
    calls = []

    @retry_transient(NO_WAIT, operation="download")
    def fetch() -> None:
        calls.append(1)
        raise EndpointConnectionError(endpoint_url="http://x")

    with pytest.raises(ConnectionFault) as info:
        fetch()
    assert len(calls) == 3
    assert info.value.operation == "download"
    assert isinstance(info.value.__cause__, EndpointConnectionError)


def test_retry_transient_does_not_retry_not_found():
    calls = []

    @retry_transient(NO_WAIT)
    def head() -> None:
        calls.append(1)
        raise ClientError(
            {"Error": {"Code": "NoSuchKey", "Message": "m"}, "ResponseMetadata": {}}, "HeadObject"
        )

    with pytest.raises(ObjectNotFoundError) as info:
        head()
    assert len(calls) == 1
    assert info.value.operation == "head"


def test_retry_transient_lets_programming_errors_through():
    calls = []

    @retry_transient(NO_WAIT)
    def broken() -> None:
        calls.append(1)
        raise KeyError("oops")

    with pytest.raises(KeyError):
        broken()
    assert len(calls) == 1


# -------------------------------------------------------------- botocore_attempts


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        (Config(retries={"max_attempts": 0}), 1),
        (Config(retries={"max_attempts": 2}), 3),
        (Config(retries={"total_max_attempts": 4}), 4),
        (Config(retries={"total_max_attempts": 1}), 1),
        (Config(retries={"mode": "standard"}), 3),
        (Config(retries={"mode": "adaptive"}), 3),
        (Config(retries={"mode": "legacy"}), 5),
        (Config(), 5),
    ],
)
def test_botocore_attempts(config, expected):
    assert botocore_attempts(config) == expected
