"""Spot on GCP: what the backend asks GCE for (stored as the fake keeps it), GCE's
preemption notice reaching the agent, the group's errors and preemptions as events,
and the same task in a user's bucket or under a given service account."""

from __future__ import annotations

from pathlib import Path

from pulumi_iterative import lifecycle
from pulumi_iterative.clouds.gcp.names import Names
from pulumi_iterative.spec import parse_spec
from pulumi_iterative.status import State
from tests.gcp.conftest import Gcp, leftovers
from tests.gcp.simulator import MachineSimulator

LONG = "#!/bin/sh\necho started\nwhile true; do sleep 0.2; done\n"


def spec(workdir: Path, **args: object):  # type: ignore[no-untyped-def]
    raw = {"cloud": "gcp", "region": "us-east", "machine": "s", "script": LONG}
    return parse_spec({**raw, "storage": {"workdir": str(workdir)}, **args})


def test_gpu_spot_template_and_group_as_requested(gcp: Gcp, workdir: Path) -> None:
    """No machine runs here: a GPU's request content is what can be checked."""
    ref = lifecycle.create(
        spec(workdir, machine="m+t4", image="nvidia", spot=0, disk_size=80, parallelism=3,
             timeout=7200, region="us-west1-b")
    )  # fmt: skip
    names = Names(ref.task_id)
    props = gcp.fake.templates[names.template]["properties"]
    assert props["machineType"] == "n1-standard-4"
    assert props["guestAccelerators"] == [
        {"acceleratorType": "nvidia-tesla-t4", "acceleratorCount": 1}
    ]
    assert props["scheduling"]["provisioningModel"] == "SPOT"
    assert props["scheduling"]["instanceTerminationAction"] == "DELETE"
    assert props["scheduling"]["onHostMaintenance"] == "TERMINATE"
    assert props["shieldedInstanceConfig"]["enableSecureBoot"] is False  # driver modules
    disk = props["disks"][0]["initializeParams"]
    assert disk["diskSizeGb"] == "80" and "deeplearning-platform-release" in disk["sourceImage"]
    metadata = {i["key"]: i["value"] for i in props["metadata"]["items"]}
    assert metadata["install-nvidia-driver"] == "True"
    assert metadata["block-project-ssh-keys"] == "TRUE"
    assert props["labels"]["pulumi-iterative-task"] == ref.task_id
    group = gcp.fake.groups[f"us-west1/{names.group}"]
    assert group.zones == ("us-west1-b",) and group.target == 3
    assert sorted(group.configs) == [names.instance(i) for i in range(3)]
    lifecycle.delete(ref)
    assert leftovers(gcp, ref.task_id) == []


def test_preemption_notice_checkpoints_and_events_say_so(
    gcp: Gcp, gcp_simulator: MachineSimulator, workdir: Path
) -> None:
    ref = lifecycle.create(spec(workdir, spot=0, storage={"workdir": str(workdir)}))
    names = Names(ref.task_id)
    gcp_simulator.start()
    gcp_simulator.wait_status(ref, lambda s: "started" in "".join(s.logs.values()))
    first_boot = gcp_simulator.live(names.instance(0))
    gcp_simulator.wait_for(
        lambda: any("wait_for_change=true" in p for p in first_boot.metadata.arrived),
        "the agent to watch instance/preempted",
    )
    # GCE gives spot machines 30 s; the agent asks its watcher every 5 s.
    gcp_simulator.preempt(names.instance(0), notice=6.0)
    status = gcp_simulator.wait_status(
        ref, lambda s: s.restarts.get(0) == 1 and s.latest[0].state == State.RUNNING
    )
    first = next(m for m in status.machines if m.index == 0)
    assert first.state == State.INTERRUPTED
    kinds = [(e.kind, e.machine) for e in status.events if e.machine == names.instance(0)]
    assert ("interrupt", names.instance(0)) in kinds
    assert kinds.count(("launch", names.instance(0))) == 2  # the first boot and its replacement
    # the first boot saw the notice through the metadata server and checkpointed at once
    assert "preemption notice: checkpointing now" in "".join(status.logs.values())
    lifecycle.delete(ref)
    assert leftovers(gcp, ref.task_id) == []


