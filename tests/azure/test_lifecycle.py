"""The Azure backend end to end against the fakes: the example program, the command
line, the caller's permissions, rollback on what Azure refuses, rules at preview and
the machine side's view of Scheduled Events."""

from __future__ import annotations

import json
import os
import re
import runpy
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pulumi
import pytest

from pulumi_iterative import lifecycle
from pulumi_iterative.clouds.azure.machine import MachineSide
from pulumi_iterative.clouds.azure.permissions import CALLER_ACTIONS, caller_role_json
from pulumi_iterative.errors import SpecError, StepFailed
from pulumi_iterative.records import BootConfig
from pulumi_iterative.spec import FIELDS, parse_spec
from pulumi_iterative.status import State
from pulumi_iterative.task import new_task_id
from tests.azure.conftest import Cloud, leftovers
from tests.azure.fake_arm import _matches
from tests.azure.fake_imds import FakeImds
from tests.azure.simulator import MachineSimulator
from tests.conformance.test_conformance import wait_status

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "azure"


def _spec(workdir: Path, script: str = "#!/bin/sh\necho hi\n", **args: Any):  # type: ignore[no-untyped-def]
    storage = {"workdir": str(workdir), **args.pop("storage", {})}
    return parse_spec(
        {"cloud": "azure", "machine": "s", "script": script, "storage": storage, **args}
    )


class _Harness:
    def __init__(self, sim: MachineSimulator) -> None:
        self.sim = sim

    def report(self) -> str:
        return self.sim.report()


def test_every_request_the_caller_sends_is_in_the_documented_role(
    azure_cloud: Cloud, azure_simulator: MachineSimulator, workdir: Path
) -> None:
    ref = lifecycle.create(_spec(workdir, parallelism=2, spot=0))
    azure_simulator.start()
    status = wait_status(_Harness(azure_simulator), ref, lambda s: s.done, "the task")  # type: ignore[arg-type]
    assert status.state == State.SUCCEEDED, azure_simulator.report()
    lifecycle.delete(ref)
    fake = azure_cloud.arm.fake
    caller = [r for r in fake.requests if r.principal == "caller" and r.status < 400]
    needed = {a for r in caller for a in r.actions}
    assert needed, "no caller request was audited"
    missing = sorted(a for a in needed if not any(_matches(p, a) for p in CALLER_ACTIONS))
    assert missing == []
    # and the machines (their own identity) did their part: they left the scale set
    machine_calls = [r for r in fake.requests if r.principal not in ("caller", "")]
    assert any(r.path.endswith("/delete") and r.status < 400 for r in machine_calls)
    assert all(r.status != 403 for r in machine_calls)
    assert leftovers(azure_cloud, ref.task_id) == []


def test_readme_shows_the_role_the_test_enforces() -> None:
    readme = (ROOT / "README.md").read_text()
    assert caller_role_json() in readme


@pytest.mark.parametrize(
    ("method", "pattern", "step"),
    [
        ("PUT", r"/resourcegroups/pulumi-iterative-rollback[^/]*$", "Create resource group"),
        ("PUT", r"/storageAccounts/[^/]+$", "Create storage account"),
        ("PUT", r"/containers/", "Create container"),
        ("PUT", r"/userAssignedIdentities/", "Create machine identity"),
        ("PUT", r"/roleAssignments/", "Create machine identity"),
        ("PUT", r"/virtualNetworks/", "Create network"),
        ("PUT", r"/virtualMachineScaleSets/", "Create scale set"),
        ("PUT", r"/roleDefinitions/", "Let machines leave the group"),
        ("PUT", r"/autoscalesettings/", "Schedule deadline backstop"),
        ("PATCH", r"/virtualMachineScaleSets/", "Start machines"),
    ],
)
def test_azure_refusing_a_create_leaves_nothing(
    azure_cloud: Cloud, workdir: Path, method: str, pattern: str, step: str
) -> None:
    azure_cloud.arm.fake.fail(
        method,
        pattern,
        status=409,
        code="OperationNotAllowed",
        message="Operation could not be completed as it results in exceeding approved quota",
    )
    task_id = new_task_id("rollback")
    with pytest.raises(StepFailed) as info:
        lifecycle.create(_spec(workdir), task_id=task_id)
    assert info.value.step == step and "OperationNotAllowed" in str(info.value)
    assert info.value.undo_errors == []
    assert leftovers(azure_cloud, task_id) == []


def test_a_failed_long_running_operation_is_rolled_back(azure_cloud: Cloud, workdir: Path) -> None:
    azure_cloud.arm.fake.fail(
        "PUT",
        r"/virtualMachineScaleSets/",
        code="SkuNotAvailable",
        message="The requested size is not available",
        in_operation=True,
    )
    task_id = new_task_id("rollback")
    with pytest.raises(StepFailed, match="SkuNotAvailable") as info:
        lifecycle.create(_spec(workdir), task_id=task_id)
    assert info.value.step == "Create scale set"
    assert leftovers(azure_cloud, task_id) == []


