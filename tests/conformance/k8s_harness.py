"""Kubernetes in the conformance suite: the fake cluster (tests/k8s/fake) runs the Job's
pods as local processes; each runs the container command the backend stored, which is
the bootstrap from the task's ConfigMap, mounted as the pod would see it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pulumi_iterative.agent.bootstrap import SKIP_INSTALL_ENV
from pulumi_iterative.clouds.k8s.names import TASK_LABEL, Names
from pulumi_iterative.clouds.k8s.resources.job import BACKOFF_PER_INDEX
from pulumi_iterative.spec import TaskSpec, parse_spec
from pulumi_iterative.task import TaskRef
from tests.k8s.helpers import eventually, leftovers

if TYPE_CHECKING:
    from tests.k8s.fake import FakeCluster

INDEX = "batch.kubernetes.io/job-completion-index"


class K8sHarness:
    name = "k8s"
    script_tries = 1 + BACKOFF_PER_INDEX  # the Job retries a failed pod for its index
    steps = (
        "Create volume",
        "Upload workdir",
        "Store task definition",
        "Create machine identity",
        "Create task config",
        "Create task secret",
        "Start job",
    )
    xfail: dict[str, str] = {}  # every scenario runs

    def __init__(self, cluster: FakeCluster) -> None:
        self.cluster = cluster
        self.caller_secrets = (cluster.admin_token,)

    def spec(self, workdir: Path, script: str, **args: Any) -> TaskSpec:
        storage = {"workdir": str(workdir), **args.pop("storage", {})}
        raw = {"cloud": "k8s", "region": "local", "machine": "s", "script": script}
        return parse_spec({**raw, "storage": storage, **args})

    def start(self) -> None:
        return None  # the fake's kubelet starts the Job's pods itself

    def _pods(self, task_id: str) -> list[dict[str, Any]]:
        return [
            p
            for p in self.cluster.objects("pods")
            if (p["metadata"].get("labels") or {}).get(TASK_LABEL) == task_id
        ]

    def preempt(self, ref: TaskRef, index: int) -> str:
        """The pod's spot node is reclaimed at once: DisruptionTarget, SIGTERM, a short
        grace."""
        return self._disrupt(ref, index, grace=5)

    def take_away(self, ref: TaskRef, index: int) -> str:
        """The notice a pod gets: the node drains for its shutdown, so the kubelet sends
        SIGTERM to the container (a runtime signals its first process, the bootstrap,
        which forwards it to the agent; the fake signals the container's process group,
        which the script's own session is not in) and SIGKILLs what is left after the
        pod's termination grace period. The script hears of it from the agent."""
        return self._disrupt(ref, index, grace=None)

    def _disrupt(self, ref: TaskRef, index: int, *, grace: int | None) -> str:
        (pod,) = [
            p
            for p in self._pods(ref.task_id)
            if (p["metadata"].get("annotations") or {}).get(INDEX) == str(index)
            and p["status"].get("phase") == "Running"
            and not p["metadata"].get("deletionTimestamp")
        ]
        name = pod["metadata"]["name"]
        self.cluster.disrupt(
            pod["metadata"]["namespace"],
            name,
            "TerminationByKubelet",
            "Pod was terminated in response to imminent node shutdown.",
            event=("Killing", "Stopping container: the node is being reclaimed (spot)"),
            grace=grace,
        )
        return name

    def running_machines(self, ref: TaskRef) -> list[str]:
        live = set(self.cluster._running_uids())
        return [
            p["metadata"]["name"] for p in self._pods(ref.task_id) if p["metadata"]["uid"] in live
        ]

    def backstop(self, ref: TaskRef) -> float | None:
        from tests.k8s.fake.store import parse_time

        names = Names(ref.task_id)
        job = eventually(
            lambda: next(
                (
                    j
                    for j in self.cluster.objects("jobs")
                    if j["metadata"]["name"] == names.job and j["status"].get("startTime")
                ),
                None,
            ),
            "the Job to start",
        )
        return parse_time(job["status"]["startTime"]) + int(job["spec"]["activeDeadlineSeconds"])

    def leftovers(self, task_id: str) -> list[str]:
        return leftovers(self.cluster, task_id)

    def stored(self, ref: TaskRef) -> str:
        """Every object the cluster keeps or kept, Secrets aside (that is their place)."""
        objects = [
            obj
            for obj in list(self.cluster.store.objects.values()) + self.cluster.store.deleted
            if obj.get("kind") != "Secret"
        ]
        return json.dumps(objects, sort_keys=True)

    def break_install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setitem(self.cluster.host_env, SKIP_INSTALL_ENV, "/nonexistent/python3")

    def report(self) -> str:
        lines = [f"controller errors: {self.cluster.errors}"]
        for pod in self.cluster.objects("pods"):
            lines.append(f"pod {pod['metadata']['name']}: {json.dumps(pod['status'])[:600]}")
        for path in sorted((self.cluster.root / "pods").glob("*.log")):
            lines.append(f"--- {path.name}\n{path.read_text(errors='replace')[-3000:]}")
        for event in self.cluster.objects("events"):
            lines.append(
                f"event {event['involvedObject']['name']}: {event['reason']} {event['message']}"
            )
        return "\n".join(lines)


@pytest.fixture
def k8s_harness(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, iterative_home: Path
) -> Iterator[K8sHarness]:
    pytest.importorskip("kubernetes")  # without the k8s extra only this cloud is skipped
    from tests.k8s.fake import FakeCluster, agent_host_env

    host_env = agent_host_env()
    with FakeCluster(tmp_path / "k8s", host_env=host_env) as cluster:
        monkeypatch.setenv("KUBECONFIG", str(cluster.kubeconfig))
        yield K8sHarness(cluster)
        assert not cluster.errors, cluster.errors
