"""The instance template: what every machine of the task boots from.

Image pinned at create (an image family resolves to its newest image, so every
replacement boots the same one); a balanced persistent boot disk (encrypted at rest
by GCE, deleted with the machine); spot as `provisioningModel: SPOT` with
`instanceTerminationAction: DELETE` (a preempted machine is gone and the group makes
a new one), never legacy preemptible; GPUs as guest accelerators with
`onHostMaintenance: TERMINATE`; shielded VM; the task's service account with only
the storage and compute scopes; no project-wide SSH keys; the network tag the
deny-all firewall rule targets. The bootstrap is the `startup-script` metadata value
and holds nothing secret. `scheduling.terminationTime` is the backstop: GCE deletes
the machine at that time whatever runs on it, and any machine the group makes later
carries the same past time (the test fakes refuse to make it).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from ....errors import NotFound
from ..api import GcpError, call, compute
from ..catalog import split_machine
from ..names import Names
from .network import network_link

MACHINE_SCOPES = (
    "https://www.googleapis.com/auth/devstorage.read_write",  # the bucket (IAM narrows it)
    "https://www.googleapis.com/auth/compute",  # leaving the group (IAM narrows it)
)


@dataclass(frozen=True)
class Image:
    link: str
    name: str
    size_gb: int


def resolve_image(native: str) -> Image:
    """`projects/P/global/images/family/F` -> its newest image; an image as it is."""
    parts = native.split("/")
    project = parts[1]
    client = compute("Images")
    try:
        if "family" in parts:
            found = call(client.get_from_family, project=project, family=parts[-1])
        else:
            found = call(client.get, project=project, image=parts[-1])
    except NotFound as exc:
        raise GcpError(f"image: {native} does not exist (or is not visible to you)", 404) from exc
    return Image(found.self_link, found.name, int(found.disk_size_gb or 0))


def rfc3339(when: float) -> str:
    return datetime.fromtimestamp(when, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def template_body(
    *,
    names: Names,
    machine: str,
    image: Image,
    disk_size: int,
    spot: bool,
    account: str,
    startup_script: str,
    labels: dict[str, str],
    network: str,
    terminate_at: float,
    install_gpu_driver: bool,
) -> dict[str, Any]:
    """The template as the API's JSON (InstanceTemplate); the SDK message is made from it."""
    machine_type, accelerator, count = split_machine(machine)
    gpu = bool(accelerator) or machine_type.split("-")[0] in ("a2", "a3", "g2")
    disk: dict[str, Any] = {
        "boot": True,
        "autoDelete": True,
        "type": "PERSISTENT",
        "initializeParams": {"sourceImage": image.link, "diskType": "pd-balanced"},
    }
    size = disk_size if disk_size > 0 else image.size_gb
    if size > 0:
        disk["initializeParams"]["diskSizeGb"] = str(size)
    scheduling: dict[str, Any] = {
        "provisioningModel": "SPOT" if spot else "STANDARD",
        "instanceTerminationAction": "DELETE",
        "automaticRestart": not spot,
        "onHostMaintenance": "TERMINATE" if spot or gpu else "MIGRATE",
        "terminationTime": rfc3339(terminate_at),
    }
    metadata = [
        {"key": "startup-script", "value": startup_script},
        {"key": "block-project-ssh-keys", "value": "TRUE"},
    ]
    if install_gpu_driver:
        metadata.append({"key": "install-nvidia-driver", "value": "True"})
    properties: dict[str, Any] = {
        "machineType": machine_type,
        "description": f"pulumi-iterative task {names.task_id}",
        "disks": [disk],
        "networkInterfaces": [
            {
                "network": network_link(network),
                # Outbound only (the bucket, package mirrors): no firewall rule lets
                # anything in, and the deny rule shuts the default ones.
                "accessConfigs": [{"type": "ONE_TO_ONE_NAT", "name": "External NAT"}],
            }
        ],
        "serviceAccounts": [{"email": account, "scopes": list(MACHINE_SCOPES)}],
        "scheduling": scheduling,
        "metadata": {"items": metadata},
        "labels": dict(labels),
        "tags": {"items": [names.network_tag]},
        "shieldedInstanceConfig": {
            # Secure boot refuses the unsigned kernel modules GPU drivers load.
            "enableSecureBoot": not gpu,
            "enableVtpm": True,
            "enableIntegrityMonitoring": True,
        },
    }
    if accelerator:
        properties["guestAccelerators"] = [
            {"acceleratorType": accelerator, "acceleratorCount": count}
        ]
    return {"name": names.template, "properties": properties}


def create_template(project: str, body: dict[str, Any]) -> None:
    from google.cloud import compute_v1

    client = compute("InstanceTemplates")
    try:
        call(client.get, project=project, instance_template=body["name"])
        return  # made by an earlier try
    except NotFound:
        pass
    resource = compute_v1.InstanceTemplate.from_json(_json(body))
    try:
        call(client.insert, project=project, instance_template_resource=resource)
    except GcpError as exc:
        if exc.status != 409:
            raise


def _json(body: dict[str, Any]) -> str:
    import json

    return json.dumps(body)


def read_template(project: str, names: Names) -> Any:
    return call(compute("InstanceTemplates").get, project=project, instance_template=names.template)


def delete_template(project: str, names: Names) -> None:
    call(compute("InstanceTemplates").delete, project=project, instance_template=names.template)
