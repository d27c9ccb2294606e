"""Spot interruption on AWS: the notice, the loss, the group's replacement, the resume."""

from __future__ import annotations

import json
from pathlib import Path

from pulumi_iterative import lifecycle, sync
from pulumi_iterative.clouds.aws.names import Names
from pulumi_iterative.spec import parse_spec
from pulumi_iterative.status import State
from tests.aws.conftest import Moto, leftovers
from tests.aws.simulator import MachineSimulator

# Index 1 is done at once. Index 0 does its first epoch and then waits to be taken
# away; its replacement must find that epoch restored, and adds the second one.
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


def test_spot_interruption_resumes_from_the_checkpoint(
    moto: Moto, simulator: MachineSimulator, workdir: Path
) -> None:
    spec = parse_spec(
        {
            "cloud": "aws",
            "machine": "s",
            "spot": 0,
            "parallelism": 2,
            "timeout": 3600,
            "script": SCRIPT,
            # No background checkpoints: only the interruption notice can save epoch 1.
            "storage": {"workdir": str(workdir), "output": "results", "checkpoint_interval": 0},
        }
    )
    ref = lifecycle.create(spec)
    names = Names(ref.task_id)
    asg = moto.client("autoscaling")
    simulator.start()

    def desired() -> int:
        groups = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[names.group])
        return int(groups["AutoScalingGroups"][0]["DesiredCapacity"])

    # Index 1 finishes and leaves (desired 2 -> 1); index 0 is at work.
    status = simulator.wait_status(
        ref,
        lambda s: {m.index: m.state for m in s.latest} == {0: State.RUNNING, 1: State.SUCCEEDED},
    )
    simulator.wait_for(lambda: desired() == 1, "index 1 to leave the group")
    first = next(m for m in status.latest if m.index == 0).instance
    ec2 = moto.client("ec2")
    described = ec2.describe_instances(InstanceIds=[first])["Reservations"][0]["Instances"][0]
    assert described["PublicIpAddress"] in status.addresses  # the group's public addresses
    machine = simulator.machines[first]
    progress = machine.folder / "pulumi-iterative" / "work" / "results" / "progress.txt"
    simulator.wait_for(progress.exists, "the first epoch")

    # AWS announces the interruption: the agent checkpoints at once.
    machine.imds.interrupt()
    rclone = lifecycle.rclone_for(ref)
    saved = simulator.wait_for(
        lambda: (m := sync.latest(rclone, sync.lineage_of(0))) and m.kind == "signal" and m,
        "a checkpoint taken on the notice",
        timeout=30,
    )
    assert "results/progress.txt" in saved.files
    assert ("GET", "/latest/meta-data/spot/instance-action", 200) in machine.imds.requests

    # The machine is taken without a goodbye; the group starts a replacement.
    simulator.kill(first)
    asg.terminate_instance_in_auto_scaling_group(
        InstanceId=first, ShouldDecrementDesiredCapacity=False
    )
    status = simulator.wait_status(ref, lambda s: s.done, timeout=90)
    assert status.state == State.SUCCEEDED, simulator.report()
    assert status.restarts == {0: 1}
    boots = [m for m in status.machines if m.index == 0]
    assert [m.state for m in boots] == [State.INTERRUPTED, State.SUCCEEDED]
    replacement = boots[1].instance
    assert replacement != first and replacement in simulator.machines

    # The replacement took over index 0 (its claimant was gone), not finished index 1,
    # and left the group when done (the report comes first, then the leave).
    simulator.wait_for(lambda: desired() == 0, "the group to reach zero")
    claims = {
        i: json.loads(
            moto.client("s3").get_object(Bucket=names.bucket, Key=f"claims/{i}.json")["Body"].read()
        )
        for i in (0, 1)
    }
    assert claims[0]["instance"] == replacement and claims[0]["done"] is True
    assert claims[1]["done"] is True

    lifecycle.delete(ref)
    history = (workdir / "results" / "history-0.txt").read_text().splitlines()
    assert history == ["index=0 restarts=0 resumed=0", "index=0 restarts=1 resumed=1"]
    assert (workdir / "results" / "progress.txt").read_text() == "epoch 1\nepoch 2\n"
    assert leftovers(moto, ref.task_id) == []
