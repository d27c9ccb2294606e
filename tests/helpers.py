"""Test helpers shared across modules (import from tests.helpers)."""

from __future__ import annotations

import tarfile
import time
from collections.abc import Callable
from pathlib import Path

from pulumi_iterative import lifecycle
from pulumi_iterative.status import TaskStatus
from pulumi_iterative.task import TaskRef


def wait_for(
    ref: TaskRef, condition: Callable[[TaskStatus], bool], timeout: float = 60, poll: float = 0.3
) -> TaskStatus:
    """Poll the task's status until condition holds; fail with the last status and logs."""
    end = time.monotonic() + timeout
    status = lifecycle.read(ref)
    while not condition(status):
        if time.monotonic() > end:
            raise AssertionError(
                f"timed out waiting; last status {status.to_dict()}\nlogs: {status.logs}"
            )
        time.sleep(poll)
        status = lifecycle.read(ref)
    return status


def wait_done(ref: TaskRef, timeout: float = 60) -> TaskStatus:
    return wait_for(ref, lambda s: s.done, timeout)


def stored_bodies(data: Path) -> set[str]:
    """Names of the workdir files a bucket's data/ folder holds a body of, whole or in
    a pack (each pack read as its members)."""
    out = set()
    for p in data.rglob("*"):
        if not p.is_file() or "manifests" in p.relative_to(data).parts:
            continue
        if p.suffix == ".tar" and "packs" in p.parts:
            with tarfile.open(p) as tar:
                out.update(Path(m).name for m in tar.getnames())
        else:
            out.add(p.name)
    return out
