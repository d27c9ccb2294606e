"""The controllers behind the fake API server: scheduler, kubelet, Job controller, GC.

One loop thread reconciles everything after each change (or every tick):

- **Scheduler**: a pending pod goes to a node whose labels satisfy its nodeSelector and
  required node affinity, whose NoSchedule/NoExecute taints it tolerates, and whose
  allocatable CPU, memory and `nvidia.com/gpu` still fit its requests (preferred
  affinity picks among those). None: condition PodScheduled=False and a
  `FailedScheduling` event, as the scheduler says it.
- **Kubelet**: a scheduled pod's first container runs as a local process (its `command`
  + `args`, `$(VAR)` expanded) with the pod's env: `value`, `secretKeyRef`,
  `configMapKeyRef`, `fieldRef` (metadata.name/namespace/labels/annotations,
  status.podIP, spec.nodeName, spec.serviceAccountName), `envFrom`. Volumes are
  materialized under a per-pod root folder: each `mountPath` becomes `<root><mountPath>`
  (configMap and secret items as files, a PVC as a link to its folder, emptyDir as a
  folder, and the service account token at /var/run/secrets/kubernetes.io/serviceaccount
  unless automount is off). The process starts in `<root><workingDir>`, so a pod whose
  command uses paths relative to its workingDir sees exactly its mounts; that is the
  mapping, and no variable carries it. `host_env` stands in for the image's own
  environment (PATH, the agent's Python for the documented install skip). Each pod gets
  its own loopback address (127.x.y.z) as `status.podIP`, so servers in pods can listen
  on the same port. Images are recorded, never pulled: the host's tools run.
- **Disruptions**: `evict` (the Eviction API), `preempt` and `reclaim_node` (a spot node
  taken away; a replacement node with the same labels joins) give the pod the
  `DisruptionTarget` condition, emit `Killing`/`Preempted`/`Evicted` events, send
  SIGTERM, wait the grace period, then SIGKILL; the pod ends `Failed`.
- **Job controller**: Indexed and NonIndexed completion, parallelism, pods named
  `<job>-<index>-<random>` with the completion-index annotation/label and
  `JOB_COMPLETION_INDEX`, the `batch.kubernetes.io/job-tracking` finalizer, the pod
  failure policy (onExitCodes, onPodConditions; Ignore, Count, FailIndex, FailJob),
  backoffLimit, backoffLimitPerIndex, maxFailedIndexes, activeDeadlineSeconds, suspend,
  ttlSecondsAfterFinished; status active/ready/succeeded/failed/completedIndexes/
  failedIndexes/startTime/completionTime and conditions Complete, Failed (after
  FailureTarget), Suspended; events SuccessfulCreate, FailedCreate, Completed,
  BackoffLimitExceeded, DeadlineExceeded.
- **Garbage collector**: Foreground, Background and Orphan propagation by
  ownerReferences (Jobs' pods; Secrets and ConfigMaps owned by a pod that is gone);
  PVCs in use stay (pvc-protection) until their pods are gone; a bound
  PVC is a folder under the cluster's root, removed with the claim.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import random
import re
import secrets
import shutil
import signal
import subprocess
import threading
import time
import uuid
from base64 import b64decode
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .server import FakeApiServer
from .store import BY_PLURAL, ApiError, Kind, Store, now_rfc3339, parse_time, quantity

log = logging.getLogger(__name__)

PODS, JOBS, EVENTS = BY_PLURAL["pods"], BY_PLURAL["jobs"], BY_PLURAL["events"]
NODES, PVCS = BY_PLURAL["nodes"], BY_PLURAL["persistentvolumeclaims"]
TRACKING = "batch.kubernetes.io/job-tracking"
INDEX_KEY = "batch.kubernetes.io/job-completion-index"
FAILURES_KEY = "batch.kubernetes.io/job-index-failure-count"
TICK = 0.1
_KIND_WORD = {"secrets": "Secret", "configmaps": "ConfigMap"}
SA_TOKEN_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


@dataclass
class NodeSpec:
    name: str
    labels: dict[str, str] = field(default_factory=dict)
    taints: list[dict[str, str]] = field(default_factory=list)
    cpu: str = "16"
    memory: str = "64Gi"
    gpus: int = 0


DEFAULT_NODES = (
    NodeSpec("ondemand-1", {"karpenter.sh/capacity-type": "on-demand"}),
    NodeSpec(
        "spot-1",
        {"karpenter.sh/capacity-type": "spot", "kubernetes.azure.com/scalesetpriority": "spot"},
        [{"key": "kubernetes.azure.com/scalesetpriority", "value": "spot", "effect": "NoSchedule"}],
    ),
)


@dataclass
class Runtime:
    """A pod's process on this machine."""

    proc: subprocess.Popen[bytes] | None
    root: Path
    log_path: Path
    term_at: float = 0.0  # SIGTERM sent
    kill_at: float = 0.0  # SIGKILL due


