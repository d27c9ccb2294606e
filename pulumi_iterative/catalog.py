"""Resolve generic names (`m`, `l+t4`, `us-east`, `ubuntu`) against a cloud's catalog.

Each cloud's rows live in its own folder (`clouds/<cloud>/catalog.py`, pure data);
this module only knows how to look a name up: a generic name maps to the cloud's
current offer, a native name (an instance type, a region, an image id) is taken as
is when it has the cloud's shape. The cloud table is read lazily, so importing this
module (and spec.py) loads no cloud.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from .clouds.base import ACCELERATORS, GENERIC_REGIONS, GENERIC_SIZES

if TYPE_CHECKING:
    from .clouds.base import CloudCatalog

T = TypeVar("T")

__all__ = [
    "ACCELERATORS",
    "GENERIC_REGIONS",
    "GENERIC_SIZES",
    "CatalogError",
    "Machine",
    "cloud_catalog",
    "default_region",
    "known_clouds",
    "normalize_cloud",
    "resolve_image",
    "resolve_machine",
    "resolve_region",
]

# Old accelerator names keep resolving to the nearest current part.
ACCELERATOR_ALIASES = {"k80": "t4", "v100": "a10g"}


class CatalogError(ValueError):
    """A name not in the catalog; the message lists the choices."""


@dataclass(frozen=True)
class Machine:
    """A resolved machine: the native types to try, best first."""

    generic: str | None
    types: tuple[str, ...]

    @property
    def accelerator(self) -> str | None:
        if self.generic and "+" in self.generic:
            return self.generic.split("+", 1)[1]
        return None


def known_clouds() -> tuple[str, ...]:
    """Every cloud name (the registry's; names only, no cloud module is loaded)."""
    from .clouds import CLOUDS

    return tuple(CLOUDS)


def normalize_cloud(name: str) -> str:
    from .clouds import ALIASES

    cloud = ALIASES.get(name.strip().lower(), name.strip().lower())
    if cloud not in known_clouds():
        raise CatalogError(f"unknown cloud {name!r}; choose one of {', '.join(known_clouds())}")
    return cloud


def cloud_catalog(cloud: str) -> CloudCatalog:
    from .clouds import CLOUDS

    return CLOUDS[cloud].catalog()


_catalog = cloud_catalog


def default_region(cloud: str) -> str:
    return _catalog(cloud).default_region


def _lookup(
    kind: str,
    cloud: str,
    name: str,
    table: dict[str, T],
    pattern: re.Pattern[str] | None,
    what_native: str,
) -> T | str:
    """The table's entry for a generic name, else a native name of the cloud's shape."""
    if name in table:
        return table[name]
    if pattern and pattern.match(name) and name not in GENERIC_REGIONS:
        return name
    raise CatalogError(
        f"unknown {kind} {name!r} for {cloud}; choose one of {', '.join(table)}"
        + (f" or a native {what_native}" if pattern else "")
    )


def resolve_machine(cloud: str, name: str) -> Machine:
    cat = _catalog(cloud)
    key = name.strip()
    if "+" in key:
        size, acc = key.split("+", 1)
        key = f"{size}+{ACCELERATOR_ALIASES.get(acc, acc)}"
    if key in cat.machines:
        return Machine(key, tuple(cat.machines[key]))
    table = {k: (k,) for k in cat.machines}  # the choices, for the message
    return Machine(
        None, (str(_lookup("machine", cloud, name, table, cat.native_machine, "instance type")),)
    )


def resolve_region(cloud: str, name: str) -> str:
    cat = _catalog(cloud)
    return str(_lookup("region", cloud, name, dict(cat.regions), cat.native_region, "region name"))


def resolve_image(cloud: str, name: str) -> str:
    cat = _catalog(cloud)
    return str(_lookup("image", cloud, name, dict(cat.images), cat.native_image, "image id"))
