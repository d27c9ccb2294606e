"""The RBAC the caller needs in the task's namespace, as data: the README prints it
(`caller_role_yaml`) and a test runs whole tasks as a user bound only to it.

Secrets, ConfigMaps, Jobs and the rest are namespaced, so a Role in the namespace the
tasks use is enough; no ClusterRole. `pods/proxy` carries the transfer pod's traffic
(GET and HEAD are `get`, PUT `update`, POST `create`: multipart uploads of large
files; the workstation never deletes from the bucket, the volume goes whole); `pods/log`
shows a live pod's output in status and `logs`. Creating the
task's own Role also needs the permissions it grants (get on ConfigMaps, Secrets and
Jobs), which the caller has.
"""

from __future__ import annotations

from typing import Any

CALLER_RULES: tuple[dict[str, Any], ...] = (
    {
        "apiGroups": [""],
        "resources": ["persistentvolumeclaims", "configmaps", "secrets", "serviceaccounts"],
        "verbs": ["get", "create", "delete"],
    },
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "create", "delete"]},
    {"apiGroups": [""], "resources": ["pods/proxy"], "verbs": ["get", "create", "update"]},
    {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
    {"apiGroups": [""], "resources": ["events"], "verbs": ["list"]},
    {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["get", "create", "patch", "delete"]},
    {
        "apiGroups": ["rbac.authorization.k8s.io"],
        "resources": ["roles", "rolebindings"],
        "verbs": ["get", "create", "delete"],
    },
)


def caller_role(namespace: str, name: str = "pulumi-iterative-caller") -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": name, "namespace": namespace},
        "rules": [dict(r) for r in CALLER_RULES],
    }


def caller_role_yaml(namespace: str = "ml") -> str:
    """The Role as a pasteable manifest (flow-style lists, like `kubectl get -o yaml`)."""
    lines = [
        "apiVersion: rbac.authorization.k8s.io/v1",
        "kind: Role",
        "metadata:",
        "  name: pulumi-iterative-caller",
        f"  namespace: {namespace}",
        "rules:",
    ]
    for rule in CALLER_RULES:
        groups = ", ".join(f'"{g}"' for g in rule["apiGroups"])
        lines.append(f"- apiGroups: [{groups}]")
        lines.append(f"  resources: [{', '.join(rule['resources'])}]")
        lines.append(f"  verbs: [{', '.join(rule['verbs'])}]")
    return "\n".join(lines) + "\n"
