"""The shared retry and polling loops, on a fake clock: backoff, cap, jitter and
deadline, which failures are retried and which error is raised instead."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from pulumi_iterative import retrying
from pulumi_iterative.errors import NotFound, missing_is_done
from pulumi_iterative.retrying import Clock, Transient, Verdict


class FakeTime:
    """A clock that only moves when slept on; the jitter is the low end unless set."""

    def __init__(self, jitter: float = 0.5) -> None:
        self.now = 1000.0
        self.slept: list[float] = []
        self.factor = jitter

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds

    def jitter(self, low: float, high: float) -> float:
        assert (low, high) == (0.5, 1.0)
        return self.factor

    def clock(self) -> Clock:
        return Clock(now=lambda: self.now, sleep=self.sleep, jitter=self.jitter)


class Busy(Exception):
    """What a fake SDK raises for "try again later"."""


class Refused(Exception):
    """What a fake SDK raises for a final answer."""


class CloudError(Exception):
    def __init__(self, message: str, code: str = "") -> None:
        self.code = code
        super().__init__(message)


def classify(exc: Exception) -> Verdict:
    if isinstance(exc, Busy):
        return Transient(f"busy: {exc}", lambda said: CloudError(said, "Busy"))
    if isinstance(exc, Refused):
        return CloudError(f"refused: {exc}", "Refused")
    return exc


def failing(times: int, error: Exception, result: str = "done") -> Callable[[], str]:
    """An attempt that raises `error` `times` times, then returns result."""
    calls = {"n": 0}

    def attempt() -> str:
        calls["n"] += 1
        if calls["n"] <= times:
            raise error
        return result

    return attempt


def test_transient_failures_are_retried_with_doubling_jittered_waits() -> None:
    time = FakeTime(jitter=0.5)
    got = retrying.retry(
        failing(3, Busy("slow down")), classify=classify, deadline=60, clock=time.clock()
    )
    assert got == "done"
    # min(cap, 0.5 * 2**n) times the jitter, for n = 1, 2, 3
    assert time.slept == [0.5, 1.0, 2.0]


def test_waits_stop_growing_at_the_cap() -> None:
    time = FakeTime(jitter=1.0)
    retrying.retry(
        failing(7, Busy("x")), classify=classify, deadline=600, cap=15.0, clock=time.clock()
    )
    assert time.slept == [1.0, 2.0, 4.0, 8.0, 15.0, 15.0, 15.0]


def test_a_failure_that_does_not_pass_ends_at_the_deadline_with_the_callers_error() -> None:
    time = FakeTime(jitter=1.0)
    attempts = failing(10**6, Busy("slow down"))
    with pytest.raises(CloudError) as ended:
        retrying.retry(attempts, classify=classify, deadline=20, clock=time.clock())
    # waits of 1, 2, 4, 8 fit in 20 s; the fifth (16) would end after the deadline
    assert time.slept == [1.0, 2.0, 4.0, 8.0]
    assert str(ended.value) == "busy: slow down (still failing after 5 attempts in 20s)"
    assert ended.value.code == "Busy"
    assert isinstance(ended.value.__cause__, Busy)
    assert time.now <= 1000.0 + 20


def test_a_final_failure_is_raised_at_once_as_the_classifier_says() -> None:
    time = FakeTime()
    with pytest.raises(CloudError) as refused:
        retrying.retry(
            failing(1, Refused("no")), classify=classify, deadline=60, clock=time.clock()
        )
    assert (str(refused.value), refused.value.code) == ("refused: no", "Refused")
    assert isinstance(refused.value.__cause__, Refused)
    assert time.slept == []


def test_an_unclassified_failure_goes_through_unchanged() -> None:
    time = FakeTime()
    error = KeyError("bug")
    with pytest.raises(KeyError) as raised:
        retrying.retry(failing(1, error), classify=classify, deadline=60, clock=time.clock())
    assert raised.value is error and raised.value.__cause__ is None
    assert time.slept == []


def test_a_transient_failure_then_a_final_one_raises_the_final_one() -> None:
    time = FakeTime()
    answers: list[Exception] = [Busy("1"), Refused("2")]

    def attempt() -> str:
        raise answers.pop(0)

    with pytest.raises(CloudError, match="refused: 2"):
        retrying.retry(attempt, classify=classify, deadline=60, clock=time.clock())
    assert time.slept == [0.5]


def test_wait_until_polls_with_backoff_and_times_out_with_the_callers_error() -> None:
    time = FakeTime(jitter=1.0)
    polls: list[float] = []

    def never() -> bool:
        polls.append(time.now)
        return False

    with pytest.raises(CloudError, match=r"^timed out after 10s waiting for the machine$"):
        retrying.wait_until(
            never,
            "the machine",
            deadline=10,
            first=1.0,
            cap=2.0,
            timed_out=CloudError,
            clock=time.clock(),
        )
    assert time.slept == [1.0, 2.0, 2.0, 2.0, 2.0]
    assert len(polls) == 6


def test_wait_until_returns_as_soon_as_the_condition_holds() -> None:
    time = FakeTime()
    answers = [False, False, True]
    retrying.wait_until(
        lambda: answers.pop(0),
        "it",
        deadline=60,
        first=0.2,
        timed_out=CloudError,
        clock=time.clock(),
    )
    assert time.slept == pytest.approx([0.1, 0.2])
    assert answers == []


def test_a_gone_made_from_a_call_treats_not_found_as_done_and_nothing_else() -> None:
    deleted: list[str] = []

    def call(fn: Callable[[str], None], name: str) -> None:
        fn(name)

    def delete(name: str) -> None:
        if name == "absent":
            raise NotFound(f"{name}: no such thing")
        if name == "locked":
            raise CloudError(f"{name}: in use", "InUse")
        deleted.append(name)

    gone = missing_is_done(call)
    assert gone(delete, "present") is None
    assert gone(delete, "absent") is None
    with pytest.raises(CloudError, match="locked: in use"):
        gone(delete, "locked")
    assert deleted == ["present"]
