"""pulumi-iterative: an ML job on a cloud machine as one Pulumi resource.

Public names: IterativeTask, IterativeTaskArgs, Storage, and `checkpoint` (for
scripts running on a task's machine). The Pulumi parts are imported on first
use, so the agent on a machine and the CLI stay light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["IterativeTask", "IterativeTaskArgs", "Storage", "__version__", "checkpoint"]

if TYPE_CHECKING:
    from .agent.client import checkpoint
    from .component import IterativeTask, IterativeTaskArgs, Storage


def __getattr__(name: str) -> Any:
    if name in ("IterativeTask", "IterativeTaskArgs", "Storage"):
        from . import component

        return getattr(component, name)
    if name == "checkpoint":
        from .agent.client import checkpoint

        return checkpoint
    raise AttributeError(name)
