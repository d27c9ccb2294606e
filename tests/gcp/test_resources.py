"""Each GCP object the backend makes, against the fake: create reads first (a re-run
makes nothing twice), delete of a missing object is done (NotFound or nothing)."""

from __future__ import annotations

import time

import pytest

from pulumi_iterative.clouds.gcp import api
from pulumi_iterative.clouds.gcp.names import MACHINE_ROLE_ID, Names
from pulumi_iterative.clouds.gcp.resources import group, identity, network, template
from pulumi_iterative.errors import NotFound
from tests.gcp.conftest import Gcp

NAMES = Names("unit-abcdefgh12")
REGION = "us-east1"
UBUNTU = "projects/ubuntu-os-cloud/global/images/family/ubuntu-2404-lts-amd64"


def count(gcp: Gcp, method: str) -> int:
    return len(gcp.fake.calls(method))


def test_names_fit_gcp_limits() -> None:
    longest = Names("a" * 30 + "-abcdefgh12")
    assert len(longest.bucket) <= 63 and len(longest.instance(9999)) <= 63
    assert 6 <= len(longest.account_id) <= 30 and longest.account_id.startswith("pi-")
    assert NAMES.index_of(NAMES.instance(17)) == 17
    assert NAMES.index_of("pulumi-iterative-other-abcdefgh12-1") is None
    assert Names("x-abcdefgh12").account_id == "pi-x-abcdefgh12"


def test_service_account_role_and_conditional_binding(gcp: Gcp) -> None:
    email = identity.create_account(gcp.project, NAMES)
    assert identity.create_account(gcp.project, NAMES) == email
    assert count(gcp, "iam.projects.serviceAccounts.create") == 1

    identity.ensure_role(gcp.project)
    identity.ensure_role(gcp.project)
    role = gcp.fake.roles[f"projects/{gcp.project}/roles/{MACHINE_ROLE_ID}"]
    assert role["includedPermissions"] == [
        "compute.instanceGroupManagers.get",
        "compute.instanceGroupManagers.update",
    ]
    # deleted by hand meanwhile: undeleted, not re-created under a blocked id
    gcp.fake.roles[role["name"]]["deleted"] = True
    identity.ensure_role(gcp.project)
    assert not gcp.fake.roles[role["name"]].get("deleted")

    member = f"serviceAccount:{email}"
    identity.grant_group(gcp.project, REGION, NAMES, member)
    identity.grant_group(gcp.project, REGION, NAMES, member)
    bindings = [b for b in gcp.fake.policy["bindings"] if member in b["members"]]
    assert len(bindings) == 1
    assert bindings[0]["condition"]["expression"] == (
        f'resource.name == "projects/{gcp.project}/regions/{REGION}/instanceGroupManagers/'
        f'{NAMES.group}"'
    )
    assert gcp.fake.policy["version"] == 3

    identity.revoke_group(gcp.project, member)
    assert not [b for b in gcp.fake.policy["bindings"] if member in b["members"]]
    identity.delete_account(gcp.project, NAMES)
    with pytest.raises(NotFound):
        identity.delete_account(gcp.project, NAMES)


def test_policy_written_meanwhile_is_read_again(gcp: Gcp) -> None:
    email = identity.create_account(gcp.project, NAMES)
    identity.ensure_role(gcp.project)
    gcp.fake.fail("cloudresourcemanager.projects.setIamPolicy", code=409, message="concurrent")
    identity.grant_group(gcp.project, REGION, NAMES, f"serviceAccount:{email}")
    assert count(gcp, "cloudresourcemanager.projects.getIamPolicy") == 2


def test_firewall_denies_all_ingress_to_the_task_tag(gcp: Gcp) -> None:
    network.check_network(gcp.project, "default")
    with pytest.raises(api.GcpError, match="does not exist"):
        network.check_network(gcp.project, "nope")
    network.create_firewall(gcp.project, NAMES, "default")
    network.create_firewall(gcp.project, NAMES, "default")
    assert count(gcp, "compute.firewalls.insert") == 1
    rule = gcp.fake.firewalls[NAMES.firewall]
    assert rule["direction"] == "INGRESS" and rule["denied"] == [{"IPProtocol": "all"}]
    assert rule["targetTags"] == [NAMES.network_tag] and rule["priority"] == 100
    assert "allowed" not in rule
    network.delete_firewall(gcp.project, NAMES)
    with pytest.raises(NotFound):
        network.delete_firewall(gcp.project, NAMES)


