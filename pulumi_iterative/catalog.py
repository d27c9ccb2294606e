"""Machine types, regions and images per cloud, as data.

Generic names (`m`, `l+t4`, `us-east`, `ubuntu`) map to each cloud's current
offer; a native name (an instance type, a region, an image id) is taken as is
when it has the cloud's shape. Backends read these tables; nothing else here
knows about clouds.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")

CLOUDS = ("local", "aws", "gcp", "azure", "k8s")
CLOUD_ALIASES = {"az": "azure", "kubernetes": "k8s", "google": "gcp", "amazon": "aws"}

GENERIC_SIZES = ("s", "m", "l", "xl")
# Old accelerator names keep resolving to the nearest current part.
ACCELERATOR_ALIASES = {"k80": "t4", "v100": "a10g"}
ACCELERATORS = ("t4", "a10g", "l4", "a100", "h100")

GENERIC_REGIONS = ("us-east", "us-west", "eu-north", "eu-west")

# cloud -> generic machine -> native types, best first (later ones are capacity fallbacks).
MACHINES: dict[str, dict[str, tuple[str, ...]]] = {
    "local": {
        **{s: (s,) for s in GENERIC_SIZES},
        **{f"{s}+{a}": (f"{s}+{a}",) for s in GENERIC_SIZES for a in ACCELERATORS},
    },
    "aws": {
        "s": ("t3.medium", "t3a.medium"),
        "m": ("m7i.2xlarge", "m6i.2xlarge", "m5.2xlarge"),
        "l": ("m7i.8xlarge", "m6i.8xlarge", "m5.8xlarge"),
        "xl": ("m7i.16xlarge", "m6i.16xlarge", "m5.16xlarge"),
        "m+t4": ("g4dn.xlarge",),
        "l+t4": ("g4dn.12xlarge",),
        "xl+t4": ("g4dn.metal",),
        "m+a10g": ("g5.xlarge", "g5.2xlarge"),
        "l+a10g": ("g5.12xlarge",),
        "xl+a10g": ("g5.48xlarge",),
        "m+l4": ("g6.xlarge", "g6.2xlarge"),
        "l+l4": ("g6.12xlarge",),
        "xl+l4": ("g6.48xlarge",),
        "xl+a100": ("p4d.24xlarge",),
        "xl+h100": ("p5.48xlarge",),
    },
    "gcp": {
        "s": ("e2-medium",),
        "m": ("n2-standard-8", "e2-standard-8"),
        "l": ("n2-standard-32",),
        "xl": ("n2-standard-64",),
        "m+t4": ("n1-standard-4+nvidia-tesla-t4*1",),
        "l+t4": ("n1-standard-32+nvidia-tesla-t4*4",),
        "m+l4": ("g2-standard-8",),
        "l+l4": ("g2-standard-48",),
        "m+a100": ("a2-highgpu-1g",),
        "xl+a100": ("a2-highgpu-8g",),
        "xl+h100": ("a3-highgpu-8g",),
    },
    "azure": {
        "s": ("Standard_B2s",),
        "m": ("Standard_D8s_v5", "Standard_D8as_v5"),
        "l": ("Standard_D32s_v5",),
        "xl": ("Standard_D64s_v5",),
        "m+t4": ("Standard_NC4as_T4_v3",),
        "l+t4": ("Standard_NC64as_T4_v3",),
        "m+a100": ("Standard_NC24ads_A100_v4",),
        "xl+a100": ("Standard_ND96asr_v4",),
        "xl+h100": ("Standard_ND96isr_H100_v5",),
    },
    "k8s": {
        "s": ("1cpu-2Gi",),
        "m": ("8cpu-32Gi",),
        "l": ("32cpu-128Gi",),
        "xl": ("64cpu-256Gi",),
        **{f"{s}+{a}": (f"{s}-gpu",) for s in GENERIC_SIZES for a in ACCELERATORS},
    },
}

REGIONS: dict[str, dict[str, str]] = {
    "local": {r: r for r in (*GENERIC_REGIONS, "local")},
    "aws": {
        "us-east": "us-east-1",
        "us-west": "us-west-2",
        "eu-north": "eu-north-1",
        "eu-west": "eu-west-1",
    },
    "gcp": {
        "us-east": "us-east1-c",
        "us-west": "us-west1-b",
        "eu-north": "europe-north1-a",
        "eu-west": "europe-west1-d",
    },
    "azure": {
        "us-east": "eastus",
        "us-west": "westus2",
        "eu-north": "northeurope",
        "eu-west": "westeurope",
    },
    "k8s": {r: r for r in (*GENERIC_REGIONS, "local")},
}
DEFAULT_REGION = {
    "local": "local",
    "aws": "us-east",
    "gcp": "us-east",
    "azure": "us-east",
    "k8s": "local",
}

IMAGES: dict[str, dict[str, str]] = {
    "local": {"ubuntu": "host", "nvidia": "host"},
    # AWS aliases are (owner, name pattern): the newest match wins at create time.
    "aws": {
        "ubuntu": "099720109477:ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-*",
        "nvidia": "898082745236:Deep Learning Base OSS Nvidia Driver GPU AMI (Ubuntu 22.04)*",
    },
    "gcp": {
        "ubuntu": "projects/ubuntu-os-cloud/global/images/family/ubuntu-2404-lts-amd64",
        "nvidia": "projects/deeplearning-platform-release/global/images/family/common-cu124",
    },
    "azure": {
        "ubuntu": "Canonical:ubuntu-24_04-lts:server:latest",
        "nvidia": "microsoft-dsvm:ubuntu-hpc:2204:latest",
    },
    "k8s": {"ubuntu": "ubuntu:24.04", "nvidia": "nvidia/cuda:12.4.1-runtime-ubuntu22.04"},
}

# What a native name looks like on each cloud, so typos are not sent to the cloud.
NATIVE_MACHINE = {
    "aws": re.compile(r"^[a-z][a-z0-9-]*\.[a-z0-9-]+$"),
    "gcp": re.compile(r"^[a-z][a-z0-9]*-[a-z0-9-]+(\+[a-z0-9-]+\*\d+)?$"),
    "azure": re.compile(r"^(Standard|Basic)_[A-Za-z0-9_-]+$"),
    "k8s": re.compile(r"^\d+(\.\d+)?cpu-\d+(Mi|Gi)(-gpu)?$"),
}
NATIVE_REGION = {
    "aws": re.compile(r"^[a-z]{2}(-gov)?-[a-z]+-\d$"),
    "gcp": re.compile(r"^[a-z]+-[a-z]+\d(-[a-z])?$"),
    "azure": re.compile(r"^[a-z]+[a-z0-9]*$"),
    "k8s": re.compile(r"^[a-z0-9][a-z0-9-]*$"),
}
NATIVE_IMAGE = {
    "aws": re.compile(r"^(ami-[0-9a-f]{8,17}|\d{12}:.+)$"),
    "gcp": re.compile(r"^projects/.+/global/images/.+$"),
    "azure": re.compile(r"^[^:]+:[^:]+:[^:]+:[^:]+$|^/subscriptions/.+"),
    "k8s": re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9._/:@-]*$"),
}


class CatalogError(ValueError):
    """A name not in the catalog; the message lists the choices."""


@dataclass(frozen=True)
class Machine:
    """A resolved machine: the native types to try, best first."""

    generic: str | None
    types: tuple[str, ...]

    @property
    def accelerator(self) -> str | None:
        if self.generic and "+" in self.generic:
            return self.generic.split("+", 1)[1]
        return None


def normalize_cloud(name: str) -> str:
    cloud = CLOUD_ALIASES.get(name.strip().lower(), name.strip().lower())
    if cloud not in CLOUDS:
        raise CatalogError(f"unknown cloud {name!r}; choose one of {', '.join(CLOUDS)}")
    return cloud


def _lookup(
    kind: str,
    cloud: str,
    name: str,
    table: dict[str, T],
    pattern: re.Pattern[str] | None,
    what_native: str,
) -> T | str:
    """The table's entry for a generic name, else a native name of the cloud's shape."""
    if name in table:
        return table[name]
    if pattern and pattern.match(name) and name not in GENERIC_REGIONS:
        return name
    raise CatalogError(
        f"unknown {kind} {name!r} for {cloud}; choose one of {', '.join(table)}"
        + (f" or a native {what_native}" if pattern else "")
    )


def resolve_machine(cloud: str, name: str) -> Machine:
    key = name.strip()
    if "+" in key:
        size, acc = key.split("+", 1)
        key = f"{size}+{ACCELERATOR_ALIASES.get(acc, acc)}"
    if key in MACHINES[cloud]:
        return Machine(key, MACHINES[cloud][key])
    table = {k: (k,) for k in MACHINES[cloud]}  # the choices, for the message
    return Machine(
        None,
        (str(_lookup("machine", cloud, name, table, NATIVE_MACHINE.get(cloud), "instance type")),),
    )


def resolve_region(cloud: str, name: str) -> str:
    return str(
        _lookup("region", cloud, name, REGIONS[cloud], NATIVE_REGION.get(cloud), "region name")
    )


def resolve_image(cloud: str, name: str) -> str:
    return str(_lookup("image", cloud, name, IMAGES[cloud], NATIVE_IMAGE.get(cloud), "image id"))
