"""Azure in the conformance suite: the fake Resource Manager and azurite, machines
simulated from the custom data stored in the scale set."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from pulumi_iterative import lifecycle
from pulumi_iterative.clouds.azure.names import Names
from pulumi_iterative.spec import TaskSpec, parse_spec
from pulumi_iterative.status import State
from pulumi_iterative.task import TaskRef
from tests.azure.conftest import Cloud, leftovers, stored
from tests.azure.simulator import MachineSimulator, running
from tests.conformance.harness import SHUTDOWN_SKEW


class AzureHarness:
    name = "azure"
    script_tries = 1  # the machine leaves its group whatever the script did
    steps = (
        "Create resource group",
        "Create storage account",
        "Create container",
        "Upload agent",
        "Upload workdir",
        "Store task definition",
        "Create machine identity",
        "Create network",
        "Create scale set",
        "Let machines leave the group",
        "Schedule deadline backstop",
        "Start machines",
    )
    xfail: dict[str, str] = {}

    def __init__(self, cloud: Cloud, simulator: MachineSimulator) -> None:
        self.cloud, self.simulator = cloud, simulator

    @property
    def caller_secrets(self) -> tuple[str, ...]:  # type: ignore[override]
        """The caller's tokens, and every token the machines' identities were given."""
        arm = self.cloud.arm
        return (*arm.fake.tokens, arm.caller_storage_token, *self.simulator.issued)

    def spec(self, workdir: Path, script: str, **args: Any) -> TaskSpec:
        storage = {"workdir": str(workdir), **args.pop("storage", {})}
        raw = {"cloud": "azure", "region": "us-east", "machine": "s", "script": script}
        return parse_spec({**raw, "storage": storage, **args})

    def start(self) -> None:
        self.simulator.start()

    def preempt(self, ref: TaskRef, index: int) -> str:
        """Azure evicts the spot VM: no notice reaches it (killed first), the VM is
        deleted, and spot restore brings a new one."""
        status = lifecycle.read(ref, with_logs=False)
        (machine,) = [m for m in status.latest if m.index == index and m.state == State.RUNNING]
        self.simulator.kill(machine.instance)
        self.cloud.arm.fake.evict(machine.instance)
        return machine.instance

    def take_away(self, ref: TaskRef, index: int) -> str:
        """Azure's spot eviction with notice: Scheduled Events post a `Preempt` event for
        the VM, the shutdown reaches the script first (SHUTDOWN_SKEW), then the VM is
        evicted (deleted: SIGTERM to what is left, SIGKILL after a grace) and spot
        restore brings a new one."""
        status = lifecycle.read(ref, with_logs=False)
        (machine,) = [m for m in status.latest if m.index == index and m.state == State.RUNNING]
        sim = self.simulator.machines[machine.instance]
        self.cloud.arm.fake.announce_eviction(machine.instance)
        with contextlib.suppress(FileNotFoundError, ValueError, ProcessLookupError):
            pgid = int((sim.folder / "pulumi-iterative" / "script.pgid").read_text())
            os.killpg(pgid, signal.SIGTERM)
        time.sleep(SHUTDOWN_SKEW)  # the shutdown reached the script first
        with contextlib.suppress(KeyError):  # the VM may have left its scale set meanwhile
            self.cloud.arm.fake.evict(machine.instance)
        return machine.instance

    def running_machines(self, ref: TaskRef) -> list[str]:
        return running(self.simulator)

    def backstop(self, ref: TaskRef) -> float | None:
        names = Names(ref.task_id)
        (setting,) = [
            s
            for s in self.cloud.arm.fake.find("Microsoft.Insights/autoscalesettings")
            if s["name"] == names.backstop
        ]
        (profile,) = [p for p in setting["properties"]["profiles"] if p.get("fixedDate")]
        assert profile["capacity"] == {"minimum": "0", "maximum": "0", "default": "0"}
        start = profile["fixedDate"]["start"].replace("Z", "+00:00")
        return datetime.fromisoformat(start).timestamp()

    def leftovers(self, task_id: str) -> list[str]:
        return leftovers(self.cloud, task_id)

    def stored(self, ref: TaskRef) -> str:
        return stored(self.cloud, ref.task_id)

    def break_install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(self.simulator, "python", "/nonexistent/python3")

    def report(self) -> str:
        return self.simulator.report()


@pytest.fixture
def azure_harness(azure_cloud: Cloud, azure_simulator: MachineSimulator) -> Iterator[AzureHarness]:
    yield AzureHarness(azure_cloud, azure_simulator)
