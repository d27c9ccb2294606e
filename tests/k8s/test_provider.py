"""The Kubernetes lifecycle through the real Pulumi provider server, over gRPC: check,
create (a secret stays secret), read (status from the fake cluster), delete."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pulumi_iterative.provider import TaskProvider
from pulumi_iterative.task import TaskRef
from tests.k8s.fake import FakeCluster, agent_host_env
from tests.k8s.helpers import eventually, leftovers
from tests.provider_server import Secret, provider_server

SCRIPT = """#!/bin/sh
set -e
mkdir -p results
echo "index $TASK_INDEX of $TASK_COUNT" > results/out-$TASK_INDEX.txt
test "$API_TOKEN" = "grpc-secret-value"
"""


@pytest.mark.timeout(240)
def test_k8s_task_through_the_provider_server(
    tmp_path: Path, workdir: Path, monkeypatch: pytest.MonkeyPatch, iterative_home: Path
) -> None:
    host_env = agent_host_env()
    with FakeCluster(tmp_path / "cluster", host_env=host_env) as cluster:
        monkeypatch.setenv("KUBECONFIG", str(cluster.kubeconfig))
        news = {
            "cloud": "kubernetes",
            "machine": "s",
            "spot": -1,
            "parallelism": 2,
            "script": SCRIPT,
            "secret_environment": Secret({"API_TOKEN": "grpc-secret-value"}),
            "storage": {"workdir": str(workdir), "output": "results"},
        }
        with provider_server(TaskProvider(), config={}) as server:
            inputs, failures = server.check("train", {}, news)
            assert failures == []
            _, failures = server.check("train", {}, {**news, "spot": 0.2})
            assert [f for f, _ in failures] == ["spot"]

            id_, outs = server.create("train", inputs)
            assert isinstance(outs["secret_environment"], Secret)
            ref = TaskRef.from_dict(outs["ref"])
            assert (ref.cloud, ref.extra["context"], ref.extra["namespace"]) == (
                "k8s",
                "fake",
                "work",
            )
            assert "grpc-secret-value" not in json.dumps(outs["ref"])
            eventually(
                lambda: server.read(id_, "train", outs)[1]["status"]["state"] == "succeeded",
                "the task to succeed, as the provider reads it",
                timeout=120,
            )
            _, outs = server.read(id_, "train", outs)
            assert outs["status"]["counts"] == {"succeeded": 2.0}
            assert any(e["message"].startswith("SuccessfulCreate") for e in outs["events"])
            server.delete(id_, "train", outs, old_inputs=inputs)
            assert "brought 2 output file(s) home" in server.stderr_text()
        assert (workdir / "results" / "out-1.txt").read_text() == "index 1 of 2\n"
        assert leftovers(cluster, ref.task_id) == []
