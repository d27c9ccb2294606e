"""What AWS itself says about prices and billed time: spot price history, and when an
instance stopped being billed (its state transition time)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from .api import Aws, call

PRODUCT = "Linux/UNIX"
# "User initiated (2025-05-01 12:34:56 GMT)": AWS writes GMT, moto UTC.
_TRANSITION = re.compile(r"\((\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}) (?:GMT|UTC)\)")
BILLING_ENDED = ("shutting-down", "terminated", "stopped", "stopping")


def ended_at(instance: Mapping[str, Any]) -> float | None:
    """When billing for the instance ended, if it has: the time of its last transition
    out of running, which AWS writes into StateTransitionReason."""
    if instance.get("State", {}).get("Name") not in BILLING_ENDED:
        return None
    found = _TRANSITION.search(str(instance.get("StateTransitionReason") or ""))
    if not found:
        return None
    when = datetime.strptime(found.group(1), "%Y-%m-%d %H:%M:%S")
    return when.replace(tzinfo=timezone.utc).timestamp()


def spot_prices(aws: Aws, types: tuple[str, ...]) -> dict[str, float]:
    """type -> the current spot price per hour, the highest over the region's zones.

    With StartTime now, the history answers with the price in force in each zone.
    """
    paginator = aws.ec2.get_paginator("describe_spot_price_history")
    pages = call(
        lambda: list(
            paginator.paginate(
                InstanceTypes=list(types),
                ProductDescriptions=[PRODUCT, f"{PRODUCT} (Amazon VPC)"],
                StartTime=datetime.now(timezone.utc),
            )
        )
    )
    newest: dict[tuple[str, str], tuple[datetime, float]] = {}
    for page in pages:
        for row in page.get("SpotPriceHistory", []):
            key = (row["InstanceType"], row["AvailabilityZone"])
            stamp, price = row["Timestamp"], float(row["SpotPrice"])
            if key not in newest or stamp > newest[key][0]:
                newest[key] = (stamp, price)
    out: dict[str, float] = {}
    for (machine_type, _zone), (_stamp, price) in newest.items():
        out[machine_type] = max(price, out.get(machine_type, 0.0))
    return out
