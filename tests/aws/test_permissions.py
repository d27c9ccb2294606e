"""The README's IAM policies are proven, not hoped (issue 9, points 1 and 2).

The whole lifecycle (create, refresh, stop, delete) runs as an IAM user that holds
exactly the caller policy from `clouds/aws/permissions.py`, with moto enforcing IAM
(`/moto-api/reset-auth`, the runtime form of INITIAL_NO_AUTH_ACTION_COUNT), and the
simulated machines run with credentials of their real instance role. moto matches
non-S3 requests against `Resource: "*"` and ignores conditions, so for moto the
non-S3 resources are widened and conditions dropped: there it proves the action
list; S3 keeps its real resources, which moto does match. The statements themselves
(the boundary condition, the scoping) are checked on their own below.
"""

from __future__ import annotations

import copy
import json
import re
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pulumi_iterative import lifecycle
from pulumi_iterative.clouds.aws import permissions
from pulumi_iterative.clouds.aws.names import IAM_PATH, PREFIX, TASK_TAG
from pulumi_iterative.spec import parse_spec
from pulumi_iterative.status import State
from tests.aws.conftest import ACCOUNT, Moto, leftovers
from tests.aws.simulator import MachineSimulator

README = Path(__file__).parents[2] / "README.md"
SCRIPT = "#!/bin/sh\nmkdir -p results\necho trained > results/model.txt\n"


def for_moto(policy: dict[str, Any]) -> dict[str, Any]:
    """Non-S3 resources widened to "*", conditions dropped (moto ignores them)."""
    out = copy.deepcopy(policy)
    for statement in out["Statement"]:
        statement.pop("Condition", None)
        actions = statement["Action"]
        actions = [actions] if isinstance(actions, str) else actions
        if "s3:ListBucket" in actions:  # moto asks HeadBucket as s3:HeadBucket (AWS: ListBucket)
            statement["Action"] = [*actions, "s3:HeadBucket"]
        if not all(a.startswith("s3:") for a in actions):
            statement["Resource"] = "*"
        elif "s3:DeleteObject" in actions:
            # moto authorizes DeleteObjects against the bucket's ARN (AWS: each key's).
            objects = statement["Resource"]
            objects = [objects] if isinstance(objects, str) else objects
            statement["Resource"] = objects + sorted({r.split("/")[0] for r in objects})
    return out


def _auth(moto: Moto, count: str) -> None:
    request = urllib.request.Request(
        moto.endpoint + "/moto-api/reset-auth",
        method="POST",
        data=count.encode(),
        headers={"Content-Type": "text/plain"},  # a form body would be parsed away
    )
    urllib.request.urlopen(request, timeout=30).read()


