"""No GCE machine idles, billed, after something on it failed (issue 9, point 3).

Each failure path runs on a simulated machine from its stored startup script: the
install (apt-get, the wheel's fetch, pip), the agent dying (killed as the OOM killer
would), and leaving the group while GCE says "not now" or "no". Each ends with the
machine out of its group (or, if it may not leave, powered off: stopped, no vCPU or
memory billed) and the status saying why, the boot's own output stored as its log.
What the machine sent is asserted: the report and log it uploaded with its own token,
and the leave call (`deleteInstances` on its own instance, which lowers the target).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pulumi_iterative import agent_wheel, lifecycle
from pulumi_iterative.clouds.gcp.backend import Place
from pulumi_iterative.clouds.gcp.names import Names, key
from pulumi_iterative.spec import parse_spec
from pulumi_iterative.status import State
from pulumi_iterative.storage import AGENT_DIR
from pulumi_iterative.task import TaskRef
from tests import failed_boots
from tests.gcp.conftest import Gcp, leftovers
from tests.gcp.fake_gcs import GcsRequest
from tests.gcp.fake_mig import REPAIR_DELAY, reconcile_all
from tests.gcp.simulator import MachineSimulator, SimMachine

WORK = "#!/bin/sh\nmkdir -p results\necho done > results/out.txt\n"
LEAVE = "compute.regionInstanceGroupManagers.deleteInstances"
POWERED_OFF = "compute.instances.guestTerminate"
INSTALL_FAILED = "bootstrap failed while installing the agent"


def _create(workdir: Path) -> TaskRef:
    return lifecycle.create(
        parse_spec(
            {
                "cloud": "gcp",
                "region": "us-east",
                "machine": "s",
                "script": WORK,
                "storage": {"workdir": str(workdir), "output": "results"},
            }
        )
    )


def _group_target(gcp: Gcp, ref: TaskRef) -> int:
    with gcp.fake.lock:
        return int(gcp.fake.groups[f"{ref.region}/{Names(ref.task_id).group}"].target)


def _ended(gcp: Gcp, sim: MachineSimulator, ref: TaskRef) -> None:
    """The group wants none, every instance of the task is gone, no machine runs."""

    def done() -> bool:
        with gcp.fake.lock:
            instances = [k for k in gcp.fake.instances if ref.task_id in k]
        return (
            _group_target(gcp, ref) == 0
            and not instances
            and bool(sim.machines)
            and not any(m.running for m in sim.machines.values())
        )

    sim.wait_for(done, "the machine to leave its group and be deleted", timeout=120)


def _powered_off(gcp: Gcp, machine: SimMachine) -> bool:
    with gcp.fake.lock:
        ops = list(gcp.fake.operations.values())
    return any(
        op["operationType"] == POWERED_OFF and op["targetLink"].endswith(f"/{machine.name}")
        for op in ops
    )


def _leaves(gcp: Gcp, ref: TaskRef, machine: SimMachine) -> int:
    """How often the machine asked to leave: deleteInstances on its own instance, with
    its own token (a repaired machine of the same name has another)."""
    calls = [c for c in gcp.fake.calls(LEAVE) if c.auth == f"Bearer {machine.metadata.token}"]
    assert calls, "the machine never asked to leave its group"
    zone = machine.metadata.instance["zone"].rsplit("/", 1)[-1]
    for call in calls:
        assert call.path["instanceGroupManager"] == Names(ref.task_id).group
        assert call.path["region"] == ref.region
        assert call.body == {
            "instances": [f"zones/{zone}/instances/{machine.name}"],
            "skipInstancesOnValidationError": True,
        }
    return len(calls)


def _uploads(gcp: Gcp, ref: TaskRef, under: str) -> list[GcsRequest]:
    """Media uploads of the task's objects under `under` (status/, logs/)."""
    place = Place.from_ref(ref)
    return [
        r
        for r in gcp.gcs.requests
        if r.verb == "POST"
        and r.path == f"/upload/storage/v1/b/{place.bucket}/o"
        and r.query.get("uploadType") == ["media"]
        and (r.query.get("name") or [""])[0].startswith(key(place.prefix, under))
    ]


