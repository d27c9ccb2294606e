"""The machine identity: an IAM role and instance profile scoped to one task."""

from __future__ import annotations

import json
import logging
from typing import Any

from ..api import Aws, call, exists_ok, gone, partition
from ..names import IAM_PATH, Names

log = logging.getLogger(__name__)

EC2_TRUST = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": {"Service": "ec2.amazonaws.com"},
            "Action": "sts:AssumeRole",
        }
    ],
}


def task_policy(aws: Aws, names: Names, bucket: str, prefix: str) -> dict[str, Any]:
    """What a machine may do: read and write its task's objects, list only its own
    prefix, see groups (Describe has no resource-level scope), and terminate
    instances only in its own group."""
    part = partition(aws.region)
    objects = f"arn:{part}:s3:::{bucket}/{prefix}/*" if prefix else f"arn:{part}:s3:::{bucket}/*"
    listing: dict[str, Any] = {
        "Sid": "ListTaskPrefix",
        "Effect": "Allow",
        "Action": "s3:ListBucket",
        "Resource": f"arn:{part}:s3:::{bucket}",
    }
    if prefix:
        listing["Condition"] = {"StringLike": {"s3:prefix": [prefix, f"{prefix}/*"]}}
    group = (
        f"arn:{part}:autoscaling:{aws.region}:{aws.account}:autoScalingGroup:*:"
        f"autoScalingGroupName/{names.group}"
    )
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "TaskObjects",
                "Effect": "Allow",
                "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
                "Resource": objects,
            },
            listing,
            {
                "Sid": "LeaveOwnGroup",
                "Effect": "Allow",
                "Action": "autoscaling:TerminateInstanceInAutoScalingGroup",
                "Resource": group,
            },
            {
                "Sid": "SeeGroups",
                "Effect": "Allow",
                "Action": "autoscaling:DescribeAutoScalingGroups",
                "Resource": "*",
            },
        ],
    }


def create_identity(
    aws: Aws, names: Names, bucket: str, prefix: str, tags: list[dict[str, str]]
) -> None:
    """An IAM role for EC2 with the task-scoped inline policy, and its instance profile."""
    exists = ("EntityAlreadyExists",)
    exists_ok(
        aws.iam.create_role,
        exists,
        RoleName=names.role,
        Path=IAM_PATH,
        AssumeRolePolicyDocument=json.dumps(EC2_TRUST),
        Description=f"pulumi-iterative task {names.task_id}: its own bucket prefix and group",
        Tags=tags,
    )
    call(
        aws.iam.put_role_policy,
        RoleName=names.role,
        PolicyName=names.policy,
        PolicyDocument=json.dumps(task_policy(aws, names, bucket, prefix)),
    )
    exists_ok(
        aws.iam.create_instance_profile,
        exists,
        InstanceProfileName=names.instance_profile,
        Path=IAM_PATH,
        Tags=tags,
    )
    profile = call(aws.iam.get_instance_profile, InstanceProfileName=names.instance_profile)
    if not any(r["RoleName"] == names.role for r in profile["InstanceProfile"]["Roles"]):
        call(
            aws.iam.add_role_to_instance_profile,
            InstanceProfileName=names.instance_profile,
            RoleName=names.role,
        )


def delete_identity(aws: Aws, names: Names) -> None:
    """Each part on its own, so a half-made identity goes too."""
    gone(
        aws.iam.remove_role_from_instance_profile,
        InstanceProfileName=names.instance_profile,
        RoleName=names.role,
    )
    gone(aws.iam.delete_instance_profile, InstanceProfileName=names.instance_profile)
    gone(aws.iam.delete_role_policy, RoleName=names.role, PolicyName=names.policy)
    gone(aws.iam.delete_role, RoleName=names.role)
