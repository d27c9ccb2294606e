"""No machine idles, billed, after something on it failed (issue 9, point 3).

Each failure path runs on a simulated machine from its stored user-data: the
install (apt-get, the wheel's fetch, pip), the agent dying (killed as the OOM
killer would), and leaving the group while Auto Scaling says "not now". Each ends
with the instance terminated, the group at zero, and the status saying why, the
boot's own output stored as its log.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pulumi_iterative import agent_wheel, lifecycle
from pulumi_iterative.clouds.aws.backend import Place
from pulumi_iterative.clouds.aws.names import Names, key
from pulumi_iterative.spec import parse_spec
from pulumi_iterative.status import State
from pulumi_iterative.storage import AGENT_DIR
from pulumi_iterative.task import TaskRef
from tests import failed_boots
from tests.aws.conftest import Moto, leftovers
from tests.aws.fault_proxy import FaultProxy
from tests.aws.simulator import MachineSimulator

WORK = "#!/bin/sh\nmkdir -p results\necho done > results/out.txt\n"


def _create(workdir: Path) -> TaskRef:
    return lifecycle.create(
        parse_spec(
            {
                "cloud": "aws",
                "region": "us-east",
                "machine": "s",
                "script": WORK,
                "storage": {"workdir": str(workdir), "output": "results"},
            }
        )
    )


def _ended(moto: Moto, sim: MachineSimulator, ref: TaskRef) -> None:
    """Every instance of the task is terminated and the group wants none."""
    ec2, asg = moto.client("ec2"), moto.client("autoscaling")
    names = Names(ref.task_id)

    def done() -> bool:
        group = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[names.group])[
            "AutoScalingGroups"
        ][0]
        states = [
            i["State"]["Name"]
            for r in ec2.describe_instances(
                Filters=[{"Name": "tag:pulumi-iterative:task", "Values": [ref.task_id]}]
            )["Reservations"]
            for i in r["Instances"]
        ]
        return (
            group["DesiredCapacity"] == 0
            and bool(states)
            and all(s in ("shutting-down", "terminated") for s in states)
            and not any(m.running for m in sim.machines.values())
        )

    sim.wait_for(done, "the machine to be terminated and the group at zero", timeout=120)


@pytest.fixture
def real_install(
    simulator: MachineSimulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Path:
    return failed_boots.real_install(simulator, tmp_path, monkeypatch)


@pytest.mark.parametrize(
    ("path", "said"),
    [
        ("apt", "apt-get could not install Python"),
        ("fetch", "404"),
        ("pip", "No matching distribution"),
    ],
)
def test_failed_install_ends_the_machine_and_says_why(
    path: str,
    said: str,
    moto: Moto,
    simulator: MachineSimulator,
    real_install: Path,
    workdir: Path,
) -> None:
    failed_boots.break_install(real_install, simulator, path, preinstalled="*boto3*")
    ref = _create(workdir)
    if path == "fetch":  # the wheel is not where the machine looks (a lost object)
        place = Place.from_ref(ref)
        moto.client("s3").delete_object(
            Bucket=place.bucket, Key=key(place.prefix, AGENT_DIR, agent_wheel.wheel_name())
        )
    simulator.start()
    status = simulator.wait_status(ref, lambda s: s.state == State.FAILED, timeout=90)
    (boot,) = [m for m in status.machines if m.state == State.FAILED]
    assert boot.index is None and boot.machine.startswith("boot-")
    assert "bootstrap failed while installing the agent" in boot.reason
    assert said in boot.reason or said in status.logs[boot.machine]
    _ended(moto, simulator, ref)
    (machine,) = simulator.machines.values()
    # It left its group (so no replacement comes); powering off is the fallback, which
    # the termination may overtake.
    assert "ending the machine" in machine.console()
    lifecycle.delete(ref, pull_outputs=False)
    assert leftovers(moto, ref.task_id) == []


def test_agent_killed_ends_the_machine_and_its_report_says_why(
    moto: Moto, simulator: MachineSimulator, tmp_path: Path, workdir: Path
) -> None:
    """The OOM killer takes the agent after it reported: its own report turns failed."""
    simulator.python = str(failed_boots.oom_killed_agent(tmp_path))
    ref = _create(workdir)
    simulator.start()
    status = simulator.wait_status(ref, lambda s: s.state == State.FAILED, timeout=90)
    (boot,) = [m for m in status.latest if m.state == State.FAILED]
    assert boot.index == 0 and boot.reason.startswith("the agent died (exit 137)")
    assert boot.finished is not None and boot.started is not None
    assert any(name.startswith("boot-") for name in status.logs)
    _ended(moto, simulator, ref)
    lifecycle.delete(ref, pull_outputs=False)


def test_leaving_while_the_group_scales_is_retried(
    moto: Moto, simulator: MachineSimulator, workdir: Path
) -> None:
    proxy = FaultProxy(moto.endpoint)
    try:
        refusal = proxy.refuse(
            "TerminateInstanceInAutoScalingGroup",
            "ScalingActivityInProgress",
            "Scaling activity is in progress and blocks this action",
            times=2,
        )
        simulator.endpoint = proxy.endpoint  # the machines reach AWS through the proxy
        ref = _create(workdir)
        simulator.start()
        status = simulator.wait_status(ref, lambda s: s.done, timeout=90)
        assert status.state == State.SUCCEEDED, simulator.report()
        _ended(moto, simulator, ref)
        assert refusal.refused == 2
        (machine,) = simulator.machines.values()
        assert not machine.powered_off, "it left the group itself; no power-off was needed"
        lifecycle.delete(ref)
        assert (workdir / "results" / "out.txt").read_text() == "done\n"
    finally:
        proxy.close()


def test_when_leaving_fails_the_machine_powers_off_and_is_terminated(
    moto: Moto, simulator: MachineSimulator, workdir: Path
) -> None:
    """Auto Scaling refuses every leave: after about a minute of retries the machine
    powers itself off, and the launch template turns that into termination."""
    proxy = FaultProxy(moto.endpoint)
    try:
        proxy.refuse(
            "TerminateInstanceInAutoScalingGroup",
            "ScalingActivityInProgress",
            "Scaling activity is in progress and blocks this action",
            times=10_000,
        )
        simulator.endpoint = proxy.endpoint
        simulator.python = "/nonexistent/python3"  # a broken install
        ref = _create(workdir)
        simulator.start()
        ec2 = moto.client("ec2")

        def first_terminated() -> bool:
            if not simulator.machines:
                return False
            first = min(simulator.machines.values(), key=lambda m: m.proc.pid)
            (instance,) = [
                i
                for r in ec2.describe_instances(InstanceIds=[first.instance_id])["Reservations"]
                for i in r["Instances"]
            ]
            return first.powered_off and instance["State"]["Name"] in (
                "shutting-down",
                "terminated",
            )

        simulator.wait_for(first_terminated, "the machine to power off and terminate", 180)
        status = lifecycle.read(ref, with_logs=False)
        assert status.state == State.FAILED
        lifecycle.delete(ref, pull_outputs=False)
    finally:
        proxy.close()
