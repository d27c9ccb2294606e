"""examples/gcp as a user runs it: the Pulumi program's resource, then its task on "GCP"."""

from __future__ import annotations

import runpy
import shutil
from pathlib import Path
from typing import Any

import pulumi
import pytest

from pulumi_iterative import lifecycle
from pulumi_iterative.spec import FIELDS, parse_spec
from pulumi_iterative.status import State
from tests.gcp.conftest import Gcp, leftovers
from tests.gcp.simulator import MachineSimulator

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "gcp"


class Recorder(pulumi.runtime.Mocks):
    def __init__(self) -> None:
        self.inputs: dict[str, Any] = {}

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict]:
        if args.typ.endswith("iterative:Task"):
            self.inputs = dict(args.inputs)
        return f"{args.name}-id", dict(args.inputs)

    def call(self, args: pulumi.runtime.MockCallArgs) -> dict:
        return {}


@pytest.fixture
def example(tmp_path: Path) -> Path:
    copy = tmp_path / "gcp-example"
    shutil.copytree(EXAMPLE, copy)
    return copy


@pytest.fixture
def program_inputs(example: Path) -> dict[str, Any]:
    """The Task resource's inputs, as `pulumi up` would send them to the provider."""
    recorder = Recorder()
    pulumi.runtime.set_mocks(recorder, preview=False)
    pulumi.runtime.set_all_config({})

    @pulumi.runtime.test
    def program() -> None:
        runpy.run_path(str(example / "__main__.py"), run_name="__main__")

    program()
    assert recorder.inputs, "the program declared no Task"
    return {k: v for k, v in recorder.inputs.items() if k in FIELDS}


def test_example_program_is_a_valid_gcp_task(example: Path, program_inputs: dict) -> None:
    assert (example / "Pulumi.yaml").read_text().startswith("name: iterative-gcp-example")
    spec = parse_spec(program_inputs)
    assert spec.cloud == "gcp" and spec.storage.workdir == str(example)
    assert spec.storage.output == "results" and spec.is_spot
    from pulumi_iterative.clouds.gcp.rules import validate

    assert validate(spec) == []


@pytest.mark.timeout(240)
def test_example_task_runs_on_simulated_gcp(
    gcp: Gcp, gcp_simulator: MachineSimulator, example: Path, program_inputs: dict
) -> None:
    # The example's own script and train.py, three short epochs instead of twelve.
    spec = parse_spec(
        {**program_inputs, "environment": {"EPOCHS": "3", "SECONDS_PER_EPOCH": "0.5"}}
    )
    ref = lifecycle.create(spec)
    gcp_simulator.start()
    status = gcp_simulator.wait_status(ref, lambda s: s.done, timeout=120)
    assert status.state == State.SUCCEEDED, gcp_simulator.report()
    lifecycle.delete(ref)
    history = (example / "results" / "history.txt").read_text()
    assert "epoch 3 loss" in history
    assert (example / "results" / "model.txt").read_text().startswith("final loss")
    assert leftovers(gcp, ref.task_id) == []
