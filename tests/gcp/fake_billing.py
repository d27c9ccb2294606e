"""The Cloud Billing Catalog's SKU list (cloudbilling.v1 services.skus.list), served by
the discovery-driven fake: the parent must be a service the catalog has, the page
size at most 5000 (the API's limit), the currency USD (the only one the fake prices
in); pages follow `nextPageToken`. The answer is checked against the document's
ListSkusResponse schema like every answer of the fake. Tests fill `gcp.skus` (see
`sku`), and `gcp.fail("cloudbilling.services.skus.list", ...)` makes the list fail.
"""

from __future__ import annotations

from typing import Any

from tests.gcp.discovery import ApiError
from tests.gcp.fake_gcp import Call, FakeGcp, handles

COMPUTE = "services/6F81-5844-456A"
MAX_PAGE = 5000


def sku(
    description: str,
    price: float,
    regions: tuple[str, ...],
    *,
    usage: str = "OnDemand",
    unit: str = "h",
    group: str = "CPU",
    effective: str = "2025-01-01T00:00:00Z",
) -> dict[str, Any]:
    """One SKU as the catalog returns it (fields of the document's Sku schema)."""
    units, nanos = int(price), round((price - int(price)) * 1e9)
    number = abs(hash((description, usage, regions))) % 10**12
    sku_id = f"{number:012d}"
    return {
        "name": f"{COMPUTE}/skus/{sku_id[:4]}-{sku_id[4:8]}-{sku_id[8:]}",
        "skuId": f"{sku_id[:4]}-{sku_id[4:8]}-{sku_id[8:]}",
        "description": description,
        "category": {
            "serviceDisplayName": "Compute Engine",
            "resourceFamily": "Compute",
            "resourceGroup": group,
            "usageType": usage,
        },
        "serviceRegions": list(regions),
        "pricingInfo": [
            {
                "summary": "",
                "effectiveTime": effective,
                "currencyConversionRate": 1,
                "pricingExpression": {
                    "usageUnit": unit,
                    "usageUnitDescription": "hour" if unit == "h" else "gibibyte hour",
                    "baseUnit": "s" if unit == "h" else "By.s",
                    "baseUnitConversionFactor": 3600 if unit == "h" else 3.8654705664e12,
                    "displayQuantity": 1,
                    "tieredRates": [
                        {
                            "startUsageAmount": 0,
                            "unitPrice": {
                                "currencyCode": "USD",
                                "units": str(units),
                                "nanos": nanos,
                            },
                        }
                    ],
                },
                "aggregationInfo": {
                    "aggregationLevel": "ACCOUNT",
                    "aggregationInterval": "DAILY",
                    "aggregationCount": 1,
                },
            }
        ],
        "serviceProviderName": "Google",
    }


@handles("cloudbilling.services.skus.list")
def list_skus(gcp: FakeGcp, call: Call) -> dict[str, Any]:
    if call.path["parent"] != COMPUTE:
        raise ApiError(404, f"Service {call.path['parent']} not found", "notFound")
    size = int(call.q("pageSize", str(MAX_PAGE)))
    if not 0 < size <= MAX_PAGE:
        raise ApiError(400, f"pageSize must be in 1..{MAX_PAGE}", "badRequest")
    if call.q("currencyCode", "USD") != "USD":
        raise ApiError(400, "the fake prices in USD only", "badRequest")
    start = int(call.q("pageToken", "0") or 0)
    skus = gcp.skus[start : start + size]
    answer: dict[str, Any] = {"skus": skus}
    if start + size < len(gcp.skus):
        answer["nextPageToken"] = str(start + size)
    return answer
