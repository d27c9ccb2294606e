"""One module per object, against the fake: bodies the API server accepts strictly,
create-reads-first, delete-missing-is-done, the task's identity scoped by RBAC, and
the Job's placement, machine and failure policy as request content."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config

from pulumi_iterative.clouds.k8s import catalog
from pulumi_iterative.clouds.k8s.api import K8sError, Kube
from pulumi_iterative.clouds.k8s.machine import EXIT_BUDGET, EXIT_TIMEOUT
from pulumi_iterative.clouds.k8s.names import BOOTSTRAP_KEY, CONTAINER, TASK_LABEL, Names
from pulumi_iterative.clouds.k8s.resources import claim, identity, job
from pulumi_iterative.clouds.k8s.resources import config as cfg
from pulumi_iterative.errors import NotFound
from tests.k8s.fake import FakeCluster
from tests.k8s.helpers import eventually, leftovers

NAMES = Names("train-abcdefgh12")
SECRET = "hunter2-do-not-leak"


def _job_body(spot: float = -1, machine: str = "m", n: int = 2, **kw: Any) -> dict[str, Any]:
    return job.job_body(
        NAMES,
        image="ubuntu:24.04",
        machine=catalog.resolve_machine(machine),
        spot=spot,
        parallelism=n,
        deadline_seconds=3600,
        service_account=NAMES.service_account,
        secret_keys=["API_TOKEN"],
        plain_env={},
        bucket_claim=True,
        labels={},
        **kw,
    )


def test_the_job_is_indexed_with_a_policy_that_ignores_disruptions() -> None:
    spec = _job_body(n=3)["spec"]
    assert (spec["completionMode"], spec["completions"], spec["parallelism"]) == ("Indexed", 3, 3)
    assert spec["podFailurePolicy"]["rules"] == [
        {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
        {
            "action": "FailIndex",
            "onExitCodes": {
                "containerName": CONTAINER,
                "operator": "In",
                "values": [EXIT_TIMEOUT, EXIT_BUDGET],
            },
        },
    ]
    assert spec["backoffLimitPerIndex"] >= 1 and spec["activeDeadlineSeconds"] == 3600
    assert spec["ttlSecondsAfterFinished"] > 0
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never" and pod["terminationGracePeriodSeconds"] >= 60
    assert pod["automountServiceAccountToken"] is False
    assert pod["serviceAccountName"] == NAMES.service_account


def test_spot_requires_any_spot_pool_and_tolerates_each() -> None:
    pod = _job_body(spot=0)["spec"]["template"]["spec"]
    terms = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"
    ]
    assert [t["matchExpressions"] for t in terms] == [
        [{"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["spot"]}],
        [{"key": "cloud.google.com/gke-spot", "operator": "In", "values": ["true"]}],
        [{"key": "kubernetes.azure.com/scalesetpriority", "operator": "In", "values": ["spot"]}],
    ]
    assert {(t["key"], t["value"], t["effect"]) for t in pod["tolerations"]} == {
        ("karpenter.sh/capacity-type", "spot", "NoSchedule"),
        ("cloud.google.com/gke-spot", "true", "NoSchedule"),
        ("kubernetes.azure.com/scalesetpriority", "spot", "NoSchedule"),
    }


def test_on_demand_avoids_every_spot_pool() -> None:
    pod = _job_body(spot=-1)["spec"]["template"]["spec"]
    (term,) = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"
    ]
    assert {(e["key"], e["operator"]) for e in term["matchExpressions"]} == {
        ("karpenter.sh/capacity-type", "NotIn"),
        ("cloud.google.com/gke-spot", "NotIn"),
        ("kubernetes.azure.com/scalesetpriority", "NotIn"),
    }
    assert "tolerations" not in pod


def test_a_gpu_machine_asks_for_the_gpu_and_its_product() -> None:
    pod = _job_body(machine="m+t4")["spec"]["template"]["spec"]
    resources = pod["containers"][0]["resources"]
    assert (
        resources["limits"]
        == resources["requests"]
        == {"cpu": "3", "memory": "12Gi", "nvidia.com/gpu": "1"}
    )
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "Tesla-T4"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod[
        "tolerations"
    ]
    assert "nodeSelector" not in _job_body(machine="m")["spec"]["template"]["spec"]


def test_tags_are_an_annotation_on_the_job_and_its_pods() -> None:
    body = _job_body(annotations={"pulumi-iterative/tags": '{"team": "ml"}'})
    assert body["metadata"]["annotations"] == {"pulumi-iterative/tags": '{"team": "ml"}'}
    assert body["spec"]["template"]["metadata"]["annotations"] == body["metadata"]["annotations"]


def test_secrets_are_referenced_never_inlined() -> None:
    text = json.dumps(_job_body())
    container = _job_body()["spec"]["template"]["spec"]["containers"][0]
    assert {
        "name": "API_TOKEN",
        "valueFrom": {"secretKeyRef": {"name": NAMES.secret, "key": "API_TOKEN"}},
    } in container["env"]
    assert SECRET not in text


def _bootstrap_files(script: str) -> dict[str, str]:
    return {BOOTSTRAP_KEY: script, "task.json": "{}"}


def test_the_objects_run_a_task_on_the_fake_and_go_away(cluster: FakeCluster, kube: Kube) -> None:
    bootstrap = (
        "mkdir -p volume/bucket; i=$JOB_COMPLETION_INDEX; "
        'echo "$i $API_TOKEN $TASK_POD_NAME" > volume/bucket/$i\n'
    )
    cfg.create_config_map(kube, NAMES, _bootstrap_files(bootstrap))
    cfg.create_secret(kube, NAMES, {"API_TOKEN": SECRET})
    identity.create_identity(kube, NAMES)
    claim.create_claim(
        kube, NAMES, claim.claim_body(NAMES, parallelism=2, size_gb=1, storage_class="fast")
    )
    job.create_job(kube, NAMES, _job_body())
    eventually(lambda: job.read_job(kube, NAMES).status.completed_indexes == "0-1", "both indexes")
    volume = cluster.claim_dir(
        "work", NAMES.claim, cluster.objects("persistentvolumeclaims")[0]["metadata"]["uid"]
    )
    pods = {p.metadata.name for p in job.task_pods(kube, NAMES)}
    lines = sorted((volume / "bucket" / str(i)).read_text().split() for i in range(2))
    assert [line[:2] for line in lines] == [["0", SECRET], ["1", SECRET]]
    assert {line[2] for line in lines} == pods
    # no secret in any stored Job, Pod or ConfigMap
    for plural in ("jobs", "pods", "configmaps"):
        assert SECRET not in json.dumps(cluster.objects(plural)), plural
    # every create was strict
    creates = cluster.api.requests(verb="create", user="admin")
    assert creates and all(e.query.get("fieldValidation") == "Strict" for e in creates)
    job.delete_job(kube, NAMES)
    for remove in (
        cfg.delete_config_map,
        cfg.delete_secret,
        identity.delete_identity,
        claim.delete_claim,
    ):
        remove(kube, NAMES)
    eventually(lambda: not leftovers(cluster, NAMES.task_id), "nothing left")


def test_create_reads_first_and_refuses_what_is_not_ours(cluster: FakeCluster, kube: Kube) -> None:
    cfg.create_config_map(kube, NAMES, _bootstrap_files("true"))
    cfg.create_config_map(kube, NAMES, _bootstrap_files("true"))
    assert len(cluster.api.requests(verb="create", resource="configmaps")) == 1
    other = Names("other-abcdefgh12")
    client.CoreV1Api(cluster.client()).create_namespaced_secret(
        "work", {"metadata": {"name": other.secret, "labels": {TASK_LABEL: "someone-else"}}}
    )
    with pytest.raises(K8sError, match="does not belong to task other-abcdefgh12"):
        cfg.create_secret(kube, other, {"A": "b"})


def test_deleting_what_is_missing_is_done(kube: Kube) -> None:
    cfg.delete_config_map(kube, NAMES)
    cfg.delete_secret(kube, NAMES)
    identity.delete_identity(kube, NAMES)
    claim.delete_claim(kube, NAMES)
    with pytest.raises(NotFound):  # the step runner treats it as done
        job.delete_job(kube, NAMES)


def test_the_task_identity_reads_only_its_own_objects(
    cluster: FakeCluster, kube: Kube, tmp_path: Path
) -> None:
    identity.create_identity(kube, NAMES)
    cfg.create_config_map(kube, NAMES, _bootstrap_files("true"))
    cfg.create_secret(kube, NAMES, {"A": "b"})
    other = Names("other-abcdefgh12")
    cfg.create_secret(kube, other, {"A": "theirs"})
    cluster.reconcile()
    token = cluster.token_for("work", NAMES.service_account)
    as_task = client.CoreV1Api(
        config.new_client_from_config(str(cluster.write_kubeconfig(tmp_path / "k", token)))
    )
    assert as_task.read_namespaced_secret(NAMES.secret, "work").data
    assert as_task.read_namespaced_config_map(NAMES.config_map, "work").data
    for attempt in (
        lambda: as_task.read_namespaced_secret(other.secret, "work"),
        lambda: as_task.list_namespaced_secret("work"),
        lambda: as_task.list_namespaced_pod("work"),
    ):
        with pytest.raises(client.ApiException) as denied:
            attempt()
        assert denied.value.status == 403


def test_the_claim_is_shared_only_when_several_pods_use_it() -> None:
    assert claim.claim_body(NAMES, parallelism=1, size_gb=5, storage_class="")["spec"] == {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": "5Gi"}},
    }
    shared = claim.claim_body(NAMES, parallelism=4, size_gb=5, storage_class="efs")["spec"]
    assert shared["accessModes"] == ["ReadWriteMany"] and shared["storageClassName"] == "efs"
