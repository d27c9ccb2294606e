"""Every IAM policy of the AWS backend, written once: README prints them, tests enforce them.

- `caller_policy()`: what the person or CI running `pulumi up` needs. Nothing in it
  lets its holder become more than it is: every role it can make or change must
  carry the permissions boundary (`iam:PermissionsBoundary` condition on each
  role-writing action), roles and profiles live under the `/pulumi-iterative/` path,
  buckets and groups are named `pulumi-iterative-*`, and EC2 objects it deletes or
  terminates must carry the task tag.
- `boundary_policy()`: the ceiling of every machine role, a managed policy an
  administrator creates once per account (`BOUNDARY_NAME` under `IAM_PATH`). A
  caller cannot create or change it, so a role it makes can never do more.
- `container_statements()` / `permission_set_statements()`: what `storage.container`
  and `permission_set` add.

No SDK here: the README test and the IAM-enforced lifecycle test import it.
"""

from __future__ import annotations

import json
from typing import Any

from .names import IAM_PATH, PREFIX, TASK_TAG

BOUNDARY_NAME = f"{PREFIX}-boundary"
VERSION = "2012-10-17"

# Actions on a role whose request names the role's boundary: each is allowed only
# with iam:PermissionsBoundary equal to ours.
ROLE_WRITES = ("iam:CreateRole", "iam:PutRolePolicy", "iam:DeleteRolePolicy")
BUCKET_ACTIONS = (
    "s3:CreateBucket",
    "s3:DeleteBucket",
    "s3:PutBucketPublicAccessBlock",
    "s3:PutEncryptionConfiguration",
    "s3:PutBucketTagging",
    "s3:PutLifecycleConfiguration",
    "s3:ListBucket",
    "s3:ListBucketVersions",
)
OBJECT_ACTIONS = (
    "s3:GetObject",
    "s3:PutObject",
    "s3:DeleteObject",
    "s3:DeleteObjectVersion",
    "s3:AbortMultipartUpload",
)
# What a machine role may ever do (the boundary) and does (the task's inline policy).
MACHINE_OBJECT_ACTIONS = (
    "s3:GetObject",
    "s3:PutObject",
    "s3:DeleteObject",
    "s3:AbortMultipartUpload",
)


def boundary_arn(account: str, partition: str = "aws") -> str:
    return f"arn:{partition}:iam::{account}:policy{IAM_PATH}{BOUNDARY_NAME}"


def _group_arn(partition: str, name: str) -> str:
    return f"arn:{partition}:autoscaling:*:*:autoScalingGroup:*:autoScalingGroupName/{name}"


def caller_policy(partition: str = "aws", account: str = "*") -> dict[str, Any]:
    """The caller's policy for tasks with their own buckets and machine roles."""
    p = partition
    role = f"arn:{p}:iam::{account}:role{IAM_PATH}*"
    profile = f"arn:{p}:iam::{account}:instance-profile{IAM_PATH}*"
    tagged = {"StringLike": {f"aws:ResourceTag/{TASK_TAG}": "*"}}
    return {
        "Version": VERSION,
        "Statement": [
            {
                "Sid": "TaskBuckets",
                "Effect": "Allow",
                "Action": list(BUCKET_ACTIONS),
                "Resource": f"arn:{p}:s3:::{PREFIX}-*",
            },
            {
                "Sid": "TaskObjects",
                "Effect": "Allow",
                "Action": list(OBJECT_ACTIONS),
                "Resource": f"arn:{p}:s3:::{PREFIX}-*/*",
            },
            {
                "Sid": "RolesOnlyWithinTheBoundary",
                "Effect": "Allow",
                "Action": list(ROLE_WRITES),
                "Resource": role,
                "Condition": {
                    "StringEquals": {"iam:PermissionsBoundary": boundary_arn(account, p)}
                },
            },
            {
                "Sid": "TaskRolesAndProfiles",
                "Effect": "Allow",
                "Action": [
                    "iam:DeleteRole",
                    "iam:TagRole",
                    "iam:CreateInstanceProfile",
                    "iam:DeleteInstanceProfile",
                    "iam:GetInstanceProfile",
                    "iam:TagInstanceProfile",
                    "iam:AddRoleToInstanceProfile",
                    "iam:RemoveRoleFromInstanceProfile",
                ],
                "Resource": [role, profile],
            },
            {
                "Sid": "SeeTheBoundary",
                "Effect": "Allow",
                "Action": "iam:GetPolicy",
                "Resource": boundary_arn(account, p),
            },
            {
                "Sid": "PassTaskRolesToEc2",
                "Effect": "Allow",
                "Action": "iam:PassRole",
                "Resource": role,
                "Condition": {"StringEquals": {"iam:PassedToService": "ec2.amazonaws.com"}},
            },
            {
                "Sid": "AutoScalingServiceRoleOnce",
                "Effect": "Allow",
                "Action": "iam:CreateServiceLinkedRole",
                "Resource": "*",
                "Condition": {"StringEquals": {"iam:AWSServiceName": "autoscaling.amazonaws.com"}},
            },
            {
                "Sid": "Read",
                "Effect": "Allow",
                "Action": [
                    "sts:GetCallerIdentity",
                    "ec2:DescribeVpcs",
                    "ec2:DescribeSubnets",
                    "ec2:DescribeImages",
                    "ec2:DescribeSecurityGroups",
                    "ec2:DescribeLaunchTemplates",
                    "ec2:DescribeInstances",
                    "autoscaling:DescribeAutoScalingGroups",
                    "autoscaling:DescribeScheduledActions",
                    "autoscaling:DescribeScalingActivities",
                ],
                "Resource": "*",
            },
            {
                "Sid": "CreateTaggedEc2Objects",
                "Effect": "Allow",
                "Action": ["ec2:CreateSecurityGroup", "ec2:CreateLaunchTemplate"],
                "Resource": "*",
                "Condition": {"StringLike": {f"aws:RequestTag/{TASK_TAG}": "*"}},
            },
            {
                "Sid": "TagOnlyWhileCreating",
                "Effect": "Allow",
                "Action": "ec2:CreateTags",
                "Resource": "*",
                "Condition": {
                    "StringEquals": {
                        "ec2:CreateAction": [
                            "CreateSecurityGroup",
                            "CreateLaunchTemplate",
                            "RunInstances",
                        ]
                    }
                },
            },
            {
                "Sid": "LaunchForTheGroup",
                "Effect": "Allow",
                "Action": "ec2:RunInstances",
                "Resource": "*",
            },
            {
                "Sid": "RemoveOnlyTaskEc2Objects",
                "Effect": "Allow",
                "Action": [
                    "ec2:DeleteSecurityGroup",
                    "ec2:DeleteLaunchTemplate",
                    "ec2:TerminateInstances",
                ],
                "Resource": "*",
                "Condition": tagged,
            },
            {
                "Sid": "TaskGroups",
                "Effect": "Allow",
                "Action": [
                    "autoscaling:CreateAutoScalingGroup",
                    "autoscaling:UpdateAutoScalingGroup",
                    "autoscaling:SetDesiredCapacity",
                    "autoscaling:DeleteAutoScalingGroup",
                    "autoscaling:SuspendProcesses",
                    "autoscaling:PutScheduledUpdateGroupAction",
                    "autoscaling:DeleteScheduledAction",
                    "autoscaling:CreateOrUpdateTags",
                ],
                "Resource": _group_arn(p, f"{PREFIX}-*"),
            },
        ],
    }


