"""What the caller's Azure AD login needs, as a custom role definition.

One source for the README's pasteable role and for the test that audits every
request a task's lifecycle sends to (the fake) Resource Manager against it. No SDK.
"""

from __future__ import annotations

import json
from typing import Any

CALLER_ACTIONS = (
    "Microsoft.Resources/subscriptions/resourceGroups/read",
    "Microsoft.Resources/subscriptions/resourceGroups/write",
    "Microsoft.Resources/subscriptions/resourceGroups/delete",
    "Microsoft.Storage/storageAccounts/read",
    "Microsoft.Storage/storageAccounts/write",
    "Microsoft.Storage/storageAccounts/delete",
    "Microsoft.Storage/storageAccounts/blobServices/containers/read",
    "Microsoft.Storage/storageAccounts/blobServices/containers/write",
    "Microsoft.Storage/storageAccounts/blobServices/containers/delete",
    "Microsoft.ManagedIdentity/userAssignedIdentities/read",
    "Microsoft.ManagedIdentity/userAssignedIdentities/write",
    "Microsoft.ManagedIdentity/userAssignedIdentities/delete",
    "Microsoft.ManagedIdentity/userAssignedIdentities/assign/action",
    "Microsoft.Authorization/roleAssignments/read",
    "Microsoft.Authorization/roleAssignments/write",
    "Microsoft.Authorization/roleAssignments/delete",
    "Microsoft.Authorization/roleDefinitions/read",
    "Microsoft.Authorization/roleDefinitions/write",
    "Microsoft.Authorization/roleDefinitions/delete",
    "Microsoft.Network/networkSecurityGroups/read",
    "Microsoft.Network/networkSecurityGroups/write",
    "Microsoft.Network/networkSecurityGroups/delete",
    "Microsoft.Network/networkSecurityGroups/join/action",
    "Microsoft.Network/virtualNetworks/read",
    "Microsoft.Network/virtualNetworks/write",
    "Microsoft.Network/virtualNetworks/delete",
    "Microsoft.Network/virtualNetworks/subnets/join/action",
    "Microsoft.Network/networkInterfaces/write",
    "Microsoft.Network/networkInterfaces/join/action",
    "Microsoft.Network/publicIPAddresses/read",
    "Microsoft.Network/publicIPAddresses/write",
    "Microsoft.Network/publicIPAddresses/join/action",
    "Microsoft.Compute/virtualMachineScaleSets/read",
    "Microsoft.Compute/virtualMachineScaleSets/write",
    "Microsoft.Compute/virtualMachineScaleSets/delete",
    "Microsoft.Compute/virtualMachineScaleSets/delete/action",
    "Microsoft.Compute/virtualMachines/read",
    "Microsoft.Compute/virtualMachines/write",
    "Microsoft.Compute/disks/write",
    "Microsoft.Insights/autoscalesettings/read",
    "Microsoft.Insights/autoscalesettings/write",
    "Microsoft.Insights/autoscalesettings/delete",
    "Microsoft.Insights/eventtypes/values/read",
)
# The workdir upload, the task definition and pulling outputs go through Blob storage
# with the same login (rclone env_auth): the data actions of Storage Blob Data Contributor.
CALLER_DATA_ACTIONS = (
    "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read",
    "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/write",
    "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/delete",
    "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/add/action",
)


# Only a task that makes its own resource group needs these (not with `resource_group`).
OWN_GROUP_ACTIONS = (
    "Microsoft.Resources/subscriptions/resourceGroups/write",
    "Microsoft.Resources/subscriptions/resourceGroups/delete",
)


def caller_actions(resource_group: str = "") -> tuple[str, ...]:
    """The actions a caller needs: all of them, or, in a resource group they were given,
    all but making and deleting groups."""
    if not resource_group:
        return CALLER_ACTIONS
    return tuple(a for a in CALLER_ACTIONS if a not in OWN_GROUP_ACTIONS)


def caller_role(
    subscription: str = "<subscription id>", resource_group: str = ""
) -> dict[str, Any]:
    """The custom role to create (`az role definition create --role-definition @role.json`)
    and assign to whoever runs tasks: at the subscription, or, for tasks that all use
    `resource_group`, at that resource group alone."""
    scope = f"/subscriptions/{subscription}"
    name, where = "pulumi-iterative task runner", ""
    if resource_group:
        scope += f"/resourceGroups/{resource_group}"
        name += f" in {resource_group}"
        where = f" in the resource group {resource_group}"
    return {
        "Name": name,
        "IsCustom": True,
        "Description": "Create, watch and delete pulumi-iterative tasks (Spot VMs in a scale "
        f"set, Blob storage, a task-scoped managed identity){where}",
        "Actions": list(caller_actions(resource_group)),
        "NotActions": [],
        "DataActions": list(CALLER_DATA_ACTIONS),
        "NotDataActions": [],
        "AssignableScopes": [scope],
    }


def caller_role_json(resource_group: str = "") -> str:
    return json.dumps(caller_role(resource_group=resource_group), indent=1)
