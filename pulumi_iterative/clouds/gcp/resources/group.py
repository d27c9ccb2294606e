"""The regional managed instance group: the task's machines, and what it says about them.

The group is made empty (target size 0) over the region's zones (or the one zone
the user named), then `start` asks for one named instance per task index
(`createInstances`: `<group>-<index>`). A named instance has a per-instance config,
so when GCE takes a spot machine back the group makes it again under the same
name: the machine knows its index from its own name, no claim protocol needed.
A machine that is done leaves with `deleteInstances`, which lowers the target size,
so the group reaches zero at the last machine. With more than one machine type in
the catalog, the group's instance flexibility policy lets it fall back to the
others when the first has no capacity.

What the group does with a member that stops or is deleted outside it (GCE calls it a
failed VM) depends on spot. A machine that may not leave powers itself off; a group
that repairs (`instanceLifecyclePolicy.defaultActionOnFailure: REPAIR`, GCE's
default) recreates it, it boots, cannot leave, powers off again: a loop billed until
the backstop. So a standard task's group does not repair (`DO_NOTHING`): a powered-off
member stays stopped (no vCPU or memory billed), and GCE's own `automaticRestart`
(instance template) still brings a machine back after a host failure. A spot task's
group must repair: that is how a preempted machine comes back; there a machine that
may not leave loops until the backstop (README: "Machines that cannot leave").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ....errors import NotFound
from ..api import GcpError, call, compute, wait_until
from ..catalog import split_machine
from ..names import Names

GROUP_GONE_DEADLINE = 900.0


def _client() -> Any:
    return compute("RegionInstanceGroupManagers")


REPAIR = "REPAIR"  # a stopped or deleted member is made again: spot machines come back
DO_NOTHING = "DO_NOTHING"  # a member that powered itself off stays stopped


def group_body(
    names: Names,
    project: str,
    region: str,
    zone: str,
    machines: tuple[str, ...],
    *,
    spot: bool,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": names.group,
        "description": f"pulumi-iterative task {names.task_id}",
        "baseInstanceName": names.group,
        "instanceTemplate": f"projects/{project}/global/instanceTemplates/{names.template}",
        "targetSize": 0,
        # Named instances in a regional group need this, and proactive redistribution
        # would delete a working machine to even out the zones.
        "updatePolicy": {"instanceRedistributionType": "NONE"},
        "instanceLifecyclePolicy": {"defaultActionOnFailure": REPAIR if spot else DO_NOTHING},
    }
    # BALANCED: spread over the zones as far as capacity allows (EVEN would wait for a
    # full zone); needed for instance flexibility, and allowed with named instances.
    body["distributionPolicy"] = {"targetShape": "BALANCED"}
    if zone:
        body["distributionPolicy"]["zones"] = [{"zone": f"zones/{zone}"}]
    types = [split_machine(m) for m in machines]
    if len(types) > 1 and not any(acc for _, acc, _ in types):
        body["instanceFlexibilityPolicy"] = {
            "instanceSelections": {
                f"choice-{rank}": {"rank": rank, "machineTypes": [machine]}
                for rank, (machine, _, _) in enumerate(types)
            }
        }
    return body


def create_group(project: str, region: str, body: dict[str, Any]) -> None:
    from google.cloud import compute_v1

    client = _client()
    try:
        call(client.get, project=project, region=region, instance_group_manager=body["name"])
        return
    except NotFound:
        pass
    import json

    resource = compute_v1.InstanceGroupManager.from_json(json.dumps(body))
    try:
        call(
            client.insert,
            project=project,
            region=region,
            instance_group_manager_resource=resource,
        )
    except GcpError as exc:
        if exc.status != 409:
            raise


def read_group(project: str, region: str, names: Names) -> Any:
    return call(_client().get, project=project, region=region, instance_group_manager=names.group)


def start(project: str, region: str, names: Names, parallelism: int) -> None:
    """One named instance per index, except those the group already has."""
    from google.cloud import compute_v1

    have = {m.name for m in managed_instances(project, region, names)}
    wanted = [names.instance(i) for i in range(parallelism) if names.instance(i) not in have]
    if not wanted:
        return
    request = compute_v1.RegionInstanceGroupManagersCreateInstancesRequest(
        instances=[compute_v1.PerInstanceConfig(name=n) for n in wanted]
    )
    call(
        _client().create_instances,
        project=project,
        region=region,
        instance_group_manager=names.group,
        region_instance_group_managers_create_instances_request_resource=request,
    )


def resize(project: str, region: str, names: Names, size: int) -> None:
    call(
        _client().resize,
        project=project,
        region=region,
        instance_group_manager=names.group,
        size=size,
    )


def managed_instances(
    project: str, region: str, names: Names, *, on_machine: bool = False
) -> list[Any]:
    client = compute("RegionInstanceGroupManagers", on_machine=on_machine)
    return call(
        lambda: list(
            client.list_managed_instances(
                project=project, region=region, instance_group_manager=names.group
            )
        )
    )


def errors(project: str, region: str, names: Names) -> list[Any]:
    client = _client()
    return call(
        lambda: list(
            client.list_errors(project=project, region=region, instance_group_manager=names.group)
        )
    )


def operations(project: str, names: Names) -> list[Any]:
    """GCE's own record of the task's machines, in every zone: made, deleted, preempted
    (the operations that target them; one filtered aggregated list for all zones)."""
    from google.cloud import compute_v1

    client = compute("GlobalOperations")
    mine = f".*/instances/{names.group}-[0-9]+"  # names are [a-z0-9-]: no regex specials
    request = compute_v1.AggregatedListGlobalOperationsRequest(
        project=project, filter=f'targetLink eq "{mine}"'
    )
    return call(
        lambda: [
            op for _, scoped in client.aggregated_list(request=request) for op in scoped.operations
        ]
    )


@dataclass(frozen=True)
class InstanceView:
    """What GCE's own instance record says of one machine: where to reach it, its type,
    and when it started and stopped (billing runs from start to stop)."""

    address: str = ""
    machine_type: str = ""  # as the catalog writes it: `<type>[+<accelerator>*<count>]`
    started: str = ""  # RFC 3339: lastStartTimestamp, else creationTimestamp
    stopped: str = ""  # RFC 3339: lastStopTimestamp of a machine that stops or stopped


STOPPED = ("STOPPING", "SUSPENDING", "SUSPENDED", "TERMINATED")


def instance_views(project: str, zones: list[str], names: Names) -> dict[str, InstanceView]:
    """Machine name -> GCE's view of it, for the zones given (one filtered list each)."""
    from google.cloud import compute_v1

    from ..names import TASK_LABEL

    client = compute("Instances")
    found: dict[str, InstanceView] = {}
    for zone in zones:
        request = compute_v1.ListInstancesRequest(
            project=project, zone=zone, filter=f'labels.{TASK_LABEL} = "{names.task_id}"'
        )
        for instance in call(lambda r=request: list(client.list(request=r))):
            address = next(
                (
                    access.nat_i_p
                    for nic in instance.network_interfaces
                    for access in nic.access_configs
                    if access.nat_i_p
                ),
                "",
            )
            stopped = instance.status in STOPPED and instance.last_stop_timestamp
            found.setdefault(
                instance.name,
                InstanceView(
                    address=address,
                    machine_type=_catalog_type(instance),
                    started=instance.last_start_timestamp or instance.creation_timestamp,
                    stopped=instance.last_stop_timestamp if stopped else "",
                ),
            )
    return found


def _catalog_type(instance: Any) -> str:
    """`zones/z/machineTypes/n1-standard-4` + one T4 -> `n1-standard-4+nvidia-tesla-t4*1`,
    the catalog's (and the price list's) name for the machine."""
    machine = instance.machine_type.rsplit("/", 1)[-1]
    for gpu in instance.guest_accelerators:
        return f"{machine}+{gpu.accelerator_type.rsplit('/', 1)[-1]}*{gpu.accelerator_count}"
    return machine


def delete_group(project: str, region: str, names: Names, *, wait: bool = True) -> None:
    client = _client()
    call(client.delete, project=project, region=region, instance_group_manager=names.group)
    if wait:

        def gone() -> bool:
            try:
                read_group(project, region, names)
            except NotFound:
                return True
            return False

        wait_until(gone, f"group {names.group} to be deleted", deadline=GROUP_GONE_DEADLINE)
