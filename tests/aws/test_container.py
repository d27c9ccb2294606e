"""storage.container (a prefix in an existing bucket) and permission_set (an existing
instance profile): used as they are, never deleted, and the task's own parts go."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pulumi_iterative import lifecycle
from pulumi_iterative.clouds.aws.names import Names
from pulumi_iterative.errors import StepFailed
from pulumi_iterative.spec import parse_spec
from pulumi_iterative.status import State
from tests.aws.conftest import Moto, leftovers
from tests.aws.simulator import MachineSimulator

TRUST = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": {"Service": "ec2.amazonaws.com"},
            "Action": "sts:AssumeRole",
        }
    ],
}


def test_existing_bucket_and_profile_are_used_and_kept(
    moto: Moto, simulator: MachineSimulator, workdir: Path
) -> None:
    s3, iam, ec2 = moto.client("s3"), moto.client("iam"), moto.client("ec2")
    s3.create_bucket(Bucket="team-data")
    s3.put_object(Bucket="team-data", Key="runs/keep-me.txt", Body=b"not the task's")
    iam.create_role(RoleName="team-ml", AssumeRolePolicyDocument=json.dumps(TRUST))
    profile = iam.create_instance_profile(InstanceProfileName="team-ml")["InstanceProfile"]
    iam.add_role_to_instance_profile(InstanceProfileName="team-ml", RoleName="team-ml")
    (workdir / "in.txt").write_text("input")

    spec = parse_spec(
        {
            "cloud": "aws",
            "machine": "s",
            "permission_set": profile["Arn"],
            "script": "#!/bin/sh\nmkdir -p out && cp in.txt out/copy.txt\n",
            "storage": {"workdir": str(workdir), "output": "out", "container": "team-data/runs"},
        }
    )
    ref = lifecycle.create(spec)
    names = Names(ref.task_id)
    assert ref.remote["root"] == f":s3:team-data/runs/{ref.task_id}"
    assert [b["Name"] for b in s3.list_buckets()["Buckets"]] == ["team-data"]
    assert not [r for r in iam.list_roles()["Roles"] if ref.task_id in r["RoleName"]]
    data = ec2.describe_launch_template_versions(
        LaunchTemplateName=names.launch_template, Versions=["$Latest"]
    )["LaunchTemplateVersions"][0]["LaunchTemplateData"]
    assert data["IamInstanceProfile"] == {"Arn": profile["Arn"]}

    simulator.start()
    status = simulator.wait_status(ref, lambda s: s.done)
    assert status.state == State.SUCCEEDED, simulator.report()

    lifecycle.delete(ref)
    assert (workdir / "out" / "copy.txt").read_text() == "input"
    assert leftovers(moto, ref.task_id) == []
    # The bucket, what else it holds, and the profile are the team's: all still there.
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="team-data")["Contents"]]
    assert keys == ["runs/keep-me.txt"]
    assert iam.get_instance_profile(InstanceProfileName="team-ml")["InstanceProfile"]["Roles"]


def test_own_identity_is_scoped_to_the_task_prefix(moto: Moto, workdir: Path) -> None:
    moto.client("s3").create_bucket(Bucket="team-data")
    spec = parse_spec(
        {
            "cloud": "aws",
            "script": "#!/bin/sh\ntrue\n",
            "storage": {"workdir": str(workdir), "container": "team-data"},
        }
    )
    ref = lifecycle.create(spec)
    names = Names(ref.task_id)
    doc = moto.client("iam").get_role_policy(RoleName=names.role, PolicyName=names.policy)
    policy = doc["PolicyDocument"]
    policy = json.loads(policy) if isinstance(policy, str) else policy
    by_sid = {s["Sid"]: s for s in policy["Statement"]}
    assert by_sid["TaskObjects"]["Resource"] == f"arn:aws:s3:::team-data/{ref.task_id}/*"
    assert by_sid["ListTaskPrefix"]["Condition"] == {
        "StringLike": {"s3:prefix": [ref.task_id, f"{ref.task_id}/*"]}
    }
    lifecycle.delete(ref)
    assert leftovers(moto, ref.task_id) == []
    assert [b["Name"] for b in moto.client("s3").list_buckets()["Buckets"]] == ["team-data"]


def test_missing_container_bucket_fails_at_its_step(moto: Moto, workdir: Path) -> None:
    spec = parse_spec(
        {
            "cloud": "aws",
            "script": "#!/bin/sh\ntrue\n",
            "storage": {"workdir": str(workdir), "container": "no-such-bucket/x"},
        }
    )
    with pytest.raises(StepFailed) as info:
        lifecycle.create(spec)
    assert info.value.step == "Check bucket no-such-bucket"
    assert "storage.container" in str(info.value)
