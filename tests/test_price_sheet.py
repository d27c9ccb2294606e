"""The AWS price sheet is generated from SkyPilot's catalog rows (tools/price_sheet.py)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from pulumi_iterative.catalog import cloud_catalog
from pulumi_iterative.clouds.aws import prices
from tools import price_sheet

EXCERPT = Path(price_sheet.__file__).parent / "data" / "aws_vms_excerpt.csv"
# A few rows in the full catalog's own column layout (GPU info and all).
FIXTURE = """\
InstanceType,AcceleratorName,AcceleratorCount,vCPUs,MemoryGiB,GpuInfo,Price,SpotPrice,Region,AvailabilityZone,Arch
t3.medium,,,2.0,4.0,,0.0416,0.017600,us-east-1,use1-az1,x86_64
t3.medium,,,2.0,4.0,,0.0416,0.014500,us-east-1,use1-az2,x86_64
t3.medium,,,2.0,4.0,,0.0416,0.016100,us-east-1,use1-az4,x86_64
t3.medium,,,2.0,4.0,,0.0416,0.015000,us-east-1,use1-az5,x86_64
t3.medium,,,2.0,4.0,,0.0544,0.020700,ap-northeast-1,apne1-az1,x86_64
t3.micro,,,2.0,1.0,,0.0104,0.003100,us-east-1,use1-az1,x86_64
g4dn.xlarge,T4,1.0,4.0,16.0,"{'Gpus': [{'Name': 'T4'}]}",0.526,,us-west-2,usw2-az1,x86_64
"""


def sheet_of(text: str) -> dict[str, dict[str, tuple[float, float | None]]]:
    rows = price_sheet.read_rows(io.StringIO(text))
    kept = price_sheet.wanted(rows, ["t3.medium", "g4dn.xlarge"], ["us-east-1", "us-west-2"])
    return price_sheet.aws_sheet(kept)


def test_on_demand_is_the_regions_and_spot_the_upper_median_of_its_zones() -> None:
    sheet = sheet_of(FIXTURE)
    # Other regions and types are left out; the upper median is a price a zone asked.
    assert sheet == {
        "us-east-1": {"t3.medium": (0.0416, 0.0161)},
        "us-west-2": {"g4dn.xlarge": (0.526, None)},  # no spot row: no spot price
    }


def test_zones_that_disagree_on_the_on_demand_price_are_an_error() -> None:
    bad = FIXTURE.replace("0.0416,0.015000", "0.0420,0.015000")
    with pytest.raises(ValueError, match=r"t3\.medium in us-east-1: the zones disagree"):
        sheet_of(bad)


def test_a_file_without_the_catalogs_columns_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match=r"missing column.*SpotPrice"):
        sheet_of("InstanceType,Price,Region,AvailabilityZone\nt3.medium,1,us-east-1,a\n")


def test_the_rendered_block_is_the_sheet_as_python(tmp_path: Path) -> None:
    sheet = sheet_of(FIXTURE)
    block = price_sheet.render(sheet, "a fixture")
    scope: dict[str, object] = {}
    exec(block, scope)
    assert scope["HOURLY"] == sheet
    template = f"head\n{price_sheet.BEGIN}\nold\n{price_sheet.END}\ntail\n"
    assert price_sheet.replace_block(template, block) == f"head\n{block}tail\n"


def test_the_shipped_sheet_is_what_the_kept_catalog_rows_give(tmp_path: Path) -> None:
    assert price_sheet.main(["aws", "--csv", str(EXCERPT), "--check"]) == 0
    # One price changed in the rows: the check notices.
    changed = tmp_path / "vms.csv"
    text = EXCERPT.read_text()
    assert "t3.medium,0.0416," in text
    changed.write_text(text.replace("t3.medium,0.0416,", "t3.medium,0.0417,"))
    assert price_sheet.main(["aws", "--csv", str(changed), "--check"]) == 1


def test_every_catalog_type_and_region_is_priced_but_the_named_exceptions() -> None:
    cat = cloud_catalog("aws")
    types = {t for group in cat.machines.values() for t in group}
    unpriced = {
        (region, t)
        for region in cat.regions.values()
        for t in types
        if cat.prices is None or cat.prices.price(region, t) is None
    }
    # not offered there: the catalog has no rows
    exceptions = {("eu-north-1", "t3a.medium"), ("eu-north-1", "p4d.24xlarge")}
    exceptions |= {("eu-west-1", t) for t in types if t.startswith("g6.")}
    exceptions |= {("eu-west-1", "p5.48xlarge")}
    assert unpriced == exceptions
    # Spot is cheaper than on-demand everywhere the sheet has both.
    for region, table in prices.HOURLY.items():
        for machine_type, (on_demand, spot) in table.items():
            assert spot is None or 0 < spot < on_demand, (region, machine_type)


def test_a_gcp_gpu_machine_costs_its_host_plus_its_gpus_on_demand_and_spot() -> None:
    from pulumi_iterative.clouds.gcp import prices as gcp

    cat = cloud_catalog("gcp")
    for region in ("us-east1", "us-west1", "europe-west1"):
        for machine in ("m+t4", "l+t4", "m+l4", "l+l4"):
            (native,) = cat.machines[machine]
            host_type, accelerator, count = gcp.split_machine(native)
            gpu = (gcp.GPU_NAMES[accelerator], count) if accelerator else None
            gpu = gpu or gcp.GPUS_IN_TYPE[host_type]
            host, gpus = gcp.HOSTS[region][host_type], gcp.GPUS[region][gpu]
            price = cat.prices.price(region, native) if cat.prices else None
            assert price is not None, (region, native)
            assert price.on_demand == pytest.approx(host[0] + gpus[0])
            assert price.spot == pytest.approx(host[1] + gpus[1])
            assert price.on_demand > host[0] and price.spot < price.on_demand
    # The count matters: four T4s cost four times one, on the same kind of host.
    assert gcp.GPUS["us-east1"][("T4", 4)][0] == pytest.approx(
        4 * gcp.GPUS["us-east1"][("T4", 1)][0]
    )
    # A region that does not offer the GPU leaves the machine unpriced, never host-only.
    assert "n1-standard-4" in gcp.HOSTS["europe-north1"]
    assert gcp.machine_price("europe-north1", "n1-standard-4+nvidia-tesla-t4*1") is None
    assert cat.prices is not None
    assert cat.prices.price("europe-north1", "n1-standard-4+nvidia-tesla-t4*1") is None
    # The ones not read are unknown, as the file says.
    assert cat.prices.price("us-east1", "a2-highgpu-8g") is None
    assert cat.prices.price("us-east1", "a3-highgpu-8g") is None
