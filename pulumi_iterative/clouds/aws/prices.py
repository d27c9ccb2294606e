"""AWS hourly prices as a dated snapshot (Linux, shared tenancy, USD).

On-demand prices are those of AWS's public price list for the two US regions the
catalog names (us-east-1 and us-west-2 charge the same for these types). Typical
spot prices are rounded from the spot price history of the same regions; spot moves
every few minutes, so at create the backend asks the cloud for the current ones
(`Backend.live_prices`, DescribeSpotPriceHistory) and uses these only when it cannot.
Types and regions not listed have no known price (the p4d/p5 prices were cut in
2025 and are left out until re-read): a figure then says so instead of guessing.
Refresh by re-reading https://aws.amazon.com/ec2/pricing/on-demand/ and bumping DATE.
"""

from __future__ import annotations

from ..base import Price, PriceSheet

DATE = "2025-05-01"
REGIONS = ("us-east-1", "us-west-2")
# native type -> (on-demand, typical spot) per hour
HOURLY: dict[str, tuple[float, float]] = {
    "t3.medium": (0.0416, 0.0144),
    "t3a.medium": (0.0376, 0.0138),
    "m7i.2xlarge": (0.4032, 0.1620),
    "m6i.2xlarge": (0.384, 0.1480),
    "m5.2xlarge": (0.384, 0.1450),
    "m7i.8xlarge": (1.6128, 0.6480),
    "m6i.8xlarge": (1.536, 0.6100),
    "m5.8xlarge": (1.536, 0.6000),
    "m7i.16xlarge": (3.2256, 1.3000),
    "m6i.16xlarge": (3.072, 1.2300),
    "m5.16xlarge": (3.072, 1.2000),
    "g4dn.xlarge": (0.526, 0.2100),
    "g4dn.12xlarge": (3.912, 1.5600),
    "g4dn.metal": (7.824, 3.1000),
    "g5.xlarge": (1.006, 0.4000),
    "g5.2xlarge": (1.212, 0.4800),
    "g5.12xlarge": (5.672, 2.2700),
    "g5.48xlarge": (16.288, 6.5000),
    "g6.xlarge": (0.8048, 0.3200),
    "g6.2xlarge": (0.9776, 0.3900),
    "g6.12xlarge": (4.6016, 1.8400),
    "g6.48xlarge": (13.3504, 5.3400),
}

PRICES = PriceSheet(
    rows={
        (region, machine_type): Price(on_demand, spot)
        for region in REGIONS
        for machine_type, (on_demand, spot) in HOURLY.items()
    },
    currency="USD",
    source="AWS price snapshot",
    date=DATE,
    minimum_seconds=60.0,  # Linux: per second, at least one minute per boot
)