def test_no_capacity_shows_in_events_and_status_waits(
    gcp: Gcp, gcp_simulator: MachineSimulator, workdir: Path
) -> None:
    gcp.fake.no_capacity.update({"us-east1-b", "us-east1-c", "us-east1-d"})
    ref = lifecycle.create(spec(workdir))
    gcp_simulator.start()
    status = gcp_simulator.wait_status(
        ref, lambda s: any(e.kind == "error" for e in s.events), timeout=30
    )
    assert status.state == State.QUEUED
    error = next(e for e in status.events if e.kind == "error")
    assert "ZONE_RESOURCE_POOL_EXHAUSTED" in error.message
    gcp.fake.no_capacity.clear()
    running = gcp_simulator.wait_status(ref, lambda s: s.state == State.RUNNING)
    assert len(running.addresses) == 1 and running.addresses[0].startswith("203.0.113.")
    lifecycle.stop(ref)
    assert lifecycle.read(ref).state == State.STOPPED
    assert not any(m.running for m in gcp_simulator.machines.values())
    lifecycle.delete(ref)
    assert leftovers(gcp, ref.task_id) == []


def test_container_prefix_and_permission_set(
    gcp: Gcp, gcp_simulator: MachineSimulator, workdir: Path
) -> None:
    from pulumi_iterative.clouds.gcp import api

    api.storage(gcp.project).create_bucket("team-bucket", location="us-east1")
    made = api.call(
        api.rest,
        "POST",
        api.IAM,
        f"v1/projects/{gcp.project}/serviceAccounts",
        {"accountId": "trainer-sa"},
    )
    account = made["email"]
    # The user granted their own account what a machine needs, as the README says.
    bucket = api.storage(gcp.project).bucket("team-bucket")
    policy = bucket.get_iam_policy(requested_policy_version=3)
    policy.bindings.append(
        {"role": "roles/storage.objectUser", "members": {f"serviceAccount:{account}"}}
    )
    bucket.set_iam_policy(policy)
    gcp.fake.policy["bindings"].append(
        {"role": "roles/compute.instanceAdmin.v1", "members": [f"serviceAccount:{account}"]}
    )
    ref = lifecycle.create(
        spec(
            workdir,
            script="#!/bin/sh\nmkdir -p out\necho ok > out/r.txt\n",
            permission_set=account,
            storage={"workdir": str(workdir), "container": "team-bucket/runs", "output": "out"},
        )
    )
    made_accounts = [
        c.body["accountId"] for c in gcp.fake.calls("iam.projects.serviceAccounts.create")
    ]
    assert made_accounts == ["trainer-sa"]  # only the user's own, above
    assert gcp.fake.calls("cloudresourcemanager.projects.setIamPolicy") == []
    template = gcp.fake.templates[Names(ref.task_id).template]["properties"]
    assert template["serviceAccounts"][0]["email"] == account
    gcp_simulator.start()
    status = gcp_simulator.wait_status(ref, lambda s: s.done)
    assert status.state == State.SUCCEEDED, gcp_simulator.report()
    names = [b.name for b in api.storage(gcp.project).bucket("team-bucket").list_blobs()]
    assert names and all(n.startswith(f"runs/{ref.task_id}/") for n in names)
    lifecycle.delete(ref)
    assert (workdir / "out" / "r.txt").read_text() == "ok\n"
    assert api.storage(gcp.project).get_bucket("team-bucket")  # never deleted
    assert list(api.storage(gcp.project).bucket("team-bucket").list_blobs()) == []
    assert leftovers(gcp, ref.task_id) == []
    assert account in gcp.fake.service_accounts  # used as is, never removed