def body(gcp: Gcp, *, machine: str = "n1-standard-4+nvidia-tesla-t4*1", spot: bool = True):  # type: ignore[no-untyped-def]
    return template.template_body(
        names=NAMES,
        machine=machine,
        image=template.resolve_image(UBUNTU),
        disk_size=-1,
        spot=spot,
        account=NAMES.account_email(gcp.project),
        startup_script="#!/bin/sh\necho hello\n",
        labels=NAMES.labels(),
        network="default",
        terminate_at=time.time() + 3600,
        install_gpu_driver=False,
    )


def test_template_is_spot_shielded_and_pinned_to_an_image(gcp: Gcp) -> None:
    made = body(gcp)
    template.create_template(gcp.project, made)
    template.create_template(gcp.project, made)
    assert count(gcp, "compute.instanceTemplates.insert") == 1
    props = gcp.fake.templates[NAMES.template]["properties"]
    assert props["machineType"] == "n1-standard-4"
    assert props["guestAccelerators"] == [
        {"acceleratorType": "nvidia-tesla-t4", "acceleratorCount": 1}
    ]
    scheduling = props["scheduling"]
    assert scheduling["provisioningModel"] == "SPOT"
    assert scheduling["instanceTerminationAction"] == "DELETE"
    assert scheduling["onHostMaintenance"] == "TERMINATE"
    assert "preemptible" not in scheduling and scheduling["terminationTime"].endswith("Z")
    assert props["disks"][0]["initializeParams"]["sourceImage"].endswith(
        "/images/ubuntu-2404-noble-amd64-v20250301"
    )  # the family's newest, pinned
    assert props["serviceAccounts"][0]["email"] == NAMES.account_email(gcp.project)
    assert (
        "https://www.googleapis.com/auth/cloud-platform"
        not in props["serviceAccounts"][0]["scopes"]
    )
    assert props["shieldedInstanceConfig"]["enableVtpm"] is True
    template.delete_template(gcp.project, NAMES)
    with pytest.raises(NotFound):
        template.delete_template(gcp.project, NAMES)
    with pytest.raises(api.GcpError, match="does not exist"):
        template.resolve_image("projects/ubuntu-os-cloud/global/images/family/nothing")


def test_group_starts_named_instances_and_says_what_it_sees(gcp: Gcp) -> None:
    identity.create_account(gcp.project, NAMES)
    template.create_template(gcp.project, body(gcp, machine="n2-standard-8", spot=False))
    made = group.group_body(
        NAMES, gcp.project, REGION, "", ("n2-standard-8", "e2-standard-8"), spot=False
    )
    assert set(made["instanceFlexibilityPolicy"]["instanceSelections"]) == {"choice-0", "choice-1"}
    group.create_group(gcp.project, REGION, made)
    group.create_group(gcp.project, REGION, made)
    # A standard task's group leaves a member that powered itself off stopped (no loop).
    policy = group.read_group(gcp.project, REGION, NAMES).instance_lifecycle_policy
    assert policy.default_action_on_failure == "DO_NOTHING"
    assert count(gcp, "compute.regionInstanceGroupManagers.insert") == 1
    group.start(gcp.project, REGION, NAMES, 2)
    group.start(gcp.project, REGION, NAMES, 2)  # a re-run asks for nothing twice
    assert group.read_group(gcp.project, REGION, NAMES).target_size == 2
    deadline = time.monotonic() + 30
    while len(group.managed_instances(gcp.project, REGION, NAMES)) < 2:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    names = sorted(m.name for m in group.managed_instances(gcp.project, REGION, NAMES))
    assert names == [NAMES.instance(0), NAMES.instance(1)]
    # GCE's own record of the machines, in every zone at once: what made each of them.
    made_ops = [op for op in group.operations(gcp.project, NAMES) if op.operation_type == "insert"]
    ids = {str(m.id) for m in group.managed_instances(gcp.project, REGION, NAMES)}
    assert {str(op.target_id) for op in made_ops} == ids
    assert {op.target_link.rsplit("/", 1)[1] for op in made_ops} == set(names)
    assert group.errors(gcp.project, REGION, NAMES) == []
    group.resize(gcp.project, REGION, NAMES, 0)
    group.delete_group(gcp.project, REGION, NAMES)
    with pytest.raises(NotFound):
        group.delete_group(gcp.project, REGION, NAMES)


def test_zone_pins_the_group(gcp: Gcp) -> None:
    made = group.group_body(NAMES, gcp.project, REGION, "us-east1-c", ("g2-standard-8",), spot=True)
    # A spot task's group makes a preempted machine again: it repairs.
    assert made["instanceLifecyclePolicy"] == {"defaultActionOnFailure": "REPAIR"}
    assert made["distributionPolicy"] == {
        "targetShape": "BALANCED",
        "zones": [{"zone": "zones/us-east1-c"}],
    }
    assert "instanceFlexibilityPolicy" not in made
