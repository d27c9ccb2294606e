"""GCP hourly prices as a dated snapshot (Linux, USD), for the catalog's types and regions.

Read from SkyPilot's public price catalog (github.com/skypilot-org/skypilot-catalog,
catalogs/v7/gcp/vms.csv, the version stored at commit 017e2502), which SkyPilot builds
from GCP's Cloud Billing catalog: an on-demand and a spot price per machine type, region
and zone (the zones of a region carry the same figures).

- N2: the list prices every n2-standard-N at N times one per-vCPU rate per region (its
  n2-standard-8 and n2-standard-80 rows agree to the last digit), so the rates below
  are the n2-standard-80 rows divided by 80 and each type is N times its rate.
- e2-medium: the list's own rows. It prices the shared-core e2-medium as two full
  vCPUs, so the figure is above what GCP bills for it (an upper bound: a budget
  stops early rather than late).
- Left out ("no price known"): e2-standard-8, and every type with GPUs (n1+T4, G2, A2,
  A3): the list prices their GPUs in separate rows, so its machine rows are not what
  the machine costs. Add them here once read from GCP's price list.

Spot on GCP has no maximum price: the spot figure is the list's current one, not a cap.
Refresh: re-read the same file (or GCP's pricing pages) and bump DATE and COMMIT.
"""

from __future__ import annotations

from ..base import Price, PriceSheet

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


def _rows() -> dict[tuple[str, str], Price]:
    rows = {(region, "e2-medium"): Price(*hourly) for region, hourly in E2_MEDIUM.items()}
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
