"""Every Kubernetes name and label of a task, derived from its id; no SDK here.

Task ids are lowercase, at most 41 characters and DNS-safe, so `iterative-<id>` (at
most 51) fits every limit that matters: a Job name is at most 63 (it becomes the
`job-name` label) and an Indexed Job's pod hostname `<job>-<index>` must stay within
63 too (51 + 1 + 4 digits for up to 1000 indexes). Every object is labelled with the
task id, so a leftovers scan is one label selector.

Paths inside a task's pods are relative to the container's working directory
(`POD_HOME`), so the agent, its bootstrap and the bucket mount agree on one layout:

    <POD_HOME>/task/      the ConfigMap: bootstrap.sh, task.json (no secrets)
    <POD_HOME>/secret/    the Secret: secret_environment (and storage keys), one file each
    <POD_HOME>/volume/    the task's PersistentVolumeClaim; the bucket contract is its
                          `bucket/` folder (the transfer pod serves that folder as the
                          S3 bucket `bucket`, see transfer.py)
    <POD_HOME>/scratch/   an emptyDir: the agent's home (workdir, logs)
"""

from __future__ import annotations

from dataclasses import dataclass

PREFIX = "iterative"
TASK_LABEL = "pulumi-iterative/task"  # on every object a task makes
ROLE_LABEL = "pulumi-iterative/role"  # what the object is for ("job", "transfer", ...)
MANAGED_BY = {"app.kubernetes.io/managed-by": "pulumi-iterative"}
POD_HOME = "/pulumi-iterative"
TASK_DIR = "task"
SECRET_DIR = "secret"
VOLUME_DIR = "volume"
BUCKET_DIR = "bucket"
BUCKET_ROOT = f"{VOLUME_DIR}/{BUCKET_DIR}"  # the pods' remote root, relative to POD_HOME
SCRATCH_DIR = "scratch"
BOOTSTRAP_KEY = "bootstrap.sh"
TASK_KEY = "task.json"
CONTAINER = "agent"
TRANSFER_PORT = 8080


@dataclass(frozen=True)
class Names:
    task_id: str

    @property
    def base(self) -> str:
        return f"{PREFIX}-{self.task_id}"

    @property
    def job(self) -> str:
        return self.base

    @property
    def config_map(self) -> str:
        return self.base

    @property
    def secret(self) -> str:
        return self.base

    @property
    def service_account(self) -> str:
        return self.base

    @property
    def role(self) -> str:
        return self.base

    @property
    def role_binding(self) -> str:
        return self.base

    @property
    def claim(self) -> str:
        return self.base

    @property
    def transfer_pod(self) -> str:
        return f"{self.base}-transfer"

    @property
    def selector(self) -> str:
        """Every object of this task, as a label selector."""
        return f"{TASK_LABEL}={self.task_id}"

    def labels(self, role: str = "") -> dict[str, str]:
        out = {**MANAGED_BY, TASK_LABEL: self.task_id}
        if role:
            out[ROLE_LABEL] = role
        return out


def secret_key(variable: str) -> str:
    """A Secret key for an environment variable (keys allow [-._a-zA-Z0-9], as names do)."""
    return variable
