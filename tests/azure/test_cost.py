"""Azure's live prices at create: the public Retail Prices API (a strict fake on
loopback, read by the backend's own HTTP client), winning over the snapshot, its
absence a warning and never a failed create."""

from __future__ import annotations

import logging
import urllib.error
import urllib.request
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from pulumi_iterative import catalog, cost, lifecycle
from pulumi_iterative.clouds.azure import retail
from pulumi_iterative.clouds.azure.backend import Backend
from pulumi_iterative.clouds.base import Price
from pulumi_iterative.errors import IterativeError, SpecError
from pulumi_iterative.spec import parse_spec
from pulumi_iterative.storage import TASK_FILE, Remote
from pulumi_iterative.task import new_task_id
from tests.azure.conftest import Cloud, leftovers
from tests.azure.fake_retail_prices import FakeRetailPrices, meter, parse_filter

D2, D8, D64 = "Standard_D2s_v5", "Standard_D8s_v5", "Standard_D64s_v5"


def _spec(workdir: Path, **args: Any):  # type: ignore[no-untyped-def]
    return parse_spec(
        {
            "cloud": "azure",
            "machine": "s",
            "script": "#!/bin/sh\necho hi\n",
            "storage": {"workdir": str(workdir)},
            **args,
        }
    )


def _today() -> str:
    return datetime.now(timezone.utc).date().isoformat()


def test_the_list_gives_the_newest_linux_on_demand_and_spot_meters_across_pages() -> None:
    items = [
        meter(D2, "eastus", 0.090, since="2023-01-01T00:00:00Z"),
        meter(D2, "eastus", 0.101, since="2025-06-01T00:00:00Z"),  # newer: wins
        meter(D2, "eastus", 0.0123, sku_suffix=" Spot"),
        meter(D2, "eastus", 0.030, sku_suffix=" Low Priority"),
        meter(D2, "eastus", 0.200, windows=True),
        meter(D2, "eastus", 0.050, sku_suffix=" Spot", windows=True),
        meter(D2, "eastus", 0.070, kind="DevTestConsumption"),
        meter(D2, "eastus", 0.080, kind="Reservation"),
        meter(D2, "eastus", 9.999, primary=False),
        meter(D2, "westus2", 0.500),
        meter(D8, "eastus", 0.404),
    ]
    fake = FakeRetailPrices(items, page_size=2)
    try:
        found = retail.vm_prices("eastus", (D2, D8, D64), base=fake.endpoint)
        assert found == {D2: Price(0.101, 0.0123), D8: Price(0.404, None)}
        # One filter per size, every page followed (two items a page).
        firsts = [r for r in fake.requests if "%24skip" not in r and "$skip" not in r]
        assert len(firsts) == 3 and len(fake.requests) > 3
        for path in fake.requests:
            query = {k: v[-1] for k, v in parse_qs(urlsplit(path).query).items()}
            assert query["api-version"] == retail.API_VERSION
            assert query["meterRegion"] == "'primary'"
            wanted = parse_filter(query["$filter"])
            assert wanted["serviceName"] == "Virtual Machines"
            assert wanted["priceType"] == "Consumption"
            assert wanted["armRegionName"] == "eastus"
    finally:
        fake.close()


def test_the_fake_refuses_a_filter_the_real_api_would_not_understand() -> None:
    fake = FakeRetailPrices([meter(D2, "eastus", 0.1)])
    try:
        for bad in (
            "contains(armSkuName, 'D2')",
            "armSkuName Eq 'Standard_D2s_v5'",
            'armSkuName eq "Standard_D2s_v5"',
            "vmSize eq 'Standard_D2s_v5'",
            "armSkuName eq 'a' or armSkuName eq 'b'",
        ):
            url = fake.endpoint + "?" + f"$filter={bad}".replace(" ", "%20")
            with pytest.raises(urllib.error.HTTPError) as err:
                urllib.request.urlopen(url, timeout=10)
            assert err.value.code == 400, bad
    finally:
        fake.close()
    # What the backend sends is never one of them, and a name cannot end its quote.
    assert parse_filter(retail.vm_filter("eastus", D2))["armSkuName"] == D2
    with pytest.raises(IterativeError, match="not an Azure name"):
        retail.vm_filter("eastus", "x' or serviceName eq 'y")
    with pytest.raises(IterativeError, match=retail.ENDPOINT_ENV):
        retail.endpoint({retail.ENDPOINT_ENV: "http://prices.example.com/api/retail/prices"})
    assert retail.endpoint({}) == retail.ENDPOINT


