"""AWS in the conformance suite: moto server, machines simulated from their user-data."""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pulumi_iterative import lifecycle
from pulumi_iterative.clouds.aws.names import Names
from pulumi_iterative.spec import TaskSpec, parse_spec
from pulumi_iterative.status import State
from pulumi_iterative.task import TaskRef
from tests.aws.conftest import Moto, leftovers
from tests.aws.simulator import MachineSimulator
from tests.aws.test_secrets import stored
from tests.conformance.harness import SHUTDOWN_SKEW


class AwsHarness:
    name = "aws"
    script_tries = 1  # the machine leaves its group whatever the script did
    steps = (
        "Create bucket",
        "Upload agent",
        "Upload workdir",
        "Store task definition",
        "Create machine identity",
        "Create security group",
        "Create launch template",
        "Create machine group",
        "Schedule deadline backstop",
        "Start machines",
    )
    xfail: dict[str, str] = {}

    def __init__(self, moto: Moto, simulator: MachineSimulator) -> None:
        self.moto, self.simulator = moto, simulator
        self.caller_secrets = (moto.caller.secret_key, moto.caller.session_token)

    def spec(self, workdir: Path, script: str, **args: Any) -> TaskSpec:
        storage = {"workdir": str(workdir), **args.pop("storage", {})}
        raw = {"cloud": "aws", "region": "us-east", "machine": "s", "script": script}
        return parse_spec({**raw, "storage": storage, **args})

    def start(self) -> None:
        self.simulator.start()

    def preempt(self, ref: TaskRef, index: int) -> str:
        status = lifecycle.read(ref, with_logs=False)
        (machine,) = [m for m in status.latest if m.index == index and m.state == State.RUNNING]
        self.simulator.kill(machine.instance)
        self.moto.client("autoscaling").terminate_instance_in_auto_scaling_group(
            InstanceId=machine.instance, ShouldDecrementDesiredCapacity=False
        )
        return machine.instance

    def take_away(self, ref: TaskRef, index: int) -> str:
        status = lifecycle.read(ref, with_logs=False)
        (machine,) = [m for m in status.latest if m.index == index and m.state == State.RUNNING]
        sim = self.simulator.machines[machine.instance]
        sim.imds.interrupt()  # spot/instance-action
        with contextlib.suppress(FileNotFoundError, ValueError, ProcessLookupError):
            os.killpg(int((sim.folder / "pulumi-iterative" / "script.pgid").read_text()), 15)
        time.sleep(SHUTDOWN_SKEW)  # the shutdown reached the script first
        # EC2 reclaims it: the simulator shuts the OS down (SIGTERM, then SIGKILL after a
        # grace) and the group, not told to shrink, launches a replacement.
        self.moto.client("autoscaling").terminate_instance_in_auto_scaling_group(
            InstanceId=machine.instance, ShouldDecrementDesiredCapacity=False
        )
        return machine.instance

    def running_machines(self, ref: TaskRef) -> list[str]:
        return [iid for iid, m in self.simulator.machines.items() if m.running]

    def backstop(self, ref: TaskRef) -> float | None:
        names = Names(ref.task_id)
        actions = self.moto.client("autoscaling").describe_scheduled_actions(
            AutoScalingGroupName=names.group
        )["ScheduledUpdateGroupActions"]
        (action,) = [a for a in actions if a["ScheduledActionName"] == names.backstop]
        assert action["DesiredCapacity"] == action["MaxSize"] == 0
        return float(action["StartTime"].timestamp())

    def leftovers(self, task_id: str) -> list[str]:
        return leftovers(self.moto, task_id)

    def stored(self, ref: TaskRef) -> str:
        return stored(self.moto, ref)

    def break_install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(self.simulator, "python", "/nonexistent/python3")

    def report(self) -> str:
        return self.simulator.report()


@pytest.fixture
def aws_harness(moto: Moto, simulator: MachineSimulator) -> Iterator[AwsHarness]:
    assert simulator.python == sys.executable
    yield AwsHarness(moto, simulator)