@pytest.mark.parametrize(
    ("args", "field"),
    [
        ({"storage": {"container_opts": {"a": "b"}}}, "storage.container_opts"),
        ({"permission_set": "arn:aws:iam::123456789012:instance-profile/x"}, "permission_set"),
        ({"storage": {"container": "Not_An_Account/c"}}, "storage.container"),
        ({"preempt_interval": 30}, "preempt_interval"),
        ({"machine": "Basic_A0x"}, "machine"),
    ],
)
def test_azure_rules_are_checked_at_preview(workdir: Path, args: dict, field: str) -> None:
    with pytest.raises(SpecError) as refused:
        _spec(workdir, **args)
    assert field in {e.field for e in refused.value.errors}


def test_a_valid_identity_and_container_pass(workdir: Path) -> None:
    ident = (
        "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/ml/providers/"
        "Microsoft.ManagedIdentity/userAssignedIdentities/trainer"
    )
    spec = _spec(workdir, permission_set=ident, storage={"container": "acct01/data/runs"})
    assert spec.permission_set == ident


def test_machine_side_reads_imds_and_sees_the_preempt_event(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    imds = FakeImds(
        {"name": "vm_1", "resourceGroupName": "g", "subscriptionId": "s", "vmScaleSetName": "ss"},
        {},
    )
    try:
        monkeypatch.setenv("PULUMI_ITERATIVE_IMDS_ENDPOINT", imds.endpoint)
        side = MachineSide(BootConfig("t", "azure", {"root": ":azureblob:c/p", "env": {}}, "0"))
        assert side.instance_id() == "vm_1"
        assert side.scale_set_id().endswith("/virtualMachineScaleSets/ss")
        assert side.preemption_notice() is False
        imds.preempt()
        assert side.preemption_notice() is True
        assert all(code == 200 for _, code in imds.requests)
    finally:
        imds.close()


class Recorder(pulumi.runtime.Mocks):
    def __init__(self) -> None:
        self.inputs: dict[str, Any] = {}

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict]:
        if args.typ.endswith("iterative:Task"):
            self.inputs = dict(args.inputs)
        return f"{args.name}-id", dict(args.inputs)

    def call(self, args: pulumi.runtime.MockCallArgs) -> dict:
        return {}


def test_example_program_runs_on_simulated_azure(
    azure_cloud: Cloud, azure_simulator: MachineSimulator, tmp_path: Path
) -> None:
    example = tmp_path / "azure-example"
    shutil.copytree(EXAMPLE, example)
    recorder = Recorder()
    pulumi.runtime.set_mocks(recorder, preview=False)
    pulumi.runtime.set_all_config({})

    @pulumi.runtime.test
    def program() -> None:
        runpy.run_path(str(example / "__main__.py"), run_name="__main__")

    program()
    inputs = {k: v for k, v in recorder.inputs.items() if k in FIELDS}
    spec = parse_spec({**inputs, "environment": {"EPOCHS": "3", "SECONDS_PER_EPOCH": "0.5"}})
    assert spec.cloud == "azure" and spec.is_spot and spec.storage.workdir == str(example)
    ref = lifecycle.create(spec)
    azure_simulator.start()
    status = wait_status(_Harness(azure_simulator), ref, lambda s: s.done, "the example")  # type: ignore[arg-type]
    assert status.state == State.SUCCEEDED, azure_simulator.report()
    lifecycle.delete(ref)
    assert "epoch 3 loss" in (example / "results" / "history.txt").read_text()
    assert leftovers(azure_cloud, ref.task_id) == []


def test_cli_run_end_to_end(
    azure_cloud: Cloud, azure_simulator: MachineSimulator, workdir: Path
) -> None:
    (workdir / "task.yaml").write_text(
        "cloud: azure\nmachine: s\nspot: 0\n"
        "script: |\n  #!/bin/sh\n  mkdir -p results\n  echo hello from azure $TASK_INDEX\n"
        "  echo 42 > results/answer.txt\n"
        "storage: {workdir: ., output: results, exclude: ['*.yaml']}\n"
    )
    azure_simulator.start()
    done = subprocess.run(
        [sys.executable, "-m", "pulumi_iterative.cli", "run", "task.yaml"],
        cwd=workdir,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr + azure_simulator.report()
    assert "hello from azure 0" in done.stdout
    assert (workdir / "results" / "answer.txt").read_text().strip() == "42"
    task_ids = set(
        re.findall(
            r"pulumi-iterative-([a-z0-9-]+)",
            json.dumps([r.path for r in azure_cloud.arm.fake.requests]),
        )
    )
    assert task_ids and all(leftovers(azure_cloud, t) == [] for t in task_ids)
