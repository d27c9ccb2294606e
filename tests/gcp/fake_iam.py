"""IAM (service accounts, custom roles) and Resource Manager (the project's IAM policy)
in the fake, plus the permission check the fake applies to machine identities.

Service accounts and custom roles behave as IAM's do where the backend can tell:
409 for a second create, a deleted custom role is kept (`deleted: true`) and its id
cannot be created again, only undeleted. The project policy is read-modify-write
with an etag (a stale etag gets 409 ABORTED), refuses members that do not exist
and roles that are not defined, and needs version 3 for conditions.

`authorize` enforces the policy on requests that carry a machine's token (the
fake metadata server registers each machine's token in `FakeGcp.tokens`): the
machine's service account needs the method's permission through a binding whose
condition (only `resource.name == "..."` and `.startsWith("...")` terms, joined
by `||`) holds for the resource. The caller (anonymous here) is the project
owner and is not checked.
"""

from __future__ import annotations

import base64
import re
import secrets
from typing import Any

from tests.gcp.discovery import ApiError
from tests.gcp.fake_gcp import PROJECT, PROJECT_NUMBER, Call, FakeGcp, handles, new_id

# Permissions of the predefined roles a test may use (the small part needed here).
PREDEFINED = {
    "roles/storage.objectAdmin": {
        "storage.objects.create", "storage.objects.delete", "storage.objects.get",
        "storage.objects.list", "storage.objects.update",
    },
    "roles/storage.objectUser": {
        "storage.objects.create", "storage.objects.delete", "storage.objects.get",
        "storage.objects.list", "storage.objects.update",
    },
    "roles/compute.instanceAdmin.v1": {
        "compute.instanceGroupManagers.get", "compute.instanceGroupManagers.update",
        "compute.instances.delete", "compute.instances.get",
    },
    "roles/owner": {"*"},
}  # fmt: skip
# Compute methods a machine may call -> the permission GCE checks.
PERMISSIONS = {
    "compute.regionInstanceGroupManagers.deleteInstances": "compute.instanceGroupManagers.update",
    "compute.regionInstanceGroupManagers.listManagedInstances": "compute.instanceGroupManagers.get",
    "compute.regionInstanceGroupManagers.get": "compute.instanceGroupManagers.get",
    "compute.regionOperations.get": "compute.regionOperations.get",
    "compute.regionOperations.wait": "compute.regionOperations.get",
}
# What GCE and IAM check for the caller, per method (the fake's own table, written
# from Google's per-method permission docs; the package's list is tested against it).
CALLER_NEEDS = {
    "compute.images.getFromFamily": "compute.images.getFromFamily",
    "compute.images.get": "compute.images.get",
    "compute.regions.get": "compute.regions.get",
    "compute.networks.get": "compute.networks.get",
    "compute.firewalls.get": "compute.firewalls.get",
    "compute.firewalls.insert": "compute.firewalls.create",
    "compute.firewalls.delete": "compute.firewalls.delete",
    "compute.instanceTemplates.get": "compute.instanceTemplates.get",
    "compute.instanceTemplates.insert": "compute.instanceTemplates.create",
    "compute.instanceTemplates.delete": "compute.instanceTemplates.delete",
    "compute.regionInstanceGroupManagers.get": "compute.instanceGroupManagers.get",
    "compute.regionInstanceGroupManagers.insert": "compute.instanceGroupManagers.create",
    "compute.regionInstanceGroupManagers.delete": "compute.instanceGroupManagers.delete",
    "compute.regionInstanceGroupManagers.resize": "compute.instanceGroupManagers.update",
    "compute.regionInstanceGroupManagers.createInstances": "compute.instanceGroupManagers.update",
    "compute.regionInstanceGroupManagers.deleteInstances": "compute.instanceGroupManagers.update",
    "compute.regionInstanceGroupManagers.listManagedInstances": "compute.instanceGroupManagers.get",
    "compute.regionInstanceGroupManagers.listErrors": "compute.instanceGroupManagers.get",
    "compute.zoneOperations.list": "compute.zoneOperations.list",
    "compute.globalOperations.aggregatedList": "compute.globalOperations.list",
    "compute.regionOperations.get": "compute.regionOperations.get",
    "compute.regionOperations.wait": "compute.regionOperations.get",
    "compute.globalOperations.get": "compute.globalOperations.get",
    "compute.globalOperations.wait": "compute.globalOperations.get",
    "compute.zoneOperations.get": "compute.zoneOperations.get",
    "compute.instances.get": "compute.instances.get",
    "compute.instances.list": "compute.instances.list",
    "iam.projects.serviceAccounts.get": "iam.serviceAccounts.get",
    "iam.projects.serviceAccounts.create": "iam.serviceAccounts.create",
    "iam.projects.serviceAccounts.delete": "iam.serviceAccounts.delete",
    "iam.projects.roles.get": "iam.roles.get",
    "iam.projects.roles.create": "iam.roles.create",
    "iam.projects.roles.undelete": "iam.roles.undelete",
    "iam.projects.roles.patch": "iam.roles.update",
    "cloudresourcemanager.projects.getIamPolicy": "resourcemanager.projects.getIamPolicy",
    "cloudresourcemanager.projects.setIamPolicy": "resourcemanager.projects.setIamPolicy",
}
# Methods any signed-in principal may call: the public price catalog (its docs list no
# IAM permission; the project only needs the API enabled).
NEEDS_NO_PERMISSION = frozenset({"cloudbilling.services.skus.list"})
STORAGE_NEEDS = {
    "storage.buckets.insert": "storage.buckets.create",
    "storage.buckets.get": "storage.buckets.get",
    "storage.buckets.delete": "storage.buckets.delete",
    "storage.buckets.getIamPolicy": "storage.buckets.getIamPolicy",
    "storage.buckets.setIamPolicy": "storage.buckets.setIamPolicy",
    "storage.objects.list": "storage.objects.list",
    "storage.objects.get": "storage.objects.get",
    "storage.objects.insert": "storage.objects.create",
    "storage.objects.delete": "storage.objects.delete",
    "storage.objects.rewrite": "storage.objects.create",
    "storage.objects.copy": "storage.objects.create",
}
# Operations are readable by whoever started them: not checked here.
UNCHECKED = {"compute.regionOperations.get", "compute.regionOperations.wait"}


