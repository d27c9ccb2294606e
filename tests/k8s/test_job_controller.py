"""The fake's Job controller and kubelet: pods per index as local processes, their
env and mounts, disruptions the pod failure policy ignores, failures it counts,
the deadline, scheduling by labels and taints, and foreground deletion."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kubernetes import client

from tests.k8s.fake import FakeCluster, NodeSpec
from tests.k8s.helpers import eventually

NS = "work"
IGNORE_DISRUPTIONS = {
    "rules": [
        {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]}
    ]
}


def _job(name: str, script: str, *, n: int = 1, **spec: Any) -> dict[str, Any]:
    container = {
        "name": "main",
        "image": "ubuntu:24.04",
        "command": ["/bin/sh", "-c", script],
        "workingDir": "/w",
        "env": [{"name": "SECRET", "valueFrom": {"secretKeyRef": {"name": "s", "key": "SECRET"}}}],
        "volumeMounts": [
            {"name": "cfg", "mountPath": "/w/cfg"},
            {"name": "out", "mountPath": "/w/out"},
        ],
    }
    return {
        "metadata": {"name": name},
        "spec": {
            "completionMode": "Indexed",
            "completions": n,
            "parallelism": n,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "terminationGracePeriodSeconds": 5,
                    "containers": [container],
                    "volumes": [
                        {"name": "cfg", "configMap": {"name": "cm"}},
                        {"name": "out", "persistentVolumeClaim": {"claimName": "pvc"}},
                    ],
                }
            },
            **spec,
        },
    }


def _setup(cluster: FakeCluster) -> tuple[Any, Any, Path]:
    api = cluster.client()
    core, batch = client.CoreV1Api(api), client.BatchV1Api(api)
    core.create_namespaced_config_map(
        NS, {"metadata": {"name": "cm"}, "data": {"greeting": "hello"}}
    )
    core.create_namespaced_secret(
        NS, {"metadata": {"name": "s"}, "stringData": {"SECRET": "s3cret"}}
    )
    made = core.create_namespaced_persistent_volume_claim(
        NS,
        {
            "metadata": {"name": "pvc"},
            "spec": {
                "accessModes": ["ReadWriteMany"],
                "resources": {"requests": {"storage": "1Gi"}},
            },
        },
    )
    folder = cluster.claim_dir(NS, "pvc", made.metadata.uid)
    eventually(
        lambda: core.read_namespaced_persistent_volume_claim("pvc", NS).status.phase == "Bound",
        "the claim to bind",
    )
    return core, batch, folder


def _condition(batch: Any, name: str) -> str:
    job = batch.read_namespaced_job(name, NS)
    done = [
        c.type
        for c in job.status.conditions or []
        if c.type in ("Complete", "Failed") and c.status == "True"
    ]
    return done[0] if done else ""


def test_each_index_runs_with_its_env_and_mounts(cluster: FakeCluster) -> None:
    core, batch, folder = _setup(cluster)
    script = (
        'echo "$JOB_COMPLETION_INDEX $(cat cfg/greeting) $SECRET" > out/$JOB_COMPLETION_INDEX.txt'
    )
    batch.create_namespaced_job(NS, _job("j", script, n=3))
    assert eventually(lambda: _condition(batch, "j"), "the job to finish") == "Complete"
    job = batch.read_namespaced_job("j", NS)
    assert (job.status.succeeded, job.status.failed, job.status.completed_indexes) == (3, 0, "0-2")
    assert {p.name: p.read_text() for p in folder.iterdir()} == {
        f"{i}.txt": f"{i} hello s3cret\n" for i in range(3)
    }
    pods = core.list_namespaced_pod(NS, label_selector="job-name=j").items
    assert sorted(
        p.metadata.annotations["batch.kubernetes.io/job-completion-index"] for p in pods
    ) == ["0", "1", "2"]
    assert all(
        p.metadata.name.startswith(
            f"j-{p.metadata.annotations['batch.kubernetes.io/job-completion-index']}-"
        )
        for p in pods
    )
    reasons = {e.reason for e in core.list_namespaced_event(NS).items}
    assert {"SuccessfulCreate", "Scheduled", "Started", "Completed"} <= reasons


def test_a_reclaimed_node_is_a_disruption_the_policy_ignores(cluster: FakeCluster) -> None:
    core, batch, folder = _setup(cluster)
    # the first boot of each index waits to be taken away; the second one finishes
    # (the trap is set before the boot is recorded, so a SIGTERM never finds it missing)
    script = (
        "f=out/boots-$JOB_COMPLETION_INDEX; n=$(( $(cat $f 2>/dev/null | wc -l) + 1 )); "
        'if [ "$n" -eq 1 ]; then trap "echo term >> out/term; exit 143" TERM; fi; '
        'echo x >> $f; if [ "$n" -eq 1 ]; then while true; do sleep 0.1; done; fi'
    )
    batch.create_namespaced_job(
        NS, _job("j", script, n=2, podFailurePolicy=IGNORE_DISRUPTIONS, backoffLimitPerIndex=0)
    )
    eventually(lambda: len(list(folder.glob("boots-*"))) == 2, "both first boots")
    node = core.list_namespaced_pod(NS).items[0].spec.node_name
    replacement = cluster.reclaim_node(node)
    assert eventually(lambda: _condition(batch, "j"), "the job to finish", timeout=60) == "Complete"
    job = batch.read_namespaced_job("j", NS)
    assert job.status.failed == 0, "a disruption must not count as a failure"
    assert (folder / "term").read_text().count("term") == 2, "SIGTERM reached the processes"
    # the disrupted pods were deleted (as the API server does, once the Job counted them)
    gone = [p for p in cluster.store.deleted if p["kind"] == "Pod"]
    assert len(gone) == 2 and all(p["status"]["phase"] == "Failed" for p in gone)
    assert all(
        [c["reason"] for c in p["status"]["conditions"] if c["type"] == "DisruptionTarget"]
        == ["TerminationByKubelet"]
        for p in gone
    )
    pods = core.list_namespaced_pod(NS).items
    assert len(pods) == 2 and all(p.status.phase == "Succeeded" for p in pods)
    assert {p.spec.node_name for p in pods} <= {replacement, "ondemand-1", "spot-1"} - {node}
    assert "Killing" in {e.reason for e in core.list_namespaced_event(NS).items}


def test_failures_count_per_index_and_fail_the_job(cluster: FakeCluster) -> None:
    _, batch, folder = _setup(cluster)
    script = 'echo x >> out/tries-$JOB_COMPLETION_INDEX; [ "$JOB_COMPLETION_INDEX" = 0 ] || exit 3'
    batch.create_namespaced_job(
        NS, _job("j", script, n=2, podFailurePolicy=IGNORE_DISRUPTIONS, backoffLimitPerIndex=1)
    )
    assert eventually(lambda: _condition(batch, "j"), "the job to fail") == "Failed"
    job = batch.read_namespaced_job("j", NS)
    assert (job.status.completed_indexes, job.status.failed_indexes, job.status.failed) == (
        "0",
        "1",
        2,
    )
    assert (folder / "tries-1").read_text().count("x") == 2  # the first try and one retry
    assert [c.reason for c in job.status.conditions if c.type == "Failed"] == ["FailedIndexes"]


def test_the_active_deadline_stops_the_pods(cluster: FakeCluster) -> None:
    _, batch, _ = _setup(cluster)
    batch.create_namespaced_job(NS, _job("j", "sleep 60", activeDeadlineSeconds=1))
    assert eventually(lambda: _condition(batch, "j"), "the deadline", timeout=60) == "Failed"
    job = batch.read_namespaced_job("j", NS)
    assert [c.reason for c in job.status.conditions if c.type == "Failed"] == ["DeadlineExceeded"]
    eventually(lambda: not cluster.live_processes(), "the pod's process to end")


def test_pods_go_only_where_labels_taints_and_gpus_allow(tmp_path: Path) -> None:
    from tests.k8s.fake import default_host_env

    nodes = (
        NodeSpec("cpu-1", {"karpenter.sh/capacity-type": "on-demand"}),
        NodeSpec(
            "gpu-1",
            {"nvidia.com/gpu.product": "Tesla-T4"},
            [{"key": "nvidia.com/gpu", "value": "", "effect": "NoSchedule"}],
            gpus=1,
        ),
    )
    with FakeCluster(tmp_path, nodes=nodes, host_env=default_host_env()) as cluster:
        core = client.CoreV1Api(cluster.client())

        def pod(name: str, gpus: int, tolerate: bool, product: str) -> None:
            spec: dict[str, Any] = {
                "restartPolicy": "Never",
                "nodeSelector": {"nvidia.com/gpu.product": product},
                "containers": [
                    {
                        "name": "c",
                        "image": "x",
                        "command": ["true"],
                        "resources": {"limits": {"nvidia.com/gpu": str(gpus)}},
                    }
                ],
            }
            if tolerate:
                spec["tolerations"] = [
                    {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
                ]
            core.create_namespaced_pod(NS, {"metadata": {"name": name}, "spec": spec})

        pod("fits", 1, True, "Tesla-T4")
        pod("untolerated", 1, False, "Tesla-T4")
        pod("no-such-gpu", 1, True, "NVIDIA-H100-80GB-HBM3")
        eventually(
            lambda: core.read_namespaced_pod("fits", NS).spec.node_name == "gpu-1",
            "the GPU pod to land",
        )

        def failed_scheduling() -> set[str]:
            return {
                e.involved_object.name
                for e in core.list_namespaced_event(NS).items
                if e.reason == "FailedScheduling"
            }

        assert eventually(
            lambda: failed_scheduling() >= {"untolerated", "no-such-gpu"}, "FailedScheduling events"
        )
        assert core.read_namespaced_pod("untolerated", NS).spec.node_name is None


def test_foreground_delete_takes_the_pods_first(cluster: FakeCluster) -> None:
    core, batch, _ = _setup(cluster)
    batch.create_namespaced_job(
        NS, _job("j", "trap 'exit 143' TERM; while true; do sleep 0.1; done", n=2)
    )
    eventually(lambda: len(cluster.live_processes()) == 2, "both pods to run")
    batch.delete_namespaced_job("j", NS, propagation_policy="Foreground")
    assert batch.read_namespaced_job("j", NS).metadata.deletion_timestamp is not None
    eventually(lambda: not batch.list_namespaced_job(NS).items, "the job to go")
    assert not core.list_namespaced_pod(NS).items and not cluster.live_processes()


def test_a_missing_secret_keeps_the_pod_waiting(cluster: FakeCluster) -> None:
    core = client.CoreV1Api(cluster.client())
    core.create_namespaced_pod(
        NS,
        {
            "metadata": {"name": "p"},
            "spec": {
                "restartPolicy": "Never",
                "containers": [
                    {
                        "name": "c",
                        "image": "x",
                        "command": ["true"],
                        "env": [
                            {
                                "name": "A",
                                "valueFrom": {"secretKeyRef": {"name": "absent", "key": "A"}},
                            }
                        ],
                    }
                ],
            },
        },
    )
    waiting = eventually(
        lambda: (core.read_namespaced_pod("p", NS).status.container_statuses or [None])[0],
        "a container status",
    )
    assert waiting.state.waiting.reason == "CreateContainerConfigError"
    assert not cluster.live_processes()
