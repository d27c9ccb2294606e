"""A team's GCP stack through the real provider server: a CI runner with an unusable home
creates it from its checkout; Alice, from another checkout path and shell, runs a no-op
`up`, a refresh and a destroy that brings the outputs into her checkout. Neither needs
anything but the stack's state and credentials (here: the fakes' endpoints)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.gcp.conftest import Gcp, leftovers
from tests.gcp.simulator import MachineSimulator
from tests.team import two_workstations

SCRIPT = """#!/bin/sh
set -e
mkdir -p results
echo "$GREETING $TASK_INDEX" > results/out-$TASK_INDEX.txt
"""


@pytest.mark.timeout(300)
def test_a_teammate_changes_nothing_and_destroys_into_their_checkout(
    gcp: Gcp, gcp_simulator: MachineSimulator, tmp_path: Path
) -> None:
    alice, ci = two_workstations(tmp_path)
    program = {
        "cloud": "gcp",
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
        assert state["bucket"] == f"gs://pulumi-iterative-{id_}"
        assert state["ref"]["extra"]["project"] == gcp.project
        gcp_simulator.start()
        gcp_simulator.wait_for(
            lambda: c.read(id_, "train", state)[1]["status"]["state"] == "succeeded",
            "the task to succeed, as the CI runner's provider reads it",
            timeout=150,
        )

    with alice.server() as b:
        again, failures = b.check("train", inputs, program)
        assert failures == [] and again == inputs
        diff = b.diff(id_, "train", state, again)
        assert diff.changes is False and diff.replaces == []
        same_id, refreshed = b.read(id_, "train", state)
        assert same_id == id_ and refreshed["status"]["counts"] == {"succeeded": 2.0}
        b.delete(id_, "train", refreshed)
    results = alice.checkout / "results"
    assert sorted(p.read_text() for p in results.iterdir()) == ["from bob 0\n", "from bob 1\n"]
    assert not (alice.home / ".local").exists()
    assert leftovers(gcp, id_) == []
