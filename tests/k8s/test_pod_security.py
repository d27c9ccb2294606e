"""The restricted Pod Security Standard: the fake enforces it on a namespace labelled
`pod-security.kubernetes.io/enforce: restricted`, with the API server's Forbidden
message; a whole task (its transfer pods and its Job's pods) runs in such a namespace,
as a non-root user writing only to its mounts."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pulumi_iterative import lifecycle
from pulumi_iterative.clouds.k8s.api import K8sError, Kube, Target, call
from pulumi_iterative.clouds.k8s.names import ROLE_LABEL
from pulumi_iterative.clouds.k8s.security import RUN_AS_USER
from pulumi_iterative.spec import parse_spec
from pulumi_iterative.status import State
from tests.k8s.fake import BY_PLURAL, FakeCluster, agent_host_env
from tests.k8s.fake.podsecurity import ENFORCE_LABEL
from tests.k8s.helpers import eventually, leftovers


def _restrict(cluster: FakeCluster) -> None:
    def label(ns: dict[str, Any]) -> None:
        ns["metadata"].setdefault("labels", {})[ENFORCE_LABEL] = "restricted"

    cluster.store.update(BY_PLURAL["namespaces"], "", cluster.namespace, label)


@pytest.fixture
def restricted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, iterative_home: Path
) -> Iterator[FakeCluster]:
    host_env = agent_host_env()
    with FakeCluster(tmp_path / "cluster", host_env=host_env) as cluster:
        _restrict(cluster)
        monkeypatch.setenv("KUBECONFIG", str(cluster.kubeconfig))
        yield cluster
        assert not cluster.errors


def test_a_root_pod_is_refused_with_the_api_servers_message(restricted: FakeCluster) -> None:
    kube = Kube(Target(kubeconfig=str(restricted.kubeconfig)))
    body = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "rooty"},
        "spec": {"containers": [{"name": "main", "image": "ubuntu", "command": ["true"]}]},
    }
    with pytest.raises(K8sError) as refused:
        call(kube.core.create_namespaced_pod, "work", body)
    said = str(refused.value)
    assert refused.value.status == 403 and refused.value.reason == "Forbidden"
    assert 'pods "rooty" is forbidden: violates PodSecurity "restricted:latest": ' in said
    for check in (
        'allowPrivilegeEscalation != false (container "main" must set '
        "securityContext.allowPrivilegeEscalation=false)",
        'unrestricted capabilities (container "main" must set '
        'securityContext.capabilities.drop=["ALL"])',
        'runAsNonRoot != true (pod or container "main" must set securityContext.runAsNonRoot=true)',
        'seccompProfile (pod or container "main" must set securityContext.seccompProfile.type '
        'to "RuntimeDefault" or "Localhost")',
    ):
        assert check in said
    assert not restricted.objects("pods")


def test_a_whole_task_runs_in_a_restricted_namespace(
    restricted: FakeCluster, tmp_path: Path
) -> None:
    workdir = tmp_path / "project"
    workdir.mkdir()
    (workdir / "in.txt").write_text("input")
    spec = parse_spec(
        {
            "cloud": "k8s",
            "machine": "s",
            "parallelism": 2,
            "script": '#!/bin/sh\nmkdir -p out\necho "$HOME" > out/home-$TASK_INDEX.txt\n',
            "storage": {"workdir": str(workdir), "output": "out"},
        }
    )
    ref = lifecycle.create(spec)
    status = eventually(lambda: (s := lifecycle.read(ref)).done and s, "the task", timeout=120)
    assert status.state == State.SUCCEEDED, status.to_dict()
    pods = restricted.objects("pods")
    roles = {p["metadata"]["labels"][ROLE_LABEL] for p in pods}
    assert roles == {"machine", "transfer"} or roles == {"machine"}
    for pod in pods:
        assert pod["spec"]["securityContext"]["runAsUser"] == RUN_AS_USER
    audit = restricted.api.requests(verb="create", resource="pods")
    assert audit and all(e.code == 201 for e in audit), "no pod was refused"
    lifecycle.delete(ref)
    homes = sorted((workdir / "out").iterdir())
    assert len(homes) == 2
    assert all(p.read_text().strip().endswith("/pulumi-iterative/scratch") for p in homes)
    assert leftovers(restricted, ref.task_id) == []
