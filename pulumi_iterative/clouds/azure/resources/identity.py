"""The machines' identity: a user-assigned managed identity per task.

It gets two roles and nothing else:
- Storage Blob Data Contributor on the task's container only (read and write blobs);
- a custom role on the task's scale set only: read it and remove instances from it
  (Azure RBAC cannot scope to "this VM", so this is the least that lets a machine
  leave its group; the same as AWS's terminate-in-own-group);
- a custom role on the resource group to read VMs (a Flexible scale set's VMs belong
  to the group), to tell which machines are still alive.
"""

from __future__ import annotations

from dataclasses import dataclass

from ....errors import NotFound
from ..api import Azure, call, gone
from ..names import BLOB_DATA_CONTRIBUTOR, LEAVE_ACTIONS, SEE_MACHINES_ACTIONS, Names

ROLE_RETRY = ("PrincipalNotFound",)  # a new identity takes a while to replicate


@dataclass(frozen=True)
class Identity:
    id: str
    principal_id: str
    client_id: str


def create(az: Azure, group: str, name: str, location: str, tags: dict[str, str]) -> Identity:
    try:
        found = call(az.msi.user_assigned_identities.get, group, name)
    except NotFound:
        found = call(
            az.msi.user_assigned_identities.create_or_update,
            group,
            name,
            {"location": location, "tags": tags},
            what=f"create identity {name}",
        )
    return Identity(str(found.id), str(found.principal_id), str(found.client_id))


def read(az: Azure, identity_id: str) -> Identity:
    """An identity by resource id (permission_set)."""
    parts = identity_id.strip("/").split("/")
    group, name = parts[3], parts[-1]
    found = call(az.msi.user_assigned_identities.get, group, name)
    return Identity(str(found.id), str(found.principal_id), str(found.client_id))


def delete(az: Azure, group: str, name: str) -> None:
    gone(az.msi.user_assigned_identities.delete, group, name)


def role_definition_id(subscription: str, role: str) -> str:
    return f"/subscriptions/{subscription}/providers/Microsoft.Authorization/roleDefinitions/{role}"


def assign(az: Azure, scope: str, assignment: str, role_id: str, principal: str) -> None:
    """A role assignment of principal at scope (already there = done)."""
    try:
        call(az.authorization.role_assignments.get, scope, assignment)
        return
    except NotFound:
        pass
    call(
        az.authorization.role_assignments.create,
        scope,
        assignment,
        {
            "properties": {
                "roleDefinitionId": role_id,
                "principalId": principal,
                "principalType": "ServicePrincipal",
            }
        },
        retry=ROLE_RETRY,
        what=f"assign role at {scope}",
    )


def unassign(az: Azure, scope: str, assignment: str) -> None:
    gone(az.authorization.role_assignments.delete, scope, assignment)


def grant_blob(az: Azure, names: Names, container_id: str, principal: str) -> None:
    assign(
        az,
        container_id,
        names.assignment("blob"),
        role_definition_id(az.subscription, BLOB_DATA_CONTRIBUTOR),
        principal,
    )


def role_body(
    name: str, description: str, actions: tuple[str, ...], scope: str
) -> dict[str, object]:
    return {
        "properties": {
            "roleName": name,
            "description": description,
            "type": "CustomRole",
            "permissions": [{"actions": list(actions), "notActions": []}],
            "assignableScopes": [scope],
        }
    }


def leave_role_body(names: Names, scope: str) -> dict[str, object]:
    return role_body(
        names.leave_role_name,
        f"pulumi-iterative task {names.task_id}: leave its own scale set",
        LEAVE_ACTIONS,
        scope,
    )


def machines_role_body(names: Names, scope: str) -> dict[str, object]:
    return role_body(
        names.machines_role_name,
        f"pulumi-iterative task {names.task_id}: see the VMs of its scale set",
        SEE_MACHINES_ACTIONS,
        scope,
    )


def _role(az: Azure, group_id: str, guid: str, body: dict[str, object], what: str) -> str:
    try:
        return str(call(az.authorization.role_definitions.get, group_id, guid).id)
    except NotFound:
        made = call(
            az.authorization.role_definitions.create_or_update, group_id, guid, body, what=what
        )
        return str(made.id)


def grant_leave(az: Azure, names: Names, group_id: str, scale_set_id: str, principal: str) -> None:
    """Two custom roles, defined in and assignable only within the resource group: remove
    instances from the scale set (assigned on the scale set alone) and read VMs (on the
    group, where a Flexible scale set's VMs live). In a resource group the user named,
    other scale sets there stay out of the machines' reach."""
    leave = _role(
        az, group_id, names.leave_role, leave_role_body(names, group_id), "define the leave role"
    )
    see = _role(
        az,
        group_id,
        names.machines_role,
        machines_role_body(names, group_id),
        "define the see-machines role",
    )
    assign(az, scale_set_id, names.assignment("leave"), leave, principal)
    assign(az, group_id, names.assignment("see"), see, principal)


def revoke_leave(az: Azure, names: Names, group_id: str, scale_set_id: str) -> None:
    """Role definitions outlive their resource group in Azure: removed explicitly."""
    unassign(az, scale_set_id, names.assignment("leave"))
    unassign(az, group_id, names.assignment("leave"))  # where earlier versions assigned it
    unassign(az, group_id, names.assignment("see"))
    gone(az.authorization.role_definitions.delete, group_id, names.leave_role)
    gone(az.authorization.role_definitions.delete, group_id, names.machines_role)
