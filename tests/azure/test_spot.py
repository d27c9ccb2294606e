"""Spot eviction on Azure: the Scheduled Events notice, the loss, spot restore's new VM,
the resume, and the scale set reaching zero as the last machine leaves."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from pulumi_iterative import lifecycle, sync
from pulumi_iterative.clouds.azure.names import Names
from pulumi_iterative.spec import parse_spec
from pulumi_iterative.status import State
from tests.azure.conftest import Cloud, leftovers
from tests.azure.simulator import MachineSimulator

# Index 1 is done at once. Index 0 does its first epoch and then waits to be evicted;
# its replacement must find that epoch restored, and adds the second one.
SCRIPT = """#!/bin/sh
set -e
mkdir -p results
out=results/history-$TASK_INDEX.txt
echo "index=$TASK_INDEX restarts=$TASK_RESTARTS resumed=$TASK_RESUMED" >> $out
if [ "$TASK_INDEX" = 1 ]; then exit 0; fi
if [ "$TASK_RESUMED" = 0 ]; then
  echo "epoch 1" > results/progress.txt
  while true; do sleep 0.2; done
fi
grep -q "epoch 1" results/progress.txt
echo "epoch 2" >> results/progress.txt
"""


def stamp(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def wait_for(
    sim: MachineSimulator, condition: Callable[[], Any], what: str, timeout: float = 120.0
) -> Any:
    end = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}\n{sim.report()}")
        time.sleep(0.3)


def test_eviction_notice_checkpoint_and_spot_restore_resume(
    azure_cloud: Cloud, azure_simulator: MachineSimulator, workdir: Path
) -> None:
    spec = parse_spec(
        {
            "cloud": "azure",
            "machine": "s",
            "spot": 0,
            "parallelism": 2,
            "timeout": 3600,
            "script": SCRIPT,
            # No background checkpoints: only the eviction notice can save epoch 1.
            "storage": {"workdir": str(workdir), "output": "results", "checkpoint_interval": 0},
        }
    )
    ref = lifecycle.create(spec)
    fake, names = azure_cloud.arm.fake, Names(ref.task_id)
    azure_simulator.start()

    def capacity() -> int:
        (scale_set,) = [
            s
            for s in fake.find("Microsoft.Compute/virtualMachineScaleSets")
            if s["name"] == names.scale_set
        ]
        return int(scale_set["sku"]["capacity"])

    status = wait_for(
        azure_simulator,
        lambda: (
            (s := lifecycle.read(ref))
            and {m.index: m.state for m in s.latest} == {0: State.RUNNING, 1: State.SUCCEEDED}
            and s
        ),
        "index 1 done, index 0 at work",
    )
    wait_for(azure_simulator, lambda: capacity() == 1, "index 1 to leave the scale set")
    first = next(m for m in status.latest if m.index == 0).instance
    assert len(lifecycle.read(ref, with_logs=False).addresses) == 1  # index 0's public address
    (seen,) = [m for m in lifecycle.get_backend("azure").machines(ref) or [] if m.alive]
    assert seen.type == "Standard_D2as_v5" and seen.launched  # Azure's own record
    machine = azure_simulator.machines[first]
    progress = machine.folder / "pulumi-iterative" / "work" / "results" / "progress.txt"
    wait_for(azure_simulator, progress.exists, "the first epoch")

    # Azure announces the eviction in Scheduled Events: the agent checkpoints at once.
    fake.announce_eviction(first)
    rclone = lifecycle.rclone_for(ref)
    saved = wait_for(
        azure_simulator,
        lambda: (m := sync.latest(rclone, sync.lineage_of(0))) and m.kind == "signal" and m,
        "a checkpoint taken on the notice",
        timeout=60,
    )
    assert "results/progress.txt" in saved.files
    assert any(
        p.startswith("/metadata/scheduledevents") and code == 200
        for p, code in machine.imds.requests
    )

    # The VM goes without a goodbye; spot restore brings a new one for the capacity.
    azure_simulator.kill(first)
    fake.evict(first)
    status = wait_for(
        azure_simulator, lambda: (s := lifecycle.read(ref)).done and s, "the task to finish"
    )
    assert status.state == State.SUCCEEDED, azure_simulator.report()
    assert status.restarts == {0: 1}
    boots = [m for m in status.machines if m.index == 0]
    assert [m.state for m in boots] == [State.INTERRUPTED, State.SUCCEEDED]
    assert boots[1].instance != first and boots[1].instance in azure_simulator.machines
    wait_for(azure_simulator, lambda: capacity() == 0, "the scale set to reach zero")
    before = len(fake.requests)
    final = lifecycle.read(ref, with_logs=False)
    kinds = {e.kind for e in final.events}
    assert {"launch", "interrupt", "terminate"} <= kinds  # from the activity log
    # Every VM is gone, the evicted one and the two that left: Azure's activity log times
    # their billing (made at the write, gone at the eviction or delete), not the agents'
    # reports, for one more read of the log per status read.
    logs = [r for r in fake.requests[before:] if "eventtypes/management/values" in r.path.lower()]
    assert len(logs) == 2  # the machines' times and the events
    spent = final.cost
    assert spent is not None and spent.final and len(spent.boots) == 3
    assert {b.timed_by for b in spent.boots} == {"cloud"}, spent.boots
    log: dict[tuple[str, str], dict[str, Any]] = {}
    for e in fake.activity:  # oldest first: the first of each kind wins
        log.setdefault((e["resourceId"].rsplit("/", 1)[-1], e["operationName"]["value"]), e)
    evicted = next(b for b in spent.boots if b.instance == first)
    went = log[(first, "Microsoft.Compute/virtualMachines/evict/action")]["eventTimestamp"]
    made = log[(first, "Microsoft.Compute/virtualMachines/write")]["eventTimestamp"]
    billed = stamp(went) - stamp(made)
    assert evicted.seconds == pytest.approx(max(billed, 60.0), abs=0.1)  # >= a minute

    lifecycle.delete(ref)
    history = (workdir / "results" / "history-0.txt").read_text().splitlines()
    assert history == ["index=0 restarts=0 resumed=0", "index=0 restarts=1 resumed=1"]
    assert (workdir / "results" / "progress.txt").read_text() == "epoch 1\nepoch 2\n"
    assert leftovers(azure_cloud, ref.task_id) == []


def test_allocation_failure_shows_as_an_error_event(azure_cloud: Cloud, workdir: Path) -> None:
    azure_cloud.arm.fake.refuse_capacity("Standard_D2as_v5")
    ref = lifecycle.create(
        parse_spec(
            {
                "cloud": "azure",
                "machine": "s",
                "script": "#!/bin/sh\ntrue\n",
                "storage": {"workdir": str(workdir)},
            }
        )
    )
    status = lifecycle.read(ref, with_logs=False)
    errors = [e for e in status.events if e.kind == "error"]
    assert errors and "AllocationFailed" in errors[0].message
    assert status.state == State.QUEUED
    lifecycle.delete(ref)
    assert leftovers(azure_cloud, ref.task_id) == []
