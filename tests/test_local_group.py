"""The local cloud's group process, driven one decision at a time with real machine
processes (a stand-in bootstrap that plays the agent's part through its files)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pulumi_iterative.clouds.local.group import SCRIPT_ENDED, Group
from pulumi_iterative.clouds.local.machine import PREEMPTING


def until(condition: Callable[[], object], what: str, timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.fixture
def make_group(tmp_path: Path) -> Iterator[Callable[[str], Group]]:
    made: list[Group] = []

    def make(bootstrap: str) -> Group:
        folder = tmp_path / f"group{len(made)}"
        folder.mkdir()
        (folder / "bootstrap.sh").write_text(bootstrap)
        config = {
            "task_id": "t",
            "parallelism": 1,
            "bootstrap": str(folder / "bootstrap.sh"),
            "deadline": time.time() + 3600,
            "preempt_interval": 0.01,
            "preempt_notice": 30,
        }
        (folder / "group.json").write_text(json.dumps(config))
        group = Group(folder)
        made.append(group)
        return group

    yield make
    for group in made:
        for m in group.machines:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(m.pid, signal.SIGKILL)
            group.procs[m.id].wait(10)


# The agent's part: the script ran (script.pgid), then ended (script.ended); the agent
# then takes its final checkpoint (here: waits), and leaves the group (exit 0).
FINISHING = """
cd "$ITERATIVE_MACHINE_DIR"
echo $$ > script.pgid
echo now > script.ended
while [ ! -e release ]; do sleep 0.05; done
exit 0
"""


def test_a_machine_whose_script_ended_is_not_picked_for_preemption(make_group) -> None:
    group = make_group(FINISHING)
    group.launch(0, "test")
    (m,) = group.machines
    until(lambda: (Path(m.dir) / SCRIPT_ENDED).exists(), "the script to end")
    group.next_preempt = 0.0
    group.preempt()
    assert m.state == "running"
    assert not (Path(m.dir) / PREEMPTING).exists()


# The race the rule above cannot close: the rehearsal picks the machine as its script
# ends; the agent then finishes (the script's end is final) and leaves with exit 0.
LEAVES_DURING_NOTICE = """
cd "$ITERATIVE_MACHINE_DIR"
trap '' TERM
echo $$ > script.pgid
while [ ! -e preempting ]; do sleep 0.05; done
exit 0
"""


def test_a_machine_that_leaves_while_being_preempted_is_not_replaced(make_group) -> None:
    group = make_group(LEAVES_DURING_NOTICE)
    group.launch(0, "test")
    (m,) = group.machines
    until(lambda: (Path(m.dir) / "script.pgid").exists(), "the script to start")
    group.next_preempt = 0.0
    group.preempt()
    assert m.state == "preempting" and (Path(m.dir) / PREEMPTING).exists()
    until(lambda: group.procs[m.id].poll() is not None, "the machine to leave")
    group.reap()
    assert m.state == "terminated" and m.exit_code == 0
    assert len(group.machines) == 1  # no replacement: the index is done