def test_live_prices_win_over_the_snapshot_at_create(
    azure_cloud: Cloud,
    retail_prices: FakeRetailPrices,
    workdir: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    spec = _spec(workdir, spot=0)
    region = catalog.resolve_region("azure", spec.region)
    first, second = catalog.resolve_machine("azure", spec.machine).types
    snapshot = cost.pricing_for(spec)  # preview: the snapshot, no call
    assert snapshot.known and retail_prices.requests == []
    live_spot = round(snapshot.hourly[first] * 1.37, 6)  # anything the snapshot is not
    retail_prices.items += [
        meter(first, region, 0.111),
        meter(first, region, live_spot, sku_suffix=" Spot"),
        meter(second, region, 0.222),
        meter(second, region, 0.0333, sku_suffix=" Spot"),
    ]
    with caplog.at_level(logging.INFO, logger="pulumi_iterative.lifecycle"):
        ref = lifecycle.create(spec)
    pricing = cost.Pricing.from_dict(ref.pricing)
    assert pricing.hourly == {first: live_spot, second: 0.0333}
    # The create says which figure it bills at, where it came from and when.
    said = f"price: {cost.money(live_spot, 'USD')}/h per machine (spot; Azure Retail Prices"
    assert said in caplog.text and f"at create of {_today()})" in caplog.text
    assert pricing.on_demand == {first: 0.111, second: 0.222}
    assert pricing.source == "Azure Retail Prices API at create" and pricing.date == _today()
    assert f"Azure Retail Prices API at create of {_today()}" in pricing.describe()
    # The machines' budget check reads the same prices from the task definition.
    definition = lifecycle.rclone_for(ref).cat(Remote.from_dict(ref.remote).path(TASK_FILE))
    assert b'"source": "Azure Retail Prices API at create"' in definition
    lifecycle.delete(ref)
    assert leftovers(azure_cloud, ref.task_id) == []


def test_on_demand_and_the_eu_regions_are_priced_from_the_list_too(
    azure_cloud: Cloud, retail_prices: FakeRetailPrices, workdir: Path
) -> None:
    spec = _spec(workdir, region="eu-west")  # on-demand; the snapshot has no EU prices
    assert not cost.pricing_for(spec).known
    first, second = catalog.resolve_machine("azure", spec.machine).types
    retail_prices.items.append(meter(first, "westeurope", 0.115))
    backend = Backend()
    ref = backend.prepare(spec, new_task_id("eu"))
    pricing = lifecycle.pricing_at_create(backend, spec, ref)
    assert pricing.known and pricing.rate == 0.115 and pricing.basis == "on-demand"
    assert pricing.source == "Azure Retail Prices API at create" and pricing.date == _today()
    assert retail_prices.requests  # asked, at create
    # In a region the snapshot has, a size the list lacks keeps the snapshot's figure,
    # and the source says so.
    east = _spec(workdir)
    retail_prices.items.append(meter(first, "eastus", 0.099))
    mixed = lifecycle.pricing_at_create(backend, east, backend.prepare(east, new_task_id("e")))
    assert mixed.rate == 0.099 and mixed.hourly[second] == cost.pricing_for(east).hourly[second]
    assert mixed.source.startswith("Azure Retail Prices API at create (some types from Azure")


def test_a_throttled_list_is_asked_again() -> None:
    fake = FakeRetailPrices([meter(D2, "eastus", 0.101)])
    fake.busy = 2  # 429, 429, then the page
    try:
        assert retail.vm_prices("eastus", (D2,), base=fake.endpoint) == {D2: Price(0.101, None)}
        assert len(fake.requests) == 3
    finally:
        fake.close()


def test_an_unreachable_list_is_a_warning_and_the_snapshot_stands(
    azure_cloud: Cloud,
    retail_prices: FakeRetailPrices,
    workdir: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    retail_prices.down = True  # 503, whatever the retries
    monkeypatch.setattr(retail, "RETRY_DEADLINE", 0.5)
    spec = _spec(workdir, spot=0)
    with caplog.at_level(logging.WARNING, logger="pulumi_iterative.lifecycle"):
        ref = lifecycle.create(spec)
    assert cost.Pricing.from_dict(ref.pricing) == cost.pricing_for(spec)
    assert "live prices unavailable from Azure Retail Prices API" in caplog.text
    assert retail_prices.requests  # it was asked (retries: the throttled test above)
    lifecycle.delete(ref)
    assert leftovers(azure_cloud, ref.task_id) == []


def test_a_budget_where_only_the_live_list_has_a_price(
    azure_cloud: Cloud, retail_prices: FakeRetailPrices, workdir: Path
) -> None:
    """The EU regions are not in the shipped snapshot. A budget there is accepted at
    preview (the estimate says the price comes at create); create enforces it with the
    list's price, and refuses it before making anything when the list has none."""
    spec = _spec(workdir, region="eu-west", budget=5)  # accepted: no error at preview
    assert any("create asks the cloud's live price list" in w for w in cost.estimate(spec).warnings)
    first, _ = catalog.resolve_machine("azure", spec.machine).types
    with pytest.raises(SpecError, match="budget: no price is known") as refused:
        lifecycle.create(spec)
    assert "Nothing was created" in str(refused.value)
    assert retail_prices.requests  # asked, and had nothing
    assert [r.path for r in azure_cloud.arm.fake.requests if r.method != "GET"] == []
    retail_prices.items.append(meter(first, "westeurope", 0.115))
    ref = lifecycle.create(spec)
    pricing = cost.Pricing.from_dict(ref.pricing)
    assert pricing.ceiling == 0.115 and pricing.budget == 5
    assert pricing.budget_seconds() == pytest.approx(5 / 0.115 * 3600)
    lifecycle.delete(ref)
    assert leftovers(azure_cloud, ref.task_id) == []


def test_a_budget_the_snapshot_cannot_price_is_refused_at_preview_where_nothing_is_live(
    workdir: Path,
) -> None:
    """AWS asks live prices for spot only: an on-demand type without a snapshot price
    and a budget is still refused at preview, with the field and the fix."""
    with pytest.raises(SpecError, match="budget: no price is known"):
        parse_spec(
            {
                "cloud": "aws",
                "machine": "p5.48xlarge",
                "region": "eu-west",
                "budget": 5,
                "script": "#!/bin/sh\ntrue\n",
                "storage": {"workdir": str(workdir)},
            }
        )
