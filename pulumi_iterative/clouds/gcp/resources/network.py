"""No ingress: a firewall rule that denies every inbound connection to the task's machines.

The default network of a project usually carries `default-allow-ssh` (and RDP, ICMP)
for every instance; a deny rule at priority 100 on the task's network tag overrides
them, so nothing reaches the machines. They need only outbound traffic (the bucket,
package mirrors), which stays open.
"""

from __future__ import annotations

from ....errors import NotFound
from ..api import GcpError, call, compute
from ..names import Names

DENY_PRIORITY = 100


def network_link(network: str) -> str:
    return network if "/" in network else f"global/networks/{network}"


def check_network(project: str, network: str) -> None:
    try:
        call(compute("Networks").get, project=project, network=network.rsplit("/", 1)[-1])
    except NotFound as exc:
        raise GcpError(
            f"network {network!r} does not exist in project {project}; create it (a default "
            "network: `gcloud compute networks create default`) or name another",
            404,
        ) from exc


def create_firewall(project: str, names: Names, network: str) -> None:
    from google.cloud import compute_v1

    client = compute("Firewalls")
    try:
        call(client.get, project=project, firewall=names.firewall)
        return
    except NotFound:
        pass
    rule = compute_v1.Firewall(
        name=names.firewall,
        description=f"pulumi-iterative task {names.task_id}: no inbound access at all",
        network=network_link(network),
        direction="INGRESS",
        priority=DENY_PRIORITY,
        denied=[compute_v1.Denied(I_p_protocol="all")],
        source_ranges=["0.0.0.0/0"],
        target_tags=[names.network_tag],
    )
    try:
        call(client.insert, project=project, firewall_resource=rule)
    except GcpError as exc:
        if exc.status != 409:
            raise


def delete_firewall(project: str, names: Names) -> None:
    call(compute("Firewalls").delete, project=project, firewall=names.firewall)