def _user(moto: Moto, name: str, policy: dict[str, Any]) -> tuple[str, str]:
    iam = moto.client("iam")
    iam.create_user(UserName=name)
    iam.put_user_policy(UserName=name, PolicyName="p", PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return key["AccessKeyId"], key["SecretAccessKey"]


@pytest.fixture
def enforced(moto: Moto, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A function that turns IAM enforcement on for a caller holding `policy`."""

    # moto (in this process) recomputes S3 signatures with botocore's canonical query,
    # which differs from the Go SDK's (rclone) on listings: SignatureDoesNotMatch for a
    # correct request. Signatures are not what this proves; the keys and actions are.
    from moto.iam.access_control import S3IAMRequest

    monkeypatch.setattr(S3IAMRequest, "check_signature", lambda self: None)

    def enforce(policy: dict[str, Any], simulator: MachineSimulator) -> None:
        admin = _user(
            moto,
            "admin",
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
            },
        )
        caller = _user(moto, "caller", for_moto(policy))
        simulator.admin = admin
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", caller[0])
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", caller[1])
        monkeypatch.delenv("AWS_SESSION_TOKEN")
        _auth(moto, "0")

    yield enforce
    _auth(moto, "inf")


def _lifecycle(simulator: MachineSimulator, workdir: Path, **args: Any) -> None:
    spec = parse_spec(
        {
            "cloud": "aws",
            "machine": "s",
            "script": SCRIPT,
            "storage": {"workdir": str(workdir), "output": "results", **args.pop("storage", {})},
            **args,
        }
    )
    ref = lifecycle.create(spec)
    simulator.start()
    status = simulator.wait_status(ref, lambda s: s.done, timeout=120)
    assert status.state == State.SUCCEEDED, simulator.report()
    assert lifecycle.read(ref).state == State.SUCCEEDED  # refresh
    lifecycle.stop(ref)
    assert lifecycle.delete(ref) == 1
    assert (workdir / "results" / "model.txt").read_text() == "trained\n"
    return ref


def test_lifecycle_as_a_user_with_the_readme_policy(
    moto: Moto, simulator: MachineSimulator, workdir: Path, enforced: Any
) -> None:
    enforced(permissions.caller_policy(), simulator)
    ref = _lifecycle(simulator, workdir)
    _auth(moto, "inf")
    assert leftovers(moto, ref.task_id) == []


def test_lifecycle_with_container_and_permission_set(
    moto: Moto, simulator: MachineSimulator, workdir: Path, enforced: Any
) -> None:
    """The two README variants: your bucket and your instance profile."""
    iam, s3 = moto.client("iam"), moto.client("s3")
    s3.create_bucket(Bucket="team-data")
    role = iam.create_role(
        RoleName="ml-machine",
        Path="/team/",
        AssumeRolePolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"Service": "ec2.amazonaws.com"},
                        "Action": "sts:AssumeRole",
                    }
                ],
            }
        ),
    )["Role"]
    iam.put_role_policy(
        RoleName="ml-machine",
        PolicyName="runs",
        PolicyDocument=json.dumps(permissions.boundary_policy(buckets=("team-data",))),
    )
    profile = iam.create_instance_profile(InstanceProfileName="ml-machine", Path="/team/")
    iam.add_role_to_instance_profile(InstanceProfileName="ml-machine", RoleName="ml-machine")
    profile_arn = profile["InstanceProfile"]["Arn"]
    policy = permissions.caller_policy_for(
        container=("team-data", "runs"), permission_set=(profile_arn, role["Arn"])
    )
    enforced(policy, simulator)
    ref = _lifecycle(
        simulator, workdir, storage={"container": "team-data/runs"}, permission_set=profile_arn
    )
    _auth(moto, "inf")
    assert leftovers(moto, ref.task_id) == []
    assert iam.get_role(RoleName="ml-machine")["Role"]["Arn"] == role["Arn"]  # untouched


def test_an_action_missing_from_the_policy_is_refused(
    moto: Moto, simulator: MachineSimulator, workdir: Path, enforced: Any
) -> None:
    """The enforcement is real: without one action, create fails naming it."""
    policy = permissions.caller_policy()
    for statement in policy["Statement"]:
        if statement["Sid"] == "TaskGroups":
            statement["Action"].remove("autoscaling:PutScheduledUpdateGroupAction")
    enforced(policy, simulator)
    with pytest.raises(Exception, match="Schedule deadline backstop"):
        _lifecycle(simulator, workdir)


# --- the statements themselves --------------------------------------------------------


def _actions(statement: dict[str, Any]) -> list[str]:
    a = statement["Action"]
    return [a] if isinstance(a, str) else list(a)


def _resources(statement: dict[str, Any]) -> list[str]:
    r = statement["Resource"]
    return [r] if isinstance(r, str) else list(r)


def test_every_role_write_is_bound_to_the_boundary() -> None:
    policy = permissions.caller_policy(account=ACCOUNT)
    boundary = permissions.boundary_arn(ACCOUNT)
    for statement in policy["Statement"]:
        writes = set(_actions(statement)) & {
            "iam:CreateRole",
            "iam:PutRolePolicy",
            "iam:DeleteRolePolicy",
            "iam:AttachRolePolicy",
            "iam:DetachRolePolicy",
            "iam:PutRolePermissionsBoundary",
        }
        if writes:
            assert statement["Condition"] == {
                "StringEquals": {"iam:PermissionsBoundary": boundary}
            }, statement["Sid"]
    every = {a for s in policy["Statement"] for a in _actions(s)}
    # Nothing that could change a boundary, or make a policy to use as one.
    assert not every & {
        "iam:CreatePolicy",
        "iam:CreatePolicyVersion",
        "iam:DeletePolicy",
        "iam:DeleteRolePermissionsBoundary",
        "iam:PutRolePermissionsBoundary",
        "iam:AttachRolePolicy",
        "iam:UpdateAssumeRolePolicy",
        "iam:*",
        "*",
    }


def test_resources_are_scoped_to_the_tasks_names_and_tags() -> None:
    policy = permissions.caller_policy(account=ACCOUNT)
    for statement in policy["Statement"]:
        actions = _actions(statement)
        resources = _resources(statement)
        service = {a.split(":")[0] for a in actions}
        if resources == ["*"]:
            reads = all(re.match(r"\w+:(Describe|Get)", a) for a in actions)
            conditioned = bool(statement.get("Condition"))
            launch = actions == ["ec2:RunInstances"]
            assert reads or conditioned or launch, statement["Sid"]
            if actions == ["ec2:CreateTags"] or "ec2:TerminateInstances" in actions:
                assert conditioned
            continue
        assert len(service) == 1, statement["Sid"]
        for resource in resources:
            if service == {"iam"}:
                assert f":role{IAM_PATH}" in resource or f"{IAM_PATH}" in resource, resource
            else:
                assert f"{PREFIX}-" in resource, resource
    by_sid = {s["Sid"]: s for s in policy["Statement"]}
    remove = by_sid["RemoveOnlyTaskEc2Objects"]["Condition"]
    assert remove == {"StringLike": {f"aws:ResourceTag/{TASK_TAG}": "*"}}
    assert by_sid["PassTaskRolesToEc2"]["Condition"] == {
        "StringEquals": {"iam:PassedToService": "ec2.amazonaws.com"}
    }


def test_the_boundary_is_no_wider_than_a_task_needs() -> None:
    boundary = permissions.boundary_policy()
    actions = {a for s in boundary["Statement"] for a in _actions(s)}
    assert actions == {
        "s3:GetObject",
        "s3:PutObject",
        "s3:DeleteObject",
        "s3:AbortMultipartUpload",
        "s3:ListBucket",
        "autoscaling:TerminateInstanceInAutoScalingGroup",
        "autoscaling:DescribeAutoScalingGroups",
    }
    for statement in boundary["Statement"]:
        if _resources(statement) != ["*"]:
            assert all(f"{PREFIX}-" in r for r in _resources(statement))


def test_readme_prints_the_policies_from_the_same_source() -> None:
    text = README.read_text()
    for name, policy in (
        ("caller", permissions.caller_policy()),
        ("boundary", permissions.boundary_policy()),
    ):
        block = re.search(rf"<!-- policy:{name} -->\n```json\n(.*?)```\n", text, re.DOTALL)
        assert block, f"README has no policy:{name} block"
        assert block.group(1) == permissions.as_json(policy) + "\n", (
            f"README's {name} policy differs from clouds/aws/permissions.py; "
            "paste permissions.as_json(...) into it"
        )
