"""What a real account does that moto does not on its own (issue 9, points 4, 9, 10).

IAM propagation is played by a proxy in front of moto that refuses the first
attempts the way AWS does; what AWS would reject that moto accepts is asserted on
the request we send.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pulumi_iterative import lifecycle
from pulumi_iterative.agent.bootstrap import decode_config
from pulumi_iterative.clouds.aws.names import Names
from pulumi_iterative.clouds.aws.resources.backstop import MIN_LEAD, backstop_time
from pulumi_iterative.clouds.aws.resources.group import mixed_instances_policy, plain_price
from pulumi_iterative.errors import StepFailed
from pulumi_iterative.spec import TaskSpec, parse_spec
from pulumi_iterative.task import new_task_id
from tests.aws.conftest import Moto, leftovers
from tests.aws.fault_proxy import FaultProxy


def _spec(workdir: Path, **extra: object) -> TaskSpec:
    return parse_spec(
        {
            "cloud": "aws",
            "machine": "s",
            "script": "#!/bin/sh\ntrue\n",
            "storage": {"workdir": str(workdir)},
            **extra,
        }
    )


@pytest.fixture
def proxy(moto: Moto, monkeypatch: pytest.MonkeyPatch) -> Iterator[FaultProxy]:
    """The workstation talks to AWS through a proxy that can say "not yet"."""
    found = FaultProxy(moto.endpoint)
    monkeypatch.setenv("AWS_ENDPOINT_URL", found.endpoint)
    yield found
    found.close()


def test_first_create_survives_iam_propagation(
    moto: Moto, proxy: FaultProxy, workdir: Path
) -> None:
    not_visible = proxy.refuse(
        "CreateAutoScalingGroup",
        "ValidationError",
        "You must use a valid fully-formed launch template. Invalid IAM Instance Profile name",
        times=2,
    )
    profile_lag = proxy.refuse("GetInstanceProfile", "NoSuchEntity", "not found", times=1)
    role_lag = proxy.refuse("AddRoleToInstanceProfile", "NoSuchEntity", "not found", times=1)
    ref = lifecycle.create(_spec(workdir))
    assert (not_visible.refused, profile_lag.refused, role_lag.refused) == (2, 1, 1)
    group = moto.client("autoscaling").describe_auto_scaling_groups(
        AutoScalingGroupNames=[Names(ref.task_id).group]
    )["AutoScalingGroups"]
    assert len(group) == 1
    lifecycle.delete(ref)
    assert leftovers(moto, ref.task_id) == []


def test_other_validation_errors_are_not_retried(
    moto: Moto, proxy: FaultProxy, workdir: Path
) -> None:
    refused = proxy.refuse(
        "CreateAutoScalingGroup", "ValidationError", "Max bid price must be positive", times=5
    )
    task_id = new_task_id("invalid")
    with pytest.raises(StepFailed) as info:
        lifecycle.create(_spec(workdir), task_id=task_id)
    assert info.value.step == "Create machine group" and refused.refused == 1
    assert leftovers(moto, task_id) == []


def test_disk_smaller_than_the_image_is_refused_before_the_group(moto: Moto, workdir: Path) -> None:
    task_id = new_task_id("smalldisk")
    with pytest.raises(StepFailed) as info:
        lifecycle.create(_spec(workdir, disk_size=1, image="ubuntu"), task_id=task_id)
    assert info.value.step == "Create launch template"
    assert "disk_size: 1 GB is smaller than the root snapshot" in str(info.value)
    assert leftovers(moto, task_id) == []


def test_spot_price_is_a_plain_decimal() -> None:
    names = Names("t-abcdefgh12")
    for price, sent in ((0.00001, "0.00001"), (0.25, "0.25"), (2, "2"), (1e-7, "0.0000001")):
        policy = mixed_instances_policy(names, ("t3.medium",), price)
        assert policy["InstancesDistribution"]["SpotMaxPrice"] == sent
        assert plain_price(price) == sent


def test_backstop_is_never_in_the_past(moto: Moto, workdir: Path) -> None:
    now = time.time()
    assert backstop_time(now + 3600, now) == now + 3600
    assert backstop_time(now - 60, now) == now + MIN_LEAD  # a long upload ate the budget
    # Through create: a timeout that passes during the upload still schedules ahead.
    ref = lifecycle.create(_spec(workdir, timeout=1))
    (action,) = moto.client("autoscaling").describe_scheduled_actions(
        AutoScalingGroupName=Names(ref.task_id).group
    )["ScheduledUpdateGroupActions"]
    assert action["StartTime"].timestamp() >= time.time() + MIN_LEAD - 60
    lifecycle.delete(ref)


def test_owned_bucket_aborts_incomplete_uploads(moto: Moto, workdir: Path) -> None:
    ref = lifecycle.create(_spec(workdir))
    rules = moto.client("s3").get_bucket_lifecycle_configuration(Bucket=Names(ref.task_id).bucket)
    (rule,) = rules["Rules"]
    assert rule["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 1}
    lifecycle.delete(ref)


def test_workstation_endpoint_is_not_baked_into_user_data(moto: Moto, workdir: Path) -> None:
    """The machine finds its endpoint in its own environment, never the workstation's."""
    ref = lifecycle.create(_spec(workdir))
    ec2 = moto.client("ec2")
    (version,) = ec2.describe_launch_template_versions(
        LaunchTemplateName=Names(ref.task_id).launch_template
    )["LaunchTemplateVersions"]
    user_data = base64.b64decode(version["LaunchTemplateData"]["UserData"]).decode()
    config = decode_config(user_data.split("--config '")[1].split("'")[0])
    assert moto.endpoint not in json.dumps(config.to_dict())
    assert moto.endpoint not in user_data and moto.endpoint not in json.dumps(ref.remote)
    lifecycle.delete(ref)
