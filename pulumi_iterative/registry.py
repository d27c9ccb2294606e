"""The workstation's list of tasks it created, so the CLI can find them by id.

A convenience of one workstation, never something a task depends on: `remember` and
`forget_quietly` are what the CLI and the provider call, and a home directory that
cannot be written (a CI runner, Pulumi Deployments) is a warning, not a failure.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Callable

from .errors import IterativeError
from .paths import home
from .task import TaskRef, check_task_id

log = logging.getLogger(__name__)


def save(ref: TaskRef) -> None:
    path = home() / "tasks"
    path.mkdir(parents=True, exist_ok=True)
    tmp = path / f".{ref.task_id}.json.tmp"
    tmp.write_text(json.dumps(ref.to_dict(), indent=1))
    os.replace(tmp, path / f"{ref.task_id}.json")


def load(task_id: str) -> TaskRef:
    check_task_id(task_id)
    path = home() / "tasks" / f"{task_id}.json"
    if not path.exists():
        raise IterativeError(
            f"no task {task_id} on this workstation; `pulumi-iterative list` shows yours"
        )
    return TaskRef.from_dict(json.loads(path.read_text()))


def all_refs() -> list[TaskRef]:
    path = home() / "tasks"
    if not path.is_dir():
        return []
    refs = []
    for f in sorted(path.glob("*.json")):
        try:
            refs.append(TaskRef.from_dict(json.loads(f.read_text())))
        except (ValueError, KeyError):
            continue
    return sorted(refs, key=lambda r: r.created)


def forget(task_id: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        (home() / "tasks" / f"{task_id}.json").unlink()


def remember(ref: TaskRef) -> bool:
    """`save`, if this workstation lets us; False (and a warning) if its home cannot be
    written. RuntimeError: no home directory can be determined at all."""
    try:
        save(ref)
    except (OSError, RuntimeError) as exc:
        log.warning(
            "task %s is not in this workstation's task list (%s); the CLI reaches it by its "
            "ref (`pulumi stack output ref --json`)",
            ref.task_id,
            exc,
        )
        return False
    return True


def forget_quietly(task_id: str) -> None:
    with contextlib.suppress(OSError, RuntimeError):
        forget(task_id)


def remembered(create: Callable[[Callable[[TaskRef], object]], TaskRef]) -> TaskRef:
    """`create(on_prepared)` with the task remembered from its prepared ref on (before
    the first cloud call), so a create cut short by a killed process leaves a task that
    `list` and `delete` find (its objects found by name: a ref without `made`); forgotten
    again when create fails, as its steps were undone (also on Ctrl-C)."""
    prepared: list[TaskRef] = []

    def register(ref: TaskRef) -> None:
        prepared.append(ref)
        remember(ref)

    try:
        ref = create(register)
    except BaseException:
        for ref in prepared:
            forget_quietly(ref.task_id)
        raise
    remember(ref)
    return ref
