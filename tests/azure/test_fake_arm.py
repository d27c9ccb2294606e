"""The fake Resource Manager, driven through the real azure-mgmt clients over HTTP: it
takes what the SDK sends, refuses what ARM refuses, and acts like a scale set."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from pulumi_iterative.clouds.azure.api import Azure, AzureError, call, gone
from pulumi_iterative.errors import NotFound
from tests.azure.conftest import Arm
from tests.azure.fake_arm import SUBSCRIPTION

GROUP = "rg-test"


LOCATION = "eastus"


def _group(az: Azure) -> None:
    call(az.resources.resource_groups.create_or_update, GROUP, {"location": LOCATION})


def _raw(arm: Arm, method: str, path: str, body: object = None) -> tuple[int, dict]:
    request = urllib.request.Request(
        arm.endpoint + path,
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {arm.caller_token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.loads(answer.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def _scale_set(az: Azure, capacity: int, *, restore: bool = True) -> dict:
    subnet = (
        f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{GROUP}/providers/"
        "Microsoft.Network/virtualNetworks/vnet/subnets/default"
    )
    body = {
        "location": LOCATION,
        "sku": {"name": "Standard_D2s_v5", "capacity": capacity},
        "zones": ["1", "2"],
        "properties": {
            "orchestrationMode": "Flexible",
            "platformFaultDomainCount": 1,
            "spotRestorePolicy": {"enabled": restore},
            "virtualMachineProfile": {
                "priority": "Spot",
                "evictionPolicy": "Delete",
                "billingProfile": {"maxPrice": -1},
                "osProfile": {
                    "computerNamePrefix": "t",
                    "adminUsername": "azureuser",
                    "customData": "IyEvYmluL3NoCg==",
                },
                "storageProfile": {
                    "imageReference": {
                        "publisher": "Canonical",
                        "offer": "o",
                        "sku": "s",
                        "version": "latest",
                    },
                    "osDisk": {"createOption": "FromImage", "deleteOption": "Delete"},
                },
                "networkProfile": {
                    "networkApiVersion": "2020-11-01",
                    "networkInterfaceConfigurations": [
                        {
                            "name": "nic",
                            "properties": {
                                "primary": True,
                                "deleteOption": "Delete",
                                "ipConfigurations": [
                                    {"name": "ip", "properties": {"subnet": {"id": subnet}}}
                                ],
                            },
                        }
                    ],
                },
            },
        },
    }
    return call(az.compute.virtual_machine_scale_sets.begin_create_or_update, GROUP, "ss", body)


def _vms(az: Azure) -> list:
    return list(call(az.compute.virtual_machines.list, GROUP))


def test_resource_group_round_trip(arm: Arm) -> None:
    az = Azure()
    _group(az)
    got = call(az.resources.resource_groups.get, GROUP)
    assert got.location == LOCATION and got.name == GROUP
    call(az.resources.resource_groups.begin_delete, GROUP)
    with pytest.raises(NotFound):
        call(az.resources.resource_groups.get, GROUP)
    gone(az.resources.resource_groups.begin_delete, GROUP)  # already gone: done


def test_unknown_property_is_refused_with_arms_error_shape(arm: Arm) -> None:
    az = Azure()
    _group(az)
    # The TypeSpec-style SDKs send a dict as it is: the fake refuses it like ARM.
    with pytest.raises(AzureError) as refused:
        call(
            az.network.network_security_groups.begin_create_or_update,
            GROUP,
            "nsg",
            {"location": LOCATION, "colour": "blue"},
        )
    assert refused.value.code == "InvalidRequestContent" and refused.value.status == 400
    assert "colour" in str(refused.value)
    # (msrest-style SDKs drop unknown keys themselves, so that one goes raw)
    status, body = _raw(
        arm,
        "PUT",
        f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{GROUP}/providers/"
        "Microsoft.ManagedIdentity/userAssignedIdentities/id1?api-version=2024-11-30",
        {"location": LOCATION, "properties": {"principalId": "me"}},
    )
    assert status == 400 and "read-only" in body["error"]["message"]
    status, body = _raw(
        arm,
        "PUT",
        f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{GROUP}/providers/Microsoft.Network/"
        "networkSecurityGroups/nsg?api-version=2026-03-01",
        {
            "location": LOCATION,
            "properties": {"securityRules": [{"name": "r", "properties": {"protocol": "Tcp"}}]},
        },
    )
    assert status == 400 and body["error"]["code"] == "InvalidRequestContent"
    assert "required" in body["error"]["message"]  # access, direction, priority are required
    assert not arm.fake.find("Microsoft.Network/networkSecurityGroups")


def test_api_version_is_required_and_checked(arm: Arm) -> None:
    path = f"/subscriptions/{SUBSCRIPTION}/resourcegroups/{GROUP}"
    status, body = _raw(arm, "PUT", path, {"location": LOCATION})
    assert status == 400 and body["error"]["code"] == "MissingApiVersionParameter"
    status, body = _raw(arm, "PUT", path + "?api-version=2015-01-01", {"location": LOCATION})
    assert status == 400 and body["error"]["code"] == "InvalidApiVersionParameter"


def test_a_token_it_did_not_issue_is_refused(arm: Arm) -> None:
    request = urllib.request.Request(
        f"{arm.endpoint}/subscriptions/{SUBSCRIPTION}/resourcegroups/x?api-version=2025-04-01",
        headers={"Authorization": "Bearer forged"},
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 401


def test_long_running_operations_use_arms_polling_headers(arm: Arm) -> None:
    arm.fake.polls = 1  # a real long-running operation: InProgress once, then done
    az = Azure()
    _group(az)
    _scale_set(az, 1)
    put = next(
        r for r in arm.fake.requests if r.method == "PUT" and "virtualMachineScaleSets" in r.path
    )
    assert put.status == 201
    polls = [r for r in arm.fake.requests if "/operations/" in r.path]
    assert polls and all(r.status == 200 for r in polls)
    call(az.compute.virtual_machine_scale_sets.begin_delete, GROUP, "ss")
    delete = next(r for r in arm.fake.requests if r.method == "DELETE")
    assert delete.status == 202


def test_scale_set_makes_vms_for_its_capacity_and_follows_changes(arm: Arm) -> None:
    az = Azure()
    _group(az)
    _scale_set(az, 2)
    vms = _vms(az)
    assert len(vms) == 2
    assert {v.zones[0] for v in vms} == {"1", "2"}  # spread over the zones
    assert all(v.virtual_machine_scale_set.id.endswith("/ss") for v in vms)
    call(az.compute.virtual_machine_scale_sets.begin_update, GROUP, "ss", {"sku": {"capacity": 3}})
    assert len(_vms(az)) == 3
    victim = _vms(az)[0].name
    call(
        az.compute.virtual_machine_scale_sets.begin_delete_instances,
        GROUP,
        "ss",
        {"instanceIds": [victim]},
    )
    left = _vms(az)
    assert len(left) == 2 and victim not in {v.name for v in left}
    assert call(az.compute.virtual_machine_scale_sets.get, GROUP, "ss").sku.capacity == 2
    # deleteOption=Delete: the VM's disk and NIC went with it
    assert not [r for r in arm.fake.resources if victim.lower() in r]


def test_custom_data_is_stored_but_never_read_back(arm: Arm) -> None:
    az = Azure()
    _group(az)
    made = _scale_set(az, 1)
    assert made.properties.virtual_machine_profile.os_profile.custom_data is None
    assert next(iter(arm.fake.vms.values())).custom_data == "IyEvYmluL3NoCg=="


def test_eviction_with_spot_restore_brings_a_new_vm(arm: Arm) -> None:
    az = Azure()
    _group(az)
    _scale_set(az, 1, restore=True)
    seen: list[tuple[str, str]] = []
    arm.fake.on_vm(lambda what, vm: seen.append((what, vm.name)))
    first = _vms(az)[0].name
    arm.fake.announce_eviction(first)
    assert seen == [("preempt", first)] and len(_vms(az)) == 1  # a notice, not yet gone
    arm.fake.evict(first)
    assert ("deleted", first) in seen
    after = _vms(az)
    assert len(after) == 1 and after[0].name != first


def test_eviction_without_restore_leaves_the_gap(arm: Arm) -> None:
    az = Azure()
    _group(az)
    _scale_set(az, 1, restore=False)
    arm.fake.evict(_vms(az)[0].name)
    assert _vms(az) == []


def test_allocation_failure_is_in_the_activity_log(arm: Arm) -> None:
    az = Azure()
    _group(az)
    arm.fake.refuse_capacity("Standard_D2s_v5")
    _scale_set(az, 1)
    assert _vms(az) == []
    events = list(
        call(
            az.monitor.activity_logs.list,
            filter=f"eventTimestamp ge '2020-01-01T00:00:00Z' and resourceGroupName eq '{GROUP}'",
        )
    )
    failed = [e for e in events if e.status.value == "Failed"]
    assert failed and "AllocationFailed" in failed[0].properties["statusMessage"]


def test_injected_failures(arm: Arm) -> None:
    az = Azure()
    _group(az)
    arm.fake.fail("PUT", "userAssignedIdentities", status=409, code="Conflict2", message="nope")
    with pytest.raises(AzureError) as refused:
        call(az.msi.user_assigned_identities.create_or_update, GROUP, "id1", {"location": LOCATION})
    assert refused.value.code == "Conflict2"
    arm.fake.fail("PUT", "virtualMachineScaleSets", code="AllocationFailed", in_operation=True)
    with pytest.raises(AzureError) as failed:
        _scale_set(az, 1)
    assert failed.value.code == "AllocationFailed"


def test_transient_errors_are_retried(arm: Arm) -> None:
    az = Azure()
    _group(az)
    arm.fake.fail("PUT", "userAssignedIdentities", status=429, code="TooManyRequests", times=2)
    made = call(
        az.msi.user_assigned_identities.create_or_update, GROUP, "id1", {"location": LOCATION}
    )
    assert made.principal_id and made.client_id


def test_a_principal_may_only_do_what_its_roles_allow(arm: Arm) -> None:
    from azure.core.credentials import AccessToken

    az = Azure()
    _group(az)
    identity = call(
        az.msi.user_assigned_identities.create_or_update, GROUP, "id1", {"location": LOCATION}
    )
    _scale_set(az, 2)
    token = arm.fake.grant(identity.principal_id)

    class Static:
        def get_token(self, *scopes: str, **kw: object) -> AccessToken:
            return AccessToken(token, 2**31)

    machine = Azure(credential=Static())
    victim = _vms(az)[0].name
    with pytest.raises(AzureError) as refused:
        call(
            machine.compute.virtual_machine_scale_sets.begin_delete_instances,
            GROUP,
            "ss",
            {"instanceIds": [victim]},
        )
    assert refused.value.code == "AuthorizationFailed"
    scale_set = call(az.compute.virtual_machine_scale_sets.get, GROUP, "ss").id
    role = call(
        az.authorization.role_definitions.create_or_update,
        scale_set,
        "11111111-2222-3333-4444-555555555555",
        {
            "properties": {
                "roleName": "leave",
                "type": "CustomRole",
                "permissions": [
                    {"actions": ["Microsoft.Compute/virtualMachineScaleSets/delete/action"]}
                ],
                "assignableScopes": [scale_set],
            }
        },
    )
    call(
        az.authorization.role_assignments.create,
        scale_set,
        "99999999-2222-3333-4444-555555555555",
        {
            "properties": {
                "roleDefinitionId": role.id,
                "principalId": identity.principal_id,
                "principalType": "ServicePrincipal",
            }
        },
    )
    call(
        machine.compute.virtual_machine_scale_sets.begin_delete_instances,
        GROUP,
        "ss",
        {"instanceIds": [victim]},
    )
    assert len(_vms(az)) == 1


def test_storage_account_create_is_polled_through_location(arm: Arm) -> None:
    arm.fake.polls = 1
    az = Azure()
    _group(az)
    made = call(
        az.storage.storage_accounts.begin_create,
        GROUP,
        "piacct",
        {"sku": {"name": "Standard_LRS"}, "kind": "StorageV2", "location": LOCATION},
    )
    assert made.name == "piacct" and made.primary_endpoints.blob
    put = next(r for r in arm.fake.requests if r.method == "PUT" and "storageAccounts" in r.path)
    assert put.status == 202
    assert any(
        "kind=location" in "&".join(f"{k}={v}" for k, v in r.query.items())
        for r in arm.fake.requests
    )
