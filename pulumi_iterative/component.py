"""IterativeTask: the one resource a data scientist declares.

A ComponentResource (`iterative:index:IterativeTask`) owning one dynamic `Task`
resource whose provider does the work. Arguments left unset come from stack
config (`pulumi config set iterative:cloud local`), so a team sets them once per
stack; arguments given here win. The arguments, their stack-config keys and which of
them are secret come from the one declaration in arguments.py.
"""

from __future__ import annotations

from dataclasses import field, fields, make_dataclass
from typing import Any

import pulumi
from pulumi.dynamic import Resource

from .arguments import ARGUMENTS, BY_NAME, FIELDS, SECRET, Argument
from .provider import OUTPUTS, TaskProvider
from .task import task_name

_PYTHON_TYPES: dict[str, Any] = {
    "str": str,
    "text": str,
    "int": int,
    "number": float,
    "duration": int | str,
    "map": dict[str, str],
    "list": list[str],
}


def _field(arg: Argument) -> tuple[str, Any, Any]:
    return (arg.field, pulumi.Input[_PYTHON_TYPES[arg.kind]] | None, field(default=None))


def _args_class(name: str, members: list[tuple[str, Any, Any]], doc: str) -> type:
    """A dataclass with one optional field per declared argument (None = not given)."""
    made = make_dataclass(name, members)
    made.__module__ = __name__
    made.__doc__ = doc
    return made


def _doc(intro: str, args: list[Argument]) -> str:
    return intro + "".join(f"\n    {a.field}: {a.help}" for a in args)


_STORAGE_ARGS = [a for a in ARGUMENTS if a.group == "storage"]
Storage = _args_class(
    "Storage",
    [_field(a) for a in _STORAGE_ARGS],
    _doc(
        "What goes up, what comes back: `workdir` is uploaded at create and restored on\n"
        "every machine; `output` (inside workdir) comes home on `pulumi destroy`.\n",
        _STORAGE_ARGS,
    ),
)
IterativeTaskArgs = _args_class(
    "IterativeTaskArgs",
    [
        ("storage", Storage | dict[str, Any] | None, field(default=None))
        if name == "storage"
        else _field(BY_NAME[name])
        for name in FIELDS
    ],
    _doc(
        "All arguments of IterativeTask, each optional here: unset ones come from stack\n"
        "config or their defaults. `storage` is a Storage or a plain dict.\n",
        [a for a in ARGUMENTS if a.group != "storage"],
    ),
)


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
    bucket: pulumi.Output[str]

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
            # Outputs derived from the secrets are secret too, whatever their name; so are
            # the values the environment took from the creator's shell.
            additional_secret_outputs=[*SECRET, "inherited"],
        )
        # A task is called what its user called it: buckets, groups and roles read
        # `pulumi-iterative-train-...`, not `pulumi-iterative-task-...`.
        props.setdefault("name", task_name(resource_name))
        self.task = Task(resource_name, props, child_opts)
        self.task_id = self.task.task_id  # type: ignore[attr-defined]
        self.status = self.task.status  # type: ignore[attr-defined]
        self.events = self.task.events  # type: ignore[attr-defined]
        self.logs = self.task.logs  # type: ignore[attr-defined]
        self.addresses = self.task.addresses  # type: ignore[attr-defined]
        self.ref = self.task.ref  # type: ignore[attr-defined]
        self.bucket = self.task.bucket  # type: ignore[attr-defined]
        self.register_outputs(
            {
                "task_id": self.task_id,
                "status": self.status,
                "bucket": self.bucket,
                "ref": self.ref,
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
    for arg in ARGUMENTS:
        if arg.stack_config == "value" and arg.name not in merged:
            value = config.get(arg.name)
            if value is not None:
                merged[arg.name] = value
        elif arg.stack_config == "merge":
            found = config.get_object(arg.name)
            if isinstance(found, dict):
                merged[arg.name] = {**found, **(merged.get(arg.name) or {})}
    for name in SECRET:
        if name in merged:
            merged[name] = pulumi.Output.secret(merged[name])
    return merged


def _fields(obj: Any) -> dict[str, Any]:
    # Not dataclasses.asdict: it deep-copies values, and Outputs must pass through as they are.
    return {f.name: getattr(obj, f.name) for f in fields(obj)}
