"""Every AWS name and tag of a task, derived from its id, plus the S3 remote's shape.

No SDK here: the workstation's backend and the agent on the machine (AwsHooks)
both import it, so they can never disagree on a name. Task ids are lowercase,
at most 41 characters and bucket-safe, so `pulumi-iterative-<id>` fits every
AWS name limit (buckets 63, IAM roles 64, launch templates 128, groups 255).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from ... import remotes

PREFIX = "pulumi-iterative"
TASK_TAG = "pulumi-iterative:task"  # on every object the task makes
IAM_PATH = f"/{PREFIX}/"  # roles and profiles live here: callers can scope IAM to it
CLAIMS = "claims"  # <remote>/claims/<index>.json: which instance runs which index
# Group lifecycle states that mean the instance is on its way out.
LEAVING = ("Terminating", "Terminating:Wait", "Terminating:Proceed", "Terminated", "Detaching")


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
    def role(self) -> str:
        return self.base

    @property
    def instance_profile(self) -> str:
        return self.base

    @property
    def policy(self) -> str:
        return "task-scope"

    @property
    def security_group(self) -> str:
        return self.base

    @property
    def launch_template(self) -> str:
        return self.base

    @property
    def group(self) -> str:
        return self.base

    @property
    def backstop(self) -> str:
        return f"{self.base}-deadline"


def s3_root(bucket: str, prefix: str) -> str:
    """The rclone on-the-fly remote for a bucket and key prefix."""
    return remotes.root("s3", bucket, prefix)


def split_root(root: str) -> tuple[str, str]:
    """`:s3:bucket/pre/fix` -> ("bucket", "pre/fix")."""
    return remotes.split(root, "s3", "an S3 remote")


key = remotes.key


def endpoint_override(environ: Mapping[str, str] | None = None) -> str:
    """An S3 endpoint other than AWS's (an emulator); "" on real AWS.

    Same precedence as boto3: the service-specific variable, then the global one.
    """
    env = os.environ if environ is None else environ
    return env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL") or ""


def remote_env(region: str, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The non-secret rclone settings for S3: credentials always come from the
    environment (the user's on the workstation, the instance role on machines), and
    so does an endpoint override: rclone's SDK honours AWS_ENDPOINT_URL(_S3) itself, so
    the workstation's endpoint is never stored in the task (nor in a machine's
    user-data); a machine uses its own environment's."""
    env = {
        "RCLONE_S3_PROVIDER": "AWS",
        "RCLONE_S3_ENV_AUTH": "true",
        "RCLONE_S3_REGION": region,
        # The bucket exists before anything is written; machines may not create buckets.
        "RCLONE_S3_NO_CHECK_BUCKET": "true",
    }
    if endpoint_override(environ).startswith("http://"):
        # Plain HTTP (an emulator on loopback): the Go SDK's trailing checksums need
        # TLS, so send PutObject bodies unsigned and checksum only where required.
        env["RCLONE_S3_USE_UNSIGNED_PAYLOAD"] = "true"
        env["AWS_REQUEST_CHECKSUM_CALCULATION"] = "when_required"
    return env


def region_of(remote: Mapping[str, object]) -> str:
    env = remote.get("env") or {}
    assert isinstance(env, Mapping)
    return str(env["RCLONE_S3_REGION"])
