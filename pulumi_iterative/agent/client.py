"""Ask the agent for a consistency point, from the script on the machine.

    from pulumi_iterative import checkpoint
    save(model, "ckpt/model.pt"); save(opt, "ckpt/optimizer.pt")
    checkpoint()   # returns once this exact set is durable in the bucket

From a shell script: `pulumi-iterative checkpoint`. Once a script asks for one,
the agent stops taking background checkpoints for that machine, so a restore
always brings back a set the script declared complete (the final checkpoint
after the script ends is still taken).
"""

from __future__ import annotations

import os
import socket

from ..errors import IterativeError

SOCKET_ENV = "TASK_AGENT_SOCKET"


class CheckpointError(IterativeError):
    """The generation could not be made durable; the previous one stays the newest."""


def checkpoint(timeout: float | None = None) -> int | None:
    """Make the workdir's current state a durable generation; return its number.

    Returns None when not running under the agent (e.g. trying the script on a
    laptop), so scripts need no special case.
    """
    path = os.environ.get(SOCKET_ENV)
    if not path:
        return None
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(path)
        except OSError as exc:
            raise CheckpointError(f"the agent is not answering on {path}: {exc}") from exc
        sock.sendall(b"checkpoint\n")
        reply = b""
        while not reply.endswith(b"\n"):
            chunk = sock.recv(4096)
            if not chunk:
                break
            reply += chunk
    text = reply.decode().strip()
    if not text.startswith("ok "):
        raise CheckpointError(text or "the agent closed the connection")
    return int(text.split()[1])
