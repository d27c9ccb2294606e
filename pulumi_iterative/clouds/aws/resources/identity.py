"""The machine identity: an IAM role and instance profile scoped to one task."""

from __future__ import annotations

import json
import logging
from typing import Any

from ....errors import NotFound
from ....storage import AGENT_DIR, BOOTSTRAP_FILE, TASK_FILE
from ..api import IAM_PROPAGATION, Aws, AwsError, call, exists_ok, gone, partition
from ..names import IAM_PATH, Names
from ..permissions import BOUNDARY_NAME, MACHINE_OBJECT_ACTIONS, boundary_arn, boundary_policy

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
    instances only in its own group. It may never rewrite or delete what the
    workstation wrote for it (the task definition, bootstrap, agent wheel): a
    machine that could would make refresh lose the task, or later boots run its code."""
    part = partition(aws.region)
    base = f"arn:{part}:s3:::{bucket}/{prefix}" if prefix else f"arn:{part}:s3:::{bucket}"
    objects = f"{base}/*"
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
                "Action": list(MACHINE_OBJECT_ACTIONS),
                "Resource": objects,
            },
            {
                "Sid": "KeepTheWorkstationsObjects",
                "Effect": "Deny",
                "Action": ["s3:PutObject", "s3:DeleteObject"],
                "Resource": [
                    f"{base}/{TASK_FILE}",
                    f"{base}/{BOOTSTRAP_FILE}",
                    f"{base}/{AGENT_DIR}/*",
                ],
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
    """An IAM role for EC2 with the task-scoped inline policy, and its instance profile.

    The role carries the account's permissions boundary: the caller may make roles
    only with it, so no role it makes can do more than the boundary allows."""
    exists = ("EntityAlreadyExists",)
    boundary = boundary_arn(aws.account, partition(aws.region))
    try:
        call(aws.iam.get_policy, PolicyArn=boundary)
    except NotFound as exc:
        raise AwsError(
            f"the permissions boundary {boundary} does not exist; an administrator creates "
            f"it once per account (README, 'Permissions'): aws iam create-policy --path "
            f"{IAM_PATH} --policy-name {BOUNDARY_NAME} --policy-document file://boundary.json",
            "NoSuchEntity",
        ) from exc
    exists_ok(
        aws.iam.create_role,
        exists,
        RoleName=names.role,
        Path=IAM_PATH,
        PermissionsBoundary=boundary,
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
    # Just made: IAM may answer NoSuchEntity for a while (eventual consistency).
    just_made = {"retry": ("NoSuchEntity",), "deadline": IAM_PROPAGATION}
    profile = call(
        aws.iam.get_instance_profile, **just_made, InstanceProfileName=names.instance_profile
    )
    if not any(r["RoleName"] == names.role for r in profile["InstanceProfile"]["Roles"]):
        call(
            aws.iam.add_role_to_instance_profile,
            **just_made,
            InstanceProfileName=names.instance_profile,
            RoleName=names.role,
        )


def create_boundary(aws: Aws, buckets: tuple[str, ...] = ()) -> str:
    """What an administrator does once per account (tests use it as the admin)."""
    made = exists_ok(
        aws.iam.create_policy,
        ("EntityAlreadyExists",),
        PolicyName=BOUNDARY_NAME,
        Path=IAM_PATH,
        PolicyDocument=json.dumps(boundary_policy(partition(aws.region), buckets)),
        Description="pulumi-iterative: the most any task's machine role may do",
    )
    return str(made["Policy"]["Arn"]) if made else boundary_arn(aws.account)


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
