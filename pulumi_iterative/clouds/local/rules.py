"""The local cloud accepts every spec the generic parser accepts, but for the
arguments of one real cloud (`resource_group`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ...errors import FieldError
    from ...spec import TaskSpec


def validate(spec: TaskSpec) -> list[FieldError]:
    from ..base import resource_group_refused

    return resource_group_refused(spec)
