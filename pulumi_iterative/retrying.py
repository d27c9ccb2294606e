"""The one retry loop of every cloud's API wrapper, and its one polling loop.

`retry` runs an attempt until it succeeds, retrying only failures its caller
classifies as transient, with capped, jittered exponential backoff, and gives up
when the next wait would pass the deadline. Each cloud keeps only what it knows:
which of its SDK's errors are transient, and which error to raise instead of the
others (errors.NotFound, its own error class). The clock, the sleep and the jitter
are parameters so that tests can run the loop without waiting.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

BACKOFF_BASE = 0.5  # seconds; the first retry waits up to twice this
BACKOFF_CAP = 15.0  # seconds; no wait is longer


@dataclass(frozen=True)
class Transient:
    """A failure that may pass: `said` names it (logged, and in the final error);
    `give_up(message)` makes the error raised once the deadline has passed."""

    said: str
    give_up: Callable[[str], Exception]


# What a classifier says of a failure: retry it (Transient), or raise this error
# instead (the failure itself to let it through unchanged).
Verdict = Transient | BaseException


@dataclass(frozen=True)
class Clock:
    """Time as the loops see it (a test gives a fake one that never really waits)."""

    now: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    jitter: Callable[[float, float], float] = random.uniform


REAL = Clock()


def retry(
    attempt: Callable[[], T],
    *,
    classify: Callable[[Exception], Verdict],
    deadline: float,
    base: float = BACKOFF_BASE,
    cap: float = BACKOFF_CAP,
    clock: Clock = REAL,
) -> T:
    """attempt(), again after each transient failure until `deadline` seconds are up.

    The n-th retry waits min(cap, base * 2**n) times a jitter in [0.5, 1]. When that
    wait would end after the deadline, the last transient failure's `give_up` error
    is raised from it, saying how many attempts were made in how long. Any other
    failure raises what `classify` says at once, from the failure.
    """
    end = clock.now() + deadline
    attempts = 0
    while True:
        try:
            return attempt()
        except Exception as exc:
            verdict = classify(exc)
            if verdict is exc:
                raise
            if not isinstance(verdict, Transient):
                raise verdict from exc
            failure = exc
        attempts += 1
        delay = min(cap, base * 2**attempts) * clock.jitter(0.5, 1.0)
        if clock.now() + delay > end:
            message = f"{verdict.said} (still failing after {attempts} attempts in {deadline:g}s)"
            raise verdict.give_up(message) from failure
        log.debug("retrying in %.1fs after %s", delay, verdict.said)
        clock.sleep(delay)


def wait_until(
    condition: Callable[[], bool],
    what: str,
    *,
    deadline: float,
    first: float,
    timed_out: Callable[[str], Exception],
    cap: float = BACKOFF_CAP,
    clock: Clock = REAL,
) -> None:
    """Poll condition with capped, jittered backoff from `first` seconds on;
    `timed_out(message)` is raised when the next wait would pass the deadline."""
    end = clock.now() + deadline
    delay = first
    while not condition():
        if clock.now() + delay > end:
            raise timed_out(f"timed out after {deadline:g}s waiting for {what}")
        clock.sleep(delay * clock.jitter(0.5, 1.0))
        delay = min(cap, delay * 2)
