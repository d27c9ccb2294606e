"""Loaded by a Python started with this folder on PYTHONPATH (benchmark 5's provider
server): with BENCH_AUDIT_LOG set, every process start and outbound socket
connection of that Python is appended to the file, one line each. That is how
"no cloud call during preview" is checked from outside the server."""

import os
import sys

_LOG = os.environ.get("BENCH_AUDIT_LOG")
_WATCH = {
    "subprocess.Popen",
    "os.exec",
    "os.posix_spawn",
    "os.spawn",
    "os.system",
    "socket.connect",
}

if _LOG:

    def _hook(event: str, args: tuple) -> None:
        if event in _WATCH:
            with open(_LOG, "a", encoding="utf-8") as fh:
                fh.write(f"{event} {args[:2]!r}\n"[:500])

    sys.addaudithook(_hook)
