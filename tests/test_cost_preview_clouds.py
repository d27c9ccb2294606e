"""The estimate at preview on GCP and Azure: from the shipped snapshot, with no cloud call
(every cloud endpoint points at a port that counts connections)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pulumi_iterative import catalog, cost
from pulumi_iterative.provider import TaskProvider
from tests.aws.test_cost import Listener
from tests.provider_server import provider_server

CASES = {
    "gcp": lambda url: {
        "PULUMI_ITERATIVE_GCP_ENDPOINT": url,
        "GOOGLE_CLOUD_PROJECT": "preview-project",
        "GCE_METADATA_HOST": url.removeprefix("http://"),
    },
    "azure": lambda url: {
        "PULUMI_ITERATIVE_ARM_ENDPOINT": url,
        "AZURE_SUBSCRIPTION_ID": "00000000-0000-0000-0000-000000000000",
        "IDENTITY_ENDPOINT": url,
        "PULUMI_ITERATIVE_AZURE_PRICES_ENDPOINT": url,  # the live price list: create only
    },
}


@pytest.mark.parametrize("cloud", sorted(CASES))
def test_preview_shows_the_estimate_and_calls_no_cloud(cloud: str, tmp_path: Path) -> None:
    cat = catalog.cloud_catalog(cloud)
    region = cat.regions[cat.default_region]
    first = cat.machines["m"][0]
    price = cat.prices.price(region, first) if cat.prices else None
    assert price is not None and price.spot is not None
    budget = price.spot * 2 * 5  # half of what the 10h timeout can spend
    listener = Listener()
    try:
        news = {
            "cloud": cloud,
            "machine": "m",
            "spot": 0,
            "parallelism": 2,
            "timeout": "10h",
            "budget": budget,
            "script": "#!/bin/sh\ntrue\n",
            "storage": {"workdir": str(tmp_path)},
        }
        with provider_server(TaskProvider(), env=CASES[cloud](listener.endpoint)) as server:
            checked, failures = server.check("train", {}, news)
            assert failures == []
            server.diff("id", "train", checked, checked)
            messages = server.stderr_text()
        assert f"estimate: 2 x {first} in {region} at {cost.money(price.spot, 'USD')}/h" in messages
        assert f"up to the 10h timeout: {cost.money(price.spot * 2 * 10, 'USD')}" in messages
        # The budget lasts 5h; the machines are told to stop earlier by the time to stop.
        stop_by = cost.duration(5 * 3600 - cat.prices.stop_seconds)
        assert f"budget {cost.money(budget, 'USD')}: stops the task after about {stop_by} " in (
            messages
        )
        assert listener.connections == 0
    finally:
        listener.close()


def test_k8s_budget_without_a_notional_price_is_refused_with_the_fix(tmp_path: Path) -> None:
    news = {
        "cloud": "k8s",
        "budget": 1,
        "script": "#!/bin/sh\ntrue\n",
        "storage": {"workdir": str(tmp_path)},
    }
    with provider_server(TaskProvider()) as server:
        _, failures = server.check("train", {}, news)
        reasons = " ".join(str(f) for f in failures)
        assert "budget" in reasons and "notional_price" in reasons
        _, failures = server.check("train", {}, {**news, "notional_price": 0.5})
        assert failures == []
