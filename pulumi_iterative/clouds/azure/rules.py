"""Azure's rules on a parsed spec, checked at `pulumi preview` (no SDK, no cloud call)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from ...errors import FieldError
from ..base import real_cloud_rules

if TYPE_CHECKING:
    from ...spec import TaskSpec

PERMISSION_SET = re.compile(
    r"^/subscriptions/[0-9a-fA-F-]{36}/resourceGroups/[\w().-]{1,90}/providers/"
    r"Microsoft\.ManagedIdentity/userAssignedIdentities/[\w-]{3,128}$",
    re.IGNORECASE,
)
ACCOUNT = re.compile(r"^[a-z0-9]{3,24}$")
# Azure's rule: 1-90 letters, digits, underscores, hyphens, periods and parentheses,
# not ending in a period.
RESOURCE_GROUP = re.compile(r"^[\w().-]{0,89}[\w()-]$")
CONTAINER = re.compile(r"^(?!.*--)[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")


def validate(spec: TaskSpec) -> list[FieldError]:
    errors = real_cloud_rules(spec, resource_group=True)
    if spec.resource_group and not RESOURCE_GROUP.match(spec.resource_group):
        errors.append(
            FieldError(
                "resource_group",
                f"{spec.resource_group!r} is not a resource group name: 1-90 letters, digits, "
                "underscores, hyphens, periods and parentheses, not ending in a period "
                "(the name, not its /subscriptions/... id)",
            )
        )
    if spec.storage.container_opts:
        errors.append(
            FieldError(
                "storage.container_opts",
                "not used on azure (the account and container come from storage.container, "
                "credentials from your az login); remove it",
            )
        )
    if spec.permission_set and not PERMISSION_SET.match(spec.permission_set):
        errors.append(
            FieldError(
                "permission_set",
                f"{spec.permission_set!r} is not a user-assigned managed identity id "
                "(/subscriptions/<id>/resourceGroups/<group>/providers/"
                "Microsoft.ManagedIdentity/userAssignedIdentities/<name>)",
            )
        )
    if spec.storage.container:
        account, _, rest = spec.storage.container.strip("/").partition("/")
        container = rest.partition("/")[0]
        if not ACCOUNT.match(account) or not CONTAINER.match(container):
            errors.append(
                FieldError(
                    "storage.container",
                    f"{spec.storage.container!r} is not <account>/<container>[/<prefix>] "
                    "(an account of 3-24 lowercase letters and digits, a container of 3-63 "
                    "lowercase letters, digits and single hyphens)",
                )
            )
    return errors
