"""AWS machine types, regions and images, as data."""

from __future__ import annotations

import re

from ..base import CloudCatalog
from .prices import PRICES

CATALOG = CloudCatalog(
    # generic machine -> instance types, best first (later ones are capacity fallbacks)
    machines={
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
    regions={
        "us-east": "us-east-1",
        "us-west": "us-west-2",
        "eu-north": "eu-north-1",
        "eu-west": "eu-west-1",
    },
    default_region="us-east",
    # Aliases are (owner, name pattern): the newest match wins at create time.
    images={
        "ubuntu": "099720109477:ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-*",
        "nvidia": "898082745236:Deep Learning Base OSS Nvidia Driver GPU AMI (Ubuntu 22.04)*",
    },
    native_machine=re.compile(r"^[a-z][a-z0-9-]*\.[a-z0-9-]+$"),
    native_region=re.compile(r"^[a-z]{2}(-gov)?-[a-z]+-\d$"),
    native_image=re.compile(r"^(ami-[0-9a-f]{8,17}|\d{12}:.+)$"),
    prices=PRICES,
)
