"""Kubernetes' rules on a parsed spec, checked at `pulumi preview` (no SDK, no call)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from ...errors import FieldError
from ..base import real_cloud_rules
from .catalog import resolve_machine

if TYPE_CHECKING:
    from ...spec import TaskSpec

NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")  # an RFC 1123 label
SERVICE_ACCOUNT = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
# container_opts without storage.container: the PersistentVolumeClaim's options
CLAIM_OPTIONS = ("storage_class",)
CONTAINER_TYPES = ("s3", "gcs", "azureblob")
CONTAINER = re.compile(r"^(?P<type>[a-z0-9]+):(?P<bucket>[^/]+)(/(?P<prefix>.*))?$")
# container_opts that are credentials: kept in the task's Secret, never in the Job
SECRET_OPTION = re.compile(r"(key|secret|token|password|credentials|sas)", re.IGNORECASE)
ENV_SAFE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def validate(spec: TaskSpec) -> list[FieldError]:
    # A cluster's machines have no public price: the user may state theirs.
    errors = real_cloud_rules(spec, notional_price=True)
    if spec.spot > 0:
        errors.append(
            FieldError(
                "spot",
                "Kubernetes has no spot price to cap; use 0 for the cluster's spot pools "
                "or -1 to avoid them",
            )
        )
    try:
        resolve_machine(spec.machine)
    except ValueError as exc:
        errors.append(FieldError("machine", str(exc)))
    if spec.permission_set and not SERVICE_ACCOUNT.match(spec.permission_set):
        errors.append(
            FieldError(
                "permission_set",
                f"{spec.permission_set!r} is not a service account name; give the name of an "
                "existing service account in the task's namespace",
            )
        )
    if spec.namespace and not NAMESPACE.match(spec.namespace):
        errors.append(
            FieldError(
                "namespace",
                f"{spec.namespace!r} is not a namespace name: use up to 63 lowercase "
                "letters, digits and hyphens, starting and ending with a letter or digit",
            )
        )
    opts = dict(spec.storage.container_opts)
    if spec.storage.container:
        found = CONTAINER.match(spec.storage.container)
        if not found or found.group("type") not in CONTAINER_TYPES:
            errors.append(
                FieldError(
                    "storage.container",
                    f"{spec.storage.container!r}: give <type>:<bucket>[/<prefix>] with type one "
                    f"of {', '.join(CONTAINER_TYPES)} (e.g. s3:my-bucket/runs), or leave it "
                    "empty for a volume in the cluster",
                )
            )
        for name in opts:
            if not ENV_SAFE.match(name):
                errors.append(
                    FieldError(
                        f"storage.container_opts.{name}",
                        "is not an rclone option name (letters, digits, underscores)",
                    )
                )
    else:
        for name in sorted(set(opts) - set(CLAIM_OPTIONS)):
            errors.append(
                FieldError(
                    f"storage.container_opts.{name}",
                    "without storage.container the task's bucket is a volume in the cluster, "
                    f"whose only option is {', '.join(CLAIM_OPTIONS)}; remove it",
                )
            )
    return errors
