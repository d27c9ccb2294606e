"""Regional managed instance groups in the fake: what a MIG does, not only what it stores.

A group keeps `targetSize` instances made from its instance template, spread
over its zones (the region's, or its distributionPolicy's), skipping zones the
test marked as having no capacity. `createInstances` adds named instances (a
per-instance config each, so a lost one comes back under the same name);
`resize` and `deleteInstances` (which lowers the target) take instances away.
An instance that is deleted shows `STOPPING` for a short grace, then is gone;
a spot instance preempted (`FakeGcp.preempt`) is deleted by the cloud and the
group recreates it. When the group cannot make an instance (no capacity in any
zone, an unknown machine type, a missing service account, a termination time
already past) it records the error for `listErrors` and tries again later, as
GCE does. The template's `scheduling.terminationTime` deletes an instance at
that time whatever runs on it (the backstop). An instance whose OS powers off
(`guest_shutdown`) is stopped (TERMINATED, `compute.instances.guestTerminate`):
no vCPU or memory billed. What a group does with such a failed member is its
`instanceLifecyclePolicy.defaultActionOnFailure`, as on GCE: REPAIR (the default)
recreates a stopped member (`compute.instances.repair.recreateInstance`) after
REPAIR_DELAY, and makes a named member deleted outside the group (a preempted spot
machine) again; DO_NOTHING leaves a stopped member stopped and does not make a
deleted one again (its per-instance config stays, unfulfilled).
"""

from __future__ import annotations

import ipaddress
import secrets
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from tests.gcp.discovery import ApiError
from tests.gcp.fake_compute import SHUTDOWN_GRACE, link, public, region_of, short
from tests.gcp.fake_gcp import (
    PROJECT,
    REGIONS,
    Call,
    FakeGcp,
    handles,
    new_id,
    now_rfc3339,
)

MACHINE_TYPES = {
    "e2-medium", "e2-standard-2", "e2-standard-8", "n1-standard-4", "n1-standard-32",
    "n2-standard-8", "n2-standard-32", "n2-standard-64", "g2-standard-8", "g2-standard-48",
    "a2-highgpu-1g", "a2-highgpu-8g", "a3-highgpu-8g",
}  # fmt: skip
ERROR_REPEAT = 5.0  # seconds before the same failure is recorded again
REPAIR_DELAY = 2.0  # seconds a stopped member stays TERMINATED before its group repairs it
FAILURES = ("preempted", "terminationTime")  # deletes the group did not ask for
OPERATION_TYPES = {  # why an instance is deleted -> the operation GCE logs
    "preempted": "compute.instances.preempted",
    "repair": "compute.instances.repair.recreateInstance",
}


@dataclass
class Group:
    name: str
    region: str
    zones: tuple[str, ...]
    template: str
    target: int
    base: str
    body: dict[str, Any]
    id: str = field(default_factory=new_id)
    created: str = field(default_factory=now_rfc3339)
    configs: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> PerInstanceConfig
    errors: list[dict[str, Any]] = field(default_factory=list)

    @property
    def key(self) -> str:
        return f"{self.region}/{self.name}"

    @property
    def repairs(self) -> bool:
        policy = self.body.get("instanceLifecyclePolicy") or {}
        return policy.get("defaultActionOnFailure", "REPAIR") == "REPAIR"

    @property
    def self_link(self) -> str:
        return link(f"regions/{self.region}/instanceGroupManagers/{self.name}")


def members(gcp: FakeGcp, group: Group) -> list[dict[str, Any]]:
    return [i for i in gcp.instances.values() if i.get("_group") == group.key]


def begin_delete(gcp: FakeGcp, instance: dict[str, Any], why: str) -> None:
    """The instance shuts down (STOPPING) and is gone after a grace."""
    if instance.get("_deleting"):
        return
    instance["_deleting"] = True
    instance["_delete_at"] = time.time() + SHUTDOWN_GRACE
    if instance["status"] != "TERMINATED":  # a stopped one stopped billing already
        instance["lastStopTimestamp"] = now_rfc3339()  # billing ends as it stops
    instance["status"] = "STOPPING"
    group = gcp.groups.get(instance.get("_group") or "")
    if why in FAILURES and group is not None and not group.repairs:
        config = group.configs.get(instance["name"])
        if config is not None:
            config["_unrepaired"] = True  # failed, and this group does not make it again
    zone = short(instance["zone"])
    op_type = OPERATION_TYPES.get(why, "delete")
    user = "system" if why in ("preempted", "terminationTime", "repair") else ""
    gcp.operation(op_type, instance["selfLink"], zone=zone, user=user, target_id=instance["id"])


