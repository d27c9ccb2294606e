"""AWS tests: moto in server mode on loopback, real boto3 and rclone over HTTP.

One ThreadedMotoServer per session on 127.0.0.1 and a free port; every test
starts from `POST /moto-api/reset`, with its own random caller credentials in
the environment (so a scan can look for exactly them) and AWS_ENDPOINT_URL at
moto, which boto3 honours natively and the backend hands to rclone.

moto cannot publish an image from another account (describe_images only sees
the caller's own account), so `published_images` puts Canonical's and the Deep
Learning AMI owner's images into moto's store directly: the one place these
tests reach past moto's API.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pytest
from moto.server import ThreadedMotoServer

from pulumi_iterative.clouds.aws.api import Aws
from pulumi_iterative.clouds.aws.resources.identity import create_boundary
from tests.aws.simulator import MachineSimulator

ACCOUNT = "123456789012"  # moto's default account
REGION = "us-east-1"
CANONICAL = "099720109477"
DLAMI = "898082745236"
# (owner, name, created): two ubuntu noble builds, so "newest match" is tested.
IMAGES = (
    (CANONICAL, "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-20250110", "2025-01-10"),
    (CANONICAL, "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-20250301", "2025-03-01"),
    (CANONICAL, "ubuntu/images/hvm-ssd-gp3/ubuntu-jammy-22.04-amd64-server-20250401", "2025-04-01"),
    (DLAMI, "Deep Learning Base OSS Nvidia Driver GPU AMI (Ubuntu 22.04) 20250201", "2025-02-01"),
)


@dataclass(frozen=True)
class Caller:
    """The user's credentials on the workstation: must never reach moto's stored data."""

    access_key: str
    secret_key: str
    session_token: str


@dataclass(frozen=True)
class Moto:
    endpoint: str
    caller: Caller
    images: dict[str, str]  # image name -> ami id

    def client(self, service: str, region: str = REGION):  # type: ignore[no-untyped-def]
        import boto3

        return boto3.client(service, region_name=region)

    def data(self) -> str:
        """Everything moto tracks (every JSON-serializable attribute of every model)."""
        with urllib.request.urlopen(self.endpoint + "/moto-api/data.json", timeout=30) as r:
            return r.read().decode()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=_free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def published_images(regions: tuple[str, ...] = (REGION, "eu-west-1")) -> dict[str, str]:
    from moto.ec2.models import ec2_backends
    from moto.ec2.models.amis import Ami

    found: dict[str, str] = {}
    for region in regions:
        backend = ec2_backends[ACCOUNT][region]
        for n, (owner, name, created) in enumerate(IMAGES):
            ami_id = f"ami-0{n:07d}{sum(map(ord, region)) % 10**8:08d}"
            backend.amis[ami_id] = Ami(
                backend,
                ami_id=ami_id,
                name=name,
                owner_id=owner,
                public=True,
                architecture="x86_64",
                virtualization_type="hvm",
                root_device_type="ebs",
                root_device_name="/dev/sda1",
                creation_date=datetime.fromisoformat(created).replace(tzinfo=timezone.utc),
                region_name=f"{region}a",
            )
            if region == REGION:
                found[name] = ami_id
    return found


@pytest.fixture
def moto(moto_server: str, monkeypatch: pytest.MonkeyPatch, iterative_home: Path) -> Iterator[Moto]:
    request = urllib.request.Request(moto_server + "/moto-api/reset", method="POST", data=b"")
    urllib.request.urlopen(request, timeout=30).read()
    caller = Caller(
        "AKIA" + secrets.token_hex(8).upper(),
        "caller-secret-" + secrets.token_urlsafe(24),
        "caller-session-" + secrets.token_urlsafe(40),
    )
    for name in list(os.environ):
        if name.startswith("AWS_") or name.startswith("RCLONE_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", caller.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", caller.secret_key)
    monkeypatch.setenv("AWS_SESSION_TOKEN", caller.session_token)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # the workstation is no EC2 machine
    # What an administrator does once per account: the machine roles' boundary.
    create_boundary(Aws(REGION))
    yield Moto(moto_server, caller, published_images())


@pytest.fixture
def simulator(moto: Moto, tmp_path: Path) -> Iterator[MachineSimulator]:
    sim = MachineSimulator(moto.endpoint, REGION, tmp_path / "machines", python=sys.executable)
    yield sim
    sim.close()


def leftovers(moto: Moto, task_id: str, region: str = REGION) -> list[str]:
    """Every object of the task still in moto (terminated instances excepted: AWS
    itself lists those for an hour)."""
    found: list[str] = []
    s3 = moto.client("s3", region)
    for b in s3.list_buckets().get("Buckets", []):
        if task_id in b["Name"]:
            found.append(f"bucket {b['Name']}")
        for o in s3.list_objects_v2(Bucket=b["Name"]).get("Contents", []):
            if task_id in o["Key"]:
                found.append(f"object s3://{b['Name']}/{o['Key']}")
    iam = moto.client("iam", region)
    roles = iam.list_roles()["Roles"]
    found += [f"role {r['RoleName']}" for r in roles if task_id in r["RoleName"]]
    found += [
        f"instance profile {p['InstanceProfileName']}"
        for p in iam.list_instance_profiles()["InstanceProfiles"]
        if task_id in p["InstanceProfileName"]
    ]
    ec2 = moto.client("ec2", region)
    found += [
        f"security group {g['GroupName']}"
        for g in ec2.describe_security_groups()["SecurityGroups"]
        if task_id in g["GroupName"]
    ]
    found += [
        f"launch template {t['LaunchTemplateName']}"
        for t in ec2.describe_launch_templates()["LaunchTemplates"]
        if task_id in t["LaunchTemplateName"]
    ]
    for r in ec2.describe_instances()["Reservations"]:
        for i in r["Instances"]:
            tags = json.dumps(i.get("Tags", []))
            if task_id in tags and i["State"]["Name"] != "terminated":
                found.append(f"instance {i['InstanceId']} ({i['State']['Name']})")
    asg = moto.client("autoscaling", region)
    found += [
        f"group {g['AutoScalingGroupName']}"
        for g in asg.describe_auto_scaling_groups()["AutoScalingGroups"]
        if task_id in g["AutoScalingGroupName"]
    ]
    found += [
        f"scheduled action {a['ScheduledActionName']}"
        for a in asg.describe_scheduled_actions()["ScheduledUpdateGroupActions"]
        if task_id in a["ScheduledActionName"]
    ]
    return found
