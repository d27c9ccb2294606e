"""One module per Kubernetes object a task makes, each small and uniform.

Every create reads first (there and labelled with this task: done; there and not
ours: a clear error, never an overwrite), then creates with strict field
validation, treating AlreadyExists from a concurrent run as done. Every delete
treats "not found" as done. Bodies are plain dicts in the API's own field names,
built by pure functions the tests assert on.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ....errors import NotFound
from ..api import K8sError, call, created
from ..names import TASK_LABEL, Names

STRICT = {"field_validation": "Strict"}


def labels_of(obj: Any) -> dict[str, str]:
    meta = obj.get("metadata") if isinstance(obj, dict) else getattr(obj, "metadata", None)
    if isinstance(meta, dict):
        return dict(meta.get("labels") or {})
    return dict(getattr(meta, "labels", None) or {})


def ensure(
    names: Names,
    what: str,
    read: Callable[[], Any],
    create: Callable[[], Any],
) -> bool:
    """Create unless this task's object is there; True if this call made it."""
    try:
        found = call(read)
    except NotFound:
        return created(create) is not None
    if labels_of(found).get(TASK_LABEL) != names.task_id:
        raise K8sError(
            f"{what} already exists and does not belong to task {names.task_id}; "
            "delete it or use another namespace",
            "AlreadyExists",
            409,
        )
    return False