class Cluster:
    def __init__(
        self,
        root: Path,
        *,
        nodes: tuple[NodeSpec, ...] = DEFAULT_NODES,
        host_env: dict[str, str] | None = None,
        admin_token: str = "",
    ) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self.store = Store()
        self.api = FakeApiServer(self.store, self)
        self.admin_token = admin_token or secrets.token_hex(16)
        self.api.add_user(self.admin_token, "admin", admin=True)
        self.host_env = dict(host_env or {})
        self.runtimes: dict[str, Runtime] = {}  # pod uid -> process
        self.accounted: set[str] = set()  # pod uids the Job controller has counted
        self.index_failures: dict[tuple[str, int], int] = {}
        self.sa_tokens: dict[tuple[str, str], str] = {}
        self.ip_base = f"127.{random.randint(2, 250)}.{random.randint(2, 250)}."
        self.next_ip = 2
        self.scheduling_reported: dict[str, float] = {}
        self.stopping = threading.Event()
        self.loop = threading.Thread(target=self._run, daemon=True, name="fake-k8s-controllers")
        self.errors: list[str] = []  # controller exceptions: a test fails on any
        for spec in nodes:
            self.add_node(spec)

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        self.api.start()
        self.loop.start()

    def stop(self) -> None:
        self.stopping.set()
        with self.store.changed:
            self.store.changed.notify_all()
        self.loop.join(timeout=10)
        for runtime in self.runtimes.values():
            _signal(runtime, signal.SIGKILL)
        self.api.stop()

    def live_processes(self) -> list[int]:
        return [
            r.proc.pid
            for r in self.runtimes.values()
            if r.proc is not None and r.proc.poll() is None
        ]

    def add_node(self, spec: NodeSpec) -> None:
        allocatable = {"cpu": spec.cpu, "memory": spec.memory, "pods": "110"}
        if spec.gpus:
            allocatable["nvidia.com/gpu"] = str(spec.gpus)
        self.store.create(
            NODES,
            "",
            {
                "metadata": {
                    "name": spec.name,
                    "labels": {"kubernetes.io/hostname": spec.name, **spec.labels},
                },
                "spec": {"taints": spec.taints} if spec.taints else {},
                "status": {
                    "allocatable": allocatable,
                    "capacity": allocatable,
                    "conditions": [{"type": "Ready", "status": "True"}],
                },
            },
        )

    def _run(self) -> None:
        while not self.stopping.is_set():
            try:
                self.reconcile()
            except Exception as exc:  # keep going; the test sees it in `errors`
                log.exception("controller error")
                self.errors.append(repr(exc))
            self.store.wait_changed(TICK)

    def reconcile(self) -> None:
        self._service_accounts()
        self._claims()
        for job in self.store.iter_kind(JOBS):
            self._sync_job(job)
        for pod in self.store.iter_kind(PODS):
            self._sync_pod(pod)
        self._collect_garbage()

    # --- events -----------------------------------------------------------------------------

    def event(
        self,
        obj: dict[str, Any],
        reason: str,
        message: str,
        *,
        warning: bool = False,
        component: str = "",
    ) -> None:
        meta = obj["metadata"]
        namespace = meta.get("namespace") or "default"
        for existing in self.store.list(
            EVENTS, namespace, fields=f"involvedObject.uid={meta['uid']}"
        ):
            if existing.get("reason") == reason and existing.get("message") == message:

                def bump(e: dict[str, Any]) -> None:
                    e["count"] = int(e.get("count") or 1) + 1
                    e["lastTimestamp"] = now_rfc3339()

                self.store.update(EVENTS, namespace, existing["metadata"]["name"], bump)
                return
        stamp = now_rfc3339()
        self.store.create(
            EVENTS,
            namespace,
            {
                "metadata": {"name": f"{meta['name']}.{uuid.uuid4().hex[:16]}"},
                "involvedObject": {
                    "kind": obj.get("kind"),
                    "apiVersion": obj.get("apiVersion"),
                    "name": meta["name"],
                    "namespace": meta.get("namespace", ""),
                    "uid": meta["uid"],
                },
                "reason": reason,
                "message": message,
                "type": "Warning" if warning else "Normal",
                "count": 1,
                "firstTimestamp": stamp,
                "lastTimestamp": stamp,
                "source": {"component": component or "fake-controller"},
                "reportingComponent": component or "fake-controller",
            },
        )

    # --- service accounts and claims ----------------------------------------------------

    def _service_accounts(self) -> None:
        for account in self.store.iter_kind(BY_PLURAL["serviceaccounts"]):
            meta = account["metadata"]
            key = (meta["namespace"], meta["name"])
            if key not in self.sa_tokens:
                token = secrets.token_hex(16)
                self.sa_tokens[key] = token
                self.api.add_user(token, f"system:serviceaccount:{key[0]}:{key[1]}")

    def token_for(self, namespace: str, account: str) -> str:
        if (namespace, account) not in self.sa_tokens and account == "default":
            token = secrets.token_hex(16)
            self.sa_tokens[(namespace, account)] = token
            self.api.add_user(token, f"system:serviceaccount:{namespace}:default")
        return self.sa_tokens[(namespace, account)]

    def claim_dir(self, namespace: str, name: str, uid: str) -> Path:
        return self.root / "volumes" / f"{namespace}_{name}_{uid[:8]}"

    def _claims(self) -> None:
        for claim in self.store.iter_kind(PVCS):
            meta = claim["metadata"]
            folder = self.claim_dir(meta["namespace"], meta["name"], meta["uid"])
            if (claim.get("status") or {}).get("phase") != "Bound":
                folder.mkdir(parents=True, exist_ok=True)

                def bind(c: dict[str, Any]) -> None:
                    c["spec"]["volumeName"] = f"pvc-{c['metadata']['uid']}"

                def bound(c: dict[str, Any]) -> None:
                    c["status"] = {
                        "phase": "Bound",
                        "accessModes": c["spec"]["accessModes"],
                        "capacity": {"storage": c["spec"]["resources"]["requests"]["storage"]},
                    }

                self.store.update(PVCS, meta["namespace"], meta["name"], bind)
                self.store.update(
                    PVCS, meta["namespace"], meta["name"], bound, subresource="status"
                )
                self.event(
                    claim,
                    "ProvisioningSucceeded",
                    f"Successfully provisioned volume pvc-{meta['uid']}",
                    component="fake-provisioner",
                )
            if meta.get("deletionTimestamp") and not self._claim_in_use(claim):
                self.store.remove(PVCS, meta["namespace"], meta["name"])
                shutil.rmtree(folder, ignore_errors=True)

    def _claim_in_use(self, claim: dict[str, Any]) -> bool:
        name, namespace = claim["metadata"]["name"], claim["metadata"]["namespace"]
        for pod in self.store.list(PODS, namespace):
            if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed") and pod[
                "metadata"
            ]["uid"] not in self._running_uids():
                continue
            for volume in pod["spec"].get("volumes") or []:
                if (volume.get("persistentVolumeClaim") or {}).get("claimName") == name:
                    return True
        return False

    def _running_uids(self) -> set[str]:
        return {u for u, r in self.runtimes.items() if r.proc is not None and r.proc.poll() is None}

    # --- deletion (the API server's side of DELETE) ---------------------------------------

    def delete(
        self, kind: Kind, namespace: str, name: str, policy: str, grace: int | None
    ) -> dict[str, Any]:
        obj = self.store.get(kind, namespace, name)
        if kind.plural == "pods":
            if grace is None:
                grace = int(obj["spec"].get("terminationGracePeriodSeconds", 30))
            return self.store.mark_deleted(kind, namespace, name, grace=grace)
        if kind.plural == "persistentvolumeclaims":
            return self.store.mark_deleted(
                kind, namespace, name, grace=0, finalizer="kubernetes.io/pvc-protection"
            )
        if kind.plural == "jobs" and policy == "Foreground":
            return self.store.mark_deleted(
                kind, namespace, name, grace=0, finalizer="foregroundDeletion"
            )
        if kind.plural == "jobs" and policy == "Orphan":
            for pod in self._owned(obj):
                self.store.update(
                    PODS, namespace, pod["metadata"]["name"], _drop_owner_and_tracking
                )
        self.store.remove(kind, namespace, name)
        return obj

    def _owned(self, owner: dict[str, Any]) -> list[dict[str, Any]]:
        uid = owner["metadata"]["uid"]
        return [
            p
            for p in self.store.list(PODS, owner["metadata"]["namespace"])
            if any(r.get("uid") == uid for r in p["metadata"].get("ownerReferences") or [])
        ]

    def _collect_garbage(self) -> None:
        pod_uids = {p["metadata"]["uid"] for p in self.store.iter_kind(PODS)}
        for plural in ("secrets", "configmaps"):
            kind = BY_PLURAL[plural]
            for obj in self.store.iter_kind(kind):
                owners = [
                    r
                    for r in obj["metadata"].get("ownerReferences") or []
                    if r.get("kind") == "Pod"
                ]
                if owners and not any(r.get("uid") in pod_uids for r in owners):
                    meta = obj["metadata"]
                    self.store.remove(kind, meta["namespace"], meta["name"])
        live_uids = {j["metadata"]["uid"] for j in self.store.iter_kind(JOBS)}
        for pod in self.store.iter_kind(PODS):
            owners = [
                r for r in pod["metadata"].get("ownerReferences") or [] if r.get("kind") == "Job"
            ]
            if owners and not any(r["uid"] in live_uids for r in owners):
                self._delete_pod(pod, drop_tracking=True)
        for job in self.store.iter_kind(JOBS):
            meta = job["metadata"]
            if "foregroundDeletion" in (meta.get("finalizers") or []):
                pods = self._owned(job)
                for pod in pods:
                    self._delete_pod(pod, drop_tracking=True)
                if not pods:
                    self.store.remove(JOBS, meta["namespace"], meta["name"])
            elif meta.get("deletionTimestamp") and not meta.get("finalizers"):
                self.store.remove(JOBS, meta["namespace"], meta["name"])

    def _delete_pod(self, pod: dict[str, Any], *, drop_tracking: bool = False) -> None:
        meta = pod["metadata"]
        if drop_tracking and TRACKING in (meta.get("finalizers") or []):
            self.store.update(PODS, meta["namespace"], meta["name"], _drop_tracking)
        if not meta.get("deletionTimestamp"):
            grace = int(pod["spec"].get("terminationGracePeriodSeconds", 30))
            self.store.mark_deleted(PODS, meta["namespace"], meta["name"], grace=grace)

    # --- disruptions ----------------------------------------------------------------------

    def evict(self, namespace: str, name: str) -> None:
        self.disrupt(
            namespace,
            name,
            "EvictionByEvictionAPI",
            "Eviction API: evicting",
            event=("Evicted", "Evicted by the eviction API"),
        )

    def preempt(self, namespace: str, name: str) -> None:
        self.disrupt(
            namespace,
            name,
            "PreemptionByScheduler",
            "Scheduler: preempting",
            event=("Preempted", "Preempted by a higher priority pod"),
        )

    def reclaim_node(self, node: str, *, grace: int | None = None) -> str:
        """A spot node taken away: its pods are disrupted, it leaves, a like node joins."""
        found = self.store.get(NODES, "", node)
        for pod in self.store.iter_kind(PODS):
            if pod["spec"].get("nodeName") == node and pod["status"].get("phase") not in (
                "Succeeded",
                "Failed",
            ):
                self.disrupt(
                    pod["metadata"]["namespace"],
                    pod["metadata"]["name"],
                    "TerminationByKubelet",
                    "Pod was terminated in response to imminent node shutdown.",
                    event=("Killing", "Stopping container: the node is being reclaimed (spot)"),
                    grace=grace,
                )
        self.event(
            found,
            "NodeNotReady",
            f"Node {node} status is now: NodeNotReady (reclaimed)",
            warning=True,
            component="node-controller",
        )
        self.store.remove(NODES, "", node)
        base = re.sub(r"-r\d+$", "", node)
        replacement = f"{base}-r{uuid.uuid4().hex[:4]}"
        allocatable = found["status"]["allocatable"]
        labels = {
            k: v for k, v in found["metadata"]["labels"].items() if k != "kubernetes.io/hostname"
        }
        self.add_node(
            NodeSpec(
                replacement,
                labels,
                list((found.get("spec") or {}).get("taints") or []),
                allocatable["cpu"],
                allocatable["memory"],
                int(allocatable.get("nvidia.com/gpu", 0)),
            )
        )
        return replacement

    def disrupt(
        self,
        namespace: str,
        name: str,
        reason: str,
        message: str,
        *,
        event: tuple[str, str],
        grace: int | None = None,
    ) -> None:
        pod = self.store.get(PODS, namespace, name)

        def condition(p: dict[str, Any]) -> None:
            conditions = [
                c for c in p["status"].get("conditions") or [] if c["type"] != "DisruptionTarget"
            ]
            conditions.append(
                {
                    "type": "DisruptionTarget",
                    "status": "True",
                    "reason": reason,
                    "message": message,
                    "lastTransitionTime": now_rfc3339(),
                }
            )
            p["status"]["conditions"] = conditions

        self.store.update(PODS, namespace, name, condition, subresource="status")
        self.event(pod, event[0], event[1], warning=True, component="kubelet")
        if grace is None:
            grace = int(pod["spec"].get("terminationGracePeriodSeconds", 30))
        self.store.mark_deleted(PODS, namespace, name, grace=grace)

    # --- kubelet ----------------------------------------------------------------------------

    def pod_address(self, namespace: str, name: str) -> str:
        pod = self.store.get(PODS, namespace, name)
        address = (pod.get("status") or {}).get("podIP")
        if not address or pod["status"].get("phase") != "Running":
            raise ApiError(503, "ServiceUnavailable", f'pod "{name}" is not running (no endpoint)')
        return str(address)

    def pod_log(self, namespace: str, name: str, query: dict[str, str]) -> str:
        pod = self.store.get(PODS, namespace, name)
        runtime = self.runtimes.get(pod["metadata"]["uid"])
        if runtime is None or not runtime.log_path.exists():
            raise ApiError(400, "BadRequest", f'container in pod "{name}" is waiting to start')
        text = runtime.log_path.read_text(errors="replace")
        if query.get("tailLines"):
            text = "".join(text.splitlines(keepends=True)[-int(query["tailLines"]) :])
        return text

    def _sync_pod(self, pod: dict[str, Any]) -> None:
        meta, status = pod["metadata"], pod.get("status") or {}
        uid = meta["uid"]
        runtime = self.runtimes.get(uid)
        if meta.get("deletionTimestamp"):
            self._terminate(pod, runtime)
            return
        phase = status.get("phase")
        if phase in ("Succeeded", "Failed"):
            return
        if not pod["spec"].get("nodeName"):
            self._schedule(pod)
            return
        if runtime is None:
            self._start(pod)
            return
        if runtime.proc is not None and runtime.proc.poll() is not None:
            self._finished(pod, runtime)

    def _terminate(self, pod: dict[str, Any], runtime: Runtime | None) -> None:
        meta = pod["metadata"]
        running = runtime is not None and runtime.proc is not None and runtime.proc.poll() is None
        if running:
            assert runtime is not None
            now = time.monotonic()
            if not runtime.term_at:
                grace = int(meta.get("deletionGracePeriodSeconds") or 0)
                runtime.term_at, runtime.kill_at = now, now + grace
                if not any(
                    c["type"] == "DisruptionTarget" for c in pod["status"].get("conditions") or []
                ):
                    self.event(pod, "Killing", "Stopping container main", component="kubelet")
                _signal(runtime, signal.SIGTERM if grace > 0 else signal.SIGKILL)
            elif now >= runtime.kill_at:
                _signal(runtime, signal.SIGKILL)
            return
        if runtime is not None and pod["status"].get("phase") not in ("Succeeded", "Failed"):
            self._finished(pod, runtime)
            return
        if runtime is None and pod["status"].get("phase") not in ("Succeeded", "Failed"):

            def failed(p: dict[str, Any]) -> None:
                p["status"]["phase"] = "Failed"

            self.store.update(PODS, meta["namespace"], meta["name"], failed, subresource="status")
            return
        if not meta.get("finalizers"):
            self.store.remove(PODS, meta["namespace"], meta["name"])
            self.runtimes.pop(meta["uid"], None)

    def _schedule(self, pod: dict[str, Any]) -> None:
        nodes = self.store.list(NODES, None)
        reasons: dict[str, int] = {}
        fitting: list[tuple[int, str]] = []
        for node in nodes:
            why = self._unfit(pod, node)
            if why:
                reasons[why] = reasons.get(why, 0) + 1
            else:
                fitting.append((-_preference(pod, node), node["metadata"]["name"]))
        meta = pod["metadata"]
        if not fitting:
            detail = ", ".join(f"{n} {r}" for r, n in sorted(reasons.items()))
            message = f"0/{len(nodes)} nodes are available: {detail}."
            last = self.scheduling_reported.get(meta["uid"], 0.0)
            if time.monotonic() - last > 5.0:
                self.scheduling_reported[meta["uid"]] = time.monotonic()
                self.event(
                    pod, "FailedScheduling", message, warning=True, component="default-scheduler"
                )

                def unschedulable(p: dict[str, Any]) -> None:
                    p["status"]["conditions"] = [
                        {
                            "type": "PodScheduled",
                            "status": "False",
                            "reason": "Unschedulable",
                            "message": message,
                            "lastTransitionTime": now_rfc3339(),
                        }
                    ]

                self.store.update(
                    PODS, meta["namespace"], meta["name"], unschedulable, subresource="status"
                )
            return
        node = sorted(fitting)[0][1]

        def bind(p: dict[str, Any]) -> None:
            p["spec"]["nodeName"] = node

        self.store.update(PODS, meta["namespace"], meta["name"], bind)

        def scheduled(p: dict[str, Any]) -> None:
            p["status"]["conditions"] = [
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": now_rfc3339()}
            ]

        self.store.update(PODS, meta["namespace"], meta["name"], scheduled, subresource="status")
        self.event(
            pod,
            "Scheduled",
            f"Successfully assigned {meta['namespace']}/{meta['name']} to {node}",
            component="default-scheduler",
        )

    def _unfit(self, pod: dict[str, Any], node: dict[str, Any]) -> str:
        labels = node["metadata"].get("labels") or {}
        spec = pod["spec"]
        for k, v in (spec.get("nodeSelector") or {}).items():
            if labels.get(k) != v:
                return "node(s) didn't match Pod's node affinity/selector"
        required = ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
            "requiredDuringSchedulingIgnoredDuringExecution"
        )
        if required and not any(
            _term_matches(t, labels, node["metadata"]["name"])
            for t in required.get("nodeSelectorTerms") or []
        ):
            return "node(s) didn't match Pod's node affinity/selector"
        for taint in (node.get("spec") or {}).get("taints") or []:
            if taint.get("effect") in ("NoSchedule", "NoExecute") and not any(
                _tolerates(t, taint) for t in spec.get("tolerations") or []
            ):
                return f"node(s) had untolerated taint {{{taint['key']}: {taint.get('value', '')}}}"
        allocatable = node["status"]["allocatable"]
        used = {"cpu": 0.0, "memory": 0.0, "nvidia.com/gpu": 0.0}
        for other in self.store.list(
            PODS, None, fields=f"spec.nodeName={node['metadata']['name']}"
        ):
            if other["status"].get("phase") in ("Succeeded", "Failed"):
                continue
            for res, amount in _requests(other).items():
                used[res] = used.get(res, 0.0) + amount
        for res, amount in _requests(pod).items():
            if used.get(res, 0.0) + amount > quantity(allocatable.get(res, "0")):
                return f"Insufficient {res}"
        return ""

    def _start(self, pod: dict[str, Any]) -> None:
        meta, spec = pod["metadata"], pod["spec"]
        namespace = meta["namespace"]
        root = self.root / "pods" / f"{namespace}_{meta['name']}_{meta['uid'][:8]}"
        container = spec["containers"][0]
        ip = pod["status"].get("podIP") or f"{self.ip_base}{self.next_ip}"
        try:
            env = self._env(pod, container, ip)
            self._mount(pod, container, root)
        except _Waiting as waiting:
            self._waiting(pod, container, waiting)
            return
        command = [
            _expand(a, env)
            for a in (container.get("command") or []) + (container.get("args") or [])
        ]
        log_path = root.parent / f"{root.name}.log"
        self.next_ip += 1
        env["HOSTNAME"] = spec.get("hostname") or meta["name"]
        env = {**self.host_env, **env}
        cwd = root / str(container.get("workingDir") or "/").lstrip("/")
        cwd.mkdir(parents=True, exist_ok=True)
        self.event(
            pod,
            "Pulled",
            f'Container image "{container["image"]}" already present on machine',
            component="kubelet",
        )
        self.event(pod, "Created", f"Created container {container['name']}", component="kubelet")
        if not command:
            self.runtimes[meta["uid"]] = Runtime(None, root, log_path)
            self.event(
                pod,
                "Failed",
                "Error: the fake has no images: give the container a command",
                warning=True,
                component="kubelet",
            )
            self._set_terminated(pod, 128, "StartError")
            return
        out = open(log_path, "ab")  # noqa: SIM115 - the child owns it
        try:
            proc = subprocess.Popen(
                command,
                cwd=cwd,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        except OSError as exc:
            out.close()
            self.runtimes[meta["uid"]] = Runtime(None, root, log_path)
            self.event(
                pod,
                "Failed",
                f"Error: failed to start container: {exc}",
                warning=True,
                component="kubelet",
            )
            self._set_terminated(pod, 128, "StartError")
            return
        out.close()
        self.runtimes[meta["uid"]] = Runtime(proc, root, log_path)
        started = now_rfc3339()

        def running(p: dict[str, Any]) -> None:
            p["status"].update(
                phase="Running",
                podIP=ip,
                podIPs=[{"ip": ip}],
                hostIP="10.0.0.1",
                startTime=started,
                containerStatuses=[
                    {
                        "name": container["name"],
                        "image": container["image"],
                        "imageID": "",
                        "ready": True,
                        "started": True,
                        "restartCount": 0,
                        "containerID": f"fake://{proc.pid}",
                        "state": {"running": {"startedAt": started}},
                    }
                ],
            )
            conditions = [
                c
                for c in p["status"].get("conditions") or []
                if c["type"] not in ("Ready", "ContainersReady", "Initialized")
            ]
            for kind in ("Initialized", "ContainersReady", "Ready"):
                conditions.append({"type": kind, "status": "True", "lastTransitionTime": started})
            p["status"]["conditions"] = conditions

        self.store.update(PODS, namespace, meta["name"], running, subresource="status")
        self.event(pod, "Started", f"Started container {container['name']}", component="kubelet")

    def _attachable(self, pod: dict[str, Any], claim: dict[str, Any]) -> None:
        """As the attach/detach controller: a ReadWriteOnce volume is attached to one
        node at a time; a pod on another node waits while a pod that has not ended
        holds it there (terminating ones too, until they are gone)."""
        if "ReadWriteMany" in (claim["spec"].get("accessModes") or []):
            return
        name, node = claim["metadata"]["name"], pod["spec"].get("nodeName")
        holders = [
            other["metadata"]["name"]
            for other in self.store.list(PODS, pod["metadata"]["namespace"])
            if other["metadata"]["uid"] != pod["metadata"]["uid"]
            and other["spec"].get("nodeName") not in (None, node)
            and other["metadata"]["uid"] in self.runtimes
            and (other.get("status") or {}).get("phase") not in ("Succeeded", "Failed")
            and any(
                (v.get("persistentVolumeClaim") or {}).get("claimName") == name
                for v in other["spec"].get("volumes") or []
            )
        ]
        if holders:
            raise _Waiting(
                "ContainerCreating",
                "FailedAttachVolume",
                f'Multi-Attach error for volume "pvc-{claim["metadata"]["uid"]}" Volume is '
                f"already used by pod(s) {', '.join(sorted(holders))}",
            )

    def _waiting(self, pod: dict[str, Any], container: dict[str, Any], waiting: _Waiting) -> None:
        meta = pod["metadata"]
        self.event(pod, waiting.reason_event, waiting.message, warning=True, component="kubelet")

        def wait_state(p: dict[str, Any]) -> None:
            p["status"]["containerStatuses"] = [
                {
                    "name": container["name"],
                    "image": container["image"],
                    "imageID": "",
                    "ready": False,
                    "restartCount": 0,
                    "state": {"waiting": {"reason": waiting.reason, "message": waiting.message}},
                }
            ]

        self.store.update(PODS, meta["namespace"], meta["name"], wait_state, subresource="status")

    def _finished(self, pod: dict[str, Any], runtime: Runtime) -> None:
        assert runtime.proc is not None
        code = runtime.proc.returncode
        if code < 0:
            code = 128 - code  # killed by a signal: the container runtime's convention
        message = ""
        container = pod["spec"]["containers"][0]
        if code and container.get("terminationMessagePolicy") == "FallbackToLogsOnError":
            # the kubelet's fallback: the log's last 80 lines, at most 2048 bytes
            lines = runtime.log_path.read_text(errors="replace").splitlines(keepends=True)
            message = "".join(lines[-80:])[-2048:]
        self._set_terminated(pod, code, "Completed" if code == 0 else "Error", message)

    def _set_terminated(
        self, pod: dict[str, Any], code: int, reason: str, message: str = ""
    ) -> None:
        meta = pod["metadata"]
        finished = now_rfc3339()

        def terminated(p: dict[str, Any]) -> None:
            statuses = p["status"].get("containerStatuses") or [
                {
                    "name": p["spec"]["containers"][0]["name"],
                    "image": p["spec"]["containers"][0]["image"],
                    "imageID": "",
                    "restartCount": 0,
                }
            ]
            for s in statuses:
                started = ((s.get("state") or {}).get("running") or {}).get("startedAt", finished)
                s.update(
                    ready=False,
                    started=False,
                    state={
                        "terminated": {
                            "exitCode": code,
                            "reason": reason,
                            "startedAt": started,
                            "finishedAt": finished,
                            **({"message": message} if message else {}),
                        }
                    },
                )
            p["status"]["containerStatuses"] = statuses
            p["status"]["phase"] = "Succeeded" if code == 0 else "Failed"
            for c in p["status"].get("conditions") or []:
                if c["type"] in ("Ready", "ContainersReady"):
                    c["status"] = "False"

        self.store.update(PODS, meta["namespace"], meta["name"], terminated, subresource="status")

    def _env(self, pod: dict[str, Any], container: dict[str, Any], ip: str) -> dict[str, str]:
        namespace = pod["metadata"]["namespace"]
        env: dict[str, str] = {}
        for source in container.get("envFrom") or []:
            prefix = source.get("prefix") or ""
            if source.get("configMapRef"):
                data = self._config_data(
                    "configmaps",
                    namespace,
                    source["configMapRef"]["name"],
                    optional=bool(source["configMapRef"].get("optional")),
                )
            else:
                data = self._config_data(
                    "secrets",
                    namespace,
                    source["secretRef"]["name"],
                    optional=bool(source["secretRef"].get("optional")),
                )
            env.update({prefix + k: v for k, v in data.items()})
        for var in container.get("env") or []:
            name = var["name"]
            if var.get("valueFrom"):
                value = self._value_from(pod, var["valueFrom"], ip)
                if value is None:
                    continue
                env[name] = value
            else:
                env[name] = _expand(var.get("value") or "", env)
        env.setdefault("KUBERNETES_SERVICE_HOST", "127.0.0.1")
        env.setdefault("KUBERNETES_SERVICE_PORT", self.api.url.rsplit(":", 1)[1])
        return env

    def _value_from(self, pod: dict[str, Any], source: dict[str, Any], ip: str) -> str | None:
        namespace = pod["metadata"]["namespace"]
        if source.get("secretKeyRef") or source.get("configMapKeyRef"):
            plural = "secrets" if source.get("secretKeyRef") else "configmaps"
            ref = source.get("secretKeyRef") or source.get("configMapKeyRef")
            data = self._config_data(
                plural, namespace, ref["name"], optional=bool(ref.get("optional"))
            )
            if ref["key"] not in data:
                if ref.get("optional"):
                    return None
                raise _Waiting(
                    "CreateContainerConfigError",
                    "Failed",
                    f"couldn't find key {ref['key']} in {_KIND_WORD[plural]} "
                    f"{namespace}/{ref['name']}",
                )
            return data[ref["key"]]
        if source.get("fieldRef"):
            path = source["fieldRef"]["fieldPath"]
            found = re.match(r"^metadata\.(labels|annotations)\['(.+)'\]$", path)
            if found:
                return str((pod["metadata"].get(found.group(1)) or {}).get(found.group(2), ""))
            simple = {
                "metadata.name": pod["metadata"]["name"],
                "metadata.namespace": namespace,
                "metadata.uid": pod["metadata"]["uid"],
                "spec.nodeName": pod["spec"].get("nodeName", ""),
                "spec.serviceAccountName": pod["spec"].get("serviceAccountName", ""),
                "status.podIP": ip,
                "status.hostIP": "10.0.0.1",
            }
            if path not in simple:
                raise _Waiting(
                    "CreateContainerConfigError", "Failed", f"unsupported fieldPath {path}"
                )
            return simple[path]
        if source.get("resourceFieldRef"):
            container = pod["spec"]["containers"][0]
            res = source["resourceFieldRef"]["resource"]
            kind, _, name = res.partition(".")
            return str((container.get("resources") or {}).get(kind, {}).get(name, "0"))
        raise _Waiting("CreateContainerConfigError", "Failed", "unsupported valueFrom")

    def _config_data(
        self, plural: str, namespace: str, name: str, *, optional: bool
    ) -> dict[str, str]:
        found = self.store.find(BY_PLURAL[plural], namespace, name)
        if found is None:
            if optional:
                return {}
            what = "secret" if plural == "secrets" else "configmap"
            raise _Waiting(
                "CreateContainerConfigError", "Failed", f'Error: {what} "{name}" not found'
            )
        if plural == "secrets":
            return {k: b64decode(v).decode() for k, v in (found.get("data") or {}).items()}
        return dict(found.get("data") or {})

    def _mount(self, pod: dict[str, Any], container: dict[str, Any], root: Path) -> None:
        spec, meta = pod["spec"], pod["metadata"]
        namespace = meta["namespace"]
        volumes = {v["name"]: v for v in spec.get("volumes") or []}
        root.mkdir(parents=True, exist_ok=True)
        mounts = list(container.get("volumeMounts") or [])
        if spec.get("automountServiceAccountToken") is not False:
            account = spec.get("serviceAccountName") or "default"
            token_dir = root / SA_TOKEN_DIR.lstrip("/")
            token_dir.mkdir(parents=True, exist_ok=True)
            (token_dir / "token").write_text(self.token_for(namespace, account))
            (token_dir / "namespace").write_text(namespace)
        for mount in mounts:
            volume = volumes[mount["name"]]
            target = root / mount["mountPath"].lstrip("/")
            if volume.get("configMap") or volume.get("secret"):
                source = volume.get("configMap") or volume.get("secret")
                plural = "configmaps" if volume.get("configMap") else "secrets"
                name = source.get("name") or source.get("secretName")
                try:
                    data = self._config_data(
                        plural, namespace, name, optional=bool(source.get("optional"))
                    )
                except _Waiting as exc:
                    raise _Waiting(
                        "ContainerCreating",
                        "FailedMount",
                        f'MountVolume.SetUp failed for volume "{mount["name"]}" : '
                        + exc.message.removeprefix("Error: "),
                    ) from exc
                items = source.get("items") or [{"key": k, "path": k} for k in data]
                target.mkdir(parents=True, exist_ok=True)
                mode = int(source.get("defaultMode") or 0o644)
                for item in items:
                    if item["key"] not in data:
                        raise _Waiting(
                            "ContainerCreating",
                            "FailedMount",
                            f'MountVolume.SetUp failed for volume "{mount["name"]}" : '
                            f"configmap references non-existent key {item['key']}",
                        )
                    path = target / item["path"]
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_text(data[item["key"]])
                    path.chmod(int(item.get("mode") or mode))
            elif volume.get("persistentVolumeClaim"):
                claim_name = volume["persistentVolumeClaim"]["claimName"]
                claim = self.store.find(PVCS, namespace, claim_name)
                if claim is None or (claim.get("status") or {}).get("phase") != "Bound":
                    raise _Waiting(
                        "ContainerCreating",
                        "FailedMount",
                        f'persistentvolumeclaim "{claim_name}" not found or not bound',
                    )
                self._attachable(pod, claim)
                folder = self.claim_dir(namespace, claim_name, claim["metadata"]["uid"])
                target.parent.mkdir(parents=True, exist_ok=True)
                if not target.exists():
                    target.symlink_to(folder, target_is_directory=True)
            elif "emptyDir" in volume:
                target.mkdir(parents=True, exist_ok=True)
            else:
                raise _Waiting(
                    "ContainerCreating",
                    "FailedMount",
                    f'volume "{mount["name"]}": the fake mounts configMap, secret, '
                    "persistentVolumeClaim and emptyDir only",
                )

    # --- the Job controller ---------------------------------------------------------------

    def _sync_job(self, job: dict[str, Any]) -> None:
        meta, spec = job["metadata"], job["spec"]
        namespace, name, uid = meta["namespace"], meta["name"], meta["uid"]
        if meta.get("deletionTimestamp"):
            return
        status = copy.deepcopy(job.get("status") or {})
        conditions = status.setdefault("conditions", [])
        finished = _condition(conditions, "Complete") or _condition(conditions, "Failed")
        pods = self._owned(job)
        indexed = spec.get("completionMode") == "Indexed"
        completions = int(spec.get("completions") or 1)
        succeeded_indexes = set(_parse_indexes(status.get("completedIndexes", "")))
        failed_indexes = set(_parse_indexes(status.get("failedIndexes", "")))
        now = time.time()
        failure: tuple[str, str] | None = None
        # 1. count terminal pods once, then let them go (the tracking finalizer)
        for pod in pods:
            pmeta = pod["metadata"]
            phase = pod["status"].get("phase")
            if phase not in ("Succeeded", "Failed") or pmeta["uid"] in self.accounted:
                continue
            self.accounted.add(pmeta["uid"])
            index = int((pmeta.get("annotations") or {}).get(INDEX_KEY, "0"))
            if phase == "Succeeded":
                status["succeeded"] = int(status.get("succeeded") or 0) + (
                    0 if index in succeeded_indexes and indexed else 1
                )
                succeeded_indexes.add(index)
            else:
                action = _failure_action(spec.get("podFailurePolicy"), pod)
                if action == "Ignore":
                    pass
                elif action == "FailJob":
                    failure = (
                        "PodFailurePolicy",
                        f"Container of pod {pmeta['name']} matched a FailJob rule "
                        "of the pod failure policy",
                    )
                    status["failed"] = int(status.get("failed") or 0) + 1
                else:
                    status["failed"] = int(status.get("failed") or 0) + 1
                    key = (uid, index)
                    self.index_failures[key] = self.index_failures.get(key, 0) + 1
                    per_index = spec.get("backoffLimitPerIndex")
                    if action == "FailIndex" or (
                        per_index is not None and self.index_failures[key] > int(per_index)
                    ):
                        failed_indexes.add(index)
                    elif per_index is None and int(status["failed"]) > int(
                        spec.get("backoffLimit", 6)
                    ):
                        failure = (
                            "BackoffLimitExceeded",
                            "Job has reached the specified backoff limit",
                        )
            if TRACKING in (pmeta.get("finalizers") or []):
                self.store.update(PODS, namespace, pmeta["name"], _drop_tracking)
        live = [p for p in pods if p["status"].get("phase") not in ("Succeeded", "Failed")]
        active = [p for p in live if not p["metadata"].get("deletionTimestamp")]
        # 2. decide the job's fate
        if not finished and not failure:
            if spec.get("suspend"):
                for pod in active:
                    self._delete_pod(pod)
                if not _condition(conditions, "Suspended"):
                    conditions.append(_new_condition("Suspended", "JobSuspended", "Job suspended"))
                    self.event(job, "Suspended", "Job suspended", component="job-controller")
                status.pop("startTime", None)
            else:
                if _condition(conditions, "Suspended"):
                    conditions[:] = [c for c in conditions if c["type"] != "Suspended"]
                    self.event(job, "Resumed", "Job resumed", component="job-controller")
                status.setdefault("startTime", now_rfc3339(now))
                deadline = spec.get("activeDeadlineSeconds")
                if deadline is not None and now - parse_time(status["startTime"]) >= int(deadline):
                    failure = ("DeadlineExceeded", "Job was active longer than specified deadline")
                max_failed = spec.get("maxFailedIndexes")
                if max_failed is not None and len(failed_indexes) > int(max_failed):
                    failure = (
                        "MaxFailedIndexesExceeded",
                        "Job has exceeded the specified maximal number of failed indexes",
                    )
        done_indexes = succeeded_indexes | failed_indexes
        if not finished and not failure and not spec.get("suspend"):
            all_done = (
                len(done_indexes) >= completions
                if indexed
                else int(status.get("succeeded") or 0) >= completions
            )
            if all_done and not live:
                if failed_indexes:
                    failure = ("FailedIndexes", "Job has failed indexes")
                else:
                    conditions.append(
                        _new_condition(
                            "SuccessCriteriaMet",
                            "CompletionsReached",
                            "Reached expected number of succeeded pods",
                        )
                    )
                    conditions.append(
                        _new_condition(
                            "Complete",
                            "CompletionsReached",
                            "Reached expected number of succeeded pods",
                        )
                    )
                    status["completionTime"] = now_rfc3339(now)
                    self.event(job, "Completed", "Job completed", component="job-controller")
            elif not all_done:
                self._create_pods(job, active, done_indexes, indexed, completions)
        if failure and not _condition(conditions, "FailureTarget"):
            conditions.append(_new_condition("FailureTarget", failure[0], failure[1]))
            self.event(job, failure[0], failure[1], warning=True, component="job-controller")
        target = _condition(conditions, "FailureTarget")
        if target and not _condition(conditions, "Failed"):
            for pod in active:
                self._delete_pod(pod)
            if not live:
                conditions.append(_new_condition("Failed", target["reason"], target["message"]))
        # 3. ttl after finished
        ended = _condition(conditions, "Complete") or _condition(conditions, "Failed")
        ttl = spec.get("ttlSecondsAfterFinished")
        if ended and ttl is not None and now - parse_time(ended["lastTransitionTime"]) >= int(ttl):
            self.store.remove(JOBS, namespace, name)
            return
        status["active"] = len([p for p in live if not p["metadata"].get("deletionTimestamp")])
        status["ready"] = len(
            [
                p
                for p in live
                if any(
                    c["type"] == "Ready" and c["status"] == "True"
                    for c in p["status"].get("conditions") or []
                )
            ]
        )
        status["terminating"] = len([p for p in live if p["metadata"].get("deletionTimestamp")])
        status.setdefault("succeeded", 0)
        status.setdefault("failed", 0)
        if indexed:
            status["completedIndexes"] = _format_indexes(succeeded_indexes)
            if spec.get("backoffLimitPerIndex") is not None:
                status["failedIndexes"] = _format_indexes(failed_indexes)
        if not conditions:
            status.pop("conditions")
        if status != (job.get("status") or {}):

            def write(j: dict[str, Any]) -> None:
                j["status"] = status

            with contextlib.suppress(ApiError):  # deleted meanwhile
                self.store.update(JOBS, namespace, name, write, subresource="status")

    def _create_pods(
        self,
        job: dict[str, Any],
        active: list[dict[str, Any]],
        done: set[int],
        indexed: bool,
        completions: int,
    ) -> None:
        spec, meta = job["spec"], job["metadata"]
        parallelism = int(spec.get("parallelism") or 1)
        running_indexes = {
            int((p["metadata"].get("annotations") or {}).get(INDEX_KEY, "-1")) for p in active
        }
        # podReplacementPolicy Failed: a terminating pod holds its index until it is gone
        holding = {
            int((p["metadata"].get("annotations") or {}).get(INDEX_KEY, "-1"))
            for p in self._owned(job)
            if p["status"].get("phase") not in ("Succeeded", "Failed")
        }
        if spec.get("podReplacementPolicy") == "Failed":
            running_indexes |= holding
        slots = parallelism - len(active)
        if indexed:
            wanted = [i for i in range(completions) if i not in done and i not in running_indexes]
        else:
            wanted = [0] * max(
                0, completions - int((job.get("status") or {}).get("succeeded") or 0) - len(active)
            )
        for index in wanted[: max(0, slots)]:
            body = self._pod_for(job, index if indexed else None)
            try:
                made = self.store.create(PODS, meta["namespace"], body)
            except ApiError as exc:
                self.event(
                    job,
                    "FailedCreate",
                    f"Error creating: {exc.message}",
                    warning=True,
                    component="job-controller",
                )
                continue
            self.event(
                job,
                "SuccessfulCreate",
                f"Created pod: {made['metadata']['name']}",
                component="job-controller",
            )

    def _pod_for(self, job: dict[str, Any], index: int | None) -> dict[str, Any]:
        meta = job["metadata"]
        template = copy.deepcopy(job["spec"]["template"])
        pod_meta = template.get("metadata") or {}
        labels = dict(pod_meta.get("labels") or {})
        annotations = dict(pod_meta.get("annotations") or {})
        spec = template["spec"]
        prefix = f"{meta['name']}-"
        if index is not None:
            labels[INDEX_KEY] = str(index)
            annotations[INDEX_KEY] = str(index)
            if job["spec"].get("backoffLimitPerIndex") is not None:
                annotations[FAILURES_KEY] = str(self.index_failures.get((meta["uid"], index), 0))
            prefix = f"{meta['name']}-{index}-"
            spec.setdefault("hostname", f"{meta['name']}-{index}")
            for container in spec.get("containers") or []:
                env = [
                    e for e in container.get("env") or [] if e.get("name") != "JOB_COMPLETION_INDEX"
                ]
                env.append(
                    {
                        "name": "JOB_COMPLETION_INDEX",
                        "valueFrom": {
                            "fieldRef": {"fieldPath": f"metadata.annotations['{INDEX_KEY}']"}
                        },
                    }
                )
                container["env"] = env
        return {
            "metadata": {
                "generateName": prefix,
                "labels": labels,
                "annotations": annotations,
                "finalizers": [TRACKING],
                "ownerReferences": [
                    {
                        "apiVersion": "batch/v1",
                        "kind": "Job",
                        "name": meta["name"],
                        "uid": meta["uid"],
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
            },
            "spec": spec,
        }


class _Waiting(Exception):
    def __init__(self, reason: str, reason_event: str, message: str) -> None:
        super().__init__(message)
        self.reason, self.reason_event, self.message = reason, reason_event, message


def _signal(runtime: Runtime, sig: signal.Signals) -> None:
    if runtime.proc is None or runtime.proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(runtime.proc.pid, sig)


def _drop_tracking(pod: dict[str, Any]) -> None:
    pod["metadata"]["finalizers"] = [
        f for f in pod["metadata"].get("finalizers") or [] if f != TRACKING
    ]


def _drop_owner_and_tracking(pod: dict[str, Any]) -> None:
    _drop_tracking(pod)
    pod["metadata"]["ownerReferences"] = [
        r for r in pod["metadata"].get("ownerReferences") or [] if r.get("kind") != "Job"
    ]


def _expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' `$(VAR)` expansion; `$$(VAR)` stays literal; unknown names stay."""
    return re.sub(
        r"\$\$\(|\$\(([A-Za-z_][A-Za-z0-9_]*)\)",
        lambda m: "$(" if m.group(0) == "$$(" else env.get(m.group(1), m.group(0)),
        text,
    )


def _term_matches(term: dict[str, Any], labels: dict[str, str], node: str) -> bool:
    for field_expr in term.get("matchFields") or []:
        # the one field the API server allows here, with In/NotIn and one value
        if field_expr["key"] != "metadata.name" or field_expr["operator"] not in ("In", "NotIn"):
            raise ApiError(422, "Invalid", f"unsupported node field selector {field_expr}")
        if (node in (field_expr.get("values") or [])) != (field_expr["operator"] == "In"):
            return False
    for expr in term.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        value = labels.get(key)
        if op == "In" and value not in values:
            return False
        if op == "NotIn" and value in values:
            return False
        if op == "Exists" and value is None:
            return False
        if op == "DoesNotExist" and value is not None:
            return False
        if op in ("Gt", "Lt"):
            if value is None or not value.isdigit():
                return False
            if (op == "Gt") != (int(value) > int(values[0])):
                return False
    return True


def _preference(pod: dict[str, Any], node: dict[str, Any]) -> int:
    preferred = ((pod["spec"].get("affinity") or {}).get("nodeAffinity") or {}).get(
        "preferredDuringSchedulingIgnoredDuringExecution"
    ) or []
    labels = node["metadata"].get("labels") or {}
    return sum(
        int(p.get("weight", 0))
        for p in preferred
        if _term_matches(p.get("preference") or {}, labels, node["metadata"]["name"])
    )


def _tolerates(toleration: dict[str, Any], taint: dict[str, str]) -> bool:
    if toleration.get("effect") and toleration["effect"] != taint.get("effect"):
        return False
    if toleration.get("operator") == "Exists":
        return not toleration.get("key") or toleration["key"] == taint["key"]
    return toleration.get("key") == taint["key"] and toleration.get("value", "") == taint.get(
        "value", ""
    )


def _requests(pod: dict[str, Any]) -> dict[str, float]:
    total: dict[str, float] = {}
    for container in pod["spec"].get("containers") or []:
        resources = container.get("resources") or {}
        requested = {**(resources.get("limits") or {}), **(resources.get("requests") or {})}
        for res in ("cpu", "memory", "nvidia.com/gpu"):
            if res in requested:
                total[res] = total.get(res, 0.0) + quantity(requested[res])
    return total


def _failure_action(policy: dict[str, Any] | None, pod: dict[str, Any]) -> str:
    if not policy:
        return "Count"
    conditions = pod["status"].get("conditions") or []
    statuses = pod["status"].get("containerStatuses") or []
    for rule in policy.get("rules") or []:
        on_codes = rule.get("onExitCodes")
        if on_codes:
            for s in statuses:
                if on_codes.get("containerName") and s["name"] != on_codes["containerName"]:
                    continue
                code = ((s.get("state") or {}).get("terminated") or {}).get("exitCode")
                if code in (None, 0):
                    continue
                inside = code in (on_codes.get("values") or [])
                if inside == (on_codes.get("operator") == "In"):
                    return str(rule["action"])
        for wanted in rule.get("onPodConditions") or []:
            if any(
                c["type"] == wanted["type"] and c["status"] == wanted.get("status", "True")
                for c in conditions
            ):
                return str(rule["action"])
    return "Count"


def _condition(conditions: list[dict[str, Any]], kind: str) -> dict[str, Any] | None:
    return next((c for c in conditions if c["type"] == kind and c["status"] == "True"), None)


def _new_condition(kind: str, reason: str, message: str) -> dict[str, Any]:
    stamp = now_rfc3339()
    return {
        "type": kind,
        "status": "True",
        "reason": reason,
        "message": message,
        "lastProbeTime": stamp,
        "lastTransitionTime": stamp,
    }


def _parse_indexes(text: str) -> list[int]:
    out: list[int] = []
    for part in (text or "").split(","):
        if not part:
            continue
        low, _, high = part.partition("-")
        out.extend(range(int(low), int(high or low) + 1))
    return out


def _format_indexes(indexes: set[int]) -> str:
    parts, run = [], []
    for i in sorted(indexes):
        if run and i == run[-1] + 1:
            run.append(i)
            continue
        if run:
            parts.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
        run = [i]
    if run:
        parts.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
    return ",".join(parts)
