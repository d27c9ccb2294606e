"""The AWS lifecycle through the real Pulumi provider server, over gRPC."""

from __future__ import annotations

from pathlib import Path

import pytest

from pulumi_iterative.provider import TaskProvider
from pulumi_iterative.task import TaskRef
from tests.aws.conftest import Moto, leftovers
from tests.aws.simulator import MachineSimulator
from tests.provider_server import Secret, provider_server

SCRIPT = """#!/bin/sh
set -e
mkdir -p results
echo "index $TASK_INDEX of $TASK_COUNT" > results/out-$TASK_INDEX.txt
test "$API_TOKEN" = "grpc-secret-value"
"""


@pytest.mark.timeout(240)
def test_aws_task_through_the_provider_server(
    moto: Moto, simulator: MachineSimulator, workdir: Path
) -> None:
    (workdir / "train.py").write_text("print('hi')\n")
    news = {
        "cloud": "aws",
        "region": "us-east",
        "machine": "m+t4",
        "spot": 0,
        "parallelism": 2,
        "script": SCRIPT,
        "secret_environment": Secret({"API_TOKEN": "grpc-secret-value"}),
        "storage": {"workdir": str(workdir), "output": "results"},
    }
    # The server starts from this test's environment: moto endpoint, caller credentials.
    with provider_server(TaskProvider(), config={"iterative:cloud": "aws"}) as server:
        inputs, failures = server.check("train", {}, news)
        assert failures == []
        _, failures = server.check("train", {}, {**news, "machine": "m+tpu"})
        assert [f for f, _ in failures] == ["machine"]

        id_, outs = server.create("train", inputs)
        assert id_ == outs["task_id"]
        assert isinstance(outs["secret_environment"], Secret)  # re-marked secret by the engine
        ref = TaskRef.from_dict(outs["ref"])
        assert ref.cloud == "aws" and ref.region == "us-east-1"
        assert "grpc-secret-value" not in str(outs["ref"])

        simulator.start()
        simulator.wait_for(
            lambda: server.read(id_, "train", outs)[1]["status"]["state"] == "succeeded",
            "the task to succeed, as the provider reads it",
            timeout=120,
        )
        _, outs = server.read(id_, "train", outs)
        status = outs["status"]
        assert status["counts"] == {"succeeded": 2.0}
        assert {m["instance"] for m in status["machines"]} <= set(simulator.machines)
        assert any("index" in e["message"] or e["kind"] == "start" for e in outs["events"])

        server.delete(id_, "train", outs, old_inputs=inputs)
        assert "brought 2 output file(s) home" in server.stderr_text()
    assert sorted(p.name for p in (workdir / "results").iterdir()) == ["out-0.txt", "out-1.txt"]
    assert (workdir / "results" / "out-1.txt").read_text() == "index 1 of 2\n"
    assert leftovers(moto, ref.task_id) == []