def boundary_policy(partition: str = "aws", buckets: tuple[str, ...] = ()) -> dict[str, Any]:
    """The most any machine role may do: task objects, leaving a task's group.

    `buckets`: the `storage.container` buckets tasks may use, besides their own.
    """
    p = partition
    names = [f"{PREFIX}-*", *buckets]
    return {
        "Version": VERSION,
        "Statement": [
            {
                "Sid": "TaskObjects",
                "Effect": "Allow",
                "Action": list(MACHINE_OBJECT_ACTIONS),
                "Resource": [f"arn:{p}:s3:::{b}/*" for b in names],
            },
            {
                "Sid": "ListTaskBuckets",
                "Effect": "Allow",
                "Action": "s3:ListBucket",
                "Resource": [f"arn:{p}:s3:::{b}" for b in names],
            },
            {
                "Sid": "LeaveTaskGroups",
                "Effect": "Allow",
                "Action": "autoscaling:TerminateInstanceInAutoScalingGroup",
                "Resource": _group_arn(p, f"{PREFIX}-*"),
            },
            {
                "Sid": "SeeGroups",
                "Effect": "Allow",
                "Action": "autoscaling:DescribeAutoScalingGroups",
                "Resource": "*",
            },
        ],
    }


def container_statements(bucket: str, prefix: str = "", partition: str = "aws") -> list[dict]:
    """With `storage.container: bucket[/prefix]`: the task's folder in your bucket."""
    p = partition
    folder = f"{prefix.strip('/')}/*" if prefix.strip("/") else "*"
    return [
        {
            "Sid": "ContainerBucket",
            "Effect": "Allow",
            "Action": ["s3:ListBucket", "s3:ListBucketVersions"],
            "Resource": f"arn:{p}:s3:::{bucket}",
        },
        {
            "Sid": "ContainerObjects",
            "Effect": "Allow",
            "Action": list(OBJECT_ACTIONS),
            "Resource": f"arn:{p}:s3:::{bucket}/{folder}",
        },
    ]


def permission_set_statements(profile_arn: str, role_arn: str) -> list[dict]:
    """With `permission_set`: read your instance profile and pass its role to EC2 (the
    IAM create and delete actions are then not needed)."""
    return [
        {
            "Sid": "YourInstanceProfile",
            "Effect": "Allow",
            "Action": "iam:GetInstanceProfile",
            "Resource": profile_arn,
        },
        {
            "Sid": "PassYourRole",
            "Effect": "Allow",
            "Action": "iam:PassRole",
            "Resource": role_arn,
            "Condition": {"StringEquals": {"iam:PassedToService": "ec2.amazonaws.com"}},
        },
    ]


OWN_BUCKET_SIDS = ("TaskBuckets", "TaskObjects")
OWN_IDENTITY_SIDS = (
    "RolesOnlyWithinTheBoundary",
    "TaskRolesAndProfiles",
    "SeeTheBoundary",
    "PassTaskRolesToEc2",
)


def caller_policy_for(
    *,
    container: tuple[str, str] | None = None,
    permission_set: tuple[str, str] | None = None,
    partition: str = "aws",
    account: str = "*",
) -> dict[str, Any]:
    """The caller's policy for one way of running tasks: `container` = (bucket, prefix)
    replaces the own-bucket statements, `permission_set` = (profile ARN, role ARN)
    replaces the role-making ones."""
    policy = caller_policy(partition, account)
    drop = (OWN_BUCKET_SIDS if container else ()) + (OWN_IDENTITY_SIDS if permission_set else ())
    statements = [s for s in policy["Statement"] if s["Sid"] not in drop]
    if container:
        statements += container_statements(*container, partition=partition)
    if permission_set:
        statements += permission_set_statements(*permission_set)
    return {"Version": VERSION, "Statement": statements}


def as_json(policy: dict[str, Any]) -> str:
    """The text README prints (one stable layout, so a test can compare it)."""
    return json.dumps(policy, indent=1)
