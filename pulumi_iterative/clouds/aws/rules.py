"""AWS's rules on a parsed spec, checked at `pulumi preview` (no SDK, no cloud call)."""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING

from ... import catalog
from ...errors import FieldError
from ..base import real_cloud_rules

if TYPE_CHECKING:
    from ...spec import TaskSpec

log = logging.getLogger(__name__)

GPU_FAMILY = re.compile(r"^(g\d|p\d)")  # EC2's GPU instance families (g4dn, g5, p4d, ...)
NO_GPU_DRIVER_IMAGES = ("ubuntu",)  # aliases whose images ship no NVIDIA driver

PERMISSION_SET = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:instance-profile/[\w+=,.@/-]+$")


def gpu_without_driver(spec: TaskSpec) -> str:
    """A GPU machine booting an image with no GPU driver: legal, but rarely meant."""
    try:
        types = catalog.resolve_machine("aws", spec.machine).types
    except Exception:  # an unknown machine is the spec's own error
        return ""
    if spec.image in NO_GPU_DRIVER_IMAGES and any(GPU_FAMILY.match(t) for t in types):
        return (
            f"machine {spec.machine!r} has a GPU but image {spec.image!r} has no NVIDIA "
            "driver; use image 'nvidia' (or an image of yours with the driver)"
        )
    return ""


def validate(spec: TaskSpec) -> list[FieldError]:
    errors = real_cloud_rules(spec)
    warning = gpu_without_driver(spec)
    if warning:
        log.warning("image: %s", warning)  # shown by `pulumi preview` as a warning
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
