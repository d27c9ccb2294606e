"""Every GCP name and label of a task, derived from its id, plus the GCS remote's shape.

No SDK here: the workstation's backend and the machine side both import it, so they
can never disagree on a name. Task ids are lowercase, at most 41 characters and
bucket-safe, so `pulumi-iterative-<id>` (58) fits buckets, templates, groups and
firewall rules (63), and `<group>-<index>` names a machine for indexes below 10,000.
Service account ids are 6-30 characters, so theirs is `pi-<slug>-<tail>` (the id's
random and check characters keep it unique).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from ... import remotes

PREFIX = "pulumi-iterative"
TASK_LABEL = "pulumi-iterative-task"  # on every object the task makes that takes labels
# One project-level custom role, shared by every task's machines: leave one's own group.
MACHINE_ROLE_ID = "pulumiIterativeMachine"
MACHINE_PERMISSIONS = (
    "compute.instanceGroupManagers.get",  # list the group's instances (status, own name)
    "compute.instanceGroupManagers.update",  # deleteInstances: leave the group
)
# The predefined role a machine gets on its bucket (objects only, no bucket admin).
BUCKET_ROLE = "roles/storage.objectUser"
ENDPOINT_ENV = "PULUMI_ITERATIVE_GCP_ENDPOINT"  # compute, IAM, resource manager emulator
STORAGE_ENV = "STORAGE_EMULATOR_HOST"  # google-cloud-storage's own emulator variable
GCS_API = "https://storage.googleapis.com"


@dataclass(frozen=True)
class Names:
    task_id: str

    @property
    def base(self) -> str:
        return f"{PREFIX}-{self.task_id}"

    @property
    def bucket(self) -> str:
        return self.base

    @property
    def template(self) -> str:
        return self.base

    @property
    def group(self) -> str:
        return self.base

    @property
    def firewall(self) -> str:
        return f"{self.base}-deny"

    @property
    def network_tag(self) -> str:
        return self.base

    def instance(self, index: int) -> str:
        return f"{self.group}-{index}"

    def index_of(self, instance: str) -> int | None:
        found = re.fullmatch(re.escape(self.group) + r"-(\d+)", instance)
        return int(found.group(1)) if found else None

    @property
    def account_id(self) -> str:
        slug, _, tail = self.task_id.rpartition("-")
        short = re.sub(r"-+", "-", slug[:15]).strip("-")
        return f"pi-{short}-{tail}" if short else f"pi-{tail}"

    def account_email(self, project: str) -> str:
        return f"{self.account_id}@{project}.iam.gserviceaccount.com"

    def labels(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        return {**dict(extra or {}), TASK_LABEL: self.task_id}


def group_resource(project: str, region: str, group: str) -> str:
    """The group's name as IAM conditions see it."""
    return f"projects/{project}/regions/{region}/instanceGroupManagers/{group}"


def gcs_root(bucket: str, prefix: str) -> str:
    """The rclone on-the-fly remote for a bucket and object prefix."""
    return remotes.root("gcs", bucket, prefix)


def split_root(root: str) -> tuple[str, str]:
    """`:gcs:bucket/pre/fix` -> ("bucket", "pre/fix")."""
    return remotes.split(root, "gcs", "a GCS remote")


key = remotes.key


def storage_emulator(environ: Mapping[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    return env.get(STORAGE_ENV, "").rstrip("/")


def remote_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The non-secret rclone settings for GCS: credentials always come from the
    environment (the user's application default credentials on the workstation, the
    machine's service account through the metadata server on machines)."""
    env = {
        "RCLONE_GCS_ENV_AUTH": "true",
        # Uniform bucket-level access: rclone must not send object ACLs.
        "RCLONE_GCS_BUCKET_POLICY_ONLY": "true",
        # The bucket exists before anything is written; machines may not create buckets.
        "RCLONE_GCS_NO_CHECK_BUCKET": "true",
    }
    emulator = storage_emulator(environ)
    if emulator:
        host = emulator if "://" in emulator else f"http://{emulator}"
        env["RCLONE_GCS_ENDPOINT"] = f"{host}/storage/v1/"
    return env


def storage_api(remote: Mapping[str, str]) -> str:
    """The GCS JSON API's base URL for a task's remote settings (remote_env): Google's,
    or the emulator's that rclone on the machine is pointed at."""
    endpoint = remote.get("RCLONE_GCS_ENDPOINT", "").rstrip("/")
    return endpoint.removesuffix("/storage/v1") or GCS_API
