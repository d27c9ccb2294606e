"""The local cloud's offer: every generic name is accepted; machines are processes."""

from __future__ import annotations

from ..base import ACCELERATORS, GENERIC_REGIONS, GENERIC_SIZES, CloudCatalog
from .prices import PRICES

CATALOG = CloudCatalog(
    machines={
        **{s: (s,) for s in GENERIC_SIZES},
        **{f"{s}+{a}": (f"{s}+{a}",) for s in GENERIC_SIZES for a in ACCELERATORS},
    },
    regions={r: r for r in (*GENERIC_REGIONS, "local")},
    default_region="local",
    images={"ubuntu": "host", "nvidia": "host"},
    prices=PRICES,
)
