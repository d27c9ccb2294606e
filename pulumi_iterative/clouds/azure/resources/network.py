"""The machines' network: a security group with no inbound rule, and a virtual
network whose one subnet uses it. Outbound goes through each VM's public address
(Flexible scale sets have no default outbound access); nothing comes in."""

from __future__ import annotations

from typing import Any

from ....errors import NotFound
from ..api import Azure, call, gone
from ..names import SUBNET

ADDRESS_SPACE = "10.0.0.0/16"
SUBNET_PREFIX = "10.0.0.0/20"


def create_security_group(
    az: Azure, group: str, name: str, location: str, tags: dict[str, str]
) -> str:
    try:
        return str(call(az.network.network_security_groups.get, group, name).id)
    except NotFound:
        pass
    made = call(
        az.network.network_security_groups.begin_create_or_update,
        group,
        name,
        {"location": location, "tags": tags, "properties": {"securityRules": []}},
        what=f"create network security group {name}",
    )
    return str(made.id)


def delete_security_group(az: Azure, group: str, name: str) -> None:
    gone(az.network.network_security_groups.begin_delete, group, name)


def network_body(location: str, tags: dict[str, str], nsg_id: str) -> dict[str, Any]:
    return {
        "location": location,
        "tags": tags,
        "properties": {
            "addressSpace": {"addressPrefixes": [ADDRESS_SPACE]},
            "subnets": [
                {
                    "name": SUBNET,
                    "properties": {
                        "addressPrefix": SUBNET_PREFIX,
                        "networkSecurityGroup": {"id": nsg_id},
                    },
                }
            ],
        },
    }


def create_network(
    az: Azure, group: str, name: str, location: str, tags: dict[str, str], nsg_id: str
) -> str:
    """The subnet's resource id."""
    try:
        call(az.network.virtual_networks.get, group, name)
    except NotFound:
        call(
            az.network.virtual_networks.begin_create_or_update,
            group,
            name,
            network_body(location, tags, nsg_id),
            what=f"create virtual network {name}",
        )
    return f"{call(az.network.virtual_networks.get, group, name).id}/subnets/{SUBNET}"


def delete_network(az: Azure, group: str, name: str) -> None:
    gone(az.network.virtual_networks.begin_delete, group, name)
