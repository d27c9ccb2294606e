"""IterativeTask: the one resource a data scientist declares.

A ComponentResource (`iterative:index:IterativeTask`) owning one dynamic `Task`
resource whose provider does the work. Arguments left unset come from stack
config (`pulumi config set iterative:cloud local`), so a team sets them once per
stack; arguments given here win.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

import pulumi
from pulumi.dynamic import Resource

from .provider import OUTPUTS, TaskProvider

# Stack config keys read as defaults, with how to read each.
_CONFIG_DEFAULTS = (
    "cloud",
    "region",
    "machine",
    "disk_size",
    "spot",
    "image",
    "parallelism",
    "timeout",
    "permission_set",
    "preempt_interval",
    "preempt_notice",
    "budget",
    "notional_price",
)


@dataclass
class Storage:
    """What goes up, what comes back: `workdir` is uploaded at create and restored on
    every machine; `output` (inside workdir) comes home on `pulumi destroy`."""

    workdir: pulumi.Input[str] = ""
    output: pulumi.Input[str] = ""
    exclude: pulumi.Input[list[str]] = field(default_factory=list)
    container: pulumi.Input[str] = ""
    container_opts: pulumi.Input[dict[str, str]] = field(default_factory=dict)
    checkpoint_interval: pulumi.Input[float] | None = None


@dataclass
class IterativeTaskArgs:
    """All arguments of IterativeTask; see the README's argument reference."""

    cloud: pulumi.Input[str] | None = None
    region: pulumi.Input[str] | None = None
    machine: pulumi.Input[str] | None = None
    disk_size: pulumi.Input[int] | None = None
    spot: pulumi.Input[float] | None = None
    image: pulumi.Input[str] | None = None
    parallelism: pulumi.Input[int] | None = None
    timeout: pulumi.Input[int | str] | None = None
    environment: pulumi.Input[dict[str, str]] | None = None
    secret_environment: pulumi.Input[dict[str, str]] | None = None
    script: pulumi.Input[str] | None = None
    storage: Storage | dict[str, Any] | None = None
    permission_set: pulumi.Input[str] | None = None
    tags: pulumi.Input[dict[str, str]] | None = None
    name: pulumi.Input[str] | None = None
    preempt_interval: pulumi.Input[float] | None = None
    preempt_notice: pulumi.Input[float] | None = None
    budget: pulumi.Input[float] | None = None
    notional_price: pulumi.Input[float] | None = None


class Task(Resource, module="iterative", name="Task"):
    """The dynamic resource; its type token is pulumi-python:dynamic/iterative:Task."""

    def __init__(
        self, name: str, props: dict[str, Any], opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(TaskProvider(), name, {**props, **dict.fromkeys(OUTPUTS)}, opts)


class IterativeTask(pulumi.ComponentResource):
    task_id: pulumi.Output[str]
    status: pulumi.Output[dict[str, Any]]
    events: pulumi.Output[list[dict[str, Any]]]
    logs: pulumi.Output[list[str]]
    addresses: pulumi.Output[list[str]]
    ref: pulumi.Output[dict[str, Any]]

    def __init__(
        self,
        resource_name: str,
        args: IterativeTaskArgs | None = None,
        opts: pulumi.ResourceOptions | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__("iterative:index:IterativeTask", resource_name, None, opts)
        props = _props(args, kwargs)
        child_opts = pulumi.ResourceOptions(
            parent=self,
            # Outputs derived from the secrets are secret too, whatever their name.
            additional_secret_outputs=["secret_environment"],
        )
        self.task = Task(resource_name, props, child_opts)
        self.task_id = self.task.task_id  # type: ignore[attr-defined]
        self.status = self.task.status  # type: ignore[attr-defined]
        self.events = self.task.events  # type: ignore[attr-defined]
        self.logs = self.task.logs  # type: ignore[attr-defined]
        self.addresses = self.task.addresses  # type: ignore[attr-defined]
        self.ref = self.task.ref  # type: ignore[attr-defined]
        self.register_outputs(
            {
                "task_id": self.task_id,
                "status": self.status,
                "events": self.events,
                "logs": self.logs,
                "addresses": self.addresses,
            }
        )


def _props(args: IterativeTaskArgs | None, kwargs: dict[str, Any]) -> dict[str, Any]:
    """Merge Args, keyword arguments and stack-config defaults into the resource's inputs."""
    known = set(IterativeTaskArgs.__dataclass_fields__)
    unknown = sorted(set(kwargs) - known)
    if unknown:
        raise TypeError(
            f"IterativeTask got unknown argument(s) {', '.join(unknown)}; "
            f"the arguments are {', '.join(sorted(known))}"
        )
    merged = {k: v for k, v in _fields(args or IterativeTaskArgs()).items() if v is not None}
    merged.update({k: v for k, v in kwargs.items() if v is not None})
    storage = merged.get("storage")
    if isinstance(storage, Storage):
        merged["storage"] = {k: v for k, v in _fields(storage).items() if v is not None}
    config = pulumi.Config("iterative")
    for key in _CONFIG_DEFAULTS:
        if key not in merged and config.get(key) is not None:
            merged[key] = config.get(key)
    config_tags = config.get_object("tags")
    if isinstance(config_tags, dict):
        merged["tags"] = {**config_tags, **(merged.get("tags") or {})}
    if "secret_environment" in merged:
        merged["secret_environment"] = pulumi.Output.secret(merged["secret_environment"])
    return merged


def _fields(obj: Any) -> dict[str, Any]:
    # Not dataclasses.asdict: it deep-copies values, and Outputs must pass through as they are.
    return {f.name: getattr(obj, f.name) for f in fields(obj)}
