"""Each Azure object the backend makes, against the fake Resource Manager through the real
SDK clients: create reads first (twice = once), delete treats missing as done, and the
request bodies carry the safety settings the issue promises."""

from __future__ import annotations

import base64

import pytest

from pulumi_iterative.clouds.azure import catalog
from pulumi_iterative.clouds.azure.api import Azure, AzureError
from pulumi_iterative.clouds.azure.names import (
    LEAVE_ACTIONS,
    LEAVE_GROUP_ACTIONS,
    Names,
    resource_id,
    tags,
)
from pulumi_iterative.clouds.azure.resources import (
    backstop,
    group,
    identity,
    network,
    scale_set,
    storage,
)
from tests.azure.conftest import Arm
from tests.azure.fake_arm import SUBSCRIPTION

ROLE_DEFINITIONS = "Microsoft.Authorization/roleDefinitions"
ROLE_ASSIGNMENTS = "Microsoft.Authorization/roleAssignments"
NAMES = Names("train-abcdefgh12")
LOCATION = "eastus"
TAGS = tags(NAMES.task_id, {"team": "ml"})


def _puts(arm: Arm, fragment: str) -> list:
    return [r for r in arm.fake.requests if r.method == "PUT" and fragment in r.path]


@pytest.fixture
def az(arm: Arm) -> Azure:
    made = Azure()
    group.create(made, NAMES.resource_group, LOCATION, TAGS)
    return made


def test_group_is_made_once_and_deleted_idempotently(arm: Arm, az: Azure) -> None:
    group.create(az, NAMES.resource_group, LOCATION, TAGS)
    assert len(_puts(arm, "/resourcegroups/")) == 1
    group.delete(az, NAMES.resource_group)
    assert not group.exists(az, NAMES.resource_group)
    group.delete(az, NAMES.resource_group)


def test_storage_account_is_private_and_keyless(arm: Arm, az: Azure) -> None:
    rg, account = NAMES.resource_group, NAMES.storage_account
    storage.create_account(az, rg, account, LOCATION, TAGS)
    storage.create_account(az, rg, account, LOCATION, TAGS)
    sent = _puts(arm, "/storageAccounts/")
    assert len(sent) == 1
    props = sent[0].body["properties"]
    assert props["allowSharedKeyAccess"] is False and props["allowBlobPublicAccess"] is False
    assert props["supportsHttpsTrafficOnly"] is True and props["minimumTlsVersion"] == "TLS1_2"
    container = storage.create_container(az, rg, account, NAMES.container)
    assert container.endswith(f"/containers/{NAMES.container}")
    assert storage.check_container(az, account, NAMES.container) == container
    storage.delete_account(az, rg, account)
    storage.delete_account(az, rg, account)  # again: done
    with pytest.raises(AzureError, match="not in this subscription"):
        storage.check_container(az, account, NAMES.container)


def test_identity_gets_blob_data_on_its_container_and_leave_on_its_scale_set(
    arm: Arm, az: Azure
) -> None:
    rg = NAMES.resource_group
    made = identity.create(az, rg, NAMES.identity, LOCATION, TAGS)
    assert identity.create(az, rg, NAMES.identity, LOCATION, TAGS) == made
    storage.create_account(az, rg, NAMES.storage_account, LOCATION, TAGS)
    container = storage.create_container(az, rg, NAMES.storage_account, NAMES.container)
    identity.grant_blob(az, NAMES, container, made.principal_id)
    identity.grant_blob(az, NAMES, container, made.principal_id)  # again: done
    group_id = resource_id(SUBSCRIPTION, rg)
    vmss = resource_id(SUBSCRIPTION, rg, "Microsoft.Compute/virtualMachineScaleSets", "ss")
    identity.grant_leave(az, NAMES, group_id, vmss, made.principal_id)
    identity.grant_leave(az, NAMES, group_id, vmss, made.principal_id)  # again: done
    assignments = arm.fake.find("Microsoft.Authorization/roleAssignments")
    by_role = {a["properties"]["roleDefinitionId"].rsplit("/", 1)[-1]: a for a in assignments}
    assert sorted(a["properties"]["scope"] for a in assignments) == sorted(
        [container, vmss, group_id]
    )
    roles = {r["name"]: r["properties"] for r in arm.fake.find(ROLE_DEFINITIONS)}
    assert all(r["assignableScopes"] == [group_id] for r in roles.values())
    # removing instances: on the scale set alone; on the group, nothing but reading VMs
    assert by_role[NAMES.leave_role]["properties"]["scope"] == vmss
    assert roles[NAMES.leave_role]["permissions"][0]["actions"] == list(LEAVE_ACTIONS)
    assert by_role[NAMES.machines_role]["properties"]["scope"] == group_id
    assert roles[NAMES.machines_role]["permissions"][0]["actions"] == [
        "Microsoft.Compute/virtualMachines/read"
    ]
    assert all(a.startswith("Microsoft.Compute/") for a in LEAVE_GROUP_ACTIONS)
    identity.revoke_leave(az, NAMES, group_id, vmss)
    identity.revoke_leave(az, NAMES, group_id, vmss)
    assert not arm.fake.find(ROLE_DEFINITIONS)
    assert [a["properties"]["scope"] for a in arm.fake.find(ROLE_ASSIGNMENTS)] == [container]
    identity.delete(az, rg, NAMES.identity)
    identity.delete(az, rg, NAMES.identity)


