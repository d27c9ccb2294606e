"""AwsHooks against moto and the fake IMDS: IMDSv2, the index claim, leaving the group."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from pulumi_iterative import clouds, lifecycle
from pulumi_iterative.agent.bootstrap import decode_config
from pulumi_iterative.clouds.aws import machine as aws_hooks
from pulumi_iterative.clouds.aws.machine import Imds
from pulumi_iterative.clouds.aws.machine import MachineSide as AwsHooks
from pulumi_iterative.clouds.aws.names import Names
from pulumi_iterative.errors import LeftGroup
from pulumi_iterative.records import BootConfig
from pulumi_iterative.spec import parse_spec
from pulumi_iterative.task import TaskRef
from tests.aws.conftest import REGION, Moto
from tests.aws.fake_imds import FakeImds


@pytest.fixture
def imds_servers() -> Iterator[dict[str, FakeImds]]:
    made: dict[str, FakeImds] = {}
    yield made
    for server in made.values():
        server.close()


def _imds(made: dict[str, FakeImds], instance: str) -> FakeImds:
    made[instance] = FakeImds(instance, REGION, REGION + "a", "role", ("A", "B", "C"))
    return made[instance]


def test_imds_v2_token_is_required_and_the_notice_is_read(imds_servers) -> None:
    fake = _imds(imds_servers, "i-0abc")
    with pytest.raises(urllib.error.HTTPError) as info:  # IMDSv1 (no token) is refused
        urllib.request.urlopen(fake.endpoint + "/latest/meta-data/instance-id", timeout=5)
    assert info.value.code == 401
    imds = Imds(fake.endpoint)
    assert imds.get("/latest/meta-data/instance-id") == "i-0abc"
    assert fake.requests[-2][:2] == ("PUT", "/latest/api/token")
    config = BootConfig("t-abcdefgh12", "aws", _remote(), "0.1.0")
    hooks = AwsHooks(config)
    hooks.imds = imds
    assert hooks.instance_id() == "i-0abc"
    assert hooks.preemption_notice() is False
    fake.interrupt()
    assert hooks.preemption_notice() is True
    fake.tokens.clear()  # the token expired: a fresh one is fetched
    assert imds.get("/latest/meta-data/placement/region") == REGION


def test_hooks_are_registered_for_aws() -> None:
    config = BootConfig("t-abcdefgh12", "aws", _remote(), "0.1.0")
    hooks = clouds.get("aws").machine_side(config)
    assert isinstance(hooks, AwsHooks)
    assert hooks.names.group == "pulumi-iterative-t-abcdefgh12"
    assert (hooks.bucket, hooks.prefix) == ("pulumi-iterative-t-abcdefgh12", "")


def _remote() -> dict:
    return {
        "root": ":s3:pulumi-iterative-t-abcdefgh12",
        "env": {"RCLONE_S3_REGION": REGION},
    }


def _task(workdir: Path, parallelism: int) -> TaskRef:
    spec = parse_spec(
        {
            "cloud": "aws",
            "machine": "s",
            "parallelism": parallelism,
            "script": "#!/bin/sh\ntrue\n",
            "storage": {"workdir": str(workdir)},
        }
    )
    return lifecycle.create(spec)


def _group(moto: Moto, ref: TaskRef) -> dict:
    asg = moto.client("autoscaling")
    return asg.describe_auto_scaling_groups(AutoScalingGroupNames=[Names(ref.task_id).group])[
        "AutoScalingGroups"
    ][0]


def _hooks_for(ref: TaskRef, instance: str, made: dict[str, FakeImds]) -> AwsHooks:
    """The hooks as the agent on that instance makes them, from the stored bootstrap."""
    rclone = lifecycle.rclone_for(ref)
    text = rclone.cat(rclone.remote.path("bootstrap.sh")).decode()
    hooks = AwsHooks(decode_config(text.split("--config '")[1].split("'")[0]))
    hooks.imds = Imds(_imds(made, instance).endpoint)
    return hooks


def test_claims_give_each_machine_its_own_index_and_replacements_take_over(
    moto: Moto, workdir: Path, imds_servers, monkeypatch: pytest.MonkeyPatch
) -> None:
    ref = _task(workdir, 3)
    asg = moto.client("autoscaling")
    instances = [i["InstanceId"] for i in _group(moto, ref)["Instances"]]
    assert len(instances) == 3

    # Three machines boot together: three different indices.
    hooks = {i: _hooks_for(ref, i, imds_servers) for i in instances}
    with ThreadPoolExecutor(3) as pool:
        indices = dict(zip(instances, pool.map(lambda i: hooks[i].index(), instances), strict=True))
    assert sorted(indices.values()) == [0, 1, 2]
    by_index = {v: k for k, v in indices.items()}

    # An agent that restarts on the same machine keeps its index.
    again = _hooks_for(ref, by_index[1], imds_servers)
    assert again.index() == 1

    # Index 1 finishes: its claim is marked done and the group shrinks (no replacement).
    hooks[by_index[1]].leave_group()
    assert _group(moto, ref)["DesiredCapacity"] == 2

    # Index 2's machine is preempted: the group replaces it, the replacement takes 2
    # (its claimant is gone), not 1 (done).
    asg.terminate_instance_in_auto_scaling_group(
        InstanceId=by_index[2], ShouldDecrementDesiredCapacity=False
    )
    (replacement,) = {i["InstanceId"] for i in _group(moto, ref)["Instances"]} - set(instances)
    assert _hooks_for(ref, replacement, imds_servers).index() == 2

    # A machine with nothing left to do waits, then leaves the group as surplus.
    monkeypatch.setattr(aws_hooks, "CLAIM_WAIT", 0.5)
    asg.update_auto_scaling_group(
        AutoScalingGroupName=Names(ref.task_id).group, MaxSize=3, DesiredCapacity=3
    )
    current = {i["InstanceId"] for i in _group(moto, ref)["Instances"]}
    (surplus,) = current - set(instances) - {replacement}
    with pytest.raises(LeftGroup, match="no task index is free"):
        _hooks_for(ref, surplus, imds_servers).index()
    assert surplus not in {i["InstanceId"] for i in _group(moto, ref)["Instances"]}
    assert _group(moto, ref)["DesiredCapacity"] == 2
    lifecycle.delete(ref)


def test_a_machine_booting_after_every_index_is_done_leaves_at_once(
    moto: Moto, workdir: Path, imds_servers
) -> None:
    """A machine that could not leave was powered off; the group replaced it. The
    replacement must not idle for CLAIM_WAIT: every index is done."""
    ref = _task(workdir, 1)
    (first,) = [i["InstanceId"] for i in _group(moto, ref)["Instances"]]
    hooks = _hooks_for(ref, first, imds_servers)
    assert hooks.index() == 0
    hooks.leave_group()  # marks index 0 done
    moto.client("autoscaling").update_auto_scaling_group(
        AutoScalingGroupName=Names(ref.task_id).group, DesiredCapacity=1
    )
    (late,) = [i["InstanceId"] for i in _group(moto, ref)["Instances"]]
    started = time.monotonic()
    with pytest.raises(LeftGroup, match="every task index is done"):
        _hooks_for(ref, late, imds_servers).index()
    assert time.monotonic() - started < aws_hooks.CLAIM_WAIT / 10
    assert _group(moto, ref)["Instances"] == []
    lifecycle.delete(ref)
