"""The machines: a Flexible scale set across the region's zones.

Spot as `priority: Spot`, `evictionPolicy: Delete`, `billingProfile.maxPrice` (-1 =
up to the on-demand price) and spot restore on, so an evicted VM comes back when
capacity does. The bootstrap is the custom data (it holds nothing secret); the
OS disk, NIC and public address go with their VM; no password, and an SSH key
whose private half is thrown away at once, so nobody can log in. Created at
capacity 0; `set_capacity` starts the machines.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

from ....errors import NotFound
from ..api import Azure, call, gone

NETWORK_API_VERSION = "2020-11-01"  # what Flexible orchestration requires
ADMIN_USER = "azureuser"


@dataclass(frozen=True)
class ImageRef:
    """publisher:offer:sku:version, or a native image resource id."""

    text: str

    def reference(self) -> dict[str, str]:
        if self.text.startswith("/subscriptions/"):
            return {"id": self.text}
        publisher, offer, sku, version = self.text.split(":")
        return {"publisher": publisher, "offer": offer, "sku": sku, "version": version}


def unusable_ssh_key() -> str:
    """A fresh public key whose private key is never kept: Linux VMs need one key, and
    with password login off, nobody can use this one."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=3072)
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    return public.decode()


def body(
    *,
    location: str,
    tags: dict[str, str],
    size: str,
    zones: list[str],
    spot: float,
    image: ImageRef,
    disk_size: int,
    custom_data: str,
    identity_id: str,
    subnet_id: str,
    nsg_id: str,
    computer_name_prefix: str,
    encryption_at_host: bool,
) -> dict[str, Any]:
    os_disk: dict[str, Any] = {
        "createOption": "FromImage",
        "deleteOption": "Delete",
        "caching": "ReadWrite",
        "managedDisk": {"storageAccountType": "StandardSSD_LRS"},
    }
    if disk_size > 0:
        os_disk["diskSizeGB"] = disk_size
    profile: dict[str, Any] = {
        "osProfile": {
            "computerNamePrefix": computer_name_prefix,
            "adminUsername": ADMIN_USER,
            "customData": base64.b64encode(custom_data.encode()).decode(),
            "linuxConfiguration": {
                "disablePasswordAuthentication": True,
                "ssh": {
                    "publicKeys": [
                        {
                            "path": f"/home/{ADMIN_USER}/.ssh/authorized_keys",
                            "keyData": unusable_ssh_key(),
                        }
                    ]
                },
            },
        },
        "storageProfile": {"imageReference": image.reference(), "osDisk": os_disk},
        "networkProfile": {
            "networkApiVersion": NETWORK_API_VERSION,
            "networkInterfaceConfigurations": [
                {
                    "name": "nic",
                    "properties": {
                        "primary": True,
                        "deleteOption": "Delete",
                        "networkSecurityGroup": {"id": nsg_id},
                        "ipConfigurations": [
                            {
                                "name": "ip",
                                "properties": {
                                    "primary": True,
                                    "subnet": {"id": subnet_id},
                                    "publicIPAddressConfiguration": {
                                        "name": "pip",
                                        "sku": {"name": "Standard", "tier": "Regional"},
                                        "properties": {"deleteOption": "Delete"},
                                    },
                                },
                            }
                        ],
                    },
                }
            ],
        },
        "securityProfile": {"encryptionAtHost": encryption_at_host},
    }
    properties: dict[str, Any] = {
        "orchestrationMode": "Flexible",
        "platformFaultDomainCount": 1,
        "singlePlacementGroup": False,
        "virtualMachineProfile": profile,
    }
    if spot >= 0:
        profile["priority"] = "Spot"
        profile["evictionPolicy"] = "Delete"
        profile["billingProfile"] = {"maxPrice": spot if spot > 0 else -1}
        properties["spotRestorePolicy"] = {"enabled": True, "restoreTimeout": "PT1H"}
    made: dict[str, Any] = {
        "location": location,
        "tags": tags,
        "sku": {"name": size, "tier": "Standard", "capacity": 0},
        "identity": {"type": "UserAssigned", "userAssignedIdentities": {identity_id: {}}},
        "properties": properties,
    }
    if zones:
        made["zones"] = list(zones)
    return made


def create(az: Azure, group: str, name: str, payload: dict[str, Any]) -> str:
    try:
        return str(call(az.compute.virtual_machine_scale_sets.get, group, name).id)
    except NotFound:
        pass
    made = call(
        az.compute.virtual_machine_scale_sets.begin_create_or_update,
        group,
        name,
        payload,
        what=f"create scale set {name}",
    )
    return str(made.id)


def set_capacity(az: Azure, group: str, name: str, capacity: int) -> None:
    call(
        az.compute.virtual_machine_scale_sets.begin_update,
        group,
        name,
        {"sku": {"capacity": capacity}},
        what=f"set capacity of {name} to {capacity}",
    )


def delete(az: Azure, group: str, name: str) -> None:
    """The scale set and its VMs (force: a stop must not wait for spot VMs)."""
    gone(
        az.compute.virtual_machine_scale_sets.begin_delete,
        group,
        name,
        what=f"delete scale set {name}",
    )


def vms(az: Azure, group: str, scale_set_id: str) -> list[Any]:
    """The scale set's VMs, with their instance view (power and provisioning states)."""
    found = call(lambda: list(az.compute.virtual_machines.list(group, expand="instanceView")))
    return [
        v
        for v in found
        if v.virtual_machine_scale_set
        and str(v.virtual_machine_scale_set.id).lower() == scale_set_id.lower()
    ]


def addresses(az: Azure, group: str) -> dict[str, str]:
    """Network interface id (lowercase) -> its public address, for the group's addresses."""
    out = {}
    for found in call(lambda: list(az.network.public_ip_addresses.list(group))):
        config = (
            getattr(found.properties, "ip_configuration", None)
            if getattr(found, "properties", None)
            else getattr(found, "ip_configuration", None)
        )
        address = (
            getattr(found.properties, "ip_address", None)
            if getattr(found, "properties", None)
            else getattr(found, "ip_address", None)
        )
        if config is not None and config.id and address:
            out[str(config.id).lower().split("/ipconfigurations/")[0]] = str(address)
    return out


def remove_vms(az: Azure, group: str, name: str, vm_names: list[str]) -> None:
    if vm_names:
        call(
            az.compute.virtual_machine_scale_sets.begin_delete_instances,
            group,
            name,
            {"instanceIds": vm_names},
            what=f"remove machines from {name}",
        )


def states(vm: Any) -> tuple[str, str]:
    """(provisioning state, power state) from a VM's instance view."""
    view = getattr(getattr(vm, "properties", None), "instance_view", None) or getattr(
        vm, "instance_view", None
    )
    provisioning, power = "", ""
    for status in getattr(view, "statuses", None) or []:
        code = str(status.code or "")
        if code.startswith("ProvisioningState/"):
            provisioning = code.split("/", 1)[1]
        elif code.startswith("PowerState/"):
            power = code.split("/", 1)[1]
    return provisioning, power


def still_there(az: Azure, group: str, name: str) -> bool:
    try:
        call(az.compute.virtual_machine_scale_sets.get, group, name)
    except NotFound:
        return False
    return True
