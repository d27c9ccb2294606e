"""A VM whose bootstrap fails before the agent runs: it stores its own output as the
boot's log and a failed report saying why (curl, the VM's managed identity), then
removes itself from the scale set, so Azure deletes it (a merely stopped VM would stay
billed) and no replacement comes; if it cannot leave, it deallocates itself through
its scale set instead (no compute billed, still no replacement)."""

from __future__ import annotations

import base64
import time
from pathlib import Path

import pytest

from pulumi_iterative import lifecycle
from pulumi_iterative.clouds.azure.names import Names
from pulumi_iterative.status import State
from tests.azure.conftest import Cloud, leftovers
from tests.azure.fake_arm import Request
from tests.azure.simulator import MachineSimulator
from tests.azure.test_lifecycle import _Harness, _spec
from tests.conformance.test_conformance import wait_status

DEADLINE = 120.0


def _machine_leaves(cloud: Cloud) -> list[Request]:
    """The VMs' own requests to leave (the fake logs a request once it has answered)."""
    return [
        r
        for r in list(cloud.arm.fake.requests)
        if r.method == "POST" and r.path.lower().endswith("/delete") and r.principal != "caller"
    ]


def _gone(cloud: Cloud, sim: MachineSimulator, scale_set: str) -> bool:
    vms = [v for v in cloud.arm.fake.vms.values() if v.scale_set.lower() == scale_set.lower()]
    # The leave that removed the VM is logged just after it took effect: wait for both.
    left = any(r.status in (200, 202) for r in _machine_leaves(cloud))
    return (
        not vms
        and left
        and bool(sim.machines)
        and not any(m.running for m in sim.machines.values())
    )


def _wait_gone(cloud: Cloud, sim: MachineSimulator, scale_set: str) -> None:
    end = time.monotonic() + DEADLINE
    while not _gone(cloud, sim, scale_set):
        assert time.monotonic() < end, sim.report()
        time.sleep(0.5)


@pytest.mark.parametrize("refusals", [0, 2])
def test_a_failed_install_stores_why_and_the_vm_removes_itself(
    azure_cloud: Cloud,
    azure_simulator: MachineSimulator,
    workdir: Path,
    monkeypatch: pytest.MonkeyPatch,
    refusals: int,
) -> None:
    fake = azure_cloud.arm.fake
    if refusals:  # Resource Manager refuses the first tries: the VM tries again
        fake.fail("POST", r"/virtualMachineScaleSets/[^/]+/delete$", status=503, times=refusals)
    monkeypatch.setattr(azure_simulator, "python", "/nonexistent/python3")
    ref = lifecycle.create(_spec(workdir))
    scale_set = fake.find("Microsoft.Compute/virtualMachineScaleSets")[0]
    azure_simulator.start()
    _wait_gone(azure_cloud, azure_simulator, scale_set["id"])

    (machine,) = azure_simulator.machines.values()
    # it left through its own identity, which lowered the capacity: no replacement
    leaves = _machine_leaves(azure_cloud)
    assert [r.status for r in leaves][:-1] == [503] * refusals and leaves[-1].status in (200, 202)
    assert leaves[-1].body == {"instanceIds": [machine.vm.name]}
    stored = fake.find("Microsoft.Compute/virtualMachineScaleSets")[0]
    assert stored["sku"]["capacity"] == 0
    assert all(r.status != 403 for r in fake.requests)

    status = wait_status(_Harness(azure_simulator), ref, lambda s: s.done, "the failed status")  # type: ignore[arg-type]
    assert status.state == State.FAILED, azure_simulator.report()
    (boot,) = status.machines
    assert "installing the agent" in boot.reason and "/nonexistent/python3" in boot.reason
    assert "/nonexistent/python3" in "".join(status.logs.values())  # its own output
    assert len(azure_simulator.machines) == 1
    lifecycle.delete(ref)
    assert leftovers(azure_cloud, ref.task_id) == []


def test_the_ending_in_the_custom_data_holds_no_token_and_names_its_scale_set(
    azure_cloud: Cloud, workdir: Path
) -> None:
    ref = lifecycle.create(_spec(workdir))
    fake = azure_cloud.arm.fake
    scale_set = fake.find("Microsoft.Compute/virtualMachineScaleSets")[0]
    model = fake.model(scale_set["id"])
    text = base64.b64decode(model["properties"]["virtualMachineProfile"]["osProfile"]["customData"])
    custom_data = text.decode()
    assert f'{scale_set["id"]}"/$1?api-version=' in custom_data  # its own scale set
    assert "az_scale_set delete" in custom_data and "az_scale_set deallocate" in custom_data
    assert Names(ref.task_id).container in custom_data  # where boot logs go
    assert azure_cloud.arm.caller_token not in custom_data
    assert "shutdown -h now" in custom_data
    lifecycle.delete(ref)


def test_a_vm_that_cannot_leave_deallocates_itself(
    azure_cloud: Cloud,
    azure_simulator: MachineSimulator,
    workdir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Resource Manager refuses every try to leave for about a minute (a conflicting
    operation on the scale set): the VM does not merely power off (a stopped VM is
    billed) but asks its scale set to deallocate it, with its own identity."""
    fake = azure_cloud.arm.fake
    leave = r"/virtualMachineScaleSets/[^/]+/delete$"
    conflict = "Operation 'deleteInstances' is not allowed while another operation runs."
    fake.fail("POST", leave, status=409, code="OperationNotAllowed", message=conflict, times=6)
    monkeypatch.setattr(azure_simulator, "python", "/nonexistent/python3")
    ref = lifecycle.create(_spec(workdir))
    scale_set = fake.find("Microsoft.Compute/virtualMachineScaleSets")[0]
    azure_simulator.start()

    def deallocated() -> bool:
        with fake.lock:
            vms = [v for v in fake.vms.values() if v.scale_set.lower() == scale_set["id"].lower()]
        machines = list(azure_simulator.machines.values())
        return (
            len(vms) == 1
            and vms[0].power == "deallocated"
            and bool(machines)
            and not any(m.running for m in machines)
        )

    end = time.monotonic() + DEADLINE + 60  # about a minute of tries to leave first
    while not deallocated():
        assert time.monotonic() < end, azure_simulator.report()
        time.sleep(0.5)
    (machine,) = azure_simulator.machines.values()
    mine = [r for r in fake.requests if r.method == "POST" and r.principal != "caller"]
    leaves = [r for r in mine if r.path.lower().endswith("/delete")]
    assert [r.status for r in leaves] == [409] * 6
    (request,) = [r for r in mine if r.path.lower().endswith("/deallocate")]
    assert request.path.lower() == f"{scale_set['id']}/deallocate".lower()
    assert request.body == {"instanceIds": [machine.vm.name]} and request.status in (200, 202)
    assert not machine.powered_off  # Azure shut it down: deallocated, not merely stopped
    assert "deallocating this VM" in machine.console()
    stored = fake.find("Microsoft.Compute/virtualMachineScaleSets")[0]
    assert stored["sku"]["capacity"] == 1 and len(azure_simulator.machines) == 1  # kept
    status = wait_status(_Harness(azure_simulator), ref, lambda s: s.done, "the failed status")  # type: ignore[arg-type]
    assert status.state == State.FAILED, azure_simulator.report()
    lifecycle.delete(ref)
    assert leftovers(azure_cloud, ref.task_id) == []
