"""`resource_group`: a task made inside a resource group the user was given. Its objects
are named and tagged from the task id as usual; delete and rollback remove exactly
those, never the group or what else lives in it; the caller needs only the
group-scoped role; the machines cannot reach other scale sets of the group."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pulumi_iterative import lifecycle
from pulumi_iterative.clouds import get_backend
from pulumi_iterative.clouds.azure.api import Azure
from pulumi_iterative.clouds.azure.names import Names, resource_id
from pulumi_iterative.clouds.azure.permissions import caller_actions, caller_role_json
from pulumi_iterative.clouds.azure.resources import group, network
from pulumi_iterative.errors import NotFound, SpecError, StepFailed
from pulumi_iterative.spec import parse_spec
from pulumi_iterative.status import State
from pulumi_iterative.task import new_task_id
from tests.azure.conftest import Cloud, leftovers
from tests.azure.fake_arm import SUBSCRIPTION, _matches
from tests.azure.simulator import MachineSimulator
from tests.azure.test_lifecycle import ROOT, _Harness, _spec
from tests.conformance.test_conformance import wait_status

TEAM = "ml-team"
TEAM_ID = resource_id(SUBSCRIPTION, TEAM)
THEIRS = "their-nsg"  # something of the platform team's, already in the group


@pytest.fixture
def team_group(azure_cloud: Cloud) -> str:
    az = Azure()
    group.create(az, TEAM, "eastus", {"owner": "platform"})
    network.create_security_group(az, TEAM, THEIRS, "eastus", {"owner": "platform"})
    return TEAM_ID


def _theirs_survive(cloud: Cloud) -> None:
    ids = set(cloud.arm.fake.resources)
    assert TEAM_ID.lower() in ids, "the user's resource group was deleted"
    assert any(i.endswith(f"/networksecuritygroups/{THEIRS}") for i in ids)


def test_a_task_in_a_named_group_uses_it_and_removes_only_its_own(
    azure_cloud: Cloud, azure_simulator: MachineSimulator, workdir: Path, team_group: str
) -> None:
    fake = azure_cloud.arm.fake
    before = len(fake.requests)  # the platform team made the group and their NSG
    ref = lifecycle.create(_spec(workdir, resource_group=TEAM, parallelism=2, spot=0))
    names = Names(ref.task_id)
    made = [
        r for r in fake.resources.values() if ref.task_id in str((r.get("tags") or {}).values())
    ]
    assert made and all(r["id"].lower().startswith(TEAM_ID.lower() + "/") for r in made)
    assert not any(
        r["type"].lower() == "resourcegroups" and r["name"] != TEAM for r in fake.resources.values()
    ), "a resource group of its own was made"
    # the machines may remove instances of their own scale set only
    scale_set = resource_id(
        SUBSCRIPTION, TEAM, "Microsoft.Compute/virtualMachineScaleSets", names.scale_set
    )
    scopes = {
        a["properties"]["roleDefinitionId"].rsplit("/", 1)[-1]: a["properties"]["scope"]
        for a in fake.find("Microsoft.Authorization/roleAssignments")
    }
    assert scopes[names.leave_role] == scale_set and scopes[names.machines_role] == TEAM_ID

    azure_simulator.start()
    status = wait_status(_Harness(azure_simulator), ref, lambda s: s.done, "the task")  # type: ignore[arg-type]
    assert status.state == State.SUCCEEDED, azure_simulator.report()
    lifecycle.delete(ref)
    lifecycle.delete(ref)  # again: nothing left to do, the group untouched
    assert leftovers(azure_cloud, ref.task_id) == []
    _theirs_survive(azure_cloud)

    machine_calls = [r for r in fake.requests if r.principal not in ("caller", "")]
    assert any(r.path.endswith("/delete") and r.status < 400 for r in machine_calls)
    assert all(r.status != 403 for r in machine_calls)
    # the caller: no group made or deleted; every request inside the group-scoped role
    caller = [r for r in fake.requests[before:] if r.principal == "caller" and r.status < 400]
    assert caller
    allowed = caller_actions(TEAM)
    for r in caller:
        assert all(any(_matches(p, a) for p in allowed) for a in r.actions), (r.method, r.path)
        if "/providers/microsoft.insights/eventtypes/" in r.path.lower():
            # the activity log is read at the subscription, filtered to the group
            assert f"resourceGroupName eq '{TEAM}'" in r.query.get("$filter", "")
        else:
            assert r.path.lower().startswith(TEAM_ID.lower()), (r.method, r.path)


def test_a_second_task_in_the_same_group_cannot_be_removed_by_the_first_ones_machines(
    azure_cloud: Cloud, workdir: Path, team_group: str
) -> None:
    first = lifecycle.create(_spec(workdir, resource_group=TEAM))
    second = lifecycle.create(_spec(workdir, resource_group=TEAM))
    fake = azure_cloud.arm.fake
    ours = Names(first.task_id)
    principal = next(
        a["properties"]["principalId"]
        for a in fake.find("Microsoft.Authorization/roleAssignments")
        if a["properties"]["roleDefinitionId"].endswith(ours.leave_role)
    )
    other = resource_id(
        SUBSCRIPTION,
        TEAM,
        "Microsoft.Compute/virtualMachineScaleSets",
        Names(second.task_id).scale_set,
    )
    mine = resource_id(
        SUBSCRIPTION, TEAM, "Microsoft.Compute/virtualMachineScaleSets", ours.scale_set
    )
    action = "microsoft.compute/virtualmachinescalesets/delete/action"
    fake._check_action(principal, action, mine)  # its own: allowed
    with pytest.raises(Exception, match=r"does not have authorization"):
        fake._check_action(principal, action, other)
    # the group's other tenants' activity is not this task's events
    theirs = resource_id(SUBSCRIPTION, TEAM, "Microsoft.Compute/virtualMachines", "their-vm")
    fake._log(theirs, "Microsoft.Compute/virtualMachines/write", "Failed", "their quota")
    fake._log(mine, "Microsoft.Compute/virtualMachines/write", "Failed", "our quota")
    messages = [e.message for e in get_backend("azure").events(first)]
    assert "our quota" in messages and "their quota" not in messages
    assert not [m for m in messages if Names(second.task_id).scale_set in m]  # nor the other's
    lifecycle.delete(first)
    assert leftovers(azure_cloud, first.task_id) == []
    assert fake.find("Microsoft.Compute/virtualMachineScaleSets")[0]["id"].lower() == other.lower()
    lifecycle.delete(second)
    assert leftovers(azure_cloud, second.task_id) == []
    _theirs_survive(azure_cloud)


@pytest.mark.parametrize(
    ("method", "pattern", "step"),
    [
        ("PUT", r"/storageAccounts/[^/]+$", "Create storage account"),
        ("PUT", r"/containers/", "Create container"),
        ("PUT", r"/userAssignedIdentities/", "Create machine identity"),
        ("PUT", r"/roleAssignments/", "Create machine identity"),
        ("PUT", r"/virtualNetworks/", "Create network"),
        ("PUT", r"/virtualMachineScaleSets/", "Create scale set"),
        ("PUT", r"/roleDefinitions/", "Let machines leave the group"),
        ("PUT", r"/autoscalesettings/", "Schedule deadline backstop"),
        ("PATCH", r"/virtualMachineScaleSets/", "Start machines"),
    ],
)
def test_a_refused_create_in_a_named_group_leaves_the_group_and_nothing_else(
    azure_cloud: Cloud, workdir: Path, team_group: str, method: str, pattern: str, step: str
) -> None:
    azure_cloud.arm.fake.fail(method, pattern, status=409, code="OperationNotAllowed")
    task_id = new_task_id("rollback")
    with pytest.raises(StepFailed) as info:
        lifecycle.create(_spec(workdir, resource_group=TEAM), task_id=task_id)
    assert info.value.step == step and info.value.undo_errors == []
    assert leftovers(azure_cloud, task_id) == []
    _theirs_survive(azure_cloud)


def test_a_missing_named_group_is_said_before_anything_is_made(
    azure_cloud: Cloud, workdir: Path
) -> None:
    task_id = new_task_id("missing")
    with pytest.raises(StepFailed) as info:
        lifecycle.create(_spec(workdir, resource_group="no-such-group"), task_id=task_id)
    assert info.value.step == "Check resource group no-such-group"
    assert "resource_group 'no-such-group' does not exist" in str(info.value)
    assert leftovers(azure_cloud, task_id) == []
    assert not [r for r in azure_cloud.arm.fake.requests if r.method in ("PUT", "DELETE")]


def test_the_fake_refuses_objects_in_a_group_that_does_not_exist(azure_cloud: Cloud) -> None:
    with pytest.raises(NotFound, match="no-such-group"):
        network.create_security_group(Azure(), "no-such-group", "x", "eastus", {})


@pytest.mark.parametrize(
    "name", ["bad name", "ends-with-dot.", "x" * 91, f"/subscriptions/{SUBSCRIPTION}/rg", "a/b"]
)
def test_a_bad_group_name_is_refused_at_preview(workdir: Path, name: str) -> None:
    with pytest.raises(SpecError) as refused:
        _spec(workdir, resource_group=name)
    (error,) = refused.value.errors
    assert error.field == "resource_group" and "not a resource group name" in error.message


@pytest.mark.parametrize("name", ["ml-team", "ML_Team.2(prod)", "x" * 90])
def test_a_good_group_name_passes(workdir: Path, name: str) -> None:
    assert _spec(workdir, resource_group=name).resource_group == name


@pytest.mark.parametrize("cloud", ["local", "aws", "gcp", "k8s"])
def test_other_clouds_refuse_a_resource_group_at_preview(cloud: str, workdir: Path) -> None:
    raw: dict[str, Any] = {
        "cloud": cloud,
        "script": "#!/bin/sh\ntrue\n",
        "storage": {"workdir": str(workdir)},
        "resource_group": TEAM,
    }
    with pytest.raises(SpecError) as refused:
        parse_spec(raw)
    errors = [e for e in refused.value.errors if e.field == "resource_group"]
    assert errors and "for cloud 'azure' only" in errors[0].message


def test_readme_shows_the_group_scoped_role() -> None:
    readme = (ROOT / "README.md").read_text()
    role = caller_role_json(TEAM)
    assert role in readme and f'"/subscriptions/<subscription id>/resourceGroups/{TEAM}"' in role
    assert "resourceGroups/write" not in role and "resourceGroups/delete" not in role
