"""GCP's live VM prices, from the Cloud Billing Catalog API (Compute Engine's SKUs).

    GET https://cloudbilling.googleapis.com/v1/services/6F81-5844-456A/skus
        ?currencyCode=USD&pageSize=5000[&pageToken=...]

answers `{"skus": [...], "nextPageToken"}` with the caller's credentials (any
signed-in principal may read the public catalog; the project needs the API enabled).
GCE bills a machine by its parts, and the catalog prices the parts: a family's vCPU
("N2 Instance Core running in Americas") and memory ("... Instance Ram ...", per
GiB) per hour, and each GPU ("Nvidia Tesla T4 GPU running in ..."), each with
`category.usageType` OnDemand or Preemptible (spot) and the regions it applies to
(`serviceRegions`). A machine's price is its vCPUs, its memory and its GPUs at
those rates (MACHINE_SHAPES); a part the catalog lacks leaves that figure unknown.

Asked at create only (never at preview); any failure is the caller's to turn into a
warning. The descriptions are the catalog's only name for a family's parts, so they
are matched exactly, variants (custom, sole-tenant, commitments) left out.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import quote

from ...errors import IterativeError
from ..base import Price
from .api import call, rest
from .prices import split_machine

API = "https://cloudbilling.googleapis.com/"
COMPUTE_SERVICE = "services/6F81-5844-456A"  # Compute Engine in the billing catalog
SOURCE = "GCP Cloud Billing Catalog"
CURRENCY = "USD"
PAGE_SIZE = 5000  # the most the API gives a page
MAX_PAGES = 40  # Compute Engine has tens of thousands of SKUs: never follow forever
DEADLINE = 60.0  # seconds, retries included: a price is not worth a slow create

# host type -> (billed vCPUs, memory GiB), as GCE's machine type pages give them
# (e2-medium is a shared core billed as one vCPU's worth).
MACHINE_SHAPES: dict[str, tuple[float, float]] = {
    "e2-medium": (1, 4),
    "e2-standard-8": (8, 32),
    "n2-standard-8": (8, 32),
    "n2-standard-32": (32, 128),
    "n2-standard-64": (64, 256),
    "n1-standard-4": (4, 15),
    "n1-standard-32": (32, 120),
    "g2-standard-8": (8, 32),
    "g2-standard-48": (48, 192),
    "a2-highgpu-1g": (12, 85),
    "a2-highgpu-8g": (96, 680),
    "a3-highgpu-8g": (208, 1872),
}
# GCE accelerator type -> the catalog's GPU name
GPU_SKU_NAMES = {
    "nvidia-tesla-t4": "Nvidia Tesla T4",
    "nvidia-l4": "Nvidia L4",
    "nvidia-tesla-a100": "Nvidia Tesla A100",
    "nvidia-h100-80gb": "Nvidia H100 80GB",
}
# The accelerator-optimized types carry their GPUs in the type itself.
GPUS_IN_TYPE: dict[str, tuple[str, int]] = {
    "g2-standard-8": ("nvidia-l4", 1),
    "g2-standard-48": ("nvidia-l4", 4),
    "a2-highgpu-1g": ("nvidia-tesla-a100", 1),
    "a2-highgpu-8g": ("nvidia-tesla-a100", 8),
    "a3-highgpu-8g": ("nvidia-h100-80gb", 8),
}
_PART = re.compile(
    r"^(?:Spot Preemptible )?(?P<family>[A-Z][A-Z0-9]*)(?: AMD)?(?: Predefined)? "
    r"Instance (?P<part>Core|Ram) running in .+$"
)
_GPU = re.compile(
    r"^(?:Spot Preemptible )?(?P<gpu>Nvidia [A-Za-z0-9 ]+?) GPU"
    r"(?: attached to Spot Preemptible VMs)? running in .+$"
)
_UNITS = {"Core": "h", "Ram": "GiBy.h", "GPU": "h"}
_KINDS = {"OnDemand": "on-demand", "Preemptible": "spot"}


def machine_prices(region: str, types: tuple[str, ...]) -> dict[str, Price]:
    """type -> its on-demand and spot price per hour in the region, from the catalog's
    part prices (a type whose parts it lacks is left out)."""
    rates = part_rates(_skus(), region)
    out: dict[str, Price] = {}
    for native in types:
        price = price_machine(native, rates)
        if price.on_demand is not None or price.spot is not None:
            out[native] = price
    return out


def part_rates(skus: Iterator[Mapping[str, Any]], region: str) -> dict[tuple[str, str], float]:
    """(part, kind) -> price per unit in the region, where part is "N2 Core", "N2 Ram"
    or "Nvidia Tesla T4 GPU" and kind "on-demand" or "spot"."""
    newest: dict[tuple[str, str], tuple[str, float]] = {}
    for sku in skus:
        category = sku.get("category") or {}
        kind = _KINDS.get(str(category.get("usageType") or ""))
        if kind is None or region not in (sku.get("serviceRegions") or ()):
            continue
        part = _part(str(sku.get("description") or ""))
        if part is None:
            continue
        found = _rate(sku, _UNITS[part.rsplit(" ", 1)[1]])
        if found is not None and ((part, kind) not in newest or found[0] > newest[(part, kind)][0]):
            newest[(part, kind)] = found
    return {key: price for key, (_, price) in newest.items()}


def price_machine(native: str, rates: Mapping[tuple[str, str], float]) -> Price:
    host, accelerator, count = split_machine(native)
    shape = MACHINE_SHAPES.get(host)
    if shape is None:
        return Price(None, None)
    gpu = (accelerator, count) if accelerator else GPUS_IN_TYPE.get(host)
    family = host.split("-", 1)[0].upper()

    def at(kind: str) -> float | None:
        core, ram = rates.get((f"{family} Core", kind)), rates.get((f"{family} Ram", kind))
        if core is None or ram is None:
            return None
        total = shape[0] * core + shape[1] * ram
        if gpu is not None:
            name = GPU_SKU_NAMES.get(gpu[0])
            each = rates.get((f"{name} GPU", kind)) if name else None
            if each is None:
                return None
            total += gpu[1] * each
        return round(total, 6)

    return Price(at("on-demand"), at("spot"))


def _part(description: str) -> str | None:
    found = _PART.match(description)
    if found:
        return f"{found.group('family')} {found.group('part')}"
    found = _GPU.match(description)
    if found:
        return f"{found.group('gpu')} GPU"
    return None


def _rate(sku: Mapping[str, Any], unit: str) -> tuple[str, float] | None:
    """(effective time, price per unit) of the SKU's newest pricing, beyond any free tier."""
    infos = [i for i in sku.get("pricingInfo") or () if isinstance(i, Mapping)]
    if not infos:
        return None
    info = max(infos, key=lambda i: str(i.get("effectiveTime") or ""))
    expression = info.get("pricingExpression") or {}
    if expression.get("usageUnit") != unit:
        return None
    tiers = [t for t in expression.get("tieredRates") or () if isinstance(t, Mapping)]
    if not tiers:
        return None
    tier = max(tiers, key=lambda t: float(t.get("startUsageAmount") or 0))
    money = tier.get("unitPrice") or {}
    if (money.get("currencyCode") or CURRENCY) != CURRENCY:
        return None
    price = int(money.get("units") or 0) + int(money.get("nanos") or 0) / 1e9
    return str(info.get("effectiveTime") or ""), price


def _skus() -> Iterator[Mapping[str, Any]]:
    token = ""
    for _ in range(MAX_PAGES):
        path = f"v1/{COMPUTE_SERVICE}/skus?currencyCode={CURRENCY}&pageSize={PAGE_SIZE}"
        if token:
            path += "&pageToken=" + quote(token, safe="")
        page = call(rest, "GET", API, path, deadline=DEADLINE)
        yield from (s for s in page.get("skus") or () if isinstance(s, Mapping))
        token = str(page.get("nextPageToken") or "")
        if not token:
            return
    raise IterativeError(f"{SOURCE}: more than {MAX_PAGES} pages of SKUs")
