"""The whole AWS lifecycle against moto, machines simulated from their own user-data."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from pulumi_iterative import lifecycle
from pulumi_iterative.clouds.aws.names import Names
from pulumi_iterative.spec import parse_spec
from pulumi_iterative.status import State
from tests.aws.conftest import CANONICAL, Moto, leftovers
from tests.aws.simulator import MachineSimulator

SCRIPT = """#!/bin/sh
set -e
mkdir -p results
out=results/run-$TASK_INDEX.txt
echo "index=$TASK_INDEX count=$TASK_COUNT restarts=$TASK_RESTARTS resumed=$TASK_RESUMED" > $out
cat input.txt >> $out
echo "mode=$MODE token-length=${#API_TOKEN}" >> $out
echo "machine $TASK_INDEX done"
"""


def test_full_lifecycle(moto: Moto, simulator: MachineSimulator, workdir: Path) -> None:
    (workdir / "input.txt").write_text("hello from the workstation\n")
    spec = parse_spec(
        {
            "cloud": "aws",
            "region": "us-east",
            "machine": "m",
            "spot": 0.25,
            "disk_size": 40,
            "parallelism": 2,
            "timeout": 3600,
            "environment": {"MODE": "train"},
            "secret_environment": {"API_TOKEN": "s3cr3t-value-123"},
            "script": SCRIPT,
            "storage": {"workdir": str(workdir), "output": "results", "checkpoint_interval": 1},
            "tags": {"team": "ml"},
        }
    )
    ref = lifecycle.create(spec)
    names = Names(ref.task_id)
    simulator.start()

    status = simulator.wait_status(ref, lambda s: s.done, timeout=90)
    assert status.state == State.SUCCEEDED, simulator.report()
    latest = status.latest
    assert [m.index for m in latest] == [0, 1]
    assert all(m.state == State.SUCCEEDED and m.exit_code == 0 for m in latest)
    instances = {m.instance for m in latest}
    assert instances <= set(simulator.machines), "every report comes from a launched instance"
    assert "machine 0 done" in "".join(status.logs.values())

    # Each agent left the group with the desired capacity decremented: the group is at zero.
    asg = moto.client("autoscaling")
    simulator.wait_for(
        lambda: (
            asg.describe_auto_scaling_groups(AutoScalingGroupNames=[names.group])[
                "AutoScalingGroups"
            ][0]["DesiredCapacity"]
            == 0
        ),
        "the group to reach zero",
    )
    group = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[names.group])[
        "AutoScalingGroups"
    ][0]
    assert group["Instances"] == []

    # Machines got the instance role's credentials from IMDSv2, never the caller's.
    for machine in simulator.machines.values():
        assert not any(k.startswith(("AWS_ACCESS", "AWS_SECRET")) for k in machine.env)
        assert ("GET", "/latest/meta-data/iam/security-credentials/", 200) in machine.imds.requests

    # Outputs come back on delete; nothing of the task is left.
    lifecycle.delete(ref)
    runs = sorted((workdir / "results").glob("run-*.txt"))
    assert [p.name for p in runs] == ["run-0.txt", "run-1.txt"]
    first = runs[0].read_text()
    assert "index=0 count=2 restarts=0 resumed=0" in first
    assert "hello from the workstation" in first
    assert "mode=train token-length=16" in first
    assert leftovers(moto, ref.task_id) == []
    lifecycle.delete(ref)  # idempotent: a second delete finds everything gone


def test_requests_where_moto_stores_but_does_not_act(moto: Moto, workdir: Path) -> None:
    """No machines run here: what the backend asked AWS for is checked as stored."""
    (workdir / "a.txt").write_text("a")
    spec = parse_spec(
        {
            "cloud": "aws",
            "region": "us-east",
            "machine": "m",
            "spot": 0.4,
            "disk_size": 80,
            "parallelism": 3,
            "timeout": 7200,
            "script": "#!/bin/sh\ntrue\n",
            "storage": {"workdir": str(workdir)},
        }
    )
    ref = lifecycle.create(spec)
    names = Names(ref.task_id)
    ec2, asg, iam, s3 = (moto.client(s) for s in ("ec2", "autoscaling", "iam", "s3"))

    # The bucket: private and encrypted.
    block = s3.get_public_access_block(Bucket=names.bucket)["PublicAccessBlockConfiguration"]
    assert all(block.values()) and len(block) == 4
    rules = s3.get_bucket_encryption(Bucket=names.bucket)["ServerSideEncryptionConfiguration"]
    assert rules["Rules"][0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"

    # The launch template: newest ubuntu, encrypted gp3 root of disk_size, IMDSv2, user-data.
    data = ec2.describe_launch_template_versions(
        LaunchTemplateName=names.launch_template, Versions=["$Latest"]
    )["LaunchTemplateVersions"][0]["LaunchTemplateData"]
    newest = moto.images["ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-20250301"]
    assert data["ImageId"] == newest
    assert ec2.describe_images(ImageIds=[newest])["Images"][0]["OwnerId"] == CANONICAL
    ebs = data["BlockDeviceMappings"][0]["Ebs"]
    assert data["BlockDeviceMappings"][0]["DeviceName"] == "/dev/sda1"
    assert ebs == {
        "VolumeType": "gp3",
        "Encrypted": True,
        "DeleteOnTermination": True,
        "VolumeSize": 80,
    }
    assert data["MetadataOptions"]["HttpTokens"] == "required"
    assert data["IamInstanceProfile"] == {"Name": names.instance_profile}
    user_data = base64.b64decode(data["UserData"]).decode()
    assert (
        user_data
        == lifecycle.rclone_for(ref)
        .cat(lifecycle.rclone_for(ref).remote.path("bootstrap.sh"))
        .decode()
    )
    tagged = {
        t["ResourceType"]: {x["Key"]: x["Value"] for x in t["Tags"]}
        for t in data["TagSpecifications"]
    }
    for kind in ("instance", "volume"):
        assert tagged[kind]["pulumi-iterative:task"] == ref.task_id

    # The security group: no inbound rule at all.
    sg = ec2.describe_security_groups(
        Filters=[{"Name": "group-name", "Values": [names.security_group]}]
    )["SecurityGroups"][0]
    assert sg["IpPermissions"] == []
    assert data["SecurityGroupIds"] == [sg["GroupId"]]

    # The group: every default subnet, spot share, max price, capacity-optimized, fallbacks.
    group = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[names.group])[
        "AutoScalingGroups"
    ][0]
    subnets = ec2.describe_subnets(Filters=[{"Name": "default-for-az", "Values": ["true"]}])
    assert set(group["VPCZoneIdentifier"].split(",")) == {s["SubnetId"] for s in subnets["Subnets"]}
    assert (group["MinSize"], group["MaxSize"], group["DesiredCapacity"]) == (0, 3, 3)
    policy = group["MixedInstancesPolicy"]
    assert policy["InstancesDistribution"]["OnDemandPercentageAboveBaseCapacity"] == 0
    assert policy["InstancesDistribution"]["OnDemandBaseCapacity"] == 0
    assert policy["InstancesDistribution"]["SpotMaxPrice"] == "0.4"
    assert policy["InstancesDistribution"]["SpotAllocationStrategy"] == "capacity-optimized"
    assert [o["InstanceType"] for o in policy["LaunchTemplate"]["Overrides"]] == [
        "m7i.2xlarge",
        "m6i.2xlarge",
        "m5.2xlarge",
    ]
    assert {p["ProcessName"] for p in group["SuspendedProcesses"]} == {"AZRebalance"}

    # The backstop: zero machines shortly after the deadline.
    (action,) = asg.describe_scheduled_actions(AutoScalingGroupName=names.group)[
        "ScheduledUpdateGroupActions"
    ]
    assert action["ScheduledActionName"] == names.backstop
    assert (action["MinSize"], action["MaxSize"], action["DesiredCapacity"]) == (0, 0, 0)
    assert 0 <= action["StartTime"].timestamp() - ref.deadline <= 120

    # The identity: only this task's bucket and this task's group.
    role = iam.get_role(RoleName=names.role)["Role"]
    trust = role["AssumeRolePolicyDocument"]
    trust = json.loads(trust) if isinstance(trust, str) else trust
    assert trust["Statement"][0]["Principal"] == {"Service": "ec2.amazonaws.com"}
    doc = iam.get_role_policy(RoleName=names.role, PolicyName=names.policy)["PolicyDocument"]
    doc = json.loads(doc) if isinstance(doc, str) else doc
    by_sid = {s["Sid"]: s for s in doc["Statement"]}
    assert by_sid["TaskObjects"]["Resource"] == f"arn:aws:s3:::{names.bucket}/*"
    assert by_sid["ListTaskPrefix"]["Resource"] == f"arn:aws:s3:::{names.bucket}"
    assert by_sid["LeaveOwnGroup"]["Action"] == "autoscaling:TerminateInstanceInAutoScalingGroup"
    assert by_sid["LeaveOwnGroup"]["Resource"].endswith(f":autoScalingGroupName/{names.group}")
    resources = [
        r
        for s in doc["Statement"]
        if s["Resource"] != "*"
        for r in ([s["Resource"]] if isinstance(s["Resource"], str) else s["Resource"])
    ]
    assert all(names.bucket in r or names.group in r for r in resources)
    # The machine can never rewrite what the workstation wrote for it.
    kept = by_sid["KeepTheWorkstationsObjects"]
    assert kept["Effect"] == "Deny" and f"arn:aws:s3:::{names.bucket}/task.json" in kept["Resource"]
    # The role carries the account's permissions boundary.
    assert role["PermissionsBoundary"]["PermissionsBoundaryArn"].endswith(
        ":policy/pulumi-iterative/pulumi-iterative-boundary"
    )
    wild = [s for s in doc["Statement"] if s["Resource"] == "*"]
    assert [s["Action"] for s in wild] == ["autoscaling:DescribeAutoScalingGroups"]
    profile = iam.get_instance_profile(InstanceProfileName=names.instance_profile)
    assert [r["RoleName"] for r in profile["InstanceProfile"]["Roles"]] == [names.role]

    lifecycle.delete(ref)
    assert leftovers(moto, ref.task_id) == []


def test_scaling_activities_become_events(monkeypatch) -> None:
    """moto records no scaling activities; AWS's shape is mapped to the one event model."""
    from datetime import datetime, timezone

    from pulumi_iterative.clouds.aws.backend import Backend as AwsBackend
    from pulumi_iterative.clouds.aws.resources import group as aws_group
    from pulumi_iterative.task import TaskRef

    when = datetime(2025, 1, 1, tzinfo=timezone.utc)
    activities = [
        {"Description": "Launching a new EC2 instance: i-0abc123", "StatusCode": "Successful",
         "StartTime": when},
        {"Description": "Terminating EC2 instance: i-0abc123", "StatusCode": "Successful",
         "StartTime": when},
        {"Description": "Launching a new EC2 instance.  Status Reason: no capacity",
         "StatusCode": "Failed", "StatusMessage": "InsufficientInstanceCapacity",
         "StartTime": when},
    ]  # fmt: skip
    monkeypatch.setattr(aws_group, "scaling_activities", lambda aws, names: activities)
    ref = TaskRef("t-abcdefgh12", "aws", "us-east-1", {"root": ":s3:b", "env": {}}, 1, 0, 1)
    events = AwsBackend().events(ref)
    assert [(e.kind, e.machine) for e in events] == [
        ("launch", "i-0abc123"),
        ("terminate", "i-0abc123"),
        ("error", ""),
    ]
    assert events[2].message.endswith(": InsufficientInstanceCapacity")
    assert events[0].time == when.timestamp()
