"""The local cloud accepts every spec the generic parser accepts."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ...errors import FieldError
    from ...spec import TaskSpec


def validate(spec: TaskSpec) -> list[FieldError]:
    return []
