"""No credential and no secret value is stored anywhere in AWS outside the private bucket.

The scan reads back everything moto holds for the task: `/moto-api/data.json`
(every JSON-serializable attribute of every model moto tracks), plus what that
dump leaves out, read through the API: every launch template version with its
user-data, every instance's user-data attribute, groups, scheduled actions, all
tags, roles, role policies and instance profiles, the bucket's settings, and the
body of every object in it but one. Every base64-looking string is decoded,
recursively (user-data is base64, and so is the bootstrap's payload inside it).
The one object meant to hold secrets is task.json in the task's private bucket,
which the machine reads with its own identity.
"""

from __future__ import annotations

import json
from pathlib import Path

from pulumi_iterative import lifecycle
from pulumi_iterative.clouds.aws.names import Names
from pulumi_iterative.spec import parse_spec
from pulumi_iterative.status import State
from pulumi_iterative.storage import TASK_FILE
from pulumi_iterative.task import TaskRef
from tests.aws.conftest import Moto
from tests.aws.simulator import MachineSimulator
from tests.scan import texts


def stored(moto: Moto, ref: TaskRef) -> str:
    """What AWS (moto) stores for the task, as one text."""
    ec2, asg, iam, s3 = (moto.client(s) for s in ("ec2", "autoscaling", "iam", "s3"))
    names = Names(ref.task_id)
    parts: list[object] = [moto.data()]
    for t in ec2.describe_launch_templates()["LaunchTemplates"]:
        parts.append(ec2.describe_launch_template_versions(LaunchTemplateId=t["LaunchTemplateId"]))
    for r in ec2.describe_instances()["Reservations"]:
        for i in r["Instances"]:
            parts.append(i)
            parts.append(
                ec2.describe_instance_attribute(InstanceId=i["InstanceId"], Attribute="userData")
            )
    parts += [
        ec2.describe_tags(),
        ec2.describe_security_groups(),
        asg.describe_auto_scaling_groups(),
        asg.describe_scheduled_actions(),
        asg.describe_tags(),
        iam.list_roles(),
        iam.list_instance_profiles(),
        iam.get_role_policy(RoleName=names.role, PolicyName=names.policy),
        s3.get_bucket_tagging(Bucket=names.bucket),
        s3.get_bucket_encryption(Bucket=names.bucket),
    ]
    for o in s3.list_objects_v2(Bucket=names.bucket).get("Contents", []):
        parts.append(o)
        if o["Key"] == TASK_FILE:
            continue
        body = s3.get_object(Bucket=names.bucket, Key=o["Key"])["Body"].read()
        parts.append(body.decode("utf-8", errors="replace"))
    return json.dumps(parts, default=str)


def test_nothing_secret_is_stored_in_aws(
    moto: Moto, simulator: MachineSimulator, workdir: Path
) -> None:
    secret_value = "tok-" + "Zq9x" * 6
    (workdir / "in.txt").write_text("x")
    spec = parse_spec(
        {
            "cloud": "aws",
            "machine": "s",
            "parallelism": 1,
            "tags": {"owner": "data-team"},
            "environment": {"PLAIN": "visible"},
            "secret_environment": {"API_TOKEN": secret_value},
            "script": '#!/bin/sh\ntest "$API_TOKEN" = "' + secret_value + '"\n',
            "storage": {"workdir": str(workdir)},
        }
    )
    ref = lifecycle.create(spec)
    simulator.start()
    status = simulator.wait_status(ref, lambda s: s.done)
    assert status.state == State.SUCCEEDED, simulator.report()  # the secret did reach the script

    dump = stored(moto, ref)
    assert ref.task_id in dump and "ubuntu-noble" in dump  # the scan sees the task's objects
    everything = texts(dump)
    # The user-data was decoded, and so was the bootstrap's payload inside it.
    assert any("pulumi-iterative machine bootstrap" in t for t in everything)
    assert any('"task_id": "' + ref.task_id in t for t in everything)
    forbidden = {
        "caller access key": moto.caller.access_key,
        "caller secret key": moto.caller.secret_key,
        "caller session token": moto.caller.session_token,
        "secret_environment value": secret_value,
    }
    for machine in simulator.machines.values():
        forbidden["instance role secret"] = machine.role_credentials[1]
    for what, value in forbidden.items():
        assert not any(value in t for t in everything), f"{what} is stored in AWS"
    # Not in the task's reference (Pulumi state, the CLI's registry) either.
    stored_ref = json.dumps(ref.to_dict())
    assert not any(v in stored_ref for v in forbidden.values())
    lifecycle.delete(ref)
