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
- leaving the group: an Indexed Job completes an index when its pod exits 0, and the
  Job when every index has; nothing to call.
- logs: the script's output is echoed to the container log too (`echo_log`), which
  status and `logs` read while the pod lives; the bucket's log is the lasting record.
- exit code: the script's (`script_exit_code`), so the Job's conditions agree with
  the task: a failed script fails its pod, which `backoffLimitPerIndex` retries; a
  timeout (124) or spent budget (125) fails its index at once (pod failure policy);
  an interruption exits 143 and its DisruptionTarget pod is replaced uncounted.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

from .names import SCRATCH_DIR

INDEX_ENV = "JOB_COMPLETION_INDEX"
POD_NAME_ENV = "TASK_POD_NAME"
EXIT_TIMEOUT = 124  # the task's timeout passed (the convention of coreutils `timeout`)
EXIT_BUDGET = 125  # the task's budget is spent
EXIT_AGENT_ERROR = 70  # EX_SOFTWARE: the agent, not the script, failed


def script_exit_code(state: str, code: int | None) -> int:
    """How the pod ends, for the Job's pod failure policy: the script's own code (128 + N
    when signal N killed it), EXIT_TIMEOUT/EXIT_BUDGET when the agent stopped it, and
    EXIT_AGENT_ERROR for a failure without a code of the script's."""
    if state == "succeeded":
        return 0
    if state == "timeout":
        return EXIT_TIMEOUT
    if state == "budget":
        return EXIT_BUDGET
    if not code:
        return EXIT_AGENT_ERROR
    return 128 - code if code < 0 else code


class K8sMachine:
    echo_log = True  # the container log (pods/log) shows the script's output live

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

    def exit_code(self, state: str, code: int | None) -> int:
        return script_exit_code(state, code)


MachineSide = K8sMachine  # the name the registry looks for
