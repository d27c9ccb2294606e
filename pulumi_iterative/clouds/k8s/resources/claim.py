"""The task's PersistentVolumeClaim: the bucket when no `storage.container` is given.

ReadWriteMany when several pods share it (parallelism > 1), else ReadWriteOnce; the
storage class is the cluster's default unless `container_opts.storage_class` names
one. Deleting it waits for nothing: the API server keeps a claim in use until its
pods are gone (pvc-protection), then the provisioner removes the volume.
"""

from __future__ import annotations

from typing import Any

from ..api import Kube, call, gone
from ..names import Names
from . import STRICT, ensure

DEFAULT_SIZE_GB = 20


def claim_body(
    names: Names, *, parallelism: int, size_gb: int, storage_class: str
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "accessModes": ["ReadWriteMany" if parallelism > 1 else "ReadWriteOnce"],
        "resources": {"requests": {"storage": f"{size_gb}Gi"}},
    }
    if storage_class:
        spec["storageClassName"] = storage_class
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": names.claim, "labels": names.labels("bucket")},
        "spec": spec,
    }


def create_claim(kube: Kube, names: Names, body: dict[str, Any]) -> None:
    ensure(
        names,
        f"persistentvolumeclaim {names.claim}",
        lambda: kube.core.read_namespaced_persistent_volume_claim(names.claim, kube.namespace),
        lambda: kube.core.create_namespaced_persistent_volume_claim(kube.namespace, body, **STRICT),
    )


def claim_phase(kube: Kube, names: Names) -> str:
    found = call(kube.core.read_namespaced_persistent_volume_claim, names.claim, kube.namespace)
    return str((found.status and found.status.phase) or "")


def delete_claim(kube: Kube, names: Names) -> None:
    gone(kube.core.delete_namespaced_persistent_volume_claim, names.claim, kube.namespace)