def preempt(gcp: FakeGcp, name: str) -> dict[str, Any]:
    """GCE takes a spot instance back: deleted (instanceTerminationAction DELETE)."""
    with gcp.lock:
        for instance in gcp.instances.values():
            if instance["name"] == name and not instance.get("_deleting"):
                scheduling = instance.get("scheduling") or {}
                if scheduling.get("provisioningModel") != "SPOT":
                    raise ValueError(f"{name} is not a spot instance; GCE does not preempt it")
                begin_delete(gcp, instance, "preempted")
                return public(instance)
    raise KeyError(name)


def guest_shutdown(gcp: FakeGcp, instance_id: str) -> bool:
    """The instance's OS powered off: GCE stops it (TERMINATED; billing for vCPU and
    memory ends). False when it was not running (already leaving, say)."""
    with gcp.lock:
        for instance in gcp.instances.values():
            if str(instance["id"]) != instance_id:
                continue
            if instance.get("_deleting") or instance["status"] != "RUNNING":
                return False
            instance["status"] = "TERMINATED"
            instance["lastStopTimestamp"] = now_rfc3339()
            instance["_stopped_at"] = time.time()
            zone = short(instance["zone"])
            gcp.operation(
                "compute.instances.guestTerminate",
                instance["selfLink"],
                zone=zone,
                user="system",
                target_id=instance["id"],
            )
            return True
    return False


# --- the controller -----------------------------------------------------------------------


def reconcile_all(gcp: FakeGcp) -> None:
    now = time.time()
    for key, instance in list(gcp.instances.items()):
        if instance.get("_deleting") and instance["_delete_at"] <= now:
            del gcp.instances[key]
        elif (
            not instance.get("_deleting")
            and instance.get("_terminate_at", 0)
            and (instance["_terminate_at"] <= now)
        ):
            begin_delete(gcp, instance, "terminationTime")
        elif (
            not instance.get("_deleting")
            and instance.get("_group") in gcp.groups
            and gcp.groups[instance["_group"]].repairs
            and instance["status"] == "TERMINATED"
            and instance["_stopped_at"] + REPAIR_DELAY <= now
        ):
            begin_delete(gcp, instance, "repair")  # then reconcile makes it again
    for group in gcp.groups.values():
        reconcile(gcp, group)


def reconcile(gcp: FakeGcp, group: Group) -> None:
    mine = members(gcp, group)
    alive = [i for i in mine if not i.get("_deleting")]
    names = {i["name"] for i in mine}
    for name, config in group.configs.items():
        if name not in names and not config.get("_unrepaired"):
            create(gcp, group, name, alive)
    unnamed = [i for i in alive if i["name"] not in group.configs]
    for _ in range(max(0, group.target - len(group.configs) - len(unnamed))):
        create(gcp, group, f"{group.base}-{secrets.token_hex(2)}", alive)
    surplus = len([i for i in alive if i["name"] not in group.configs]) - max(
        0, group.target - len(group.configs)
    )
    for instance in [i for i in alive if i["name"] not in group.configs][: max(0, surplus)]:
        begin_delete(gcp, instance, "resize")


def _error(group: Group, code: str, message: str, instance: str) -> None:
    now = time.time()
    for old in group.errors[-10:]:
        same = old["error"]["code"] == code
        if same and now - old["_time"] < ERROR_REPEAT:
            return
    group.errors.append(
        {
            "error": {"code": code, "message": message},
            "instanceActionDetails": {
                "action": "CREATING",
                "instance": instance,
                "version": {"instanceTemplate": group.template},
            },
            "timestamp": now_rfc3339(),
            "_time": now,
        }
    )


