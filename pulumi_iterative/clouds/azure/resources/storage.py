"""The task's storage account and private container, or the user's container.

The account: HTTPS only, TLS 1.2 minimum, no public blob access, and shared-key
access off, so only Azure AD identities (the caller, the task's managed identity)
can reach the data. Azure encrypts it at rest, always.
"""

from __future__ import annotations

from typing import Any

from ....errors import NotFound
from ..api import Azure, AzureError, call, gone

ACCOUNT_PROPERTIES = {
    "supportsHttpsTrafficOnly": True,
    "minimumTlsVersion": "TLS1_2",
    "allowBlobPublicAccess": False,
    "allowSharedKeyAccess": False,
    "allowCrossTenantReplication": False,
    "defaultToOAuthAuthentication": True,
}


def account_body(location: str, tags: dict[str, str]) -> dict[str, Any]:
    return {
        "sku": {"name": "Standard_LRS"},
        "kind": "StorageV2",
        "location": location,
        "tags": tags,
        "properties": dict(ACCOUNT_PROPERTIES),
    }


def create_account(az: Azure, group: str, account: str, location: str, tags: dict[str, str]) -> str:
    """The account's resource id."""
    try:
        return str(call(az.storage.storage_accounts.get_properties, group, account).id)
    except NotFound:
        pass
    made = call(
        az.storage.storage_accounts.begin_create,
        group,
        account,
        account_body(location, tags),
        what=f"create storage account {account}",
    )
    return str(made.id)


def delete_account(az: Azure, group: str, account: str) -> None:
    """The account and every container in it."""
    gone(az.storage.storage_accounts.delete, group, account)


def create_container(az: Azure, group: str, account: str, container: str) -> str:
    """A private container; its resource id (the scope of the machine's data role)."""
    try:
        found = call(az.storage.blob_containers.get, group, account, container)
        return str(found.id)
    except NotFound:
        pass
    made = call(
        az.storage.blob_containers.create,
        group,
        account,
        container,
        {"properties": {"publicAccess": "None"}},
        what=f"create container {container}",
    )
    return str(made.id)


def delete_container(az: Azure, group: str, account: str, container: str) -> None:
    gone(az.storage.blob_containers.delete, group, account, container)


def find_account(az: Azure, account: str) -> tuple[str, str]:
    """A user's storage account by name -> (resource group, location)."""
    for found in call(lambda: list(az.storage.storage_accounts.list())):
        if found.name == account:
            group = str(found.id).split("/resourceGroups/", 1)[1].split("/", 1)[0]
            return group, str(found.location)
    raise AzureError(
        f"storage.container: storage account {account!r} is not in this subscription; "
        "create it or leave container empty to let the task make its own",
        "StorageAccountNotFound",
    )


def check_container(az: Azure, account: str, container: str) -> str:
    """storage.container: the user's container is there; its resource id."""
    group, _ = find_account(az, account)
    try:
        return str(call(az.storage.blob_containers.get, group, account, container).id)
    except NotFound as exc:
        raise AzureError(
            f"storage.container: container {container!r} does not exist in account "
            f"{account!r}; create it or leave container empty",
            "ContainerNotFound",
        ) from exc