def _etag() -> str:
    return base64.b64encode(secrets.token_bytes(8)).decode()


# --- service accounts ----------------------------------------------------------------------


def _project_of(name: str) -> str:
    project = name.split("/")[1]
    if project not in (PROJECT, "-"):
        raise ApiError(404, f"Project {project} not found", "notFound")
    return PROJECT


def _account(gcp: FakeGcp, name: str) -> dict[str, Any]:
    _project_of(name)
    key = name.rsplit("/", 1)[1]
    for account in gcp.service_accounts.values():
        if key in (account["email"], account["uniqueId"]):
            return account
    raise ApiError(404, f"Unknown service account {key}", "notFound")


@handles("iam.projects.serviceAccounts.create")
def sa_create(gcp: FakeGcp, call: Call) -> dict[str, Any]:
    project = _project_of(call.path["name"])
    account_id = call.body.get("accountId", "")
    if not re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])", account_id) or not 6 <= len(account_id) <= 30:
        raise ApiError(
            400,
            f"Invalid account id {account_id!r}: 6-30 characters, [a-z0-9-], "
            "starting with a letter",
            "invalid",
        )
    email = f"{account_id}@{project}.iam.gserviceaccount.com"
    if email in gcp.service_accounts:
        raise ApiError(
            409,
            f"Service account {account_id} already exists within project projects/{project}.",
            "alreadyExists",
        )
    given = call.body.get("serviceAccount") or {}
    account = {
        "name": f"projects/{project}/serviceAccounts/{email}",
        "projectId": project,
        "uniqueId": new_id()[:21],
        "email": email,
        "displayName": given.get("displayName", ""),
        "description": given.get("description", ""),
        "etag": _etag(),
        "oauth2ClientId": new_id()[:21],
    }
    gcp.service_accounts[email] = account
    return account


@handles("iam.projects.serviceAccounts.get")
def sa_get(gcp: FakeGcp, call: Call) -> dict[str, Any]:
    return _account(gcp, call.path["name"])


