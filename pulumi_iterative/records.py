"""The records that cross a process boundary, each written in one place and read in one.

    BootConfig      workstation (lifecycle) -> the bootstrap's payload -> agent, machine side
    TaskDefinition  workstation (lifecycle) -> <remote>/task.json -> agent
    BootReport      agent -> <remote>/status/<machine>.json -> status (workstation)
    StopMarker      workstation (lifecycle.stop) -> <remote>/status/stop.json -> status

Each is a frozen dataclass with `to_dict`/`from_dict` and a `schema` number. A reader
accepts what an older writer wrote (missing optional keys take their defaults) and
ignores keys it does not know (a newer writer), so a machine running an older agent
and a workstation running a newer provider still understand each other. Nothing here
imports Pulumi or a cloud SDK: the agent imports this module on the machine.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, TypeVar

R = TypeVar("R")
SCHEMA = 1


def _known(cls: type, data: Mapping[str, Any]) -> dict[str, Any]:
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in data.items() if k in names}


@dataclass(frozen=True)
class BootConfig:
    """What a machine needs to find its task: non-secret, in the stored bootstrap."""

    task_id: str
    cloud: str
    remote: Mapping[str, Any]  # storage.Remote.to_dict()
    version: str  # the agent version the provider installs
    schema: int = SCHEMA

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "remote": dict(self.remote)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BootConfig:
        d = _known(cls, data)
        return cls(
            task_id=str(d["task_id"]),
            cloud=str(d["cloud"]),
            remote=dict(d["remote"]),
            version=str(d.get("version", "")),
            schema=int(d.get("schema", SCHEMA)),
        )


@dataclass(frozen=True)
class TaskDefinition:
    """task.json: what the agent runs. Holds secrets: lives only in the private bucket."""

    task_id: str
    script: str
    parallelism: int
    created: float
    deadline: float
    environment: Mapping[str, str] = field(default_factory=dict)
    secret_environment: Mapping[str, str] = field(default_factory=dict)
    exclude: tuple[str, ...] = ()
    checkpoint_interval: float = 0.0
    pricing: Mapping[str, Any] = field(default_factory=dict)  # cost.Pricing.to_dict(): budget
    schema: int = SCHEMA

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["pricing"] = dict(self.pricing)
        d["environment"] = dict(self.environment)
        d["secret_environment"] = dict(self.secret_environment)
        d["exclude"] = list(self.exclude)
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TaskDefinition:
        d = _known(cls, data)
        return cls(
            task_id=str(d["task_id"]),
            script=str(d["script"]),
            parallelism=int(d["parallelism"]),
            created=float(d["created"]),
            deadline=float(d["deadline"]),
            environment={str(k): str(v) for k, v in (d.get("environment") or {}).items()},
            secret_environment={
                str(k): str(v) for k, v in (d.get("secret_environment") or {}).items()
            },
            exclude=tuple(str(e) for e in d.get("exclude") or ()),
            checkpoint_interval=float(d.get("checkpoint_interval") or 0.0),
            pricing=dict(d.get("pricing") or {}),
            schema=int(d.get("schema", SCHEMA)),
        )


@dataclass(frozen=True)
class BootReport:
    """One boot of one machine, as its agent last wrote it."""

    machine: str  # "<index>-<boot>": unique per boot
    index: int
    boot: str
    instance: str = ""  # the cloud's id for the machine
    state: str = ""  # running, succeeded, failed, timeout, budget, interrupted
    started: float | None = None
    finished: float | None = None
    exit_code: int | None = None
    reason: str = ""
    restarts: int = 0
    generation: int | None = None  # the newest checkpoint this boot made
    updated: float | None = None
    # Cost (cost.py). New fields go last: records are also built positionally.
    checkpointed: float | None = None  # when it made it (work after it is lost to a preemption)
    machine_type: str = ""  # the native type, if the machine's metadata says
    launched: float | None = None  # when the cloud launched it, if its metadata says
    notice: str = ""  # what the user should know about this boot (a restore that fell back)
    schema: int = SCHEMA

    def with_(self, **changes: Any) -> BootReport:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BootReport:
        d = _known(cls, data)

        def opt(name: str, kind: type[R]) -> R | None:
            value = d.get(name)
            return None if value is None else kind(value)  # type: ignore[call-arg]

        return cls(
            machine=str(d.get("machine", "?")),
            index=int(d.get("index", -1)),
            boot=str(d.get("boot", "")),
            instance=str(d.get("instance") or ""),
            machine_type=str(d.get("machine_type") or ""),
            launched=opt("launched", float),
            state=str(d.get("state") or ""),
            started=opt("started", float),
            finished=opt("finished", float),
            exit_code=opt("exit_code", int),
            reason=str(d.get("reason") or ""),
            restarts=int(d.get("restarts") or 0),
            generation=opt("generation", int),
            checkpointed=opt("checkpointed", float),
            updated=opt("updated", float),
            notice=str(d.get("notice") or ""),
            schema=int(d.get("schema", SCHEMA)),
        )


STOP_KIND = "stop"


@dataclass(frozen=True)
class StopMarker:
    """status/stop.json: the task was stopped on purpose (machines to zero, storage kept)."""

    time: float
    kind: str = STOP_KIND
    schema: int = SCHEMA

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StopMarker:
        return cls(time=float(data["time"]), schema=int(data.get("schema", SCHEMA)))

    @staticmethod
    def is_one(data: Mapping[str, Any]) -> bool:
        return data.get("kind") == STOP_KIND
