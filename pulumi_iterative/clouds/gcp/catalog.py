"""GCP machine types, regions and images, as data (no SDK).

A machine is a machine type, optionally with attached GPUs written
`<type>+<accelerator>*<count>` (N1 with T4s); the accelerator-optimized families
(G2 with L4, A2 with A100, A3 with H100) carry their GPUs in the type itself.
Regions are regions: the group spreads over all of the region's zones, so
capacity anywhere in the region serves. A zone (`us-east1-c`) is taken too and
keeps the group in that zone.
"""

from __future__ import annotations

import re

from ..base import CloudCatalog
from .prices import PRICES, split_machine

__all__ = ["CATALOG", "split_location", "split_machine"]

CATALOG = CloudCatalog(
    # generic machine -> machine types, best first (later ones are capacity fallbacks,
    # given to the group as an instance flexibility policy)
    machines={
        "s": ("e2-medium",),
        "m": ("n2-standard-8", "e2-standard-8"),
        "l": ("n2-standard-32",),
        "xl": ("n2-standard-64",),
        "m+t4": ("n1-standard-4+nvidia-tesla-t4*1",),
        "l+t4": ("n1-standard-32+nvidia-tesla-t4*4",),
        # GCP has no A10G: the L4 (G2) is its counterpart.
        "m+a10g": ("g2-standard-8",),
        "l+a10g": ("g2-standard-48",),
        "m+l4": ("g2-standard-8",),
        "l+l4": ("g2-standard-48",),
        "m+a100": ("a2-highgpu-1g",),
        "xl+a100": ("a2-highgpu-8g",),
        "xl+h100": ("a3-highgpu-8g",),
    },
    regions={
        "us-east": "us-east1",
        "us-west": "us-west1",
        "eu-north": "europe-north1",
        "eu-west": "europe-west1",
    },
    default_region="us-east",
    # Image families: the newest image of the family is pinned at create, so every
    # replacement machine boots the same image.
    images={
        "ubuntu": "projects/ubuntu-os-cloud/global/images/family/ubuntu-2404-lts-amd64",
        "nvidia": (
            "projects/deeplearning-platform-release/global/images/family/"
            "common-cu128-ubuntu-2204-nvidia-570"
        ),
    },
    native_machine=re.compile(r"^[a-z][a-z0-9]*-[a-z0-9-]+(\+[a-z0-9-]+\*\d+)?$"),
    native_region=re.compile(r"^[a-z]+-[a-z]+\d(-[a-z])?$"),
    native_image=re.compile(r"^projects/[a-z][-a-z0-9]*/global/images/(family/)?[a-z][-a-z0-9]*$"),
    notes={
        "spot": "Spot VMs (provisioningModel SPOT, deleted on preemption); a maximum "
        "price is not a GCP notion, so spot > 0 means spot at the current price",
        "region": "a region spreads machines over its zones; a zone pins them to it",
    },
    prices=PRICES,
)


def split_location(native: str) -> tuple[str, str]:
    """`us-east1` -> ("us-east1", ""); `us-east1-c` -> ("us-east1", "us-east1-c")."""
    if re.fullmatch(r"[a-z]+-[a-z]+\d-[a-z]", native):
        return native.rsplit("-", 1)[0], native
    return native, ""
