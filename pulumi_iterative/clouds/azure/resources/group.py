"""The task's resource group: everything else of the task lives in it (its own, or one
the user named with `resource_group`, which is only checked and never deleted)."""

from __future__ import annotations

from typing import Any

from ....errors import IterativeError, NotFound
from ..api import Azure, call, gone


def create(az: Azure, name: str, location: str, tags: dict[str, str]) -> dict[str, Any]:
    try:
        return call(az.resources.resource_groups.get, name).as_dict()  # type: ignore[no-any-return]
    except NotFound:
        pass
    made = call(
        az.resources.resource_groups.create_or_update, name, {"location": location, "tags": tags}
    )
    return made.as_dict()  # type: ignore[no-any-return]


def exists(az: Azure, name: str) -> bool:
    try:
        call(az.resources.resource_groups.get, name)
    except NotFound:
        return False
    return True


def check(az: Azure, name: str) -> None:
    """The user's resource group exists (and the caller can read it)."""
    if not exists(az, name):
        raise IterativeError(
            f"resource_group {name!r} does not exist in subscription {az.subscription} (or "
            "your login cannot read it): create it, or ask whoever hands out groups, or drop "
            "resource_group to let the task make its own"
        )


def delete(az: Azure, name: str) -> None:
    """Everything in it goes too (ARM deletes the contents, then the group)."""
    gone(az.resources.resource_groups.begin_delete, name, what=f"delete resource group {name}")
