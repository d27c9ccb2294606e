"""The registry: cloud name -> its folder, written out, imported whole by a test.

Each entry names the package of one cloud; the three modules the rest of the
package uses are found by fixed names inside it (`catalog.CATALOG`,
`backend.Backend`, `machine.MachineSide`, see base.py). Loading is lazy, so the
package imports without any cloud SDK, and a cloud whose extra is not installed
fails with the pip command that fixes it.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..errors import FieldError
    from ..records import BootConfig
    from ..spec import TaskSpec
    from .base import Backend, CloudCatalog, MachineSide


@dataclass(frozen=True)
class Cloud:
    name: str
    package: str  # e.g. "pulumi_iterative.clouds.aws"
    extra: str = ""  # the pip extra with its SDK ("" = none needed)
    # What the agent imports on a machine of this cloud besides the agent itself (its
    # SDK): the machine installs exactly these, never the whole extra or Pulumi.
    machine_requires: tuple[str, ...] = ()
    # Which prices the backend's `live_prices` asks the cloud for at create (never at
    # preview): "spot", "all" (on-demand too), or "" (none: the snapshot only).
    live_prices: str = ""

    def priced_at_create(self, spot: bool) -> bool:
        return self.live_prices == "all" or (self.live_prices == "spot" and spot)

    def _module(self, part: str) -> ModuleType:
        from ..errors import IterativeError

        try:
            return importlib.import_module(f"{self.package}.{part}")
        except ImportError as exc:
            if not self.extra or (exc.name or "").startswith("pulumi_iterative"):
                raise
            raise IterativeError(
                f"cloud {self.name!r} needs extra packages ({exc.name}); install them with "
                f"`pip install 'pulumi-iterative[{self.extra}]'`"
            ) from exc

    def catalog(self) -> CloudCatalog:
        return self._module("catalog").CATALOG  # type: ignore[no-any-return]

    def validate(self, spec: TaskSpec) -> list[FieldError]:
        return self._module("rules").validate(spec)  # type: ignore[no-any-return]

    def backend(self) -> Backend:
        return self._module("backend").Backend()  # type: ignore[no-any-return]

    def machine_side(self, config: BootConfig) -> MachineSide:
        return self._module("machine").MachineSide(config)  # type: ignore[no-any-return]


# Adding a cloud is one line here (and its folder). Order is the order users see.
CLOUDS: dict[str, Cloud] = {
    "local": Cloud("local", "pulumi_iterative.clouds.local"),
    "aws": Cloud(
        "aws", "pulumi_iterative.clouds.aws", "aws", ("boto3>=1.35.69",), live_prices="spot"
    ),
    "gcp": Cloud(
        "gcp",
        "pulumi_iterative.clouds.gcp",
        "gcp",
        # the metadata server's token and one JSON call (leaving the group)
        ("google-auth>=2.20", "google-api-core>=2.11", "requests>=2.28"),
        live_prices="all",
    ),
    # The machine's index claims use Blob storage with the VM's managed identity.
    "azure": Cloud(
        "azure",
        "pulumi_iterative.clouds.azure",
        "azure",
        ("azure-identity>=1.23", "azure-storage-blob>=12.19"),
        live_prices="all",  # the Retail Prices API: every region, the EU ones too
    ),
    "k8s": Cloud("k8s", "pulumi_iterative.clouds.k8s", "k8s"),  # the machine side needs no SDK
}
# Other names users may write for a cloud.
ALIASES = {"az": "azure", "kubernetes": "k8s", "google": "gcp", "amazon": "aws"}


def get(cloud: str) -> Cloud:
    from ..errors import IterativeError

    found = CLOUDS.get(cloud)
    if found is None:
        raise IterativeError(
            f"cloud {cloud!r} is not available yet; available: {', '.join(CLOUDS)}"
        )
    return found


def get_backend(cloud: str) -> Backend:
    return get(cloud).backend()


def machine_requirements(cloud: str) -> tuple[str, ...]:
    """Everything pip installs on a machine of this cloud besides the agent's wheel."""
    from ..agent.bootstrap import AGENT_REQUIRES

    return (*AGENT_REQUIRES, *get(cloud).machine_requires)
