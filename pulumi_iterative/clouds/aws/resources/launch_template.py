"""The image a task boots and the launch template that describes its machines."""

from __future__ import annotations

import base64
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .... import catalog
from ....errors import NotFound
from ..api import Aws, AwsError, call, exists_ok
from ..names import Names

log = logging.getLogger(__name__)


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
    exists_ok(
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