@handles("iam.projects.serviceAccounts.list")
def sa_list(gcp: FakeGcp, call: Call) -> dict[str, Any]:
    _project_of(call.path["name"])
    return {"accounts": list(gcp.service_accounts.values())}


@handles("iam.projects.serviceAccounts.delete")
def sa_delete(gcp: FakeGcp, call: Call) -> dict[str, Any]:
    account = _account(gcp, call.path["name"])
    del gcp.service_accounts[account["email"]]
    member = f"serviceAccount:{account['email']}"
    for binding in gcp.policy["bindings"]:  # as IAM does: the binding stays, marked deleted
        binding["members"] = [
            f"deleted:{m}?uid={account['uniqueId']}" if m == member else m
            for m in binding["members"]
        ]
    return {}


# --- custom roles --------------------------------------------------------------------------


def _role(gcp: FakeGcp, name: str) -> dict[str, Any]:
    _project_of(name)
    found = gcp.roles.get(name)
    if found is None:
        raise ApiError(404, f"The role named {name} was not found.", "notFound")
    return found


@handles("iam.projects.roles.create")
def role_create(gcp: FakeGcp, call: Call) -> dict[str, Any]:
    parent = call.path["parent"]
    _project_of(parent)
    role_id = call.body.get("roleId", "")
    if not re.fullmatch(r"[a-zA-Z0-9_.]{3,64}", role_id):
        raise ApiError(400, f"Invalid role id {role_id!r}", "invalid")
    name = f"{parent}/roles/{role_id}"
    if name in gcp.roles:
        extra = " (deleted: undelete it)" if gcp.roles[name].get("deleted") else ""
        raise ApiError(
            409, f"A role named {role_id} in {parent} already exists{extra}.", "alreadyExists"
        )
    given = call.body.get("role") or {}
    role = {
        "name": name,
        "title": given.get("title", ""),
        "description": given.get("description", ""),
        "includedPermissions": sorted(given.get("includedPermissions") or []),
        "stage": given.get("stage", "ALPHA"),
        "etag": _etag(),
    }
    gcp.roles[name] = role
    return role


@handles("iam.projects.roles.get")
def role_get(gcp: FakeGcp, call: Call) -> dict[str, Any]:
    return _role(gcp, call.path["name"])


@handles("iam.projects.roles.delete")
def role_delete(gcp: FakeGcp, call: Call) -> dict[str, Any]:
    role = _role(gcp, call.path["name"])
    role["deleted"] = True
    role["etag"] = _etag()
    return role


@handles("iam.projects.roles.undelete")
def role_undelete(gcp: FakeGcp, call: Call) -> dict[str, Any]:
    role = _role(gcp, call.path["name"])
    role.pop("deleted", None)
    role["etag"] = _etag()
    return role


@handles("iam.projects.roles.patch")
def role_patch(gcp: FakeGcp, call: Call) -> dict[str, Any]:
    role = _role(gcp, call.path["name"])
    mask = [m for m in call.q("updateMask").split(",") if m]
    for key in mask or ["title", "description", "includedPermissions", "stage"]:
        if key in call.body:
            role[key] = call.body[key]
    role["etag"] = _etag()
    return role


# --- the project's policy -------------------------------------------------------------------


def _check_project(call: Call) -> None:
    if call.path["resource"] not in (PROJECT, PROJECT_NUMBER):
        raise ApiError(
            403, f"The caller does not have permission on {call.path['resource']}", "forbidden"
        )


@handles("cloudresourcemanager.projects.getIamPolicy")
def policy_get(gcp: FakeGcp, call: Call) -> dict[str, Any]:
    _check_project(call)
    asked = int(((call.body or {}).get("options") or {}).get("requestedPolicyVersion") or 1)
    policy = {**gcp.policy, "bindings": [dict(b) for b in gcp.policy["bindings"]]}
    if asked < 3 and any("condition" in b for b in policy["bindings"]):
        policy["version"] = 1  # conditions are dropped for an old reader, as IAM does
        policy["bindings"] = [
            {**b, "role": b["role"] + "_withcond_" + "0" * 20} if "condition" in b else b
            for b in policy["bindings"]
        ]
        for b in policy["bindings"]:
            b.pop("condition", None)
    return policy


