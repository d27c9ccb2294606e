"""What the agent needs to know about the machine it runs on, per cloud.

Each cloud answers four questions: which task index is this machine, what is its
cloud id, has the cloud announced it will take the machine away, and how does
the machine leave its group (so the group reaches zero when the last one ends).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Protocol


class MachineHooks(Protocol):
    def index(self) -> int: ...
    def instance_id(self) -> str: ...
    def home(self) -> Path: ...
    def preemption_notice(self) -> bool: ...
    def leave_group(self) -> None: ...


class LocalHooks:
    """The local cloud: the group process is the metadata service, via the environment
    it gives each machine process; a machine leaves its group by exiting 0."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config

    def index(self) -> int:
        return int(os.environ["ITERATIVE_MACHINE_INDEX"])

    def instance_id(self) -> str:
        return os.environ["ITERATIVE_MACHINE_ID"]

    def home(self) -> Path:
        return Path(os.environ["ITERATIVE_MACHINE_DIR"])

    def preemption_notice(self) -> bool:
        return False  # the local group's notice is SIGTERM

    def leave_group(self) -> None:
        return None


HOOKS: dict[str, str] = {
    "local": "pulumi_iterative.agent.hooks:LocalHooks",
    "aws": "pulumi_iterative.agent.aws_hooks:AwsHooks",
    "gcp": "pulumi_iterative.clouds.gcp.machine:MachineSide",
}


def machine_hooks(config: dict[str, Any]) -> MachineHooks:
    import importlib

    module_name, _, cls_name = HOOKS[config["cloud"]].partition(":")
    return getattr(importlib.import_module(module_name), cls_name)(config)
