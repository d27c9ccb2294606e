"""The local cloud's prices: free. A rehearsal can set `notional_price` (per machine-hour)
to see what the same run would cost on a cloud (see cost.py)."""

from __future__ import annotations

from ..base import ACCELERATORS, GENERIC_REGIONS, GENERIC_SIZES, Price, PriceSheet

MACHINES = (*GENERIC_SIZES, *(f"{s}+{a}" for s in GENERIC_SIZES for a in ACCELERATORS))

PRICES = PriceSheet(
    rows={
        (region, machine): Price(0.0, 0.0)
        for region in (*GENERIC_REGIONS, "local")
        for machine in MACHINES
    },
    currency="USD",
    source="local cloud: your own computer is free",
    date="",
    # A machine is a process: it is gone (and billed no more) a tick after its agent left.
    stop_seconds=5.0,
)
