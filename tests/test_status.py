"""The one status model: per-boot reports and the group's view folded into a task status,
and the task's exit code (what `pulumi-iterative run` exits with)."""

from __future__ import annotations

import pytest

from pulumi_iterative.records import BootReport
from pulumi_iterative.status import (
    EXIT_STOPPED,
    EXIT_TIMEOUT,
    CloudMachine,
    State,
    TaskStatus,
    summarize,
)

NOW = 1_000_000.0


def boot(index: int, state: str, exit_code: int | None, started: float, instance: str = ""):
    return BootReport(
        f"{index}-{started:.0f}",
        index,
        f"{started:.0f}",
        instance=instance or f"vm-{index}-{started:.0f}",
        state=state,
        started=started,
        finished=started + 1 if state != "running" else None,
        exit_code=exit_code,
    )


@pytest.mark.parametrize(
    ("reports", "stopped", "state", "code"),
    [
        ([boot(0, "succeeded", 0, 1)], False, State.SUCCEEDED, 0),
        ([boot(0, "failed", 3, 1)], False, State.FAILED, 3),
        # killed by a signal: the shell's 128+N, never a negative number
        ([boot(0, "failed", -9, 1)], False, State.FAILED, 137),
        # stopped at the timeout: the script's -15 is not the task's code
        ([boot(0, "timeout", -15, 1)], False, State.TIMEOUT, EXIT_TIMEOUT),
        ([boot(0, "succeeded", 0, 1), boot(1, "timeout", None, 1)], False, State.TIMEOUT, 124),
        # a failed boot replaced by one that succeeded: the index succeeded
        ([boot(0, "failed", 1, 1), boot(0, "succeeded", 0, 5)], False, State.SUCCEEDED, 0),
        ([boot(0, "failed", None, 1)], False, State.FAILED, 1),  # the agent could not run it
        ([boot(0, "interrupted", None, 1)], True, State.STOPPED, EXIT_STOPPED),
        ([boot(0, "budget", None, 1)], False, State.BUDGET, EXIT_TIMEOUT),
    ],
)
def test_one_exit_code_per_outcome(
    reports: list[BootReport], stopped: bool, state: State, code: int
) -> None:
    parallelism = len({r.index for r in reports})
    status = summarize(
        reports, [], parallelism=parallelism, deadline=NOW + 60, now=NOW, stopped=stopped
    )
    assert status.state == state
    assert status.exit_code == code


def test_an_interrupted_boot_is_never_the_tasks_result() -> None:
    """While an index's newest boot is interrupted, its replacement is due: the task is
    neither failed nor succeeded, whatever the boot's exit code said."""
    reports = [boot(0, "interrupted", None, 1), boot(1, "succeeded", 0, 1)]
    alive = [CloudMachine("vm-replacement", True)]
    status = summarize(reports, alive, parallelism=2, deadline=NOW + 60, now=NOW)
    assert status.state == State.QUEUED and not status.done
    # a report still saying running whose machine is gone was taken away, too
    gone = [boot(0, "running", None, 1)]
    status = summarize(gone, [], parallelism=1, deadline=NOW + 60, now=NOW)
    assert status.machines[0].state == State.INTERRUPTED and not status.done


def test_a_failed_boot_the_cloud_retries_is_not_the_tasks_result() -> None:
    """k8s retries a failed pod for its index: while it will, the index is queued; once
    the cloud says it will not, the same reports make the task failed."""
    reports = [boot(0, "failed", 3, 1), boot(1, "succeeded", 0, 1)]

    def fold(retrying: set[int]) -> TaskStatus:
        return summarize(reports, [], parallelism=2, deadline=NOW + 60, now=NOW, retrying=retrying)

    due = fold({0})
    assert due.state == State.QUEUED and not due.done
    assert [m.state for m in due.machines] == [State.FAILED, State.SUCCEEDED]  # still shown
    assert fold(set()).state == State.FAILED
    # a retrying index that did not fail (it succeeded) keeps its state
    assert fold({1}).state == State.FAILED
