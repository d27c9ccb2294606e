"""Test helpers shared across modules (import from tests.helpers)."""

from __future__ import annotations

import time
from collections.abc import Callable

from pulumi_iterative import lifecycle
from pulumi_iterative.status import TaskStatus
from pulumi_iterative.task import TaskRef


def wait_for(
    ref: TaskRef, condition: Callable[[TaskStatus], bool], timeout: float = 60, poll: float = 0.3
) -> TaskStatus:
    """Poll the task's status until condition holds; fail with the last status and logs."""
    end = time.monotonic() + timeout
    status = lifecycle.read(ref)
    while not condition(status):
        if time.monotonic() > end:
            raise AssertionError(
                f"timed out waiting; last status {status.to_dict()}\nlogs: {status.logs}"
            )
        time.sleep(poll)
        status = lifecycle.read(ref)
    return status


def wait_done(ref: TaskRef, timeout: float = 60) -> TaskStatus:
    return wait_for(ref, lambda s: s.done, timeout)
