"""GCP hourly prices as a dated snapshot (Linux, USD), for the catalog's types and regions.

Read from SkyPilot's public price catalog (github.com/skypilot-org/skypilot-catalog,
catalogs/v7/gcp/vms.csv, the version stored at commit 017e2502), which SkyPilot builds
from GCP's Cloud Billing catalog: an on-demand and a spot price per machine type, region
and zone (the zones of a region carry the same figures), and GPUs in rows of their own
(no machine type; the accelerator, its count, its price).

- N2: the list prices every n2-standard-N at N times one per-vCPU rate per region (its
  n2-standard-8 and n2-standard-80 rows agree to the last digit), so the rates below
  are the n2-standard-80 rows divided by 80 and each type is N times its rate.
- e2-medium: the list's own rows. It prices the shared-core e2-medium as two full
  vCPUs, so the figure is above what GCP bills for it (an upper bound: a budget
  stops early rather than late). e2-standard-8: the list's own rows.
- GPU machines: GCP bills the host VM and its GPUs apart, and so does the list: a
  machine with GPUs costs its host row plus the GPU row for its accelerator and count,
  on-demand and spot alike. The N1 types name their GPUs (`+nvidia-tesla-t4*4`); G2
  carries L4s and A2 A100s in the type itself (GPUS_IN_TYPE). A GPU the region does
  not offer (T4 and L4 in europe-north1, A100 in Europe) leaves the machine unpriced.
- Left out ("no price known"): a2-highgpu-8g (its A100 x8 row was not read here) and
  a3-highgpu-8g (the list's H100 x8 rows disagree by 2.5x between regions: 33.6 in
  us-west1, 86.3 in Europe, so neither is trusted).

Spot on GCP has no maximum price: the spot figure is the list's current one, not a cap.
Refresh: re-read the same file (or GCP's pricing pages) and bump DATE and COMMIT.
"""

from __future__ import annotations

from ..base import Price, PriceSheet


def split_machine(native: str) -> tuple[str, str, int]:
    """`n1-standard-4+nvidia-tesla-t4*1` -> ("n1-standard-4", "nvidia-tesla-t4", 1)."""
    machine, _, gpu = native.partition("+")
    if not gpu:
        return machine, "", 0
    accelerator, _, count = gpu.partition("*")
    return machine, accelerator, int(count or 1)


DATE = "2026-12-03"  # the day the list was read here; the commit's own date is not known
COMMIT = "017e2502fb63c7a28757acd94002b2d6099d3e3d"
REGIONS = ("us-east1", "us-west1", "europe-north1", "europe-west1")
# region -> (on-demand, spot) per vCPU-hour of n2-standard (the n2-standard-80 row / 80)
N2_STANDARD_PER_VCPU: dict[str, tuple[float, float]] = {
    "us-east1": (3.88472 / 80, 1.1104 / 80),
    "us-west1": (3.88472 / 80, 1.1104 / 80),
    "europe-north1": (4.27696 / 80, 1.31376 / 80),
    "europe-west1": (4.27336 / 80, 0.50736 / 80),
}
N2_SIZES = {"n2-standard-8": 8, "n2-standard-32": 32, "n2-standard-64": 64}
# region -> (on-demand, spot) of e2-medium, as the list has them
E2_MEDIUM: dict[str, tuple[float, float]] = {
    "us-east1": (0.05532, 0.02212),
    "us-west1": (0.05532, 0.02212),
    "europe-north1": (0.0609, 0.01273),
    "europe-west1": (0.06085, 0.02434),
}