def create(gcp: FakeGcp, group: Group, name: str, alive: list[dict[str, Any]]) -> None:
    template = gcp.templates.get(short(group.template))
    counts = {z: 0 for z in group.zones}
    for i in alive:
        counts[short(i["zone"])] = counts.get(short(i["zone"]), 0) + 1
    open_zones = [z for z in group.zones if z not in gcp.no_capacity]
    url = link(f"zones/{(open_zones or group.zones)[0]}/instances/{name}")
    if template is None:
        return _error(group, "RESOURCE_NOT_FOUND", f"template {group.template} not found", url)
    if not open_zones:
        return _error(
            group,
            "ZONE_RESOURCE_POOL_EXHAUSTED",
            f"The zone does not have enough resources available to fulfill the request. "
            f"Try a different zone, or try again later. (zones: {', '.join(group.zones)})",
            url,
        )
    zone = min(open_zones, key=lambda z: (counts.get(z, 0), z))
    url = link(f"zones/{zone}/instances/{name}")
    props = template.get("properties") or {}
    machine = props.get("machineType", "")
    selections = (group.body.get("instanceFlexibilityPolicy") or {}).get("instanceSelections")
    if selections:
        best = min(selections.values(), key=lambda s: int(s.get("rank", 0)))
        machine = best["machineTypes"][0]
    if short(machine) not in MACHINE_TYPES:
        return _error(
            group,
            "RESOURCE_NOT_FOUND",
            f"The resource 'projects/{PROJECT}/zones/"
            f"{zone}/machineTypes/{short(machine)}' was not found",
            url,
        )
    for account in props.get("serviceAccounts") or []:
        email = account.get("email", "")
        if email not in ("default", *gcp.service_accounts):
            return _error(
                group,
                "INVALID_FIELD_VALUE",
                f"The resource '{email}' of type 'serviceAccount' was not found",
                url,
            )
    scheduling = dict(props.get("scheduling") or {})
    terminate_at = 0.0
    if scheduling.get("terminationTime"):
        terminate_at = datetime.fromisoformat(
            scheduling["terminationTime"].replace("Z", "+00:00")
        ).timestamp()
        if terminate_at <= time.time():
            return _error(
                group,
                "CONDITION_NOT_MET",
                "Invalid value for field "
                "'resource.scheduling.terminationTime': the time has passed",
                url,
            )
    gcp.instances[f"{zone}/{name}"] = _instance(gcp, group, template, name, zone, machine)
    gcp.instances[f"{zone}/{name}"]["_terminate_at"] = terminate_at
    alive.append(gcp.instances[f"{zone}/{name}"])
    made = gcp.instances[f"{zone}/{name}"]
    gcp.operation("insert", url, zone=zone, user="system", target_id=made["id"])


def _instance(
    gcp: FakeGcp, group: Group, template: dict[str, Any], name: str, zone: str, machine: str
) -> dict[str, Any]:
    props = template.get("properties") or {}
    serial = len(gcp.instances) + 10
    disks = []
    for n, disk in enumerate(props.get("disks") or []):
        params = disk.get("initializeParams") or {}
        disks.append(
            {
                "kind": "compute#attachedDisk",
                "boot": bool(disk.get("boot")),
                "autoDelete": bool(disk.get("autoDelete")),
                "deviceName": disk.get("deviceName") or f"persistent-disk-{n}",
                "diskSizeGb": str(params.get("diskSizeGb") or 10),
                "source": link(f"zones/{zone}/disks/{name}" + (f"-{n}" if n else "")),
                "type": "PERSISTENT",
                "mode": "READ_WRITE",
                "index": n,
            }
        )
    nics = []
    for nic in props.get("networkInterfaces") or []:
        item = {
            "network": link(f"global/networks/{short(nic.get('network') or 'default')}"),
            "networkIP": str(ipaddress.ip_address("10.128.0.0") + serial),
            "name": "nic0",
        }
        if nic.get("accessConfigs"):
            address = str(ipaddress.ip_address("203.0.113.0") + serial % 250)
            item["accessConfigs"] = [
                {**a, "natIP": address, "kind": "compute#accessConfig"}
                for a in nic["accessConfigs"]
            ]
        nics.append(item)
    metadata = {
        "kind": "compute#metadata",
        "fingerprint": secrets.token_urlsafe(8),
        "items": [
            *((props.get("metadata") or {}).get("items") or []),
            {"key": "created-by", "value": group.self_link.split("/compute/v1/")[1]},
            {"key": "instance-template", "value": template["selfLink"].split("/compute/v1/")[1]},
        ],
    }
    instance: dict[str, Any] = {
        "kind": "compute#instance",
        "id": new_id(),
        "name": name,
        "zone": link(f"zones/{zone}"),
        "machineType": link(f"zones/{zone}/machineTypes/{short(machine)}"),
        "status": "RUNNING",
        "creationTimestamp": now_rfc3339(),
        "lastStartTimestamp": now_rfc3339(),  # made RUNNING at once: started now
        "metadata": metadata,
        "labels": dict(props.get("labels") or {}),
        "scheduling": dict(props.get("scheduling") or {}),
        "serviceAccounts": list(props.get("serviceAccounts") or []),
        "disks": disks,
        "networkInterfaces": nics,
        "selfLink": link(f"zones/{zone}/instances/{name}"),
        "_group": group.key,
    }
    for key in ("tags", "shieldedInstanceConfig", "guestAccelerators", "description"):
        if key in props:
            instance[key] = props[key]
    return instance


