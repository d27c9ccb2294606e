"""The Auto Scaling group: machines that replace lost ones, its capacity, its instances."""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any

from ....errors import NotFound
from ..api import IAM_PROPAGATION, Aws, call, exists_ok, iam_not_yet, wait_until
from ..names import TASK_TAG, Names

log = logging.getLogger(__name__)

GROUP_GONE_DEADLINE = 900.0  # a force-deleted group waits for its instances to terminate
# Instance states -> still working for the task (status.CloudMachine.alive).
INSTANCE_ALIVE = {
    "pending": True,
    "running": True,
    "shutting-down": False,
    "stopping": False,
    "stopped": False,
    "terminated": False,
}


def describe_group(aws: Aws, names: Names) -> dict[str, Any]:
    groups = call(
        aws.autoscaling.describe_auto_scaling_groups, AutoScalingGroupNames=[names.group]
    )["AutoScalingGroups"]
    if not groups:
        raise NotFound(f"auto scaling group {names.group}")
    return dict(groups[0])


def mixed_instances_policy(names: Names, types: tuple[str, ...], spot: float) -> dict[str, Any]:
    """Spot or on-demand from `spot`; the catalog's types, best first, as fallbacks."""
    distribution: dict[str, Any] = {
        "OnDemandAllocationStrategy": "prioritized",
        "OnDemandBaseCapacity": 0,
        "OnDemandPercentageAboveBaseCapacity": 0 if spot >= 0 else 100,
        "SpotAllocationStrategy": "capacity-optimized",
    }
    if spot > 0:
        distribution["SpotMaxPrice"] = plain_price(spot)
    return {
        "LaunchTemplate": {
            "LaunchTemplateSpecification": {
                "LaunchTemplateName": names.launch_template,
                "Version": "$Latest",
            },
            "Overrides": [{"InstanceType": t} for t in types],
        },
        "InstancesDistribution": distribution,
    }


def plain_price(price: float) -> str:
    """A price as AWS reads it: a plain decimal (`0.00001`, never `1e-05`)."""
    text = format(Decimal(repr(float(price))), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def create_group(
    aws: Aws,
    names: Names,
    *,
    parallelism: int,
    policy: dict[str, Any],
    subnets: list[str],
    tags: list[dict[str, str]],
) -> None:
    """Min 0, max parallelism, desired 0 until the task is ready to start."""
    exists_ok(
        aws.autoscaling.create_auto_scaling_group,
        ("AlreadyExists",),
        retry_when=iam_not_yet,
        deadline=IAM_PROPAGATION,
        AutoScalingGroupName=names.group,
        MinSize=0,
        MaxSize=parallelism,
        DesiredCapacity=0,
        MixedInstancesPolicy=policy,
        VPCZoneIdentifier=",".join(subnets),
        Tags=[
            {
                **t,
                "PropagateAtLaunch": True,
                "ResourceId": names.group,
                "ResourceType": "auto-scaling-group",
            }
            for t in tags
        ],
    )
    # Rebalancing zones would terminate a working machine to start one elsewhere.
    call(
        aws.autoscaling.suspend_processes,
        AutoScalingGroupName=names.group,
        ScalingProcesses=["AZRebalance"],
    )


def delete_group(aws: Aws, names: Names, *, wait: bool = True) -> None:
    describe_group(aws, names)  # NotFound: done
    call(
        aws.autoscaling.delete_auto_scaling_group,
        retry=("ResourceInUse", "ScalingActivityInProgress"),
        AutoScalingGroupName=names.group,
        ForceDelete=True,
    )
    if wait:
        wait_until(
            lambda: not _group_exists(aws, names),
            f"group {names.group} to be deleted",
            deadline=GROUP_GONE_DEADLINE,
        )


def _group_exists(aws: Aws, names: Names) -> bool:
    try:
        describe_group(aws, names)
    except NotFound:
        return False
    return True


def set_capacity(aws: Aws, names: Names, desired: int) -> None:
    """Desired capacity only (min is 0 and max is parallelism from creation).

    SetDesiredCapacity rather than UpdateAutoScalingGroup: it touches nothing else
    (moto's UpdateAutoScalingGroup even drops the MixedInstancesPolicy when the
    request does not repeat it).
    """
    group = describe_group(aws, names)
    if int(group.get("MinSize", 0)) > desired:  # changed by hand: never block a stop
        call(
            aws.autoscaling.update_auto_scaling_group,
            AutoScalingGroupName=names.group,
            MinSize=0,
            DesiredCapacity=desired,
        )
        return
    call(
        aws.autoscaling.set_desired_capacity,
        AutoScalingGroupName=names.group,
        DesiredCapacity=desired,
        HonorCooldown=False,
    )


def task_instances(aws: Aws, task_id: str) -> list[dict[str, Any]]:
    """Every instance tagged for the task, whatever its state (batched, paginated)."""
    paginator = aws.ec2.get_paginator("describe_instances")
    pages = call(
        lambda: list(paginator.paginate(Filters=[{"Name": f"tag:{TASK_TAG}", "Values": [task_id]}]))
    )
    return [i for page in pages for r in page["Reservations"] for i in r["Instances"]]


def terminate(aws: Aws, instance_ids: list[str]) -> None:
    for i in range(0, len(instance_ids), 500):
        try:
            call(aws.ec2.terminate_instances, InstanceIds=instance_ids[i : i + 500])
        except NotFound:
            continue


def scaling_activities(aws: Aws, names: Names) -> list[dict[str, Any]]:
    describe_group(aws, names)  # NotFound: a deleted group has no activities to show
    paginator = aws.autoscaling.get_paginator("describe_scaling_activities")
    pages = call(lambda: list(paginator.paginate(AutoScalingGroupName=names.group)))
    return [a for page in pages for a in page.get("Activities", [])]
