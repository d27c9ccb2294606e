"""The task's Indexed Job: the machines, their replacement, and the deadline backstop.

`completionMode: Indexed` with completions = parallelism = N: the cluster gives each
pod its index (`JOB_COMPLETION_INDEX`, the agent's TASK_INDEX) and replaces a lost
pod *for that index*, so no index claim protocol is needed. The pod failure policy
ignores pods the cluster took away (`DisruptionTarget`: spot reclaim, drain,
preemption), so they are replaced without counting as failures, while a failing pod
counts against `backoffLimitPerIndex` (the agent exits with the script's code); a pod
the agent stopped for the task's timeout or budget fails its index at once.
`activeDeadlineSeconds` is the cluster-side backstop at the task's deadline;
`ttlSecondsAfterFinished` lets the cluster tidy up a finished Job that nobody
deletes. Spot and GPU placement are node affinity, tolerations and a node selector
(see `placement`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ....errors import NotFound
from ..api import Kube, call, wait_until
from ..catalog import MachineShape
from ..machine import EXIT_BUDGET, EXIT_TIMEOUT, POD_NAME_ENV
from ..names import (
    BOOTSTRAP_KEY,
    CONTAINER,
    POD_HOME,
    ROLE_LABEL,
    SCRATCH_DIR,
    TASK_DIR,
    VOLUME_DIR,
    Names,
)
from ..security import container_security_context, pod_security_context
from . import STRICT, ensure

# (node label, value) of the spot pools of Karpenter (EKS and others), GKE and AKS
SPOT_POOLS = (
    ("karpenter.sh/capacity-type", "spot"),
    ("cloud.google.com/gke-spot", "true"),
    ("kubernetes.azure.com/scalesetpriority", "spot"),
)
GPU_TAINT = "nvidia.com/gpu"
GRACE_SECONDS = 180  # SIGTERM -> SIGKILL: room for the agent's last checkpoint
BACKOFF_PER_INDEX = 1  # a failing pod is retried once for its index, then the index fails
TTL_AFTER_FINISHED = 7 * 24 * 3600


def placement(machine: MachineShape, spot: float) -> dict[str, Any]:
    """Pod spec fields that choose the nodes: spot pools or not, GPU product."""
    if spot >= 0:
        # any one spot pool will do: the terms of a required affinity are ORed
        terms = [
            {"matchExpressions": [{"key": key, "operator": "In", "values": [value]}]}
            for key, value in SPOT_POOLS
        ]
        tolerations = [
            {"key": key, "operator": "Equal", "value": value, "effect": "NoSchedule"}
            for key, value in SPOT_POOLS
        ]
    else:
        terms = [
            {
                "matchExpressions": [
                    {"key": key, "operator": "NotIn", "values": [value]}
                    for key, value in SPOT_POOLS
                ]
            }
        ]
        tolerations = []
    out: dict[str, Any] = {
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}
            }
        }
    }
    if machine.gpus:
        tolerations.append({"key": GPU_TAINT, "operator": "Exists", "effect": "NoSchedule"})
    if tolerations:
        out["tolerations"] = tolerations
    selector = machine.node_selector()
    if selector:
        out["nodeSelector"] = selector
    return out


def job_body(
    names: Names,
    *,
    image: str,
    machine: MachineShape,
    spot: float,
    parallelism: int,
    deadline_seconds: int,
    service_account: str,
    secret_keys: Sequence[str],
    plain_env: Mapping[str, str],
    bucket_claim: bool,
    labels: Mapping[str, str],
    annotations: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The whole Job, as the API sees it. Secret values never appear: only references."""
    env: list[dict[str, Any]] = [
        {"name": POD_NAME_ENV, "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}
    ]
    env += [{"name": k, "value": v} for k, v in sorted(plain_env.items())]
    env += [
        {"name": k, "valueFrom": {"secretKeyRef": {"name": names.secret, "key": k}}}
        for k in sorted(secret_keys)
    ]
    mounts = [
        {"name": "task", "mountPath": f"{POD_HOME}/{TASK_DIR}", "readOnly": True},
        {"name": "scratch", "mountPath": f"{POD_HOME}/{SCRATCH_DIR}"},
    ]
    volumes: list[dict[str, Any]] = [
        {"name": "task", "configMap": {"name": names.config_map, "defaultMode": 0o555}},
        {"name": "scratch", "emptyDir": {}},
    ]
    if bucket_claim:
        mounts.append({"name": "bucket", "mountPath": f"{POD_HOME}/{VOLUME_DIR}"})
        volumes.append({"name": "bucket", "persistentVolumeClaim": {"claimName": names.claim}})
    pod_labels = {**dict(labels), **names.labels("machine")}
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "serviceAccountName": service_account,
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": GRACE_SECONDS,
        "securityContext": pod_security_context(),
        "containers": [
            {
                "name": CONTAINER,
                "image": image,
                # relative to workingDir: the bootstrap from the task's ConfigMap
                "command": ["/bin/sh", f"{TASK_DIR}/{BOOTSTRAP_KEY}"],
                "workingDir": POD_HOME,
                "env": env,
                "resources": machine.resources(),
                "volumeMounts": mounts,
                "securityContext": container_security_context(),
                # a boot that fails before its report reaches the bucket still says why
                "terminationMessagePolicy": "FallbackToLogsOnError",
            }
        ],
        "volumes": volumes,
        **placement(machine, spot),
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": names.job,
            "labels": pod_labels,
            "annotations": dict(annotations or {}),
        },
        "spec": {
            "completionMode": "Indexed",
            "completions": parallelism,
            "parallelism": parallelism,
            "backoffLimitPerIndex": BACKOFF_PER_INDEX,
            "podFailurePolicy": {
                "rules": [
                    {
                        "action": "Ignore",
                        "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}],
                    },
                    {  # the agent stopped the script for the task's timeout or budget:
                        # another pod for this index would stop the same way
                        "action": "FailIndex",
                        "onExitCodes": {
                            "containerName": CONTAINER,
                            "operator": "In",
                            "values": [EXIT_TIMEOUT, EXIT_BUDGET],
                        },
                    },
                ]
            },
            "podReplacementPolicy": "Failed",
            "activeDeadlineSeconds": max(1, int(deadline_seconds)),
            "ttlSecondsAfterFinished": TTL_AFTER_FINISHED,
            "template": {
                "metadata": {"labels": pod_labels, "annotations": dict(annotations or {})},
                "spec": pod_spec,
            },
        },
    }


