"""The machine's identity: a service account per task, and what it may do outside
its bucket (bucket.py grants that): leave its own group, nothing else.

GCE checks `compute.instanceGroupManagers.update` for `deleteInstances`, and no
predefined role holds it without much more (instance admin rights over the whole
project). So a project-level custom role holds exactly the two permissions a
machine needs (names.MACHINE_PERMISSIONS). It is made once per project, shared by
every task and never deleted: a deleted custom role blocks its id for weeks and
custom roles are few per project. Each task binds it to its own service account
with an IAM condition naming its own group, so a machine can act on no other group.
"""

from __future__ import annotations

from typing import Any

from ....errors import NotFound
from ..api import CRM, IAM, GcpError, call, rest
from ..names import MACHINE_PERMISSIONS, MACHINE_ROLE_ID, Names, group_resource


def role_name(project: str) -> str:
    return f"projects/{project}/roles/{MACHINE_ROLE_ID}"


def create_account(project: str, names: Names) -> str:
    """The task's service account (read first: an earlier try may have made it)."""
    email = names.account_email(project)
    try:
        call(rest, "GET", IAM, f"v1/projects/{project}/serviceAccounts/{email}")
        return email
    except NotFound:
        pass
    body = {
        "accountId": names.account_id,
        "serviceAccount": {
            "displayName": f"pulumi-iterative {names.task_id}"[:100],
            "description": f"machines of pulumi-iterative task {names.task_id}: its own "
            "bucket and leaving its own group",
        },
    }
    try:
        call(rest, "POST", IAM, f"v1/projects/{project}/serviceAccounts", body)
    except GcpError as exc:
        if exc.status != 409:
            raise
    return email


def check_account(project: str, email: str) -> None:
    """permission_set: the given service account exists (it is used as it is)."""
    try:
        call(rest, "GET", IAM, f"v1/projects/-/serviceAccounts/{email}")
    except NotFound as exc:
        raise GcpError(
            f"permission_set: service account {email} does not exist (or you may not see "
            "it); create it or leave permission_set empty for a per-task one",
            404,
        ) from exc


def delete_account(project: str, names: Names) -> None:
    email = names.account_email(project)
    call(rest, "DELETE", IAM, f"v1/projects/{project}/serviceAccounts/{email}")


def ensure_role(project: str) -> None:
    """The shared machine role exists, is not deleted, and holds exactly its permissions."""
    name = role_name(project)
    wanted = sorted(MACHINE_PERMISSIONS)
    try:
        role = call(rest, "GET", IAM, f"v1/{name}")
    except NotFound:
        body = {
            "roleId": MACHINE_ROLE_ID,
            "role": {
                "title": "pulumi-iterative machine",
                "description": "A task's machine leaves its own instance group "
                "(bound per task with a condition naming that group)",
                "includedPermissions": wanted,
                "stage": "GA",
            },
        }
        try:
            call(rest, "POST", IAM, f"v1/projects/{project}/roles", body)
            return
        except GcpError as exc:
            if exc.status != 409:  # made by another task meanwhile: check it below
                raise
        role = call(rest, "GET", IAM, f"v1/{name}")
    if role.get("deleted"):
        call(rest, "POST", IAM, f"v1/{name}:undelete", {})
    if sorted(role.get("includedPermissions") or []) != wanted:
        call(
            rest,
            "PATCH",
            IAM,
            f"v1/{name}?updateMask=includedPermissions",
            {"includedPermissions": wanted},
        )


def _policy(project: str) -> dict[str, Any]:
    return dict(
        call(
            rest,
            "POST",
            CRM,
            f"v1/projects/{project}:getIamPolicy",
            {"options": {"requestedPolicyVersion": 3}},
        )
    )


def _set_policy(project: str, policy: dict[str, Any]) -> None:
    call(
        rest,
        "POST",
        CRM,
        f"v1/projects/{project}:setIamPolicy",
        {"policy": {**policy, "version": 3}},
    )


def _update_policy(project: str, change: Any) -> None:
    """Read, change, write with the etag; another writer in between (409): again."""

    def once() -> None:
        policy = _policy(project)
        if change(policy):
            _set_policy(project, policy)

    call(once, retry=(409,))


def grant_group(project: str, region: str, names: Names, member: str) -> None:
    """Bind the machine role to the member, for this task's group only."""
    resource = group_resource(project, region, names.group)
    condition = {
        "title": f"group {names.group}"[:100],
        "description": "only the task's own instance group",
        "expression": f'resource.name == "{resource}"',
    }
    role = role_name(project)

    def add(policy: dict[str, Any]) -> bool:
        bindings = policy.setdefault("bindings", [])
        for b in bindings:
            same = b.get("role") == role and b.get("condition") == condition
            if same and member in b.get("members", []):
                return False
        bindings.append({"role": role, "members": [member], "condition": condition})
        return True

    _update_policy(project, add)


def revoke_group(project: str, member: str) -> None:
    """Take the member (or what IAM left of it after a delete) out of every binding."""
    role = role_name(project)

    def remove(policy: dict[str, Any]) -> bool:
        changed = False
        kept = []
        for b in policy.get("bindings") or []:
            leftover = f"deleted:{member}?"  # IAM's name for a deleted account's member
            members = [
                m
                for m in b.get("members", [])
                if m != member and not (b.get("role") == role and m.startswith(leftover))
            ]
            changed |= len(members) != len(b.get("members", []))
            if members:
                kept.append({**b, "members": members})
        policy["bindings"] = kept
        return changed

    _update_policy(project, remove)
