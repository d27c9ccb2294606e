"""Where this package keeps its own files on the workstation."""

from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    """$PULUMI_ITERATIVE_HOME, else $XDG_STATE_HOME/pulumi-iterative, else ~/.local/state/..."""
    explicit = os.environ.get("PULUMI_ITERATIVE_HOME")
    if explicit:
        return Path(explicit)
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(Path.home(), ".local", "state")
    return Path(state) / "pulumi-iterative"