@handles("cloudresourcemanager.projects.setIamPolicy")
def policy_set(gcp: FakeGcp, call: Call) -> dict[str, Any]:
    _check_project(call)
    policy = dict(call.body.get("policy") or {})
    if policy.get("etag") and policy["etag"] != gcp.policy["etag"]:
        raise ApiError(
            409,
            "There were concurrent policy changes. Please retry the whole "
            "read-modify-write with exponential backoff.",
            "aborted",
        )
    bindings = policy.get("bindings") or []
    for binding in bindings:
        role = binding.get("role", "")
        if role.startswith("projects/"):
            found = gcp.roles.get(role)
            if found is None or found.get("deleted"):
                raise ApiError(
                    400, f"Role {role} is not supported for this resource.", "badRequest"
                )
        elif role not in PREDEFINED:
            raise ApiError(400, f"Role {role} is not supported for this resource.", "badRequest")
        if "condition" in binding and int(policy.get("version") or 1) < 3:
            raise ApiError(400, "Conditions need policy version 3.", "badRequest")
        for member in binding.get("members") or []:
            if member.startswith("serviceAccount:") and member[15:] not in gcp.service_accounts:
                raise ApiError(400, f"Service account {member[15:]} does not exist.", "badRequest")
    gcp.policy = {
        "version": int(policy.get("version") or 1),
        "bindings": [dict(b) for b in bindings],
        "etag": _etag(),
    }
    return gcp.policy


# --- enforcement on machine identities --------------------------------------------------------


def _unwrap(term: str) -> str:
    """`((x))` -> `x`, but `f(a) || (b)` stays as it is."""
    term = term.strip()
    while term.startswith("(") and term.endswith(")"):
        depth = 0
        for i, ch in enumerate(term):
            depth += (ch == "(") - (ch == ")")
            if depth == 0 and i < len(term) - 1:
                return term
        term = term[1:-1].strip()
    return term


def condition_holds(expression: str, resource: str) -> bool:
    for term in expression.split("||"):
        term = _unwrap(term)
        m = re.fullmatch(r'resource\.name\s*==\s*"([^"]*)"', term)
        if m and m.group(1) == resource:
            return True
        m = re.fullmatch(r'resource\.name\.startsWith\("([^"]*)"\)', term)
        if m and resource.startswith(m.group(1)):
            return True
    return False


def allowed(
    gcp: FakeGcp,
    email: str,
    permission: str,
    resource: str,
    bindings: list[dict[str, Any]] | None = None,
) -> bool:
    """Does a binding (the project's, or the given ones: a bucket's) grant it?"""
    member = f"serviceAccount:{email}"
    for binding in gcp.policy["bindings"] if bindings is None else bindings:
        if member not in (binding.get("members") or []):
            continue
        role = binding["role"]
        perms = set((gcp.roles.get(role) or {}).get("includedPermissions") or [])
        if (gcp.roles.get(role) or {}).get("deleted"):
            perms = set()
        perms |= PREDEFINED.get(role, set())
        if permission not in perms and "*" not in perms:
            continue
        condition = binding.get("condition")
        if condition is None or condition_holds(condition.get("expression", ""), resource):
            return True
    return False


def authorize(gcp: FakeGcp, call: Call) -> None:
    """403 when a machine's identity lacks the permission for this call."""
    token = call.auth.removeprefix("Bearer ").strip()
    email = gcp.tokens.get(token)
    if email is None or call.method in UNCHECKED:
        return
    permission = PERMISSIONS.get(call.method)
    resource = ""
    if "instanceGroupManager" in call.path:
        resource = (
            f"projects/{call.path['project']}/regions/{call.path['region']}/"
            f"instanceGroupManagers/{call.path['instanceGroupManager']}"
        )
    if permission is None or not allowed(gcp, email, permission, resource):
        raise ApiError(
            403,
            f"Required '{permission or call.method}' permission for '{resource or call.method}'",
            "forbidden",
        )
