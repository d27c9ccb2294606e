"""The AWS objects a task makes, each small and uniform: found by its derived name
(or tag), created idempotently (already there = done), deleted with "not found"
= done. backends/aws.py strings them into steps; nothing here decides order.

Every function takes an `Aws` (clients for one region, made per operation) and
the task's `Names`; none keeps state between calls.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import cached_property
from typing import Any

from .. import catalog
from ..errors import NotFound
from .aws_api import AwsError, call, client, gone, partition, wait_until
from .aws_names import IAM_PATH, TASK_TAG, Names

log = logging.getLogger(__name__)

GROUP_GONE_DEADLINE = 900.0  # a force-deleted group waits for its instances to terminate
SG_DELETE_DEADLINE = 900.0  # a security group cannot go while instances still use it
BUCKET_DELETE_DEADLINE = 120.0  # a bucket written to while it is being emptied
# Instance states -> still working for the task (status.CloudMachine.alive).
INSTANCE_ALIVE = {
    "pending": True,
    "running": True,
    "shutting-down": False,
    "stopping": False,
    "stopped": False,
    "terminated": False,
}
# Group lifecycle states that mean the instance is on its way out.
LEAVING = ("Terminating", "Terminating:Wait", "Terminating:Proceed", "Terminated", "Detaching")


class Aws:
    """The clients of one region, made on first use, for one operation."""

    def __init__(self, region: str) -> None:
        self.region = region

    @cached_property
    def s3(self) -> Any:
        return client("s3", self.region)

    @cached_property
    def iam(self) -> Any:
        return client("iam", self.region)

    @cached_property
    def sts(self) -> Any:
        return client("sts", self.region)

    @cached_property
    def ec2(self) -> Any:
        return client("ec2", self.region)

    @cached_property
    def autoscaling(self) -> Any:
        return client("autoscaling", self.region)

    @cached_property
    def account(self) -> str:
        return str(call(self.sts.get_caller_identity)["Account"])


def tag_list(task_id: str, tags: Mapping[str, str]) -> list[dict[str, str]]:
    merged = {**dict(tags), TASK_TAG: task_id}
    return [{"Key": k, "Value": v} for k, v in sorted(merged.items())]


def _exists_ok(fn: Any, codes: Iterable[str], /, **kwargs: Any) -> Any:
    """A create where "already exists" means done (re-running after a failure)."""
    try:
        return call(fn, **kwargs)
    except AwsError as exc:
        if exc.code in set(codes):
            return None
        raise


# --- bucket -------------------------------------------------------------------------


def create_bucket(aws: Aws, bucket: str, tags: list[dict[str, str]]) -> None:
    """A private bucket: public access blocked, encrypted at rest (SSE-S3), tagged."""
    kwargs: dict[str, Any] = {"Bucket": bucket}
    if aws.region != "us-east-1":
        kwargs["CreateBucketConfiguration"] = {"LocationConstraint": aws.region}
    _exists_ok(aws.s3.create_bucket, ("BucketAlreadyOwnedByYou",), **kwargs)
    # A new bucket can be briefly invisible to the calls that follow.
    just_made = ("NoSuchBucket", "404")
    call(
        aws.s3.put_public_access_block,
        retry=just_made,
        Bucket=bucket,
        PublicAccessBlockConfiguration={
            "BlockPublicAcls": True,
            "IgnorePublicAcls": True,
            "BlockPublicPolicy": True,
            "RestrictPublicBuckets": True,
        },
    )
    call(
        aws.s3.put_bucket_encryption,
        retry=just_made,
        Bucket=bucket,
        ServerSideEncryptionConfiguration={
            "Rules": [
                {
                    "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"},
                    "BucketKeyEnabled": True,
                }
            ]
        },
    )
    call(aws.s3.put_bucket_tagging, retry=just_made, Bucket=bucket, Tagging={"TagSet": tags})


def check_bucket(aws: Aws, bucket: str) -> None:
    """An existing bucket (storage.container) is there and ours to write."""
    try:
        call(aws.s3.head_bucket, Bucket=bucket)
    except NotFound as exc:
        raise AwsError(
            f"storage.container: bucket {bucket!r} does not exist; create it or leave "
            "container empty to let the task make its own",
            "NoSuchBucket",
        ) from exc


def delete_objects(aws: Aws, bucket: str, prefix: str) -> int:
    """Every object and version under prefix ("" = all); a missing bucket is NotFound."""
    paginator = aws.s3.get_paginator("list_object_versions")
    listed = prefix.rstrip("/") + "/" if prefix else ""
    removed = 0
    pages = call(lambda: list(paginator.paginate(Bucket=bucket, Prefix=listed)))
    batch: list[dict[str, str]] = []
    for page in pages:
        for item in page.get("Versions", []) + page.get("DeleteMarkers", []):
            batch.append({"Key": item["Key"], "VersionId": item["VersionId"]})
    for i in range(0, len(batch), 1000):
        chunk = batch[i : i + 1000]
        answer = call(
            aws.s3.delete_objects, Bucket=bucket, Delete={"Objects": chunk, "Quiet": True}
        )
        errors = answer.get("Errors") or []
        if errors:
            first = errors[0]
            raise AwsError(
                f"DeleteObjects: {first.get('Code')}: {first.get('Message')} "
                f"({len(errors)} objects not deleted)",
                str(first.get("Code", "")),
            )
        removed += len(chunk)
    return removed


def delete_bucket(aws: Aws, bucket: str) -> None:
    """Empty it, then remove it; a straggler's last write (a machine still shutting
    down) empties again instead of failing the delete."""

    def empty_and_delete() -> None:
        delete_objects(aws, bucket, "")  # NotFound when the bucket is gone: done
        aws.s3.delete_bucket(Bucket=bucket)  # its errors are classified by the call below

    call(empty_and_delete, retry=("BucketNotEmpty",), deadline=BUCKET_DELETE_DEADLINE)


# --- identity -------------------------------------------------------------------------

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
    _exists_ok(
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
    _exists_ok(
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


# --- network --------------------------------------------------------------------------


def default_vpc(aws: Aws) -> str:
    vpcs = call(aws.ec2.describe_vpcs, Filters=[{"Name": "is-default", "Values": ["true"]}])
    if not vpcs["Vpcs"]:
        raise AwsError(
            f"region {aws.region} has no default VPC; create one with "
            f"`aws ec2 create-default-vpc --region {aws.region}`",
            "NoDefaultVpc",
        )
    return str(vpcs["Vpcs"][0]["VpcId"])


def default_subnets(aws: Aws, vpc: str) -> list[str]:
    """The default subnet of every zone of the region."""
    found = call(
        aws.ec2.describe_subnets,
        Filters=[
            {"Name": "vpc-id", "Values": [vpc]},
            {"Name": "default-for-az", "Values": ["true"]},
        ],
    )["Subnets"]
    if not found:
        raise AwsError(
            f"the default VPC of {aws.region} has no default subnets; create them with "
            f"`aws ec2 create-default-subnet --availability-zone <zone>`",
            "NoDefaultSubnet",
        )
    return [s["SubnetId"] for s in sorted(found, key=lambda s: s["AvailabilityZone"])]


def find_security_group(aws: Aws, names: Names) -> str:
    found = call(
        aws.ec2.describe_security_groups,
        Filters=[
            {"Name": "group-name", "Values": [names.security_group]},
            {"Name": f"tag:{TASK_TAG}", "Values": [names.task_id]},
        ],
    )["SecurityGroups"]
    if not found:
        raise NotFound(f"security group {names.security_group}")
    return str(found[0]["GroupId"])


def create_security_group(aws: Aws, names: Names, tags: list[dict[str, str]]) -> str:
    """No inbound rules at all; outbound open (the bucket, package mirrors)."""
    try:
        return find_security_group(aws, names)
    except NotFound:
        pass
    made = call(
        aws.ec2.create_security_group,
        GroupName=names.security_group,
        Description=f"pulumi-iterative task {names.task_id}: no inbound access",
        VpcId=default_vpc(aws),
        TagSpecifications=[{"ResourceType": "security-group", "Tags": tags}],
    )
    return str(made["GroupId"])


def delete_security_group(aws: Aws, names: Names) -> None:
    group = find_security_group(aws, names)
    # Instances of a force-deleted group may still hold it for a while.
    call(
        aws.ec2.delete_security_group,
        retry=("DependencyViolation",),
        deadline=SG_DELETE_DEADLINE,
        GroupId=group,
    )


# --- launch template ------------------------------------------------------------------


@dataclass(frozen=True)
class Image:
    id: str
    root_device: str
    name: str
    root_size: int = 0  # GB of the image's root snapshot (0: not told)


def resolve_image(aws: Aws, image: str) -> Image:
    """An AMI id as is; an alias or `owner:name-pattern` -> the newest available match."""
    native = catalog.resolve_image("aws", image)
    if native.startswith("ami-"):
        try:
            found = call(aws.ec2.describe_images, ImageIds=[native])["Images"]
        except NotFound:
            found = []
        if not found:
            raise AwsError(f"image {native} does not exist in {aws.region}", "InvalidAMIID")
    else:
        owner, _, pattern = native.partition(":")
        found = call(
            aws.ec2.describe_images,
            Owners=[owner],
            Filters=[
                {"Name": "name", "Values": [pattern]},
                {"Name": "state", "Values": ["available"]},
            ],
        )["Images"]
        if not found:
            raise AwsError(
                f"no image of owner {owner} matches {pattern!r} in {aws.region}", "NoImage"
            )
    newest = max(found, key=lambda i: (i.get("CreationDate") or "", i["ImageId"]))
    root = newest.get("RootDeviceName") or "/dev/sda1"
    sizes = [
        int(m["Ebs"]["VolumeSize"])
        for m in newest.get("BlockDeviceMappings") or []
        if m.get("DeviceName") == root and (m.get("Ebs") or {}).get("VolumeSize")
    ]
    return Image(newest["ImageId"], root, newest.get("Name", ""), sizes[0] if sizes else 0)


def launch_template_data(
    *,
    image: Image,
    instance_type: str,
    disk_size: int,
    security_group: str,
    profile: Mapping[str, str],
    user_data: str,
    tags: list[dict[str, str]],
) -> dict[str, Any]:
    ebs: dict[str, Any] = {
        "VolumeType": "gp3",
        "Encrypted": True,
        "DeleteOnTermination": True,
    }
    # -1: the image's own size, said explicitly where the image tells it.
    size = disk_size if disk_size > 0 else image.root_size
    if size > 0:
        ebs["VolumeSize"] = size
    return {
        "ImageId": image.id,
        "InstanceType": instance_type,
        "IamInstanceProfile": dict(profile),
        "SecurityGroupIds": [security_group],
        "UserData": base64.b64encode(user_data.encode()).decode(),
        "BlockDeviceMappings": [{"DeviceName": image.root_device, "Ebs": ebs}],
        "MetadataOptions": {
            "HttpTokens": "required",  # IMDSv2 only
            "HttpEndpoint": "enabled",
            "HttpPutResponseHopLimit": 1,
            "InstanceMetadataTags": "disabled",
        },
        # A machine that powers itself off is gone, not parked (and billed for disk).
        "InstanceInitiatedShutdownBehavior": "terminate",
        "TagSpecifications": [
            {"ResourceType": "instance", "Tags": tags},
            {"ResourceType": "volume", "Tags": tags},
        ],
    }


def create_launch_template(
    aws: Aws, names: Names, data: dict[str, Any], tags: list[dict[str, str]]
) -> None:
    _exists_ok(
        aws.ec2.create_launch_template,
        ("InvalidLaunchTemplateName.AlreadyExistsException",),
        LaunchTemplateName=names.launch_template,
        LaunchTemplateData=data,
        TagSpecifications=[{"ResourceType": "launch-template", "Tags": tags}],
    )


def delete_launch_template(aws: Aws, names: Names) -> None:
    found = call(aws.ec2.describe_launch_templates, LaunchTemplateNames=[names.launch_template])
    for template in found["LaunchTemplates"]:
        call(aws.ec2.delete_launch_template, LaunchTemplateId=template["LaunchTemplateId"])


# --- group ------------------------------------------------------------------------------


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
        distribution["SpotMaxPrice"] = f"{spot:g}"
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
    _exists_ok(
        aws.autoscaling.create_auto_scaling_group,
        ("AlreadyExists",),
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


def put_backstop(aws: Aws, names: Names, when: float) -> None:
    """At `when`, the group goes to zero machines whatever the agents do."""
    call(
        aws.autoscaling.put_scheduled_update_group_action,
        AutoScalingGroupName=names.group,
        ScheduledActionName=names.backstop,
        StartTime=datetime.fromtimestamp(when, tz=timezone.utc),
        MinSize=0,
        MaxSize=0,
        DesiredCapacity=0,
    )


def delete_backstop(aws: Aws, names: Names) -> None:
    describe_group(aws, names)  # no group: its scheduled actions went with it
    found = call(
        aws.autoscaling.describe_scheduled_actions,
        AutoScalingGroupName=names.group,
        ScheduledActionNames=[names.backstop],
    )["ScheduledUpdateGroupActions"]
    if not found:
        raise NotFound(f"scheduled action {names.backstop}")
    call(
        aws.autoscaling.delete_scheduled_action,
        AutoScalingGroupName=names.group,
        ScheduledActionName=names.backstop,
    )


# --- instances --------------------------------------------------------------------------


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
