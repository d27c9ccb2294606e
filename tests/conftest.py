"""Shared fixtures: an isolated state home per test, and no process left behind."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from pulumi_iterative import lifecycle, registry


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
