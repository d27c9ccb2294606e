"""The security context every pod of a task wears: the `restricted` Pod Security
Standard, so a namespace labelled `pod-security.kubernetes.io/enforce: restricted`
admits the task's pods and its transfer pods.

A fixed numeric user (an image's user may be root or a name, which `runAsNonRoot`
cannot check); `fsGroup` makes the task's volume and emptyDirs writable by it, and
`OnRootMismatch` spares a big volume the recursive chown at every pod start. Nothing
the pod writes lives outside its mounts (see names.py), so any image with a shell
(and, for the task's pods, Python 3) runs as this user.
"""

from __future__ import annotations

from typing import Any

RUN_AS_USER = 1000
RUN_AS_GROUP = 1000


def pod_security_context() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": RUN_AS_USER,
        "runAsGroup": RUN_AS_GROUP,
        "fsGroup": RUN_AS_GROUP,
        "fsGroupChangePolicy": "OnRootMismatch",
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security_context() -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
