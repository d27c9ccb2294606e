"""The whole GCP lifecycle against the fakes, machines simulated from their own startup script."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from pulumi_iterative import lifecycle
from pulumi_iterative.clouds.gcp.names import Names
from pulumi_iterative.spec import parse_spec
from pulumi_iterative.status import State
from tests.gcp.conftest import Gcp, leftovers
from tests.gcp.simulator import MachineSimulator
from tests.gcp.test_permissions import check_caller_permissions


def stamp(rfc3339: str) -> float:
    return datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp()


SCRIPT = """#!/bin/sh
set -e
mkdir -p results
out=results/run-$TASK_INDEX.txt
echo "index=$TASK_INDEX count=$TASK_COUNT restarts=$TASK_RESTARTS resumed=$TASK_RESUMED" > $out
cat input.txt >> $out
echo "mode=$MODE token-length=${#API_TOKEN}" >> $out
echo "machine $TASK_INDEX done"
"""


def test_full_lifecycle(gcp: Gcp, gcp_simulator: MachineSimulator, workdir: Path) -> None:
    simulator = gcp_simulator
    (workdir / "input.txt").write_text("hello from the workstation\n")
    spec = parse_spec(
        {
            "cloud": "gcp",
            "region": "us-east",
            "machine": "m",
            "spot": 0,
            "disk_size": 40,
            "parallelism": 2,
            "timeout": 3600,
            "environment": {"MODE": "train"},
            "secret_environment": {"API_TOKEN": "s3cr3t-value-123"},
            "script": SCRIPT,
            "storage": {"workdir": str(workdir), "output": "results", "checkpoint_interval": 1},
            "tags": {"team": "ml"},
        }
    )
    ref = lifecycle.create(spec)
    names = Names(ref.task_id)
    simulator.start()

    status = simulator.wait_status(ref, lambda s: s.done, timeout=120)
    assert status.state == State.SUCCEEDED, simulator.report()
    latest = status.latest
    assert [m.index for m in latest] == [0, 1]
    assert all(m.state == State.SUCCEEDED and m.exit_code == 0 for m in latest)
    booted = {m.key: m.name for m in simulator.machines.values()}
    assert {booted[m.instance] for m in latest} == {names.instance(0), names.instance(1)}
    assert "machine 0 done" in "".join(status.logs.values())

    # Each agent left the group with the target lowered: the group is at zero, no one left.
    migs = gcp.fake.calls("compute.regionInstanceGroupManagers.deleteInstances")
    simulator.wait_for(lambda: gcp.fake.groups[f"us-east1/{names.group}"].target == 0, "zero")
    tokens = {m.metadata.token for m in simulator.machines.values()}
    assert {c.auth.removeprefix("Bearer ") for c in migs} <= tokens  # machines' own identity

    # Machines used their own service account through the metadata server.
    for machine in simulator.machines.values():
        asked = [p for p, code in machine.metadata.requests if code == 200]
        assert any("service-accounts/default/token" in p for p in asked)

    # Both machines left the group and are deleted: GCE's own operations (insert, delete)
    # time their billing, not the agents' reports; one aggregated list each for the
    # machines and the events, where the events alone listed every zone before.
    def gone() -> bool:
        return not [i for i in gcp.fake.instances.values() if names.group in i["name"]]

    simulator.wait_for(gone, "the machines deleted")
    before = len(gcp.fake.requests)
    final = lifecycle.read(ref, with_logs=False)
    calls = [c.method for c in gcp.fake.requests[before:] if not c.auth]
    assert calls.count("compute.globalOperations.aggregatedList") == 2, calls
    assert not {"compute.zoneOperations.list", "compute.regions.get"} & set(calls)
    spent = final.cost
    assert spent is not None and spent.final and len(spent.boots) == 2
    ops = [op for op in gcp.fake.operations.values() if names.group in op["targetLink"]]
    for boot in spent.boots:
        assert boot.timed_by == "cloud", boot
        made = [o for o in ops if o["targetId"] == boot.instance and o["operationType"] == "insert"]
        left = [o for o in ops if o["targetId"] == boot.instance and o["operationType"] == "delete"]
        billed = stamp(left[0]["endTime"]) - stamp(made[0]["endTime"])
        assert boot.seconds == pytest.approx(max(billed, 60.0), abs=0.1)  # GCE bills >= 1 min
        assert boot.cost is not None and boot.cost > 0

    lifecycle.delete(ref)
    runs = sorted((workdir / "results").glob("run-*.txt"))
    assert [p.name for p in runs] == ["run-0.txt", "run-1.txt"]
    first = runs[0].read_text()
    assert "index=0 count=2 restarts=0 resumed=0" in first
    assert "hello from the workstation" in first
    assert "mode=train token-length=16" in first
    check_caller_permissions(gcp)  # every call so far needed a permission the README lists
    assert leftovers(gcp, ref.task_id) == []
    lifecycle.delete(ref)  # idempotent