# region -> host type -> (on-demand, spot), the list's rows for the hosts of GPU machines
# (and e2-standard-8); their GPUs are priced apart below.
HOSTS: dict[str, dict[str, tuple[float, float]]] = {
    "us-east1": {
        "n1-standard-4": (0.19, 0.04815),
        "n1-standard-32": (1.51999, 0.3852),
        "g2-standard-8": (0.29358, 0.11747),
        "g2-standard-48": (1.7615, 0.70483),
        "a2-highgpu-1g": (0.73948, 0.29576),
        "e2-standard-8": (0.26805, 0.10717),
    },
    "us-west1": {
        "n1-standard-4": (0.19, 0.04815),
        "n1-standard-32": (1.51999, 0.3852),
        "g2-standard-8": (0.29358, 0.11747),
        "g2-standard-48": (1.7615, 0.70483),
        "a2-highgpu-1g": (0.73948, 0.29576),
        "e2-standard-8": (0.26805, 0.10717),
    },
    "europe-north1": {
        "n1-standard-4": (0.20918, 0.07212),
        "n1-standard-32": (1.67347, 0.57696),
        "e2-standard-8": (0.29511, 0.06166),
    },
    "europe-west1": {
        "n1-standard-4": (0.20901, 0.0658),
        "n1-standard-32": (1.67206, 0.52644),
        "g2-standard-8": (0.32327, 0.10088),
        "g2-standard-48": (1.93959, 0.60528),
        "e2-standard-8": (0.29486, 0.11792),
    },
}
# region -> (GPU as the list names it, count) -> (on-demand, spot), the list's GPU rows
GPUS: dict[str, dict[tuple[str, int], tuple[float, float]]] = {
    "us-east1": {
        ("T4", 1): (0.35, 0.14),
        ("T4", 4): (1.4, 0.56),
        ("L4", 1): (0.56004, 0.2231),
        ("L4", 4): (2.24016, 0.8924),
        ("A100", 1): (2.93391, 1.1472),
    },
    "us-west1": {
        ("T4", 1): (0.35, 0.14),
        ("T4", 4): (1.4, 0.56),
        ("L4", 1): (0.56004, 0.2231),
        ("L4", 4): (2.24016, 0.8924),
        ("A100", 1): (2.93391, 1.1472),
    },
    "europe-west1": {
        ("T4", 1): (0.35, 0.14),
        ("T4", 4): (1.4, 0.56),
        ("L4", 1): (0.61666, 0.2291),
        ("L4", 4): (2.46664, 0.9164),
    },
}
# GCE's accelerator type -> the list's GPU name
GPU_NAMES = {"nvidia-tesla-t4": "T4", "nvidia-l4": "L4", "nvidia-tesla-a100": "A100"}
# The accelerator-optimized types carry their GPUs in the type itself.
GPUS_IN_TYPE: dict[str, tuple[str, int]] = {
    "g2-standard-8": ("L4", 1),
    "g2-standard-48": ("L4", 4),
    "a2-highgpu-1g": ("A100", 1),
}


def machine_price(region: str, native: str) -> Price | None:
    """A machine's price: its host row plus the row of its GPUs (None: either unknown)."""
    host_type, accelerator, count = split_machine(native)
    host = HOSTS.get(region, {}).get(host_type)
    if host is None:
        return None
    gpu = (GPU_NAMES.get(accelerator, accelerator), count) if accelerator else None
    gpu = gpu or GPUS_IN_TYPE.get(host_type)
    if gpu is None:
        return Price(*host)
    found = GPUS.get(region, {}).get(gpu)
    if found is None:
        return None  # the region does not offer this GPU (or the list has no row)
    return Price(round(host[0] + found[0], 5), round(host[1] + found[1], 5))


# The types priced from HOSTS (and GPUS): machine_price of each.
FROM_ROWS = (
    "n1-standard-4+nvidia-tesla-t4*1",
    "n1-standard-32+nvidia-tesla-t4*4",
    "g2-standard-8",
    "g2-standard-48",
    "a2-highgpu-1g",
    "e2-standard-8",
)


def _rows() -> dict[tuple[str, str], Price]:
    rows = {(region, "e2-medium"): Price(*hourly) for region, hourly in E2_MEDIUM.items()}
    for region in REGIONS:
        for native in FROM_ROWS:
            price = machine_price(region, native)
            if price is not None:
                rows[(region, native)] = price
    for region, (on_demand, spot) in N2_STANDARD_PER_VCPU.items():
        for machine_type, vcpus in N2_SIZES.items():
            rows[(region, machine_type)] = Price(
                round(on_demand * vcpus, 5), round(spot * vcpus, 5)
            )
    return rows


PRICES = PriceSheet(
    rows=_rows(),
    currency="USD",
    source=f"GCP prices read from skypilot-org/skypilot-catalog gcp/vms.csv @ {COMMIT[:8]}",
    date=DATE,
    minimum_seconds=60.0,  # per second, at least one minute per VM start
    stop_seconds=60.0,  # leaving the group deletes the VM: a minute at most
)
