"""The backend protocol, written once, and the explicit cloud-name -> backend table.

A backend does only what is particular to its cloud: where the bucket is, how it
is made, how machines are started as a group that replaces lost ones, what the
group sees, and how to stop it. The bucket contract, the agent, checkpoints,
status and pulls are shared (see lifecycle.py), so a new cloud is one module.
Cloud SDKs are imported inside each backend module only, and modules are loaded
lazily so the package imports without any SDK.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ..agent.bootstrap import Install
    from ..spec import TaskSpec
    from ..status import CloudMachine, Event
    from ..steps import Step
    from ..task import TaskRef


class Backend(Protocol):
    """What each cloud implements. Every method is idempotent; none keeps clients on self."""

    name: str

    def prepare(self, spec: TaskSpec, task_id: str) -> TaskRef:
        """Derive names, the remote and the budget from the spec. No cloud calls."""
        ...

    def storage_steps(self, ref: TaskRef) -> list[Step]:
        """Make (and, as undo, remove) the task's bucket or prefix."""
        ...

    def machine_steps(self, ref: TaskRef, spec: TaskSpec | None, bootstrap: str) -> list[Step]:
        """Identity, network, template, group, backstop, start; each with its undo.

        With spec None only the undos are used (teardown from a TaskRef alone), so
        every undo must find its object from the ref (derived names or tags).
        """
        ...

    def install(self, ref: TaskRef) -> Install:
        """How a machine of this cloud gets the agent (bootstrap's install section)."""
        ...

    def machines(self, ref: TaskRef) -> list[CloudMachine] | None:
        """The group's machines, alive or recently gone; None if the cloud cannot tell."""
        ...

    def events(self, ref: TaskRef) -> list[Event]:
        """The group's own activity (launches, terminations, preemptions)."""
        ...

    def stop(self, ref: TaskRef) -> None:
        """Bring the group to zero machines; storage is kept. Missing group is fine."""
        ...


# Explicit dispatch: cloud name -> "module:class". Adding a cloud is one line here.
BACKENDS: dict[str, str] = {
    "local": "pulumi_iterative.backends.local:LocalBackend",
    "aws": "pulumi_iterative.backends.aws:AwsBackend",
    "gcp": "pulumi_iterative.clouds.gcp.backend:GcpBackend",
}


def get_backend(cloud: str) -> Backend:
    from ..errors import IterativeError

    target = BACKENDS.get(cloud)
    if target is None:
        ready = ", ".join(sorted(BACKENDS))
        raise IterativeError(f"cloud {cloud!r} is not available yet; available: {ready}")
    module_name, _, cls_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise IterativeError(
            f"cloud {cloud!r} needs extra packages ({exc.name}); install them with "
            f"`pip install 'pulumi-iterative[{cloud}]'`"
        ) from exc
    return getattr(module, cls_name)()
