"""Azure's live VM prices, from the public Retail Prices API (no sign-in).

    GET https://prices.azure.com/api/retail/prices?api-version=2023-01-01-preview
        &meterRegion='primary'&$filter=serviceName eq 'Virtual Machines' and ...

answers `{"BillingCurrency", "Items": [...], "NextPageLink", "Count"}`, a page at a
time (NextPageLink is the next page's full address, null on the last). Each item is
one meter: `armSkuName` (Standard_D2s_v5), `armRegionName` (eastus), `retailPrice`
per `unitOfMeasure` ("1 Hour"), `skuName` ("D2s v5", "D2s v5 Spot", "D2s v5 Low
Priority"), `productName` (a Windows meter says "Windows"), `type` (Consumption,
Reservation, DevTestConsumption), `effectiveStartDate`. Filter values are
case-sensitive since 2023-01-01-preview.

Asked at create only (never at preview); any failure is the caller's to turn into a
warning. PULUMI_ITERATIVE_AZURE_PRICES_ENDPOINT points it elsewhere (a test's fake):
honoured for https anywhere or plain http on loopback, read from this process's
environment and never stored in a task.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import urlencode, urlsplit

from ... import retrying
from ...errors import IterativeError
from ..base import Price
from .api import LOOPBACK

ENDPOINT = "https://prices.azure.com/api/retail/prices"
ENDPOINT_ENV = "PULUMI_ITERATIVE_AZURE_PRICES_ENDPOINT"
API_VERSION = "2023-01-01-preview"
SOURCE = "Azure Retail Prices API"
CURRENCY = "USD"  # the API's default; other currencies are "for reference" only
MAX_PAGES = 20  # a handful of sizes in one region is one page; never follow forever
TIMEOUT = 20.0  # seconds per request: a price is not worth a slow create
RETRY_DEADLINE = 20.0  # seconds a throttled or failing request is tried again
TRANSIENT_HTTP = frozenset({429, 500, 502, 503, 504})


def endpoint(environ: Mapping[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    value = env.get(ENDPOINT_ENV, "").strip().rstrip("/")
    if not value:
        return ENDPOINT
    parts = urlsplit(value)
    if parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in LOOPBACK):
        return value
    raise IterativeError(
        f"{ENDPOINT_ENV}={value!r}: use an https address, or plain http on loopback only"
    )


def vm_filter(region: str, size: str) -> str:
    """The OData filter for one VM size's pay-as-you-go meters in one region."""
    for value in (region, size):
        if "'" in value:  # never let a name end the quoted value
            raise IterativeError(f"not an Azure name: {value!r}")
    return (
        "serviceName eq 'Virtual Machines' and priceType eq 'Consumption' "
        f"and armRegionName eq '{region}' and armSkuName eq '{size}'"
    )


def vm_prices(region: str, sizes: tuple[str, ...], *, base: str | None = None) -> dict[str, Price]:
    """size -> its Linux on-demand and spot price per hour in the region (a figure the
    list lacks is None; a size the list lacks entirely is left out)."""
    root = base or endpoint()
    out: dict[str, Price] = {}
    for size in sizes:
        price = _price_of(_items(root, vm_filter(region, size)), region, size)
        if price.on_demand is not None or price.spot is not None:
            out[size] = price
    return out


def _items(root: str, odata_filter: str) -> Iterator[Mapping[str, Any]]:
    query = urlencode(
        {"api-version": API_VERSION, "meterRegion": "'primary'", "$filter": odata_filter}
    )
    url: str | None = f"{root}?{query}"
    home = urlsplit(root)
    for _ in range(MAX_PAGES):
        if url is None:
            return
        here = urlsplit(url)  # NextPageLink names the port (":443"): compare the rest
        if (here.scheme, here.hostname) != (home.scheme, home.hostname):
            raise IterativeError(f"{SOURCE}: a next page on another host: {url}")
        page = _get(url)
        items = page.get("Items")
        if not isinstance(items, list):
            raise IterativeError(f"{SOURCE}: an answer without Items")
        yield from (i for i in items if isinstance(i, Mapping))
        url = page.get("NextPageLink") or None
    raise IterativeError(f"{SOURCE}: more than {MAX_PAGES} pages for one size")


def _get(url: str) -> Mapping[str, Any]:
    """One page, a throttled (429) or failing request tried again until RETRY_DEADLINE."""

    def attempt() -> Any:
        request = urllib.request.Request(url, headers={"Accept": "application/json"})
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
            return json.load(response)

    def classify(exc: Exception) -> retrying.Verdict:
        code = exc.code if isinstance(exc, urllib.error.HTTPError) else None
        if code in TRANSIENT_HTTP or (code is None and isinstance(exc, OSError)):
            return retrying.Transient(f"{SOURCE}: {exc}", IterativeError)
        return exc

    body = retrying.retry(attempt, classify=classify, deadline=RETRY_DEADLINE)
    if not isinstance(body, Mapping):
        raise IterativeError(f"{SOURCE}: not a JSON object")
    return body


def _price_of(items: Iterator[Mapping[str, Any]], region: str, size: str) -> Price:
    """The newest Linux hourly meter of each kind (on-demand, spot) among the items."""
    newest: dict[str, tuple[str, float]] = {}  # kind -> (effectiveStartDate, price)
    for item in items:
        kind = _kind(item, region, size)
        if kind is None:
            continue
        since, price = str(item.get("effectiveStartDate") or ""), float(item["retailPrice"])
        if kind not in newest or since > newest[kind][0]:
            newest[kind] = (since, price)
    on_demand, spot = newest.get("on-demand"), newest.get("spot")
    return Price(on_demand[1] if on_demand else None, spot[1] if spot else None)


def _kind(item: Mapping[str, Any], region: str, size: str) -> str | None:
    """The kind, on-demand or spot, of a Linux pay-as-you-go hourly meter of this size, else
    None (Windows, low priority, reservations, another size, another currency)."""
    if item.get("armSkuName") != size or item.get("armRegionName") != region:
        return None
    if item.get("type") != "Consumption" or item.get("currencyCode", CURRENCY) != CURRENCY:
        return None
    if "Windows" in str(item.get("productName") or ""):
        return None
    if str(item.get("unitOfMeasure") or "") != "1 Hour" or "retailPrice" not in item:
        return None
    sku = str(item.get("skuName") or "")
    if sku.endswith(" Low Priority"):
        return None
    return "spot" if sku.endswith(" Spot") else "on-demand"
