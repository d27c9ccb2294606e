"""The task's identity: a ServiceAccount, a Role that can read only this task's own
objects (its ConfigMap, its Secret, its Job, by name), and the RoleBinding between.

The pods run as this account with no API token mounted: the agent needs no API
access (everything it reads comes through its mounts), so the token would only be
a credential on the machine. The account still matters: workload identity
(EKS IRSA, GKE, AKS) hangs cloud permissions on it, and `permission_set` names an
existing account instead.
"""

from __future__ import annotations

from typing import Any

from ..api import Kube, gone
from ..names import Names
from . import STRICT, ensure

RBAC_GROUP = "rbac.authorization.k8s.io"


def role_rules(names: Names) -> list[dict[str, Any]]:
    return [
        {
            "apiGroups": [""],
            "resources": ["configmaps"],
            "resourceNames": [names.config_map],
            "verbs": ["get"],
        },
        {
            "apiGroups": [""],
            "resources": ["secrets"],
            "resourceNames": [names.secret],
            "verbs": ["get"],
        },
        {
            "apiGroups": ["batch"],
            "resources": ["jobs"],
            "resourceNames": [names.job],
            "verbs": ["get"],
        },
    ]


def service_account_body(names: Names) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": names.service_account, "labels": names.labels("identity")},
        "automountServiceAccountToken": False,
    }


def role_body(names: Names) -> dict[str, Any]:
    return {
        "apiVersion": f"{RBAC_GROUP}/v1",
        "kind": "Role",
        "metadata": {"name": names.role, "labels": names.labels("identity")},
        "rules": role_rules(names),
    }


def role_binding_body(names: Names, namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{RBAC_GROUP}/v1",
        "kind": "RoleBinding",
        "metadata": {"name": names.role_binding, "labels": names.labels("identity")},
        "roleRef": {"apiGroup": RBAC_GROUP, "kind": "Role", "name": names.role},
        "subjects": [
            {"kind": "ServiceAccount", "name": names.service_account, "namespace": namespace}
        ],
    }


def create_identity(kube: Kube, names: Names) -> None:
    ns = kube.namespace
    ensure(
        names,
        f"serviceaccount {names.service_account}",
        lambda: kube.core.read_namespaced_service_account(names.service_account, ns),
        lambda: kube.core.create_namespaced_service_account(
            ns, service_account_body(names), **STRICT
        ),
    )
    ensure(
        names,
        f"role {names.role}",
        lambda: kube.rbac.read_namespaced_role(names.role, ns),
        lambda: kube.rbac.create_namespaced_role(ns, role_body(names), **STRICT),
    )
    ensure(
        names,
        f"rolebinding {names.role_binding}",
        lambda: kube.rbac.read_namespaced_role_binding(names.role_binding, ns),
        lambda: kube.rbac.create_namespaced_role_binding(
            ns, role_binding_body(names, ns), **STRICT
        ),
    )


def delete_identity(kube: Kube, names: Names) -> None:
    """Each part on its own, so a half-made identity goes too."""
    ns = kube.namespace
    gone(kube.rbac.delete_namespaced_role_binding, names.role_binding, ns)
    gone(kube.rbac.delete_namespaced_role, names.role, ns)
    gone(kube.core.delete_namespaced_service_account, names.service_account, ns)


def check_service_account(kube: Kube, name: str) -> None:
    """permission_set: the named account must exist (a NotFound names it)."""
    from ..api import call

    call(kube.core.read_namespaced_service_account, name, kube.namespace)
