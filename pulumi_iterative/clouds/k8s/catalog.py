"""Kubernetes as data: what a generic machine requests, GPU products, images, regions.

A native machine is `<cpu>cpu-<memory>` with an optional `+<count>x<gpu>`, for example
`8cpu-32Gi` or `4cpu-16Gi+1xt4`: the pod's requests and limits (CPU and memory
requests equal their limits, so the pod is Guaranteed and is not evicted first
under memory pressure), plus `nvidia.com/gpu` and a node selector on the GPU
product label that NVIDIA's GPU feature discovery sets. Generic sizes leave room
for the node's own reservations, so a `m+t4` pod fits a 4-vCPU, 16 GiB T4 node.

Regions: a cluster has none, so `region` names the kubeconfig context to use;
`local` (the default) and the generic names mean the current context.
"""

from __future__ import annotations

import re

from ..base import CloudCatalog

ACCELERATORS = ("t4", "a10g", "l4", "a100", "h100")
# accelerator -> the `nvidia.com/gpu.product` node label of GPU feature discovery
GPU_PRODUCTS = {
    "t4": "Tesla-T4",
    "a10g": "NVIDIA-A10G",
    "l4": "NVIDIA-L4",
    "a100": "NVIDIA-A100-SXM4-80GB",
    "h100": "NVIDIA-H100-80GB-HBM3",
}
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
GPU_RESOURCE = "nvidia.com/gpu"
# generic size -> (cpu, memory) without GPUs, and per GPU count with them
CPU_SIZES = {"s": "1cpu-2Gi", "m": "8cpu-32Gi", "l": "32cpu-128Gi", "xl": "64cpu-256Gi"}
GPU_SIZES = {
    "s": (1, "2cpu-8Gi"),
    "m": (1, "3cpu-12Gi"),
    "l": (4, "44cpu-176Gi"),
    "xl": (8, "90cpu-700Gi"),
}
GENERIC_REGIONS = ("us-east", "us-west", "eu-north", "eu-west")
CURRENT_CONTEXT = "local"

NATIVE_MACHINE = re.compile(
    r"^(?P<cpu>\d+(\.\d+)?)cpu-(?P<memory>\d+(Mi|Gi))(\+(?P<count>\d+)x(?P<gpu>[a-z0-9]+))?$"
)

CATALOG = CloudCatalog(
    machines={
        **{size: (native,) for size, native in CPU_SIZES.items()},
        **{
            f"{size}+{gpu}": (f"{shape}+{count}x{gpu}",)
            for size, (count, shape) in GPU_SIZES.items()
            for gpu in ACCELERATORS
        },
    },
    regions={CURRENT_CONTEXT: "", **{r: "" for r in GENERIC_REGIONS}},
    default_region=CURRENT_CONTEXT,
    # The pods run as a non-root user (restricted Pod Security), who cannot install
    # Python: the aliases name images that have it (Debian; Ubuntu 22.04 with CUDA).
    images={
        "ubuntu": "python:3.12-slim",
        "nvidia": "pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime",
    },
    native_machine=NATIVE_MACHINE,
    # a kubeconfig context name: EKS uses ARNs (with ':' and '/'), others '@' and '_'
    native_region=re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/@-]*$"),
    native_image=re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9._/:@-]*$"),
    notes={
        "region": "the kubeconfig context; 'local' or a generic region = the current context",
        "spot": ">= 0: only the spot pools of Karpenter, GKE and AKS; -1: avoid them",
        "machine": "<cpu>cpu-<memory>[+<count>x<gpu>]: requests = limits",
        "price": "a cluster's machines have no public price; set notional_price to what "
        "one machine (pod) hour costs you",
    },
)


class MachineShape:
    """A native machine parsed: CPU, memory, GPU count and product label (or none)."""

    def __init__(self, native: str) -> None:
        found = NATIVE_MACHINE.match(native)
        if not found:
            raise ValueError(
                f"machine {native!r} is not <cpu>cpu-<memory>[+<count>x<gpu>], e.g. 8cpu-32Gi"
            )
        self.cpu = found.group("cpu")
        self.memory = found.group("memory")
        self.gpus = int(found.group("count") or 0)
        gpu = found.group("gpu") or ""
        if gpu and gpu not in GPU_PRODUCTS:
            raise ValueError(f"GPU {gpu!r} is not one of {', '.join(GPU_PRODUCTS)}")
        self.gpu_product = GPU_PRODUCTS.get(gpu, "")

    def resources(self) -> dict[str, dict[str, str]]:
        amounts = {"cpu": self.cpu, "memory": self.memory}
        if self.gpus:
            amounts[GPU_RESOURCE] = str(self.gpus)
        return {"requests": dict(amounts), "limits": dict(amounts)}

    def node_selector(self) -> dict[str, str]:
        return {GPU_PRODUCT_LABEL: self.gpu_product} if self.gpu_product else {}


def resolve_machine(name: str) -> MachineShape:
    """A generic or native machine name -> its shape (ValueError naming the choices)."""
    key = name.strip()
    natives = CATALOG.machines.get(key)
    if natives:
        return MachineShape(natives[0])
    if NATIVE_MACHINE.match(key):
        return MachineShape(key)
    raise ValueError(
        f"unknown machine {name!r} for k8s; choose one of {', '.join(CATALOG.machines)} "
        "or a native <cpu>cpu-<memory>[+<count>x<gpu>]"
    )


def resolve_image(name: str) -> str:
    return CATALOG.images.get(name, name)


def resolve_context(region: str) -> str:
    """The kubeconfig context a region names ("" = the current one)."""
    if region in CATALOG.regions:
        return CATALOG.regions[region]
    return region