# --- the API ------------------------------------------------------------------------------


def group_of(gcp: FakeGcp, call: Call) -> Group:
    region = region_of(call)
    found = gcp.groups.get(f"{region}/{call.path['instanceGroupManager']}")
    if found is None:
        raise ApiError(
            404,
            f"The resource 'projects/{PROJECT}/regions/{region}/instanceGroupManagers/"
            f"{call.path['instanceGroupManager']}' was not found",
        )
    return found


def group_api(gcp: FakeGcp, group: Group) -> dict[str, Any]:
    mine = members(gcp, group)
    deleting = len([i for i in mine if i.get("_deleting")])
    answer = {
        **{k: v for k, v in group.body.items() if k not in ("targetSize",)},
        "kind": "compute#instanceGroupManager",
        "id": group.id,
        "name": group.name,
        "creationTimestamp": group.created,
        "region": link(f"regions/{group.region}"),
        "instanceTemplate": group.template,
        "targetSize": group.target,
        "baseInstanceName": group.base,
        "instanceGroup": link(f"regions/{group.region}/instanceGroups/{group.name}"),
        "selfLink": group.self_link,
        "distributionPolicy": {
            **(group.body.get("distributionPolicy") or {}),
            "zones": [{"zone": link(f"zones/{z}")} for z in group.zones],
        },
        "currentActions": {
            "none": len(mine) - deleting,
            "deleting": deleting,
            "creating": 0,
            "recreating": 0,
        },
        "status": {"isStable": deleting == 0 and len(mine) - deleting == group.target},
    }
    return answer


@handles("compute.regionInstanceGroupManagers.insert")
def mig_insert(gcp: FakeGcp, call: Call) -> dict[str, Any]:
    gcp.project(call)
    region = region_of(call)
    body = dict(call.body)
    name = body.get("name", "")
    if f"{region}/{name}" in gcp.groups:
        raise ApiError(
            409,
            f"The resource 'projects/{PROJECT}/regions/{region}/"
            f"instanceGroupManagers/{name}' already exists",
        )
    template = body.get("instanceTemplate", "")
    if short(template) not in gcp.templates:
        raise ApiError(
            400,
            f"Invalid value for field 'resource.instanceTemplate': '{template}'. "
            "The referenced instance template does not exist.",
        )
    policy = body.get("distributionPolicy") or {}
    shape = policy.get("targetShape", "EVEN")
    if body.get("instanceFlexibilityPolicy") and shape == "EVEN":
        raise ApiError(
            400,
            "Instance flexibility needs distributionPolicy.targetShape "
            "ANY, ANY_SINGLE_ZONE or BALANCED",
        )
    zones = tuple(short(z["zone"]) for z in policy.get("zones", []))
    for zone in zones:
        if zone not in REGIONS[region]:
            raise ApiError(
                400,
                f"Invalid value for field 'resource.distributionPolicy': "
                f"zone {zone} is not in region {region}",
            )
    group = Group(
        name=name,
        region=region,
        zones=zones or REGIONS[region],
        template=link(f"global/instanceTemplates/{short(template)}"),
        target=int(body.get("targetSize") or 0),
        base=body.get("baseInstanceName") or name,
        body=body,
    )
    gcp.groups[group.key] = group
    return gcp.operation(
        "compute.regionInstanceGroupManagers.insert", group.self_link, region=region
    )


@handles("compute.regionInstanceGroupManagers.get")
def mig_get(gcp: FakeGcp, call: Call) -> dict[str, Any]:
    return group_api(gcp, group_of(gcp, call))


@handles("compute.regionInstanceGroupManagers.list")
def mig_list(gcp: FakeGcp, call: Call) -> dict[str, Any]:
    region = region_of(call)
    items = [group_api(gcp, g) for g in gcp.groups.values() if g.region == region]
    return {"kind": "compute#regionInstanceGroupManagerList", "id": "list", "items": items}


