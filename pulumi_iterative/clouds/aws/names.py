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
    return f":s3:{bucket}/{prefix}" if prefix else f":s3:{bucket}"


def split_root(root: str) -> tuple[str, str]:
    """`:s3:bucket/pre/fix` -> ("bucket", "pre/fix")."""
    if not root.startswith(":s3:"):
        raise ValueError(f"{root!r} is not an S3 remote")
    bucket, _, prefix = root[len(":s3:") :].partition("/")
    return bucket, prefix.strip("/")


def key(prefix: str, *parts: str) -> str:
    return "/".join(p.strip("/") for p in (prefix, *parts) if p)


def endpoint_override(environ: Mapping[str, str] | None = None) -> str:
    """An S3 endpoint other than AWS's (an emulator); "" on real AWS.

    Same precedence as boto3: the service-specific variable, then the global one.
    """
    env = os.environ if environ is None else environ
    return env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL") or ""


def remote_env(region: str, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The non-secret rclone settings for S3: credentials always come from the
    environment (the user's on the workstation, the instance role on machines)."""
    env = {
        "RCLONE_S3_PROVIDER": "AWS",
        "RCLONE_S3_ENV_AUTH": "true",
        "RCLONE_S3_REGION": region,
        # The bucket exists before anything is written; machines may not create buckets.
        "RCLONE_S3_NO_CHECK_BUCKET": "true",
    }
    endpoint = endpoint_override(environ)
    if endpoint:
        env["RCLONE_S3_ENDPOINT"] = endpoint
    if endpoint.startswith("http://"):
        # Plain HTTP (an emulator on loopback): the Go SDK's trailing checksums need
        # TLS, so send PutObject bodies unsigned and checksum only where required.
        env["RCLONE_S3_USE_UNSIGNED_PAYLOAD"] = "true"
        env["AWS_REQUEST_CHECKSUM_CALCULATION"] = "when_required"
    return env


def region_of(remote: Mapping[str, object]) -> str:
    env = remote.get("env") or {}
    assert isinstance(env, Mapping)
    return str(env["RCLONE_S3_REGION"])
