"""The script's output echoed to the agent's stdout, for a cloud whose own log of the
machine is what users look at first (k8s: the container log, `pods/log`). The task's
log file stays the one record; this copies its new whole lines at each `pump`, leaving
out the agent's own notes (the agent logs those to stderr already)."""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

AGENT_NOTE = b"[agent "  # how Agent.note starts a line of its own
CHUNK = 1 << 20  # at most this much per pump: a runaway script must not stall the agent


class LogEcho:
    def __init__(self, path: Path, out: BinaryIO) -> None:
        self.path, self.out = path, out
        self.offset = 0
        self.partial = b""

    def pump(self, *, final: bool = False) -> None:
        """Copy what the log gained since the last pump (`final`: a last partial line too)."""
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self.offset)
                data = fh.read(CHUNK)
        except FileNotFoundError:
            return
        self.offset += len(data)
        lines = (self.partial + data).split(b"\n")
        self.partial = b"" if final else lines.pop()
        shown = [line for line in lines if line and not line.startswith(AGENT_NOTE)]
        if shown:
            self.out.write(b"\n".join(shown) + b"\n")
            self.out.flush()