@handles("compute.regionInstanceGroupManagers.delete")
def mig_delete(gcp: FakeGcp, call: Call) -> dict[str, Any]:
    group = group_of(gcp, call)
    for instance in members(gcp, group):
        begin_delete(gcp, instance, "delete")
        instance["_group"] = ""
    del gcp.groups[group.key]
    return gcp.operation(
        "compute.regionInstanceGroupManagers.delete", group.self_link, region=group.region
    )


@handles("compute.regionInstanceGroupManagers.resize")
def mig_resize(gcp: FakeGcp, call: Call) -> dict[str, Any]:
    group = group_of(gcp, call)
    size = int(call.q("size"))
    if size < 0:
        raise ApiError(400, "Invalid value for field 'size': must be at least 0")
    group.target = size
    if size < len(group.configs):  # resizing below the named instances drops some of them
        for name in sorted(group.configs)[size:]:
            del group.configs[name]
            for instance in members(gcp, group):
                if instance["name"] == name:
                    begin_delete(gcp, instance, "resize")
    reconcile(gcp, group)
    return gcp.operation(
        "compute.regionInstanceGroupManagers.resize", group.self_link, region=group.region
    )


@handles("compute.regionInstanceGroupManagers.createInstances")
def mig_create_instances(gcp: FakeGcp, call: Call) -> dict[str, Any]:
    group = group_of(gcp, call)
    shape = (group.body.get("distributionPolicy") or {}).get("targetShape", "EVEN")
    if shape == "ANY":
        raise ApiError(400, "Per-instance configs are not supported with targetShape ANY")
    policy = group.body.get("updatePolicy") or {}
    if policy.get("instanceRedistributionType", "PROACTIVE") != "NONE":
        raise ApiError(
            400,
            "Creating instances with specific names in a regional managed "
            "instance group requires updatePolicy.instanceRedistributionType NONE",
        )
    wanted = [c["name"] for c in call.body.get("instances") or []]
    for name in wanted:
        if not name or name in group.configs:
            raise ApiError(
                400,
                f"Invalid value for field 'instances': instance '{name}' "
                "already exists in the group or has no name",
            )
    for config in call.body.get("instances") or []:
        group.configs[config["name"]] = {**config, "status": "APPLIED"}
    group.target += len(wanted)
    reconcile(gcp, group)
    return gcp.operation(
        "compute.regionInstanceGroupManagers.createInstances", group.self_link, region=group.region
    )


@handles("compute.regionInstanceGroupManagers.deleteInstances")
def mig_delete_instances(gcp: FakeGcp, call: Call) -> dict[str, Any]:
    group = group_of(gcp, call)
    skip = bool(call.body.get("skipInstancesOnValidationError"))
    chosen = []
    for url in call.body.get("instances") or []:
        found = [
            i for i in members(gcp, group)
            if i["selfLink"].endswith("/" + url.split("/compute/v1/")[-1].lstrip("/"))
            or i["selfLink"].endswith(f"/zones/{url}") or (i["name"] == url)
        ]  # fmt: skip
        if not found:
            if skip:
                continue
            raise ApiError(
                400,
                f"Invalid value for field 'instances': '{url}'. The instance is "
                "not a member of this instance group.",
                "invalid",
            )
        chosen.append(found[0])
    for instance in chosen:
        if not instance.get("_deleting"):
            group.target = max(0, group.target - 1)
        group.configs.pop(instance["name"], None)
        begin_delete(gcp, instance, "delete")
    return gcp.operation(
        "compute.regionInstanceGroupManagers.deleteInstances", group.self_link, region=group.region
    )


@handles("compute.regionInstanceGroupManagers.listManagedInstances")
def mig_list_managed(gcp: FakeGcp, call: Call) -> dict[str, Any]:
    group = group_of(gcp, call)
    out = []
    for instance in sorted(members(gcp, group), key=lambda i: i["name"]):
        item = {
            "instance": instance["selfLink"],
            "id": instance["id"],
            "name": instance["name"],
            "instanceStatus": instance["status"],
            "currentAction": "DELETING" if instance.get("_deleting") else "NONE",
            "version": {"instanceTemplate": group.template},
        }
        if instance["name"] in group.configs:
            item["preservedStateFromConfig"] = {}
        out.append(item)
    return {"managedInstances": out}


@handles("compute.regionInstanceGroupManagers.listErrors")
def mig_list_errors(gcp: FakeGcp, call: Call) -> dict[str, Any]:
    group = group_of(gcp, call)
    items = [{k: v for k, v in e.items() if not k.startswith("_")} for e in group.errors]
    return {"items": items}
