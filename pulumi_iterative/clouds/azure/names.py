"""Every Azure name and tag of a task, derived from its id, plus the Blob remote's shape.

No SDK here: the workstation's backend and the agent on the machine both import it,
so they can never disagree on a name. Task ids are lowercase, at most 41 characters,
so `pulumi-iterative-<id>` (at most 58) fits every Azure limit that applies: resource
groups 90, scale sets 64, identities 128, containers 63. Storage accounts allow only
3-24 lowercase letters and digits and are global, so theirs is a hash of the id.
"""

from __future__ import annotations

import hashlib
import os
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from ... import remotes

PREFIX = "pulumi-iterative"
TASK_TAG = "pulumi-iterative-task"  # on every object the task makes
SUBNET = "machines"
# Storage Blob Data Contributor, a built-in role: read, write and delete blobs.
BLOB_DATA_CONTRIBUTOR = "ba92f5b4-2d11-453d-a403-e96b0029c9fe"
# What a machine's identity may do to its scale set (assigned on the scale set alone):
# see it and remove instances (itself).
LEAVE_ACTIONS = (
    "Microsoft.Compute/virtualMachineScaleSets/read",
    "Microsoft.Compute/virtualMachineScaleSets/delete/action",
    # A VM that cannot leave deallocates itself through its scale set instead: a stopped
    # VM is billed, a deallocated one is not. Scoped to the scale set like the leave.
    "Microsoft.Compute/virtualMachineScaleSets/deallocate/action",
)
# Flexible scale set VMs are resources of the group, not of the scale set: seeing them
# (to tell a replaced machine's index is free) is a read on the resource group.
SEE_MACHINES_ACTIONS = ("Microsoft.Compute/virtualMachines/read",)
LEAVE_GROUP_ACTIONS = LEAVE_ACTIONS + SEE_MACHINES_ACTIONS  # every compute action a VM has
BLOB_EMULATOR_ENV = "PULUMI_ITERATIVE_BLOB_ENDPOINT"
LOOPBACK = ("127.0.0.1", "localhost", "::1")
_NAMESPACE = uuid.UUID("5b0c7f1e-8a34-4d7e-9a51-3f1e2b6a9c01")  # role GUIDs of this package


@dataclass(frozen=True)
class Names:
    task_id: str

    @property
    def base(self) -> str:
        return re.sub(r"-{2,}", "-", f"{PREFIX}-{self.task_id}")

    @property
    def resource_group(self) -> str:
        return self.base

    @property
    def storage_account(self) -> str:
        return "pi" + hashlib.sha256(self.task_id.encode()).hexdigest()[:22]

    @property
    def container(self) -> str:
        return self.base

    @property
    def identity(self) -> str:
        return self.base

    @property
    def network(self) -> str:
        return self.base

    @property
    def security_group(self) -> str:
        return self.base

    @property
    def scale_set(self) -> str:
        return self.base

    @property
    def computer_name_prefix(self) -> str:
        return "pitask"

    @property
    def backstop(self) -> str:
        return f"{self.base}-deadline"

    @property
    def leave_role(self) -> str:
        """The GUID of the task's custom role (remove instances from its scale set)."""
        return str(uuid.uuid5(_NAMESPACE, f"{self.task_id}/role/leave-group"))

    @property
    def leave_role_name(self) -> str:
        return f"{PREFIX} leave group {self.task_id}"

    @property
    def machines_role(self) -> str:
        """The GUID of the task's custom role (read the VMs of its resource group)."""
        return str(uuid.uuid5(_NAMESPACE, f"{self.task_id}/role/see-machines"))

    @property
    def machines_role_name(self) -> str:
        return f"{PREFIX} see machines {self.task_id}"

    def assignment(self, what: str) -> str:
        """The GUID of one of the task's role assignments ("blob", "leave", "see")."""
        return str(uuid.uuid5(_NAMESPACE, f"{self.task_id}/assignment/{what}"))


def tags(task_id: str, extra: Mapping[str, str]) -> dict[str, str]:
    return {**dict(extra), TASK_TAG: task_id}


def resource_id(subscription: str, group: str, kind: str = "", name: str = "") -> str:
    """`/subscriptions/s/resourceGroups/g[/providers/<kind>/<name>]`."""
    base = f"/subscriptions/{subscription}/resourceGroups/{group}"
    return f"{base}/providers/{kind}/{name}" if kind else base


def container_id(subscription: str, group: str, account: str, container: str) -> str:
    return (
        resource_id(subscription, group, "Microsoft.Storage/storageAccounts", account)
        + f"/blobServices/default/containers/{container}"
    )


def blob_root(container: str, prefix: str) -> str:
    """The rclone on-the-fly remote for a container and key prefix."""
    return remotes.root("azureblob", container, prefix)


def split_root(root: str) -> tuple[str, str]:
    """`:azureblob:container/pre/fix` -> ("container", "pre/fix")."""
    return remotes.split(root, "azureblob", "an Azure Blob remote")


key = remotes.key


def blob_emulator(environ: Mapping[str, str] | None = None) -> str:
    """A Blob emulator endpoint (azurite on loopback) to use instead of Azure's."""
    env = os.environ if environ is None else environ
    value = env.get(BLOB_EMULATOR_ENV, "").strip().rstrip("/")
    if value:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or parts.hostname not in LOOPBACK:
            raise ValueError(
                f"{BLOB_EMULATOR_ENV}={value!r}: only an emulator on loopback may replace "
                "Azure Blob storage"
            )
    return value


def remote_env(account: str, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The non-secret rclone settings for Blob storage: the account, and credentials
    from the runtime (`env_auth`: the caller's `az login` on the workstation, the VM's
    managed identity on a machine); never a key or SAS.

    Against an emulator, only the endpoint differs (and the account is the emulator's
    own, the first part of its path): the same keyless Azure AD path is used.
    """
    emulator = blob_emulator(environ)
    env = {"RCLONE_AZUREBLOB_ACCOUNT": account, "RCLONE_AZUREBLOB_ENV_AUTH": "true"}
    if emulator:
        env["RCLONE_AZUREBLOB_ACCOUNT"] = urlsplit(emulator).path.strip("/").split("/")[0]
        env["RCLONE_AZUREBLOB_ENDPOINT"] = emulator
    return env


def blob_endpoint(env: Mapping[str, str]) -> str:
    """The Blob service URL of a remote's settings (what azure-storage-blob takes)."""
    return env.get("RCLONE_AZUREBLOB_ENDPOINT") or (
        f"https://{env['RCLONE_AZUREBLOB_ACCOUNT']}.blob.core.windows.net"
    )
