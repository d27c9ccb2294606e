"""What the agent knows about the pod it runs in (stdlib only: no SDK, no Pulumi).

- index: the Indexed Job gives it, `JOB_COMPLETION_INDEX`; a replacement pod for a
  lost one gets the same index, so there is no claim protocol.
- instance id: the pod's name (`TASK_POD_NAME`, from the downward API), unique per
  pod, so each respawn reports under its own name.
- home: `scratch/` under the container's working directory, an emptyDir.
- preemption notice: Kubernetes announces a disruption (spot reclaim, drain,
  preemption) by SIGTERM with the pod's termination grace period, which the agent
  already turns into a last checkpoint; there is nothing else to poll, and the pod
  has no API token to poll with.
- leaving the group: an Indexed Job completes an index when its pod exits, and the
  Job when every index has; nothing to call.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

from .names import SCRATCH_DIR

INDEX_ENV = "JOB_COMPLETION_INDEX"
POD_NAME_ENV = "TASK_POD_NAME"


class K8sMachine:
    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.workdir = Path.cwd()  # the container's workingDir: mounts are relative to it

    def index(self) -> int:
        value = os.environ.get(INDEX_ENV, "")
        if not value.isdigit():
            raise RuntimeError(
                f"{INDEX_ENV} is not set: this pod was not started by the task's Indexed Job"
            )
        return int(value)

    def instance_id(self) -> str:
        return os.environ.get(POD_NAME_ENV) or socket.gethostname()

    def home(self) -> Path:
        return self.workdir / SCRATCH_DIR

    def preemption_notice(self) -> bool:
        return False

    def leave_group(self) -> None:
        return None


MachineSide = K8sMachine  # the name the registry looks for