def create_job(kube: Kube, names: Names, body: dict[str, Any]) -> None:
    ensure(
        names,
        f"job {names.job}",
        lambda: kube.batch.read_namespaced_job(names.job, kube.namespace),
        lambda: kube.batch.create_namespaced_job(kube.namespace, body, **STRICT),
    )


def read_job(kube: Kube, names: Names) -> Any:
    return call(kube.batch.read_namespaced_job, names.job, kube.namespace)


def task_pods(kube: Kube, names: Names) -> list[Any]:
    """The Job's pods, whatever their phase (one list call, by label)."""
    found = call(
        kube.core.list_namespaced_pod,
        kube.namespace,
        label_selector=f"{names.selector},{ROLE_LABEL}=machine",
    )
    return list(found.items or [])


def pod_log(kube: Kube, pod: str, tail_lines: int | None = None) -> str:
    """A pod's container log (the bootstrap, the agent and the script's output)."""
    kwargs = {"tail_lines": tail_lines} if tail_lines else {}
    return str(call(kube.core.read_namespaced_pod_log, pod, kube.namespace, **kwargs) or "")


def indexes_to_run(kube: Kube, names: Names, parallelism: int) -> set[int]:
    """The indexes the Job will still run a pod for: neither completed nor failed for
    good (`failedIndexes`: past backoffLimitPerIndex or FailIndex), while the Job is
    neither finished nor suspended. Empty when the Job is gone."""
    try:
        found = read_job(kube, names)
    except NotFound:
        return set()
    spec, status = found.spec, found.status
    finished = any(
        c.type in ("Complete", "Failed") and c.status == "True"
        for c in (status and status.conditions) or []
    )
    if finished or (spec and spec.suspend):
        return set()
    done = parse_indexes((status and status.completed_indexes) or "")
    done |= parse_indexes((status and status.failed_indexes) or "")
    return set(range(parallelism)) - done


def parse_indexes(text: str) -> set[int]:
    """An index list as a Job's status writes it: "0,3-5,7"."""
    out: set[int] = set()
    for part in filter(None, text.split(",")):
        first, _, last = part.partition("-")
        out.update(range(int(first), int(last or first) + 1))
    return out


def suspend_job(kube: Kube, names: Names) -> None:
    """The Job stays (its status and events too); its pods are terminated."""
    call(kube.batch.patch_namespaced_job, names.job, kube.namespace, {"spec": {"suspend": True}})


def delete_job(kube: Kube, names: Names, *, wait: float = GRACE_SECONDS + 120.0) -> None:
    """Foreground: the Job goes only after its pods are gone; wait for that."""
    call(
        kube.batch.delete_namespaced_job,
        names.job,
        kube.namespace,
        propagation_policy="Foreground",
    )
    if wait:
        wait_until(
            lambda: not _job_exists(kube, names), f"job {names.job} to be deleted", deadline=wait
        )


def _job_exists(kube: Kube, names: Names) -> bool:
    try:
        read_job(kube, names)
    except NotFound:
        return False
    return True


def wait_no_live_pods(kube: Kube, names: Names, *, deadline: float) -> None:
    def none_left() -> bool:
        return not [
            p
            for p in task_pods(kube, names)
            if (p.status and p.status.phase) in ("Pending", "Running")
        ]

    wait_until(none_left, f"the pods of {names.job} to stop", deadline=deadline)


def namespace_events(kube: Kube) -> list[Any]:
    return list(call(kube.core.list_namespaced_event, kube.namespace).items or [])
