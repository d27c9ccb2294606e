"""The GCP lifecycle through the real Pulumi provider server, over gRPC."""

from __future__ import annotations

from pathlib import Path

import pytest

from pulumi_iterative.provider import TaskProvider
from pulumi_iterative.task import TaskRef
from tests.gcp.conftest import Gcp, leftovers
from tests.gcp.simulator import MachineSimulator
from tests.provider_server import Secret, provider_server

SCRIPT = """#!/bin/sh
set -e
mkdir -p results
echo "index $TASK_INDEX of $TASK_COUNT" > results/out-$TASK_INDEX.txt
test "$API_TOKEN" = "grpc-secret-value"
"""


@pytest.mark.timeout(240)
def test_gcp_task_through_the_provider_server(
    gcp: Gcp, gcp_simulator: MachineSimulator, workdir: Path
) -> None:
    news = {
        "cloud": "gcp",
        "region": "us-east",
        "machine": "s",
        "spot": 0,
        "parallelism": 2,
        "script": SCRIPT,
        "secret_environment": Secret({"API_TOKEN": "grpc-secret-value"}),
        "storage": {"workdir": str(workdir), "output": "results"},
        "tags": {"team": "ml"},
    }
    # The server starts from this test's environment: the fakes' endpoints, the project.
    with provider_server(TaskProvider(), config={"iterative:cloud": "gcp"}) as server:
        inputs, failures = server.check("train", {}, news)
        assert failures == []
        bad = {**news, "permission_set": "someone", "tags": {"Team": "ML"}}
        _, failures = server.check("train", {}, bad)
        assert sorted(f for f, _ in failures) == ["permission_set", "tags.Team"]

        id_, outs = server.create("train", inputs)
        ref = TaskRef.from_dict(outs["ref"])
        assert ref.cloud == "gcp" and ref.region == "us-east1"
        assert "grpc-secret-value" not in str(outs["ref"])

        gcp_simulator.start()
        gcp_simulator.wait_for(
            lambda: server.read(id_, "train", outs)[1]["status"]["state"] == "succeeded",
            "the task to succeed, as the provider reads it",
            timeout=120,
        )
        _, outs = server.read(id_, "train", outs)
        assert outs["status"]["counts"] == {"succeeded": 2.0}
        server.delete(id_, "train", outs, old_inputs=inputs)
    assert sorted(p.name for p in (workdir / "results").iterdir()) == ["out-0.txt", "out-1.txt"]
    assert leftovers(gcp, ref.task_id) == []
