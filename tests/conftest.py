"""Shared fixtures: an isolated state home per test, and no process left behind."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pulumi_iterative import lifecycle, registry
from pulumi_iterative.status import TaskStatus
from pulumi_iterative.task import TaskRef


@pytest.fixture
def iterative_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """PULUMI_ITERATIVE_HOME in a temp folder; every local group it started is stopped after."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("PULUMI_ITERATIVE_HOME", str(home))
    yield home
    for pid_file in (home / "groups").glob("*/group.pid"):
        try:
            os.kill(int(pid_file.read_text()), signal.SIGKILL)
        except (ProcessLookupError, ValueError, FileNotFoundError):
            pass
    for ref in registry.all_refs():
        try:
            lifecycle.get_backend(ref.cloud).stop(ref)
        except Exception:
            pass


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    wd = tmp_path / "project"
    wd.mkdir()
    return wd


def wait_for(ref: TaskRef, condition: Callable[[TaskStatus], bool], timeout: float = 60,
             poll: float = 0.3) -> TaskStatus:
    """Poll the task's status until condition holds; fail with the last status and logs."""
    end = time.monotonic() + timeout
    status = lifecycle.read(ref)
    while not condition(status):
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting; last status {status.to_dict()}\n"
                                 f"logs: {status.logs}")
        time.sleep(poll)
        status = lifecycle.read(ref)
    return status


def wait_done(ref: TaskRef, timeout: float = 60) -> TaskStatus:
    return wait_for(ref, lambda s: s.done, timeout)
