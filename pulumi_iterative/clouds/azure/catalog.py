"""Azure's offer as data: VM sizes, regions, zones and images. No SDK here.

Sizes, best first (later ones are capacity fallbacks). B-series sizes are left out
on purpose: they cannot run as Spot. Every size listed supports encryption at
host (`ENCRYPTION_AT_HOST`), which the scale set asks for.
"""

from __future__ import annotations

import re

from ..base import CloudCatalog

MACHINES: dict[str, tuple[str, ...]] = {
    "s": ("Standard_D2as_v5", "Standard_D2s_v5"),
    "m": ("Standard_D8s_v5", "Standard_D8as_v5"),
    "l": ("Standard_D32s_v5", "Standard_D32as_v5"),
    "xl": ("Standard_D64s_v5", "Standard_D64as_v5"),
    "m+t4": ("Standard_NC4as_T4_v3",),
    "l+t4": ("Standard_NC64as_T4_v3",),
    "m+a10g": ("Standard_NV36ads_A10_v5",),
    "m+a100": ("Standard_NC24ads_A100_v4",),
    "xl+a100": ("Standard_ND96asr_v4",),
    "xl+h100": ("Standard_ND96isr_H100_v5",),
}
REGIONS = {
    "us-east": "eastus",
    "us-west": "westus2",
    "eu-north": "northeurope",
    "eu-west": "westeurope",
}
# Availability zones of each region the generic names map to (all four have three).
ZONES: dict[str, tuple[str, ...]] = {region: ("1", "2", "3") for region in REGIONS.values()}
IMAGES = {
    "ubuntu": "Canonical:ubuntu-24_04-lts:server:latest",
    # Ubuntu 22.04 with the NVIDIA driver and CUDA (Microsoft's HPC image).
    "nvidia": "microsoft-dsvm:ubuntu-hpc:2204:latest",
}
ENCRYPTION_AT_HOST = frozenset(t for types in MACHINES.values() for t in types)

CATALOG = CloudCatalog(
    machines=MACHINES,
    regions=REGIONS,
    default_region="us-east",
    images=IMAGES,
    native_machine=re.compile(r"^Standard_[A-Za-z0-9_-]+$"),
    native_region=re.compile(r"^[a-z]+[a-z0-9]*$"),
    native_image=re.compile(r"^[^:\s]+:[^:\s]+:[^:\s]+:[^:\s]+$|^/subscriptions/\S+$"),
    notes={
        "spot": "Spot VMs (priority Spot, eviction Delete); -1 on-demand, 0 up to the "
        "on-demand price, >0 a maximum price per hour in USD",
        "region": "an Azure region name like eastus or westeurope",
        "image": "publisher:offer:sku:version or an image resource id",
        "permission_set": "a user-assigned managed identity resource id",
    },
)


def zones(region: str) -> tuple[str, ...]:
    """The zones a scale set spreads over; () where the region has none we know of."""
    return ZONES.get(region, ())
