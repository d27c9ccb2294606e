"""GCP's rules on a parsed spec, checked at `pulumi preview` (no SDK, no cloud call)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from ...errors import FieldError
from ..base import real_cloud_rules

if TYPE_CHECKING:
    from ...spec import TaskSpec

SERVICE_ACCOUNT = re.compile(
    r"^[a-z][-a-z0-9]{4,28}[a-z0-9]@[a-z][-a-z0-9.:]*\.gserviceaccount\.com$"
)
LABEL_KEY = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
LABEL_VALUE = re.compile(r"^[a-z0-9_-]{0,63}$")
BUCKET = re.compile(r"^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$")


def validate(spec: TaskSpec) -> list[FieldError]:
    errors = real_cloud_rules(spec)
    if spec.storage.container_opts:
        errors.append(
            FieldError(
                "storage.container_opts",
                "not used on gcp (the bucket's project and credentials come from your "
                "environment); remove it",
            )
        )
    if spec.storage.container:
        bucket = spec.storage.container.strip("/").split("/", 1)[0]
        if not BUCKET.match(bucket) or "google" in bucket or bucket.startswith("goog"):
            errors.append(
                FieldError(
                    "storage.container",
                    f"{bucket!r} is not a GCS bucket name (3-222 characters: lowercase "
                    "letters, digits, -, _ and .; not starting with 'goog')",
                )
            )
    if spec.permission_set.endswith("-compute@developer.gserviceaccount.com"):
        errors.append(
            FieldError(
                "permission_set",
                "the default compute service account usually holds broad project roles; "
                "give a service account of your own, or leave permission_set empty for a "
                "per-task one",
            )
        )
    elif spec.permission_set and not SERVICE_ACCOUNT.match(spec.permission_set):
        errors.append(
            FieldError(
                "permission_set",
                f"{spec.permission_set!r} is not a service account email "
                "(<name>@<project>.iam.gserviceaccount.com)",
            )
        )
    for key, value in spec.tags:
        if not LABEL_KEY.match(key) or not LABEL_VALUE.match(value):
            errors.append(
                FieldError(
                    f"tags.{key}",
                    "GCP labels need lowercase keys (a letter, then letters, digits, _ or -, "
                    "up to 63) and values of lowercase letters, digits, _ or - (up to 63); "
                    f"rename {key}={value!r}",
                )
            )
    return errors
