"""The local cloud's machine side: the group process is the metadata service, through
the environment it gives each machine process; a machine leaves its group by exiting 0."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

PREEMPTING = "preempting"  # in the machine's folder: the group's notice (see group.py)

if TYPE_CHECKING:
    from ...records import BootConfig


class MachineSide:
    def __init__(self, config: BootConfig) -> None:
        self.config = config

    def index(self) -> int:
        return int(os.environ["ITERATIVE_MACHINE_INDEX"])

    def instance_id(self) -> str:
        return os.environ["ITERATIVE_MACHINE_ID"]

    def home(self) -> Path:
        return Path(os.environ["ITERATIVE_MACHINE_DIR"])

    def launched(self) -> float | None:
        started = os.environ.get("ITERATIVE_MACHINE_STARTED")
        return float(started) if started else None

    def preemption_notice(self) -> bool:
        # The group marks a machine it is about to take away before it sends SIGTERM.
        return (self.home() / PREEMPTING).exists()

    def leave_group(self) -> None:
        return None