def test_network_has_no_inbound_rule(arm: Arm, az: Azure) -> None:
    rg = NAMES.resource_group
    nsg = network.create_security_group(az, rg, NAMES.security_group, LOCATION, TAGS)
    subnet = network.create_network(az, rg, NAMES.network, LOCATION, TAGS, nsg)
    network.create_network(az, rg, NAMES.network, LOCATION, TAGS, nsg)
    assert subnet.endswith("/subnets/machines")
    assert _puts(arm, "networkSecurityGroups")[0].body["properties"]["securityRules"] == []
    network.delete_network(az, rg, NAMES.network)
    network.delete_security_group(az, rg, NAMES.security_group)
    network.delete_security_group(az, rg, NAMES.security_group)
    assert not arm.fake.find("Microsoft.Network/virtualNetworks")


def _scale_set_body(spot: float, **kw: object) -> dict:
    rg = NAMES.resource_group
    sub = resource_id(SUBSCRIPTION, rg, "Microsoft.Network/virtualNetworks", "v") + "/subnets/m"
    nsg = resource_id(SUBSCRIPTION, rg, "Microsoft.Network/networkSecurityGroups", "n")
    ident = resource_id(SUBSCRIPTION, rg, "Microsoft.ManagedIdentity/userAssignedIdentities", "i")
    args = dict(
        location=LOCATION,
        tags=TAGS,
        size="Standard_D8s_v5",
        zones=list(catalog.zones("eastus")),
        spot=spot,
        image=scale_set.ImageRef(catalog.IMAGES["ubuntu"]),
        disk_size=64,
        custom_data="#!/bin/sh\necho hi\n",
        identity_id=ident,
        subnet_id=sub,
        nsg_id=nsg,
        computer_name_prefix=NAMES.computer_name_prefix,
        encryption_at_host=True,
    )
    args.update(kw)
    return scale_set.body(**args)  # type: ignore[arg-type]


def test_scale_set_request_is_spot_flexible_and_locked_down(arm: Arm, az: Azure) -> None:
    rg = NAMES.resource_group
    vmss = scale_set.create(az, rg, NAMES.scale_set, _scale_set_body(0.5))
    assert scale_set.create(az, rg, NAMES.scale_set, _scale_set_body(0.5)) == vmss
    sent = _puts(arm, "virtualMachineScaleSets")
    assert len(sent) == 1
    body = sent[0].body
    props, profile = body["properties"], body["properties"]["virtualMachineProfile"]
    assert props["orchestrationMode"] == "Flexible" and body["sku"]["capacity"] == 0
    assert body["zones"] == ["1", "2", "3"]
    assert profile["priority"] == "Spot" and profile["evictionPolicy"] == "Delete"
    assert profile["billingProfile"] == {"maxPrice": 0.5}
    assert props["spotRestorePolicy"]["enabled"] is True
    assert profile["securityProfile"] == {"encryptionAtHost": True}
    linux = profile["osProfile"]["linuxConfiguration"]
    assert linux["disablePasswordAuthentication"] is True
    assert "adminPassword" not in profile["osProfile"]
    custom = base64.b64decode(profile["osProfile"]["customData"]).decode()
    assert custom == "#!/bin/sh\necho hi\n"
    assert scale_set.vms(az, rg, vmss) == []
    scale_set.set_capacity(az, rg, NAMES.scale_set, 2)
    found = scale_set.vms(az, rg, vmss)
    assert len(found) == 2 and all(scale_set.states(v) == ("succeeded", "running") for v in found)
    scale_set.remove_vms(az, rg, NAMES.scale_set, [found[0].name])
    assert [v.name for v in scale_set.vms(az, rg, vmss)] == [found[1].name]
    scale_set.delete(az, rg, NAMES.scale_set)
    scale_set.delete(az, rg, NAMES.scale_set)
    assert not arm.fake.find("Microsoft.Compute/virtualMachines")
    # disks, NICs and public addresses went with their VMs (deleteOption Delete)
    assert not [
        r
        for r in arm.fake.resources.values()
        if r["type"]
        in (
            "Microsoft.Compute/disks",
            "Microsoft.Network/networkInterfaces",
            "Microsoft.Network/publicIPAddresses",
        )
    ]


def test_on_demand_market_price_spot(az: Azure) -> None:
    on_demand = _scale_set_body(-1)
    assert "priority" not in on_demand["properties"]["virtualMachineProfile"]
    assert "spotRestorePolicy" not in on_demand["properties"]
    market = _scale_set_body(0)
    assert market["properties"]["virtualMachineProfile"]["billingProfile"] == {"maxPrice": -1}


def test_backstop_sets_capacity_to_zero_at_the_deadline(arm: Arm, az: Azure) -> None:
    import time

    rg = NAMES.resource_group
    vmss = scale_set.create(az, rg, NAMES.scale_set, _scale_set_body(-1))
    scale_set.set_capacity(az, rg, NAMES.scale_set, 2)
    when = time.time() + 3600
    payload = backstop.body(
        location=LOCATION, tags=TAGS, scale_set_id=vmss, parallelism=2, when=when
    )
    backstop.create(az, rg, NAMES.backstop, payload)
    backstop.create(az, rg, NAMES.backstop, payload)
    arm.fake.tick(when - 60)
    assert len(scale_set.vms(az, rg, vmss)) == 2  # not yet
    arm.fake.tick(when + 1)
    assert scale_set.vms(az, rg, vmss) == []
    backstop.delete(az, rg, NAMES.backstop)
    backstop.delete(az, rg, NAMES.backstop)
