"""A team's AWS stack through the real provider server (moto): Alice creates from her
checkout; Bob (or CI), from another checkout path, shell and an unusable home, runs a
no-op `up`, a refresh and a destroy that brings the outputs into his checkout."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.aws.conftest import Moto, leftovers
from tests.aws.simulator import MachineSimulator
from tests.team import two_workstations

SCRIPT = """#!/bin/sh
set -e
mkdir -p results
echo "$GREETING $TASK_INDEX" > results/out-$TASK_INDEX.txt
"""


@pytest.mark.timeout(300)
def test_a_teammate_changes_nothing_and_destroys_into_their_checkout(
    moto: Moto, simulator: MachineSimulator, tmp_path: Path
) -> None:
    alice, bob = two_workstations(tmp_path)
    program = {
        "cloud": "aws",
        "region": "us-east",
        "machine": "s",
        "parallelism": 2,
        "script": SCRIPT,
        "environment": {"GREETING": ""},
        "storage": {"workdir": ".", "output": "results"},
    }
    with alice.server() as a:
        inputs, failures = a.check("train", {}, program)
        assert failures == []
        id_, state = a.create("train", inputs)
        assert state["bucket"] == f"s3://pulumi-iterative-{id_}"
        assert state["ref"]["workdir"] == "." and str(alice.checkout) not in str(state)
        simulator.start()
        simulator.wait_for(
            lambda: a.read(id_, "train", state)[1]["status"]["state"] == "succeeded",
            "the task to succeed, as Alice's provider reads it",
            timeout=150,
        )
    assert not (alice.home / ".local").exists()  # nothing kept on Alice's workstation

    with bob.server() as b:
        again, failures = b.check("train", inputs, program)
        assert failures == [] and again == inputs
        diff = b.diff(id_, "train", state, again)
        assert diff.changes is False and diff.replaces == []
        assert "GREETING in your shell differ" in b.stderr_text()

        same_id, refreshed = b.read(id_, "train", state)
        assert same_id == id_ and refreshed["status"]["counts"] == {"succeeded": 2.0}
        b.delete(id_, "train", refreshed)
        assert "brought 2 output file(s) home" in b.stderr_text()
    results = bob.checkout / "results"
    assert sorted(p.read_text() for p in results.iterdir()) == [
        "from alice 0\n",
        "from alice 1\n",
    ]
    assert not (alice.checkout / "results").exists()
    assert leftovers(moto, id_) == []
