"""GCP's live prices at create: Compute Engine's SKUs in the Cloud Billing Catalog (the
discovery-driven fake, read through the backend's own authorized session), a machine
priced from its vCPU, memory and GPU rates, winning over the snapshot; a failure to
read them is a warning and the snapshot stands."""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from pulumi_iterative import catalog, cost, lifecycle
from pulumi_iterative.clouds.base import Price
from pulumi_iterative.clouds.gcp import billing
from pulumi_iterative.clouds.gcp.backend import Backend
from pulumi_iterative.spec import parse_spec
from tests.gcp.conftest import Gcp, leftovers
from tests.gcp.fake_billing import sku

EAST, WEST = "us-east1", "us-west1"
LIST = "cloudbilling.services.skus.list"


def _rates() -> list[dict[str, Any]]:
    """N2, E2, N1 and T4 rates in us-east1 (on-demand and spot), and decoys the
    backend must pass over."""
    ram = {"unit": "GiBy.h", "group": "RAM"}
    spot = {"usage": "Preemptible"}
    return [
        sku("N2 Instance Core running in Americas", 0.031611, (EAST, WEST)),
        sku("N2 Instance Ram running in Americas", 0.004237, (EAST, WEST), **ram),
        sku("Spot Preemptible N2 Instance Core running in Americas", 0.0091, (EAST,), **spot),
        sku("Spot Preemptible N2 Instance Ram running in Americas", 0.0012, (EAST,), **ram, **spot),
        sku("E2 Instance Core running in Americas", 0.021811, (EAST,)),
        sku("E2 Instance Ram running in Americas", 0.002923, (EAST,), **ram),
        sku("Spot Preemptible E2 Instance Core running in Americas", 0.0065, (EAST,), **spot),
        sku("Spot Preemptible E2 Instance Ram running in Americas", 0.0009, (EAST,), **ram, **spot),
        sku(
            "N1 Predefined Instance Core running in Americas", 0.031611, (EAST,), group="N1Standard"
        ),
        sku("N1 Predefined Instance Ram running in Americas", 0.004237, (EAST,), **ram),
        sku("Nvidia Tesla T4 GPU running in Americas", 0.35, (EAST,), group="GPU"),
        # decoys: a newer price wins over an older one; other regions, commitments,
        # custom and sole-tenant parts, another unit are not these machines' rates
        sku(
            "N2 Instance Core running in Americas", 0.02, (EAST,), effective="2020-01-01T00:00:00Z"
        ),
        sku("N2 Instance Core running in Americas", 9.0, ("europe-west1",)),
        sku("Commitment v1: N2 Cpu in Americas for 1 Year", 0.01, (EAST,), usage="Commit1Yr"),
        sku("N2 Instance Core running in Americas", 0.019, (EAST,), usage="Commit1Yr"),
        sku("N2 Custom Instance Core running in Americas", 0.5, (EAST,)),
        sku("N2 Sole Tenancy Instance Core running in Americas", 0.5, (EAST,)),
        sku("E2 Instance Core running in Americas", 7.0, (EAST,), unit="GiBy.h"),
    ]


def _spec(workdir: Path, **args: Any):  # type: ignore[no-untyped-def]
    return parse_spec(
        {
            "cloud": "gcp",
            "region": "us-east",
            "machine": "m",
            "script": "#!/bin/sh\necho hi\n",
            "storage": {"workdir": str(workdir)},
            **args,
        }
    )


def test_a_machine_is_priced_from_its_parts_across_pages(
    gcp: Gcp, monkeypatch: pytest.MonkeyPatch
) -> None:
    gcp.fake.skus = _rates()
    monkeypatch.setattr(billing, "PAGE_SIZE", 3)  # several pages from a short list
    types = ("n2-standard-8", "e2-medium", "n1-standard-4+nvidia-tesla-t4*1", "g2-standard-8")
    found = Backend().live_prices(EAST, types)
    assert found == {
        "n2-standard-8": Price(
            pytest.approx(8 * 0.031611 + 32 * 0.004237), pytest.approx(8 * 0.0091 + 32 * 0.0012)
        ),
        "e2-medium": Price(  # a shared core billed as one vCPU
            pytest.approx(0.021811 + 4 * 0.002923), pytest.approx(0.0065 + 4 * 0.0009)
        ),
        # The catalog here has no spot T4 nor spot N1: on-demand only.
        "n1-standard-4+nvidia-tesla-t4*1": Price(
            pytest.approx(4 * 0.031611 + 15 * 0.004237 + 0.35), None
        ),
        # no G2 rates: not priced, never guessed
    }
    pages = gcp.fake.calls(LIST)
    assert len(pages) == -(-len(gcp.fake.skus) // 3)  # every page read, once
    assert all(c.path["parent"] == billing.COMPUTE_SERVICE for c in pages)
    assert all(c.q("currencyCode") == "USD" for c in pages)


def test_live_prices_win_over_the_snapshot_at_create(gcp: Gcp, workdir: Path) -> None:
    spec = _spec(workdir, spot=0)
    first, second = catalog.resolve_machine("gcp", spec.machine).types
    snapshot = cost.pricing_for(spec)  # preview: the snapshot, no call
    assert snapshot.known and gcp.fake.calls(LIST) == []
    gcp.fake.skus = _rates()
    ref = lifecycle.create(spec)
    pricing = cost.Pricing.from_dict(ref.pricing)
    n2_spot = 8 * 0.0091 + 32 * 0.0012
    e2_spot = 8 * 0.0065 + 32 * 0.0009
    assert pricing.hourly == {first: pytest.approx(n2_spot), second: pytest.approx(e2_spot)}
    assert pricing.hourly[first] != snapshot.hourly[first]
    assert pricing.on_demand[first] == pytest.approx(8 * 0.031611 + 32 * 0.004237)
    today = datetime.now(timezone.utc).date().isoformat()
    assert (pricing.source, pricing.date) == ("GCP Cloud Billing Catalog at create", today)
    lifecycle.delete(ref)
    assert leftovers(gcp, ref.task_id) == []


def test_an_unreadable_catalog_is_a_warning_and_the_snapshot_stands(
    gcp: Gcp, workdir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    gcp.fake.skus = _rates()
    gcp.fake.fail(LIST, code=403, message="Cloud Billing API has not been used in project")
    spec = _spec(workdir)  # on-demand: GCP's list prices those too
    with caplog.at_level(logging.WARNING, logger="pulumi_iterative.lifecycle"):
        ref = lifecycle.create(spec)
    assert cost.Pricing.from_dict(ref.pricing) == cost.pricing_for(spec)
    assert "live prices unavailable from GCP Cloud Billing Catalog" in caplog.text
    assert len(gcp.fake.calls(LIST)) == 1  # asked once: a refusal is not retried
    lifecycle.delete(ref)
    assert leftovers(gcp, ref.task_id) == []
