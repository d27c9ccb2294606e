"""Azure hourly prices as a dated snapshot (Linux, pay-as-you-go, USD).

Read from SkyPilot's public price catalog (github.com/skypilot-org/skypilot-catalog,
catalogs/v6/azure/vms.csv, the version stored at commit 098741e7), which SkyPilot builds
from Azure's public Retail Prices API: an on-demand and a spot price per VM size and
region. That file covers US regions only, and so does every other stored version of
it (catalogs/v4 and v5 were read too), so northeurope and westeurope have no known
price yet: they need a source that can be cited (Azure's retail prices API, read
where it can be reached).

- D*s_v5 and D*as_v5: the list prices each size at its vCPUs times one rate per family
  and region, so every size here is vCPUs x the rate of the list's D2s_v5 and D4as_v5
  rows (its D32as_v5, D48s_v5 and D48as_v5 rows give the same rates).
- GPU sizes: the list's own rows. ND96isr_H100_v5 has no spot figure there (the list
  repeats the on-demand price), nor a westus2 row.

Azure's spot price is the market price; `spot > 0` caps it (see the catalog's notes).
Refresh: re-read the same file (or prices.azure.com) and bump DATE and COMMIT.
"""

from __future__ import annotations

from ..base import Price, PriceSheet

DATE = "2026-12-03"  # the day the list was read here; the commit's own date is not known
COMMIT = "098741e70562f65d7af1cceb81e33b284f742604"
# family -> region -> (on-demand, spot) per vCPU-hour (D2s_v5 row / 2, D4as_v5 row / 4)
PER_VCPU: dict[str, dict[str, tuple[float, float]]] = {
    "s_v5": {"eastus": (0.096 / 2, 0.01056 / 2), "westus2": (0.096 / 2, 0.01248 / 2)},
    "as_v5": {"eastus": (0.172 / 4, 0.01892 / 4), "westus2": (0.172 / 4, 0.02236 / 4)},
}
D_SIZES = (2, 8, 32, 64)
# size -> region -> (on-demand, spot or None), as the list has them
GPU: dict[str, dict[str, tuple[float, float | None]]] = {
    "Standard_NC4as_T4_v3": {"eastus": (0.526, 0.062699), "westus2": (0.526, 0.061595)},
    "Standard_NC64as_T4_v3": {"eastus": (4.352, 0.518758), "westus2": (4.352, 0.509619)},
    "Standard_NV36ads_A10_v5": {"eastus": (3.2, 0.8), "westus2": (3.2, 0.8)},
    "Standard_NC24ads_A100_v4": {"eastus": (3.673, 0.444433), "westus2": (3.673, 0.615962)},
    "Standard_ND96asr_v4": {"eastus": (27.197, 2.99167), "westus2": (27.197, 2.99167)},
    "Standard_ND96isr_H100_v5": {"eastus": (98.32, None)},
}


def _rows() -> dict[tuple[str, str], Price]:
    rows: dict[tuple[str, str], Price] = {}
    for family, regions in PER_VCPU.items():
        for region, (on_demand, spot) in regions.items():
            for vcpus in D_SIZES:
                rows[(region, f"Standard_D{vcpus}{family}")] = Price(
                    round(on_demand * vcpus, 6), round(spot * vcpus, 6)
                )
    for size, regions in GPU.items():
        for region, (on_demand, spot) in regions.items():
            rows[(region, size)] = Price(on_demand, spot)
    return rows


PRICES = PriceSheet(
    rows=_rows(),
    currency="USD",
    source=f"Azure prices read from skypilot-org/skypilot-catalog azure/vms.csv @ {COMMIT[:8]}",
    date=DATE,
    minimum_seconds=60.0,  # billed by the minute: a boot costs at least one
    stop_seconds=60.0,  # leaving the scale set deletes the VM: a minute at most
)
