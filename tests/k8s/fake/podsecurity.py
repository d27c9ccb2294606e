"""Pod Security admission, as the API server enforces it on a namespace labelled
`pod-security.kubernetes.io/enforce: restricted` (or `baseline`): the checks of the
Pod Security Standards that a pod spec can fail, and the API server's Forbidden
message, which names each failed check and how to fix it:

    pods "x" is forbidden: violates PodSecurity "restricted:latest": allowPrivilegeEscalation
    != false (container "a" must set securityContext.allowPrivilegeEscalation=false), ...
"""

from __future__ import annotations

from typing import Any

ENFORCE_LABEL = "pod-security.kubernetes.io/enforce"
VERSION_LABEL = "pod-security.kubernetes.io/enforce-version"
RESTRICTED_VOLUMES = frozenset(
    {
        "configMap",
        "csi",
        "downwardAPI",
        "emptyDir",
        "ephemeral",
        "persistentVolumeClaim",
        "projected",
        "secret",
    }
)


def _containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        *(spec.get("initContainers") or []),
        *(spec.get("containers") or []),
        *(spec.get("ephemeralContainers") or []),
    ]


def _quoted(names: list[str]) -> str:
    word = "container" if len(names) == 1 else "containers"
    return f"{word} " + ", ".join(f'"{n}"' for n in names)


def baseline(spec: dict[str, Any]) -> list[str]:
    out = []
    host = [f"{k}=true" for k in ("hostNetwork", "hostPID", "hostIPC") if spec.get(k)]
    if host:
        out.append(f"host namespaces ({', '.join(host)})")
    privileged = [
        c["name"] for c in _containers(spec) if (c.get("securityContext") or {}).get("privileged")
    ]
    if privileged:
        out.append(
            f"privileged ({_quoted(privileged)} must not set securityContext.privileged=true)"
        )
    host_paths = [v["name"] for v in spec.get("volumes") or [] if v.get("hostPath")]
    if host_paths:
        out.append("hostPath volumes (" + ", ".join(f'volume "{v}"' for v in host_paths) + ")")
    return out


def restricted(spec: dict[str, Any]) -> list[str]:
    """The failed checks of the restricted level (baseline's first), in the API
    server's words."""
    out = baseline(spec)
    pod = spec.get("securityContext") or {}
    containers = _containers(spec)
    others = [
        f'"{v["name"]}"'
        for v in spec.get("volumes") or []
        if not (set(v) - {"name"}) & RESTRICTED_VOLUMES
    ]
    if others:
        out.append(f"restricted volume types (volume {', '.join(others)})")
    escalating = [
        c["name"]
        for c in containers
        if (c.get("securityContext") or {}).get("allowPrivilegeEscalation") is not False
    ]
    if escalating:
        out.append(
            f"allowPrivilegeEscalation != false ({_quoted(escalating)} must set "
            "securityContext.allowPrivilegeEscalation=false)"
        )
    undropped = [
        c["name"]
        for c in containers
        if "ALL"
        not in (((c.get("securityContext") or {}).get("capabilities") or {}).get("drop") or [])
    ]
    if undropped:
        out.append(
            f"unrestricted capabilities ({_quoted(undropped)} must set "
            'securityContext.capabilities.drop=["ALL"])'
        )
    added = [
        c["name"]
        for c in containers
        if set(((c.get("securityContext") or {}).get("capabilities") or {}).get("add") or [])
        - {"NET_BIND_SERVICE"}
    ]
    if added:
        out.append(f"unrestricted capabilities ({_quoted(added)} must not add capabilities)")
    root = [
        c["name"]
        for c in containers
        if (c.get("securityContext") or {}).get("runAsNonRoot", pod.get("runAsNonRoot")) is not True
    ]
    if root:
        out.append(
            f"runAsNonRoot != true (pod or {_quoted(root)} must set "
            "securityContext.runAsNonRoot=true)"
        )
    uid_zero = pod.get("runAsUser") == 0 or any(
        (c.get("securityContext") or {}).get("runAsUser") == 0 for c in containers
    )
    if uid_zero:
        out.append("runAsUser=0 (pod and containers must not set runAsUser=0)")
    unconfined = [
        c["name"]
        for c in containers
        if (
            (c.get("securityContext") or {}).get("seccompProfile")
            or pod.get("seccompProfile")
            or {}
        ).get("type")
        not in ("RuntimeDefault", "Localhost")
    ]
    if unconfined:
        out.append(
            f"seccompProfile (pod or {_quoted(unconfined)} must set "
            'securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")'
        )
    return out


LEVELS = {"baseline": baseline, "restricted": restricted}


def forbidden_message(name: str, level: str, version: str, failures: list[str]) -> str:
    return (
        f'pods "{name}" is forbidden: violates PodSecurity "{level}:{version or "latest"}": '
        + ", ".join(failures)
    )