def _boot_report(gcp: Gcp, ref: TaskRef, machine: SimMachine) -> dict[str, object]:
    """The failed report and the log the bootstrap uploaded, with the machine's token."""
    (report,) = _uploads(gcp, ref, "status/boot-")
    (log,) = _uploads(gcp, ref, "logs/boot-")
    for request in (report, log):
        assert request.auth == f"Bearer {machine.metadata.token}"
    boot = report.query["name"][0].rsplit("/", 1)[-1].removesuffix(".json")
    assert log.query["name"][0].endswith(f"logs/{boot}.log")
    assert b"ending the machine" in log.body
    found: dict[str, object] = json.loads(report.body)
    assert found["machine"] == found["boot"] == boot and found["state"] == "failed"
    return found


@pytest.fixture
def real_install(
    gcp_simulator: MachineSimulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Path:
    return failed_boots.real_install(gcp_simulator, tmp_path, monkeypatch)


@pytest.mark.parametrize(
    ("path", "said"),
    [
        ("apt", "apt-get could not install Python"),
        ("fetch", "404"),
        ("pip", "No matching distribution"),
    ],
)
def test_failed_install_ends_the_machine_and_says_why(
    path: str,
    said: str,
    gcp: Gcp,
    gcp_simulator: MachineSimulator,
    real_install: Path,
    workdir: Path,
) -> None:
    simulator = gcp_simulator
    failed_boots.break_install(real_install, simulator, path)
    ref = _create(workdir)
    if path == "fetch":  # the wheel is not where the machine looks (a lost object)
        place = Place.from_ref(ref)
        from pulumi_iterative.clouds.gcp.api import storage

        source = key(place.prefix, AGENT_DIR, agent_wheel.wheel_name())
        storage(place.project).bucket(place.bucket).blob(source).delete()
    simulator.start()
    status = simulator.wait_status(ref, lambda s: s.state == State.FAILED, timeout=90)
    (boot,) = [m for m in status.machines if m.state == State.FAILED]
    assert boot.index is None and boot.machine.startswith("boot-")
    assert INSTALL_FAILED in boot.reason
    assert said in boot.reason or said in status.logs[boot.machine]
    _ended(gcp, simulator, ref)
    (machine,) = simulator.machines.values()
    report = _boot_report(gcp, ref, machine)
    assert str(report["reason"]).startswith(INSTALL_FAILED)
    assert _leaves(gcp, ref, machine) == len(gcp.fake.calls(LEAVE)) == 1
    assert not _powered_off(gcp, machine), "it left its group; GCE deleted it, not a stop"
    lifecycle.delete(ref, pull_outputs=False)
    assert leftovers(gcp, ref.task_id) == []


def test_agent_killed_ends_the_machine_and_its_report_says_why(
    gcp: Gcp, gcp_simulator: MachineSimulator, tmp_path: Path, workdir: Path
) -> None:
    """The OOM killer takes the agent after it reported: its own report turns failed."""
    simulator = gcp_simulator
    simulator.python = str(failed_boots.oom_killed_agent(tmp_path))
    ref = _create(workdir)
    simulator.start()
    _ended(gcp, simulator, ref)
    (machine,) = simulator.machines.values()
    # What the bootstrap stored: the agent's own report, turned failed, at its own path.
    (upload,) = _uploads(gcp, ref, "status/")
    sent = json.loads(upload.body)
    assert upload.auth == f"Bearer {machine.metadata.token}"
    assert upload.query["name"][0].endswith(f"status/{sent['machine']}.json")
    assert sent["index"] == 0 and sent["state"] == "failed"
    assert str(sent["reason"]).startswith("the agent died (exit 137)")
    (log,) = _uploads(gcp, ref, "logs/boot-")
    assert b"the agent died (exit 137); ending the machine" in log.body
    assert _leaves(gcp, ref, machine) == 1
    assert not _powered_off(gcp, machine)
    status = simulator.wait_status(ref, lambda s: s.state == State.FAILED, timeout=60)
    (boot,) = [m for m in status.latest if m.state == State.FAILED]
    assert boot.index == 0 and boot.reason.startswith("the agent died (exit 137)")
    lifecycle.delete(ref, pull_outputs=False)
    assert leftovers(gcp, ref.task_id) == []


def test_leaving_while_gce_says_not_now_is_retried(
    gcp: Gcp, gcp_simulator: MachineSimulator, workdir: Path
) -> None:
    """A broken install's machine is refused twice with 503: it asks again and leaves,
    with no power-off needed."""
    simulator = gcp_simulator
    simulator.python = "/nonexistent/python3"
    gcp.fake.fail(LEAVE, code=503, message="The service is currently unavailable.", times=2)
    ref = _create(workdir)
    simulator.start()
    _ended(gcp, simulator, ref)
    (machine,) = simulator.machines.values()
    assert _leaves(gcp, ref, machine) == len(gcp.fake.calls(LEAVE)) == 3
    assert machine.console().count(": HTTP 503") == 2
    assert not _powered_off(gcp, machine)
    status = lifecycle.read(ref, with_logs=False)
    assert status.state == State.FAILED
    lifecycle.delete(ref, pull_outputs=False)
    assert leftovers(gcp, ref.task_id) == []


def test_when_leaving_is_refused_the_machine_powers_off(
    gcp: Gcp, gcp_simulator: MachineSimulator, workdir: Path
) -> None:
    """The task succeeds but its machine may not leave (403, for good): the agent says
    so, the bootstrap asks once more (a refusal is not retried) and powers the machine
    off, which stops it: no vCPU or memory billed. A standard task's group does not
    repair a stopped member, so it stays stopped: no machine boots again to loop."""
    simulator = gcp_simulator
    gcp.fake.fail(LEAVE, code=403, message="Required 'compute.instanceGroupManagers.update'")
    gcp.fake.fail(LEAVE, code=403, message="Required 'compute.instanceGroupManagers.update'")
    ref = _create(workdir)
    simulator.start()
    first = simulator.wait_for(lambda: list(simulator.machines.values()), "a machine")[0]
    simulator.wait_for(lambda: _powered_off(gcp, first), "the machine to power off", 120)
    # GCE stopped it (billing for vCPU and memory ended); its group leaves it stopped,
    # however long after (aged here, then one pass of the group's controller).
    assert first.powered_off and not first.running
    with gcp.fake.lock:
        for instance in gcp.fake.instances.values():
            instance["_stopped_at"] = instance.get("_stopped_at", 0) - 10 * REPAIR_DELAY
        reconcile_all(gcp.fake)
        stopped = [(i["name"], i["status"]) for i in gcp.fake.instances.values()]
        ops = [op["operationType"] for op in gcp.fake.operations.values()]
    assert stopped == [(first.name, "TERMINATED")]
    assert "compute.instances.repair.recreateInstance" not in ops
    assert list(simulator.machines) == [first.key]
    console = first.console()
    assert "the agent could not leave the group; ending the machine" in console
    assert "refused: HTTP 403" in console and "again in" not in console
    assert _leaves(gcp, ref, first) == 2  # the agent's, then the bootstrap's
    status = lifecycle.read(ref, with_logs=False)
    (boot,) = [m for m in status.machines if m.instance == first.key]
    assert boot.state == State.SUCCEEDED
    said = [e for e in status.events if e.kind == "terminate" and "powered itself off" in e.message]
    assert [e.machine for e in said][:1] == [first.name]
    lifecycle.delete(ref, pull_outputs=False)
    assert leftovers(gcp, ref.task_id) == []
