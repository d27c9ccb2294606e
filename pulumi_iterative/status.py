"""One status and event model for every cloud.

Inputs are the bucket's per-boot reports (written by the agent) and the cloud
group's own view of its machines; `summarize` turns them into one TaskStatus.
Each backend maps its native machine states to `CloudMachine.state` through a
dict; nothing here knows a cloud.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from enum import Enum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .cost import Spend
    from .records import BootReport


class State(str, Enum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMEOUT = "timeout"
    BUDGET = "budget"  # stopped because the spend would pass the task's budget
    INTERRUPTED = "interrupted"  # a boot that was taken away (spot) before it finished
    STOPPED = "stopped"

    def __str__(self) -> str:
        return self.value


DONE = (State.SUCCEEDED, State.FAILED, State.TIMEOUT, State.BUDGET)

# The task's exit code, one per outcome (`pulumi-iterative run` exits with it; README):
# succeeded 0; failed: the script's own code (128+N when a signal N killed it), or
# EXIT_FAILED when there is no code of the script's (the agent could not run it).
EXIT_FAILED = 1
EXIT_TIMEOUT = 124  # as timeout(1)
EXIT_STOPPED = 125  # stopped (`pulumi-iterative stop`) before it finished


def shell_code(code: int) -> int:
    """A process's return code as a shell reports it: a signal N is 128+N."""
    return 128 - code if code < 0 else code


@dataclass(frozen=True)
class CloudMachine:
    """The group's view of one machine: alive or not, and where to reach it."""

    id: str
    alive: bool
    address: str = ""
    zone: str = ""
    type: str = ""  # the native machine type ("" = the task's first type)
    launched: float | None = None  # the cloud's own launch time (billing starts)
    ended: float | None = None  # the cloud's own termination time (billing ends)


@dataclass(frozen=True)
class MachineStatus:
    machine: str  # "<index>-<boot>", or the cloud id while no report exists yet
    index: int | None
    state: State
    exit_code: int | None = None
    started: float | None = None
    finished: float | None = None
    reason: str = ""
    instance: str = ""
    generation: int | None = None


@dataclass(frozen=True)
class Event:
    time: float
    kind: str  # "launch", "start", "checkpoint", "finish", "interrupt", "terminate", ...
    machine: str
    message: str


@dataclass(frozen=True)
class TaskStatus:
    state: State
    counts: Mapping[str, int]
    machines: tuple[MachineStatus, ...]
    restarts: Mapping[int, int]
    events: tuple[Event, ...] = ()
    addresses: tuple[str, ...] = ()
    logs: Mapping[str, str] = field(default_factory=dict)
    cost: Spend | None = None

    @property
    def done(self) -> bool:
        return self.state in DONE or self.state == State.STOPPED

    @property
    def latest(self) -> list[MachineStatus]:
        """The newest boot of each index (earlier boots were replaced)."""
        newest: dict[int, MachineStatus] = {}
        for m in self.machines:
            if m.index is not None and (
                m.index not in newest or (m.started or 0) >= (newest[m.index].started or 0)
            ):
                newest[m.index] = m
        return [newest[i] for i in sorted(newest)]

    @property
    def exit_code(self) -> int:
        """The task's exit code: one per outcome (see EXIT_*); for `failed`, the code of
        the first index whose newest boot failed."""
        if self.state == State.SUCCEEDED:
            return 0
        if self.state in (State.TIMEOUT, State.BUDGET):
            return EXIT_TIMEOUT
        if self.state == State.STOPPED:
            return EXIT_STOPPED
        failed = [m.exit_code for m in self.latest if m.state == State.FAILED and m.exit_code]
        return shell_code(failed[0]) if failed else EXIT_FAILED

    def to_dict(self) -> dict[str, Any]:
        """Plain data for Pulumi outputs and JSON; stable keys."""
        return {
            "state": self.state.value,
            "counts": dict(self.counts),
            "machines": [{**asdict(m), "state": m.state.value} for m in self.machines],
            "restarts": {str(k): v for k, v in self.restarts.items()},
            **({"cost": self.cost.to_dict()} if self.cost is not None else {}),
        }


def summarize(
    reports: Iterable[BootReport],
    cloud: Iterable[CloudMachine] | None,
    *,
    parallelism: int,
    deadline: float,
    now: float,
    stopped: bool = False,
    retrying: Collection[int] = (),
) -> TaskStatus:
    """Fold per-boot reports and the group's machines into one status. `retrying`: the
    indexes the cloud runs again (k8s: a Job retries a failed pod); a failed boot of
    one of them is not the index's last word, so the index is queued, not failed."""
    alive = None if cloud is None else {m.id: m for m in cloud if m.alive}
    boots: list[MachineStatus] = []
    for r in reports:
        state = _state(r.state)
        if state == State.RUNNING and alive is not None and r.instance not in alive:
            state = State.INTERRUPTED  # its machine is gone without a final report
        boots.append(
            MachineStatus(
                machine=r.machine,
                index=r.index if r.index >= 0 else None,
                state=state,
                exit_code=r.exit_code,
                started=r.started,
                finished=r.finished,
                reason=r.reason,
                instance=r.instance,
                generation=r.generation,
            )
        )
    boots.sort(key=lambda m: (m.index if m.index is not None else -1, m.started or 0))
    latest: dict[int, MachineStatus] = {}
    restarts: dict[int, int] = {}
    for m in boots:
        if m.index is None:
            continue
        if m.index in latest:
            restarts[m.index] = restarts.get(m.index, 0) + 1
        latest[m.index] = m
    due = {
        i: replace(m, state=State.QUEUED)
        for i, m in latest.items()
        if i in retrying and m.state == State.FAILED
    }
    latest.update(due)
    # Machines the cloud started that have not reported yet are still booting.
    reported = {m.instance for m in boots}
    booting = [
        MachineStatus(machine=c.id, index=None, state=State.QUEUED, instance=c.id)
        for c in (alive or {}).values()
        if c.id not in reported
    ]
    # A boot that failed before the agent claimed an index (its bootstrap's own report)
    # ended its machine without a replacement: the task cannot complete.
    unclaimed = [m for m in boots if m.index is None and m.state == State.FAILED]
    current = list(latest.values()) + unclaimed + booting
    counts: dict[str, int] = {}
    for m in current:
        counts[m.state.value] = counts.get(m.state.value, 0) + 1

    states = [m.state for m in latest.values()] + [m.state for m in unclaimed]
    if State.FAILED in states:
        overall = State.FAILED
    elif State.TIMEOUT in states:
        overall = State.TIMEOUT
    elif State.BUDGET in states:
        overall = State.BUDGET
    elif len(latest) >= parallelism and all(s == State.SUCCEEDED for s in states):
        overall = State.SUCCEEDED
    elif now >= deadline and not any(s == State.RUNNING for s in states):
        overall = State.TIMEOUT
    elif stopped and not any(s == State.RUNNING for s in states):
        overall = State.STOPPED
    elif any(s == State.RUNNING for s in states):
        overall = State.RUNNING
    else:
        overall = State.QUEUED
    addresses = tuple(sorted(c.address for c in (alive or {}).values() if c.address))
    return TaskStatus(overall, counts, tuple(boots + booting), restarts, addresses=addresses)


def _state(value: Any) -> State:
    try:
        return State(str(value))
    except ValueError:
        return State.QUEUED
