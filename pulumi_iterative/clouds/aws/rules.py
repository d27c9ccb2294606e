"""AWS's rules on a parsed spec, checked at `pulumi preview` (no SDK, no cloud call)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from ...errors import FieldError
from ..base import real_cloud_rules

if TYPE_CHECKING:
    from ...spec import TaskSpec

PERMISSION_SET = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:instance-profile/[\w+=,.@/-]+$")


def validate(spec: TaskSpec) -> list[FieldError]:
    errors = real_cloud_rules(spec)
    if spec.storage.container_opts:
        errors.append(
            FieldError(
                "storage.container_opts",
                "not used on aws (the bucket's region and credentials come from the task "
                "and your environment); remove it",
            )
        )
    if spec.permission_set and not PERMISSION_SET.match(spec.permission_set):
        errors.append(
            FieldError(
                "permission_set",
                f"{spec.permission_set!r} is not an instance profile ARN "
                "(arn:aws:iam::<account>:instance-profile/<name>)",
            )
        )
    return errors
