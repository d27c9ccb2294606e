"""The default VPC's subnets and the task's security group (no inbound rules)."""

from __future__ import annotations

import logging

from ....errors import NotFound
from ..api import Aws, AwsError, call
from ..names import TASK_TAG, Names

log = logging.getLogger(__name__)

SG_DELETE_DEADLINE = 900.0  # a security group cannot go while instances still use it


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
