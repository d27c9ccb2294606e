"""A team's AWS stack through the real provider server (moto): a CI runner with an
unusable home creates it from its checkout; Alice, from another checkout path and shell,
runs a no-op `up`, a refresh and a destroy that brings the outputs into her checkout."""

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
    alice, ci = two_workstations(tmp_path)
    program = {
        "cloud": "aws",
        "region": "us-east",
        "machine": "s",
        "parallelism": 2,
        "script": SCRIPT,
        "environment": {"GREETING": ""},
        "storage": {"workdir": ".", "output": "results"},
    }
    with ci.server() as c:
        inputs, failures = c.check("train", {}, program)
        assert failures == []
        id_, state = c.create("train", inputs)
        assert state["bucket"] == f"s3://pulumi-iterative-{id_}"
        assert state["ref"]["workdir"] == "." and str(ci.checkout) not in str(state)
        simulator.start()
        simulator.wait_for(
            lambda: c.read(id_, "train", state)[1]["status"]["state"] == "succeeded",
            "the task to succeed, as the CI runner's provider reads it",
            timeout=150,
        )

    with alice.server() as b:
        again, failures = b.check("train", inputs, program)
        assert failures == [] and again == inputs
        diff = b.diff(id_, "train", state, again)
        assert diff.changes is False and diff.replaces == []
        assert "GREETING in your shell differ" in b.stderr_text()

        same_id, refreshed = b.read(id_, "train", state)
        assert same_id == id_ and refreshed["status"]["counts"] == {"succeeded": 2.0}
        b.delete(id_, "train", refreshed)
        assert "brought 2 output file(s) home" in b.stderr_text()
    results = alice.checkout / "results"
    assert sorted(p.read_text() for p in results.iterdir()) == ["from bob 0\n", "from bob 1\n"]
    assert not (ci.checkout / "results").exists()
    assert not (alice.home / ".local").exists()  # nothing kept on Alice's workstation
    assert leftovers(moto, id_) == []
