"""GCP in the conformance suite: the strict compute/IAM fake and fake-gcs-server, machines
simulated from the startup script stored in their instance template."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from pulumi_iterative import lifecycle
from pulumi_iterative.clouds.gcp import api
from pulumi_iterative.clouds.gcp.names import Names
from pulumi_iterative.spec import TaskSpec, parse_spec
from pulumi_iterative.status import State
from pulumi_iterative.task import TaskRef
from tests.conformance.harness import SHUTDOWN_SKEW
from tests.gcp.conftest import Gcp, leftovers, stored
from tests.gcp.simulator import MachineSimulator


class GcpHarness:
    name = "gcp"
    script_tries = 1  # the machine leaves its group whatever the script did
    steps = (
        "Create bucket",
        "Upload agent",
        "Upload workdir",
        "Store task definition",
        "Create machine identity",
        "Grant bucket access",
        "Allow leaving the group",
        "Deny inbound traffic",
        "Create instance template",
        "Create machine group",
        "Start machines",
    )
    xfail: dict[str, str] = {}

    def __init__(self, gcp: Gcp, simulator: MachineSimulator) -> None:
        self.gcp, self.simulator = gcp, simulator
        self.caller_secrets = gcp.caller_secrets

    def spec(self, workdir: Path, script: str, **args: Any) -> TaskSpec:
        storage = {"workdir": str(workdir), **args.pop("storage", {})}
        raw = {"cloud": "gcp", "region": "us-east", "machine": "s", "script": script}
        return parse_spec({**raw, "storage": storage, **args})

    def start(self) -> None:
        self.simulator.start()

    def preempt(self, ref: TaskRef, index: int) -> str:
        """GCE takes the spot machine without notice; the group makes it again."""
        status = lifecycle.read(ref, with_logs=False)
        (machine,) = [m for m in status.latest if m.index == index and m.state == State.RUNNING]
        sim = self.simulator.machines[machine.instance]
        self.simulator.kill(sim.name)
        self.gcp.fake.preempt(sim.name)
        return machine.instance

    def take_away(self, ref: TaskRef, index: int) -> str:
        """GCE's preemption: `instance/preempted` turns TRUE, the shutdown reaches the
        script first (SHUTDOWN_SKEW), then the instance is deleted and the group makes it
        again."""
        status = lifecycle.read(ref, with_logs=False)
        (machine,) = [m for m in status.latest if m.index == index and m.state == State.RUNNING]
        sim = self.simulator.machines[machine.instance]
        sim.metadata.preempt()
        with contextlib.suppress(FileNotFoundError, ValueError, ProcessLookupError):
            pgid = int((sim.folder / "pulumi-iterative" / "script.pgid").read_text())
            os.killpg(pgid, signal.SIGTERM)
        time.sleep(SHUTDOWN_SKEW)
        with contextlib.suppress(KeyError):  # the machine may have ended itself meanwhile
            self.gcp.fake.preempt(sim.name)
        return machine.instance

    def running_machines(self, ref: TaskRef) -> list[str]:
        return [key for key, m in self.simulator.machines.items() if m.running]

    def backstop(self, ref: TaskRef) -> float | None:
        found = api.compute("InstanceTemplates").get(
            project=self.gcp.project, instance_template=Names(ref.task_id).template
        )
        scheduling = found.properties.scheduling
        assert scheduling.instance_termination_action == "DELETE"
        return datetime.fromisoformat(
            scheduling.termination_time.replace("Z", "+00:00")
        ).timestamp()

    def leftovers(self, task_id: str) -> list[str]:
        return leftovers(self.gcp, task_id)

    def stored(self, ref: TaskRef) -> str:
        return stored(self.gcp)

    def break_install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(self.simulator, "python", "/nonexistent/python3")

    def report(self) -> str:
        return self.simulator.report()


@pytest.fixture
def gcp_harness(gcp: Gcp, gcp_simulator: MachineSimulator) -> Iterator[GcpHarness]:
    assert gcp_simulator.python == sys.executable
    yield GcpHarness(gcp, gcp_simulator)


__all__ = ["GcpHarness", "gcp_harness"]
