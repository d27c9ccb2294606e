"""The Azure lifecycle through the real Pulumi provider server, over gRPC."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from pulumi_iterative.provider import TaskProvider
from pulumi_iterative.task import TaskRef
from tests.azure.conftest import Cloud, leftovers
from tests.azure.simulator import MachineSimulator
from tests.provider_server import Secret, provider_server

SCRIPT = """#!/bin/sh
set -e
mkdir -p results
echo "index $TASK_INDEX of $TASK_COUNT" > results/out-$TASK_INDEX.txt
test "$API_TOKEN" = "grpc-secret-value"
"""


@pytest.mark.timeout(240)
def test_azure_task_through_the_provider_server(
    azure_cloud: Cloud, azure_simulator: MachineSimulator, workdir: Path
) -> None:
    news = {
        "cloud": "azure",
        "region": "eu-west",
        "machine": "m+t4",
        "spot": 0,
        "parallelism": 2,
        "script": SCRIPT,
        "secret_environment": Secret({"API_TOKEN": "grpc-secret-value"}),
        "storage": {"workdir": str(workdir), "output": "results"},
    }
    # The server starts from this test's environment: the fakes, the caller's `az`.
    with provider_server(TaskProvider(), config={"iterative:cloud": "azure"}) as server:
        inputs, failures = server.check("train", {}, news)
        assert failures == []
        _, failures = server.check("train", {}, {**news, "permission_set": "not-an-id"})
        assert [f for f, _ in failures] == ["permission_set"]

        id_, outs = server.create("train", inputs)
        assert isinstance(outs["secret_environment"], Secret)  # re-marked secret by the engine
        ref = TaskRef.from_dict(outs["ref"])
        assert ref.cloud == "azure" and ref.region == "westeurope"
        assert "grpc-secret-value" not in str(outs["ref"])
        (scale_set,) = azure_cloud.arm.fake.find("Microsoft.Compute/virtualMachineScaleSets")
        assert scale_set["sku"]["name"] == "Standard_NC4as_T4_v3"

        azure_simulator.start()
        end = time.monotonic() + 150
        while server.read(id_, "train", outs)[1]["status"]["state"] != "succeeded":
            assert time.monotonic() < end, azure_simulator.report()
            time.sleep(0.5)
        _, outs = server.read(id_, "train", outs)
        assert outs["status"]["counts"] == {"succeeded": 2.0}
        server.delete(id_, "train", outs, old_inputs=inputs)
        assert "brought 2 output file(s) home" in server.stderr_text()
    assert sorted(p.name for p in (workdir / "results").iterdir()) == ["out-0.txt", "out-1.txt"]
    assert leftovers(azure_cloud, ref.task_id) == []
