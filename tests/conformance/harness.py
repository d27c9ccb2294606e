"""What a cloud supplies to the conformance suite: one `Harness`, through one fixture.

The scenarios in test_conformance.py are written once and run for every cloud in
`HARNESSES` (conftest.py). A cloud plugs in by adding a module here that defines a
fixture named `<cloud>_harness` returning an object with this shape, and its name to
`HARNESSES`. The harness owns the cloud's emulator (started by its fixtures) and a
machine simulator that runs the *stored* bootstrap text as a local process, the way
the cloud would run it; the scenarios only use `lifecycle` and this interface.

A scenario that a cloud cannot pass yet is listed in `xfail` with the reason, naming
the issue that fixes it; it is then not run (waiting out a known broken promise costs
minutes), and the entry goes when the fix lands.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import pytest

from pulumi_iterative.spec import TaskSpec
from pulumi_iterative.task import TaskRef

SHUTDOWN_SKEW = 2.0  # take_away: seconds between the script's SIGTERM and the agent's


class Harness(Protocol):
    name: str
    # The create steps of `spec(...)` with parallelism 1 and no container, in order.
    steps: tuple[str, ...]
    # Values that must never be stored in the cloud: the caller's credentials.
    caller_secrets: tuple[str, ...]
    # Boots a failed script gets per index: 1 where the machine leaves its group after
    # any outcome; more where the cloud retries a failed boot (k8s: backoffLimitPerIndex).
    script_tries: int
    # scenario name (a test function's name without `test_`) -> why it fails, naming the issue
    xfail: Mapping[str, str]

    def spec(self, workdir: Path, script: str, **args: Any) -> TaskSpec:
        """A parsed spec for this cloud (its region, a small machine) with these args."""
        ...

    def start(self) -> None:
        """Begin simulating the machines the cloud launches (idempotent)."""
        ...

    def preempt(self, ref: TaskRef, index: int) -> str:
        """Take away, without notice, the machine running `index`, as the cloud would
        (the group then starts a replacement). Returns the machine's id."""
        ...

    def take_away(self, ref: TaskRef, index: int) -> str:
        """Take away, *with* notice, the machine running `index`, as the cloud does to a
        spot machine: first the cloud's preemption notice (what
        `MachineSide.preemption_notice` reads); then the shutdown, whose SIGTERM reaches
        the script's processes first and the agent's about SHUTDOWN_SKEW seconds later
        (a shutdown promises no order, and an agent busy uploading sees it late); then a
        kill some seconds later. The group starts a replacement. Returns the machine's id."""
        ...

    def running_machines(self, ref: TaskRef) -> list[str]:
        """Simulated machines of the task whose processes still run."""
        ...

    def backstop(self, ref: TaskRef) -> float | None:
        """When the cloud itself stops the machines, agent or not (None: no such thing)."""
        ...

    def leftovers(self, task_id: str) -> list[str]:
        """Every object of the task still in the cloud (emulator), described."""
        ...

    def stored(self, ref: TaskRef) -> str:
        """Everything the cloud keeps about the task outside its bucket (templates,
        machine metadata, user data, labels, tags), as one text to scan."""
        ...

    def break_install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Make the agent's install on the machines fail (a broken bootstrap)."""
        ...

    def report(self) -> str:
        """Diagnostics for a failed scenario (consoles, emulator errors)."""
        ...
