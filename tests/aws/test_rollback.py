"""A failed create leaves nothing in AWS and names its step; delete is re-runnable."""

from __future__ import annotations

from pathlib import Path

import pytest

from pulumi_iterative import lifecycle
from pulumi_iterative.clouds.aws.api import Aws, AwsError
from pulumi_iterative.clouds.aws.resources import bucket as aws_bucket
from pulumi_iterative.clouds.aws.resources import launch_template as aws_launch_template
from pulumi_iterative.errors import StepFailed, TeardownFailed
from pulumi_iterative.spec import TaskSpec, parse_spec
from pulumi_iterative.task import new_task_id
from tests.aws.conftest import Moto, leftovers


def _spec(workdir: Path, **extra: object) -> TaskSpec:
    (workdir / "data.csv").write_text("x,y\n1,2\n")
    return parse_spec(
        {
            "cloud": "aws",
            "machine": "s",
            "spot": 0,
            "parallelism": 2,
            "script": "#!/bin/sh\ntrue\n",
            "storage": {"workdir": str(workdir), "output": "results"},
            **extra,
        }
    )


def test_cloud_refusal_names_the_step(moto: Moto, workdir: Path) -> None:
    """A real refusal: the image does not exist in the region."""
    task_id = new_task_id("badimage")
    with pytest.raises(StepFailed) as info:
        lifecycle.create(_spec(workdir, image="ami-0123456789abcdef0"), task_id=task_id)
    assert info.value.step == "Create launch template"
    assert "ami-0123456789abcdef0" in str(info.value)
    assert leftovers(moto, task_id) == []


def test_no_default_vpc_is_a_clear_failure(moto: Moto, workdir: Path) -> None:
    ec2 = moto.client("ec2")
    vpc = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0]
    for subnet in ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc["VpcId"]]}])[
        "Subnets"
    ]:
        ec2.delete_subnet(SubnetId=subnet["SubnetId"])
    ec2.delete_vpc(VpcId=vpc["VpcId"])
    task_id = new_task_id("novpc")
    with pytest.raises(StepFailed) as info:
        lifecycle.create(_spec(workdir), task_id=task_id)
    assert info.value.step == "Create security group"
    assert "create-default-vpc" in str(info.value)
    assert leftovers(moto, task_id) == []


def test_delete_goes_on_past_a_failure_and_can_be_rerun(
    moto: Moto, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ref = lifecycle.create(_spec(workdir))
    real = aws_launch_template.delete_launch_template
    calls = {"n": 0}

    def flaky(*args: object, **kwargs: object) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise AwsError("DeleteLaunchTemplate: UnauthorizedOperation: no", "X")
        real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(aws_launch_template, "delete_launch_template", flaky)
    with pytest.raises(TeardownFailed) as info:
        lifecycle.delete(ref)
    assert "remove launch template" in str(info.value)
    # Everything else went; only the template is left, and a second delete removes it.
    assert [x for x in leftovers(moto, ref.task_id) if not x.startswith("launch template")] == []
    lifecycle.delete(ref)
    assert leftovers(moto, ref.task_id) == []


def test_bucket_delete_survives_a_straggling_write(
    moto: Moto, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A machine still shutting down writes once more while the bucket is emptied."""
    aws = Aws("us-east-1")
    aws_bucket.create_bucket(aws, "pulumi-iterative-straggler", [])
    real = aws_bucket.delete_objects
    writes = {"n": 0}

    def then_a_write(*args: object) -> int:
        removed = real(*args)  # type: ignore[arg-type]
        if writes["n"] == 0:
            writes["n"] += 1
            aws.s3.put_object(Bucket="pulumi-iterative-straggler", Key="claims/0.json", Body=b"{}")
        return removed

    monkeypatch.setattr(aws_bucket, "delete_objects", then_a_write)
    aws_bucket.delete_bucket(aws, "pulumi-iterative-straggler")
    assert writes["n"] == 1
    names = [b["Name"] for b in moto.client("s3").list_buckets().get("Buckets", [])]
    assert "pulumi-iterative-straggler" not in names
