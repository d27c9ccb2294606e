"""The fake Resource Manager's simulation of a Flexible scale set and its activity log.

A mixin of FakeArm (fake_arm.py): VMs for the scale set's capacity, each with the OS
disk, NIC and public address ARM makes for it (removed with the VM per
`deleteOption`), scale-in, evictions with spot restore, refused allocations, and
autoscale's fixed-date profiles; every change written to the activity log the
monitor client reads. Deallocating VMs (the scale set's `deallocate` action) shuts
them down and keeps them, counted in the capacity (no replacement), shown as
`PowerState/deallocated`: no compute billed.
"""

from __future__ import annotations

import re
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from tests.azure.arm_ids import ArmError, now, type_of


@dataclass
class Vm:
    """A scale set VM as the simulator sees it (the stored model, not a GET answer)."""

    id: str
    name: str
    scale_set: str
    zone: str
    custom_data: str
    identities: list[str]
    priority: str
    created: float = field(default_factory=time.time)
    power: str = "running"  # or "deallocated"


class ScaleSetSimulation:
    """State FakeArm provides (see its __init__)."""

    lock: threading.RLock
    resources: dict[str, dict[str, Any]]
    models: dict[str, Any]
    vms: dict[str, Vm]
    owned: dict[str, list[str]]
    addresses: int
    listeners: list[Callable[[str, Vm], None]]
    capacity_refused: dict[str, int]
    activity: list[dict[str, Any]]

    def refuse_capacity(self, size: str, times: int = 1) -> None:
        """The next `times` allocations of this VM size fail (AllocationFailed)."""
        with self.lock:
            self.capacity_refused[size.lower()] = times

    def on_vm(self, listener: Callable[[str, Vm], None]) -> None:
        """listener("created" | "deleted" | "preempt", vm) as VMs come and go."""
        self.listeners.append(listener)

    def announce_eviction(self, vm_name: str) -> None:
        """Azure's Scheduled Events post a `Preempt` event for a spot VM (about 30 s
        before it goes)."""
        vm = self._vm_by_name(vm_name)
        for listener in list(self.listeners):
            listener("preempt", vm)

    def evict(self, vm_name: str) -> None:
        """Azure takes a spot VM: it is deleted (eviction policy Delete) and, with spot
        restore on, the scale set brings a new one for the same capacity."""
        vm = self._vm_by_name(vm_name)
        with self.lock:
            self._log(
                vm.id,
                "Microsoft.Compute/virtualMachines/evict/action",
                "Succeeded",
                "Spot VM evicted: capacity reclaimed by Azure",
            )
            scale_set = self.resources.get(vm.scale_set.lower())
            self._delete_vm(vm.id)
            restore = (scale_set or {}).get("properties", {}).get("spotRestorePolicy") or {}
            if scale_set and restore.get("enabled"):
                self._reconcile(scale_set["id"])

    def tick(self, now: float | None = None) -> None:
        """Apply autoscale fixed-date profiles whose start has passed."""
        moment = now if now is not None else time.time()
        with self.lock:
            for setting in [
                r
                for r in self.resources.values()
                if r["type"].lower() == "microsoft.insights/autoscalesettings"
            ]:
                props = setting["properties"]
                if props.get("enabled") is False:
                    continue
                target = self.resources.get(props["targetResourceUri"].lower())
                if target is None:
                    continue
                for profile in props.get("profiles", []):
                    fixed = profile.get("fixedDate")
                    if not fixed:
                        continue
                    start = datetime.fromisoformat(fixed["start"].replace("Z", "+00:00"))
                    end = datetime.fromisoformat(fixed["end"].replace("Z", "+00:00"))
                    if start.timestamp() <= moment < end.timestamp():
                        wanted = int(profile["capacity"]["default"])
                        if int(target["sku"]["capacity"]) != wanted:
                            target["sku"]["capacity"] = wanted
                            self._log(
                                target["id"],
                                "Microsoft.Insights/AutoscaleSettings/Scaledown/Action",
                                "Succeeded",
                                f"autoscale profile {profile['name']!r} set capacity to {wanted}",
                            )
                            self._reconcile(target["id"])

    def _reconcile(self, scale_set_id: str) -> None:
        """Make the scale set's VMs match its capacity (create or delete newest)."""
        with self.lock:
            scale_set = self.resources.get(scale_set_id.lower())
            if scale_set is None:
                return
            members = sorted(
                (v for v in self.vms.values() if v.scale_set.lower() == scale_set_id.lower()),
                key=lambda v: v.created,
            )
            wanted = int(scale_set["sku"]["capacity"])
            for vm in members[wanted:][::-1]:
                self._delete_vm(vm.id)
            for n in range(len(members), wanted):
                self._create_vm(scale_set, n)

    def _create_vm(self, scale_set: dict[str, Any], n: int) -> None:
        size = scale_set["sku"]["name"]
        refused = self.capacity_refused.get(size.lower(), 0)
        if refused:
            self.capacity_refused[size.lower()] = refused - 1
            self._log(
                scale_set["id"],
                "Microsoft.Compute/virtualMachines/write",
                "Failed",
                f"AllocationFailed: Allocation failed. We do not have sufficient capacity "
                f"for the requested VM size {size} in this region.",
            )
            return
        model = self.models[scale_set["id"].lower()]
        props = model["properties"]
        profile = props["virtualMachineProfile"]
        group = scale_set["id"].split("/providers/")[0]
        name = f"{scale_set['name'][:50]}_{secrets.token_hex(4)}"
        vm_id = f"{group}/providers/Microsoft.Compute/virtualMachines/{name}"
        zones = scale_set.get("zones") or [""]
        zone = zones[n % len(zones)]
        identities = list((model.get("identity") or {}).get("userAssignedIdentities") or {})
        storage = profile.get("storageProfile") or {}
        os_disk = storage.get("osDisk") or {}
        nics = (profile.get("networkProfile") or {}).get("networkInterfaceConfigurations") or []
        owned: list[tuple[str, bool]] = []
        disk_id = f"{group}/providers/Microsoft.Compute/disks/{name}_OsDisk_1"
        owned.append((disk_id, os_disk.get("deleteOption") == "Delete"))
        nic_ids = []
        attached: dict[str, dict[str, Any]] = {}  # public address id -> its properties
        for nic in nics:
            nic_id = f"{group}/providers/Microsoft.Network/networkInterfaces/{name}-{nic['name']}"
            nic_ids.append(nic_id)
            owned.append((nic_id, nic.get("properties", {}).get("deleteOption") == "Delete"))
            for ip in nic.get("properties", {}).get("ipConfigurations", []):
                pip = ip.get("properties", {}).get("publicIPAddressConfiguration")
                if pip:
                    pip_id = (
                        f"{group}/providers/Microsoft.Network/publicIPAddresses/"
                        f"{name}-{pip['name']}"
                    )
                    owned.append(
                        (pip_id, pip.get("properties", {}).get("deleteOption") == "Delete")
                    )
                    self.addresses += 1
                    attached[pip_id] = {
                        "ipAddress": f"20.0.{self.addresses // 250}.{self.addresses % 250 + 1}",
                        "ipConfiguration": {"id": f"{nic_id}/ipConfigurations/{ip['name']}"},
                    }
        for rid, _ in owned:
            rtype = type_of(rid)
            self.resources[rid.lower()] = {
                "id": rid,
                "name": rid.rsplit("/", 1)[1],
                "type": rtype,
                "location": scale_set["location"],
                "tags": dict(scale_set.get("tags") or {}),
                "properties": {"provisioningState": "Succeeded", **attached.get(rid, {})},
            }
        self.resources[vm_id.lower()] = {
            "id": vm_id,
            "name": name,
            "type": "Microsoft.Compute/virtualMachines",
            "location": scale_set["location"],
            "tags": dict(scale_set.get("tags") or {}),
            **({"zones": [zone]} if zone else {}),
            "properties": {
                "provisioningState": "Succeeded",
                "vmId": str(uuid.uuid4()),
                "virtualMachineScaleSet": {"id": scale_set["id"]},
                "hardwareProfile": {"vmSize": size},
                "priority": profile.get("priority", "Regular"),
                "evictionPolicy": profile.get("evictionPolicy"),
                "networkProfile": {"networkInterfaces": [{"id": i} for i in nic_ids]},
                "timeCreated": now(),
            },
        }
        self.owned[vm_id.lower()] = [rid for rid, delete in owned if delete]
        vm = Vm(
            vm_id,
            name,
            scale_set["id"],
            zone,
            str((profile.get("osProfile") or {}).get("customData") or ""),
            identities,
            str(profile.get("priority", "Regular")),
        )
        self.vms[vm_id.lower()] = vm
        self._log(
            vm_id,
            "Microsoft.Compute/virtualMachines/write",
            "Succeeded",
            f"created by scale set {scale_set['name']}",
        )
        for listener in list(self.listeners):
            listener("created", vm)

    def _delete_vm(self, vm_id: str) -> None:
        with self.lock:
            vm = self.vms.pop(vm_id.lower(), None)
            stored = self.resources.pop(vm_id.lower(), None)
            for rid in self.owned.pop(vm_id.lower(), []):
                self.resources.pop(rid.lower(), None)
            if stored is not None:
                self._log(vm_id, "Microsoft.Compute/virtualMachines/delete", "Succeeded", "")
        if vm is not None:
            for listener in list(self.listeners):
                listener("deleted", vm)

    def _vm_by_name(self, name: str) -> Vm:
        with self.lock:
            for vm in self.vms.values():
                if vm.name.lower() == name.lower():
                    return vm
        raise KeyError(name)

    def _deallocate(
        self, scale_set_id: str, model: Callable[[], type] | None, record: Any
    ) -> tuple[int, Any, dict[str, str]]:
        """Deallocate the named VMs of the scale set (all of them without `instanceIds`),
        as a long-running operation: each is shut down and kept, not replaced."""
        self._check(model, record.body or {}, create=True)  # type: ignore[attr-defined]
        wanted = [i.lower() for i in (record.body or {}).get("instanceIds") or []]
        with self.lock:
            members = {
                v.name.lower(): v
                for v in self.vms.values()
                if v.scale_set.lower() == scale_set_id.lower()
            }
            missing = [i for i in wanted if i not in members]
            if missing:
                raise ArmError(
                    400, "InvalidParameter", f"The instance ids {missing} are not in the scale set."
                )
        chosen = [members[i] for i in wanted] if wanted else list(members.values())

        def deallocate() -> None:
            with self.lock:
                for vm in chosen:
                    if vm.id.lower() not in self.vms or vm.power == "deallocated":
                        continue
                    vm.power = "deallocated"
                    self._log(
                        vm.id,
                        "Microsoft.Compute/virtualMachines/deallocate/action",
                        "Succeeded",
                        "",
                    )
            for vm in chosen:
                for listener in list(self.listeners):
                    listener("deallocated", vm)

        return self._start_operation(  # type: ignore[attr-defined,no-any-return]
            scale_set_id, None, "delete", None, deallocate, 202
        )

    def _instance_view(self, vm: dict[str, Any]) -> dict[str, Any]:
        seen = self.vms.get(str(vm.get("id", "")).lower())
        if seen is not None and seen.power == "deallocated":
            power = {
                "code": "PowerState/deallocated",
                "level": "Info",
                "displayStatus": "VM deallocated",
            }
        else:
            power = {"code": "PowerState/running", "level": "Info", "displayStatus": "VM running"}
        return {
            "statuses": [
                {
                    "code": "ProvisioningState/succeeded",
                    "level": "Info",
                    "displayStatus": "Provisioning succeeded",
                },
                power,
            ]
        }

    # --- the activity log -------------------------------------------------------------------

    def _log(self, resource_id: str, operation: str, status: str, message: str) -> None:
        group = re.match(r"(?i)^/subscriptions/[^/]+/resourcegroups/([^/]+)", resource_id)
        self.activity.append(
            {
                "eventDataId": str(uuid.uuid4()),
                "eventTimestamp": now(),
                "resourceId": resource_id,
                "resourceGroupName": group.group(1) if group else "",
                "operationName": {"value": operation, "localizedValue": operation},
                "status": {"value": status, "localizedValue": status},
                "level": "Error" if status == "Failed" else "Informational",
                "properties": {"statusMessage": message} if message else {},
            }
        )

    def _activity(self, flt: str) -> list[dict[str, Any]]:
        group = re.search(r"resourceGroupName\s+eq\s+'([^']+)'", flt)
        if not re.search(r"eventTimestamp\s+ge\s+'", flt):
            raise ArmError(400, "BadRequest", "The filter must contain an eventTimestamp range.")
        with self.lock:
            return [
                dict(e)
                for e in self.activity
                if not group or e["resourceGroupName"].lower() == group.group(1).lower()
            ]
